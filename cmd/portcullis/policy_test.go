package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/policy"
)

// TestMain lets a test run the real main() in a child process (to see
// its exit status and stderr): PORTCULLIS_TEST_MAIN=1 makes the test
// binary behave as the portcullis binary.
func TestMain(m *testing.M) {
	if os.Getenv("PORTCULLIS_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runCLI runs the command line in-process and returns its output.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

const examples = "../../examples/policies"

var exampleIDs = []string{"egress-deny-hosts", "no-secret-files-write", "no-secret-files-edit", "python-working-hours"}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examples, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPolicyCheckValid(t *testing.T) {
	out, _, err := runCLI(t, "policy", "check", examples)
	if err != nil {
		t.Fatalf("examples directory: %v", err)
	}
	if !strings.HasPrefix(out, "ok: 5 policies (") {
		t.Errorf("output %q", out)
	}
	for _, id := range exampleIDs {
		if !strings.Contains(out, id) {
			t.Errorf("output %q lacks policy id %s", out, id)
		}
	}

	out, _, err = runCLI(t, "policy", "check", filepath.Join(examples, "no-secret-files.cedar"), filepath.Join(examples, "working-hours.cedar"))
	if err != nil || out != "ok: 3 policies (no-secret-files-edit, no-secret-files-write, python-working-hours)\n" {
		t.Errorf("two files: %q %v", out, err)
	}

	// A file's content counts, not its name: any extension is read when
	// named; in a directory only *.cedar files are.
	dir := t.TempDir()
	writeFile(t, dir, "policy.txt", readExample(t, "egress-deny.cedar"))
	writeFile(t, dir, "notes.md", "not cedar at all {")
	if out, _, err := runCLI(t, "policy", "check", filepath.Join(dir, "policy.txt")); err != nil || !strings.Contains(out, "egress-deny-hosts") {
		t.Errorf("named .txt file: %q %v", out, err)
	}
	writeFile(t, dir, "a.cedar", readExample(t, "working-hours.cedar"))
	writeFile(t, dir, ".editor-swap.cedar", "not cedar {") // hidden: the gateway skips it too
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub"), "b.cedar", "not cedar {") // subdirectories are not read
	if out, _, err := runCLI(t, "policy", "check", dir); err != nil || out != "ok: 1 policies (python-working-hours)\n" {
		t.Errorf("directory with other files: %q %v", out, err)
	}

	// Exactly the size limit is accepted.
	edge := readExample(t, "working-hours.cedar")
	edge += strings.Repeat("/", maxPolicyFile-len(edge)-1) + "\n"
	p := writeFile(t, t.TempDir(), "edge.cedar", edge)
	if _, _, err := runCLI(t, "policy", "check", p); err != nil {
		t.Errorf("a file of exactly %d bytes: %v", maxPolicyFile, err)
	}
}

func TestPolicyCheckRefused(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.cedar", readExample(t, "egress-deny.cedar"))
	broken := writeFile(t, dir, "broken.cedar", "permit (principal, action, resource) when { context.hour >= };\n")
	dupDir := t.TempDir()
	writeFile(t, dupDir, "one.cedar", readExample(t, "egress-deny.cedar"))
	writeFile(t, dupDir, "two.cedar", readExample(t, "egress-deny.cedar"))
	emptyDir := t.TempDir()
	writeFile(t, emptyDir, "README.md", "# nothing\n")
	big := writeFile(t, t.TempDir(), "big.cedar", readExample(t, "working-hours.cedar")+strings.Repeat("/", maxPolicyFile)+"\n")

	cases := []struct {
		name  string
		args  []string
		want  []string
		isPol bool // wraps policy.ErrInvalidPolicy
	}{
		{"broken file", []string{broken}, []string{"broken.cedar"}, true},
		{"broken among good", []string{good, broken}, []string{"broken.cedar"}, true},
		{"broken in directory", []string{dir}, []string{"broken.cedar"}, true},
		{"duplicate ids", []string{dupDir}, []string{"egress-deny-hosts", "already used"}, true},
		{"same file twice", []string{good, good}, nil, false}, // one map entry: fine
		{"directory without policies", []string{emptyDir}, []string{emptyDir, "no .cedar files"}, false},
		{"over 1 MiB", []string{big}, []string{"big.cedar", "1 MiB"}, false},
		{"missing file", []string{filepath.Join(dir, "nope.cedar")}, []string{"nope.cedar"}, false},
		{"no arguments", nil, []string{"arg"}, false},
	}
	if _, err := os.Stat("/dev/null"); err == nil {
		cases = append(cases, struct {
			name  string
			args  []string
			want  []string
			isPol bool
		}{"device", []string{"/dev/null"}, []string{"/dev/null", "not a regular file"}, false})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, _, err := runCLI(t, append([]string{"policy", "check"}, c.args...)...)
			if c.want == nil {
				if err != nil {
					t.Errorf("err = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; output %q", out)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if errors.Is(err, policy.ErrInvalidPolicy) != c.isPol {
				t.Errorf("errors.Is(ErrInvalidPolicy) = %v for %v", !c.isPol, err)
			}
			if strings.HasPrefix(out, "ok") {
				t.Errorf("printed %q on failure", out)
			}
		})
	}
}

// TestPolicyCheckExitStatus runs the real main: 0 and "ok" on stdout for
// valid files; non-zero and the error naming the file on stderr otherwise.
func TestPolicyCheckExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "PORTCULLIS_TEST_MAIN=1")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return out.String(), errOut.String(), 0
		case errors.As(err, &ee):
			return out.String(), errOut.String(), ee.ExitCode()
		default:
			t.Fatal(err)
			return "", "", -1
		}
	}
	out, stderr, code := run("policy", "check", examples)
	if code != 0 || !strings.HasPrefix(out, "ok: 5 policies") || stderr != "" {
		t.Errorf("valid: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	broken := writeFile(t, t.TempDir(), "broken.cedar", "forbid (principal, action, resource) when { ;\n")
	out, stderr, code = run("policy", "check", broken)
	if code == 0 || out != "" || !strings.Contains(stderr, "broken.cedar") || !strings.Contains(stderr, "invalid policy") {
		t.Errorf("broken: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}
