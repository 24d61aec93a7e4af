package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = cleanEnv("PORTCULLIS_DATA_DIR=" + t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestDoctor: on this host (root, Linux with namespaces, seccomp, cgroups)
// every required check passes and the report names each mechanism.
func TestDoctor(t *testing.T) {
	out, errOut, code := runCLI(t, "", "doctor")
	if code != 0 {
		t.Fatalf("doctor exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"user namespaces", "seccomp", "landlock", "cgroups", "memfd", "sandbox run", "python", "All required mechanisms are available."} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
}

// TestSandboxRunCommand: `portcullis sandbox run` runs a command at a
// level, passes stdin, reports violations and exits with the command's
// status.
func TestSandboxRunCommand(t *testing.T) {
	out, errOut, code := runCLI(t, "", "sandbox", "run", "--level", "strict", "--", "/bin/sh", "-c", "id -u; hostname")
	if code != 0 || out != "65534\nsandbox\n" {
		t.Errorf("strict sh: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "", "sandbox", "run", "--", "/bin/sh", "-c", "id -u")
	if code == 0 || !strings.Contains(errOut, "Cannot fork") {
		t.Errorf("maximum level must refuse the fork: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = runCLI(t, "hello\n", "sandbox", "run", "--", "/usr/bin/python3", "-c", "print(input()[::-1])")
	if code != 0 || out != "olleh\n" {
		t.Errorf("stdin: exit %d, stdout %q, want %q", code, out, "olleh\n")
	}
	_, errOut, code = runCLI(t, "", "sandbox", "run", "--level", "strict", "--memory", "32MiB", "--", "/usr/bin/python3", "-c", "x = bytearray(256 << 20)")
	if code == 0 || !strings.Contains(errOut, "OOM_KILL") {
		t.Errorf("memory bomb: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = runCLI(t, "", "sandbox", "run", "--level", "bogus", "--", "/bin/true")
	if code == 0 || !strings.Contains(errOut, "unknown security level") {
		t.Errorf("bad level: exit %d, stderr %q", code, errOut)
	}
}
