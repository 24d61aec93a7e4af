//go:build linux

package command_test

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tools/command"
)

// These tests run real programs in the native sandbox; they skip when the
// host cannot run it.

func TestRunsAllowedPrograms(t *testing.T) {
	ws := workspace(t)
	tl := newTool(t, realRuntime(t), ws, nil)
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"ls", "/workspace"}, "hello.txt\nsrc\n"},
		{[]string{"cat", "/workspace/hello.txt"}, "hello world\nsecond line\nthird line\n"},
		{[]string{"wc", "-l", "/workspace/hello.txt"}, "3 /workspace/hello.txt\n"},
		{[]string{"head", "-n", "1", "/workspace/hello.txt"}, "hello world\n"},
		{[]string{"tail", "-n", "1", "/workspace/hello.txt"}, "third line\n"},
		{[]string{"grep", "-rn", "TODO", "/workspace/src"}, "/workspace/src/main.go:3:// TODO: everything\n"},
		{[]string{"python3", "-c", "import os; print(os.getcwd(), sorted(os.listdir('/workspace')))"}, "/work ['hello.txt', 'src']\n"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.argv, " "), func(t *testing.T) {
			if got := mustRun(t, tl, tc.argv...); got != tc.want {
				t.Fatalf("stdout %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("stdin", func(t *testing.T) {
		res, err := call(t, tl, map[string]any{"command": []string{"wc", "-c"}, "stdin": "hello"})
		if err != nil || res.IsError || strings.TrimSpace(res.Structured["stdout"].(string)) != "5" {
			t.Fatalf("wc -c: %v %+v", err, res)
		}
	})
	t.Run("non-zero exit", func(t *testing.T) {
		res := run(t, tl, "ls", "/workspace/missing")
		if !res.IsError || res.Code != reason.NonZeroExit || res.Structured["exit_code"] != 2 ||
			!strings.Contains(res.Structured["stderr"].(string), "No such file") || !strings.Contains(res.Text, "exit code 2") {
			t.Fatalf("result %+v", res)
		}
	})
}

// TestArgumentsAreLiteral: no shell ever parses the argv. Shell syntax and
// option-looking strings reach the program as literal bytes, and nothing
// they would do in a shell happens.
func TestArgumentsAreLiteral(t *testing.T) {
	ws := workspace(t)
	tl := newTool(t, realRuntime(t), ws, nil)
	before := snapshot(t, ws)
	for _, arg := range []string{
		"/workspace/hello.txt; rm -rf /workspace",
		"/workspace/hello.txt && touch /workspace/pwned",
		"$(touch /workspace/pwned)",
		"`touch /workspace/pwned`",
		"/workspace/*.txt",
		"/workspace/hello.txt | sh",
		"> /workspace/pwned",
		"${IFS}",
		"~",
	} {
		res := run(t, tl, "cat", arg)
		if !res.IsError || res.Code != reason.NonZeroExit {
			t.Errorf("cat %q: %s %q", arg, res.Code, res.Text)
		}
		if stderr := res.Structured["stderr"].(string); !strings.Contains(stderr, "'"+arg+"': No such file") {
			t.Errorf("cat %q: stderr %q does not show the argument as one literal file name", arg, stderr)
		}
	}
	// An argument that is an option to the program stays an option to that
	// program only: it cannot name another program to run.
	res := run(t, tl, "python3", "-c", "import sys; print(sys.argv[1:])", "; sh", "$(id)")
	if res.IsError || res.Structured["stdout"] != "['; sh', '$(id)']\n" {
		t.Errorf("python3 argv: %+v", res)
	}
	if after := snapshot(t, ws); after != before {
		t.Fatalf("workspace changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestNoShellFromAllowedProgram: at the maximum level an allowed program
// cannot start another one, so python3 cannot reach a shell either.
func TestNoShellFromAllowedProgram(t *testing.T) {
	ws := workspace(t)
	tl := newTool(t, realRuntime(t), ws, nil)
	for _, code := range []string{
		"import os, sys\nrc = os.system('echo pwned > /tmp/x')\nprint('refused' if rc != 0 else 'ran')",
		"import subprocess\ntry:\n subprocess.run(['/bin/sh', '-c', 'echo pwned'])\nexcept OSError as e:\n print('refused', e.errno)",
		"import os\ntry:\n os.execv('/bin/sh', ['sh', '-c', 'echo pwned'])\nexcept OSError as e:\n print('refused', e.errno)",
	} {
		res := run(t, tl, "python3", "-c", code)
		if strings.Contains(res.Text, "pwned") || strings.Contains(res.Text, "ran") {
			t.Fatalf("%q: a shell ran: %s", code, res.Text)
		}
		if res.IsError || !strings.HasPrefix(res.Structured["stdout"].(string), "refused") {
			t.Errorf("%q: %s %q", code, res.Code, res.Text)
		}
	}
}

func TestNoNetwork(t *testing.T) {
	ws := workspace(t)
	tl := newTool(t, realRuntime(t), ws, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	code := fmt.Sprintf(`import socket
s = socket.socket()
s.settimeout(3)
try:
    s.connect(("127.0.0.1", %d))
    print("connected")
except OSError as e:
    print("refused", type(e).__name__)`, port)
	res := run(t, tl, "python3", "-c", code)
	if strings.Contains(res.Text, "connected") || accepted.Load() != 0 {
		t.Fatalf("the sandbox reached the host's loopback listener: %s", res.Text)
	}
	if !strings.Contains(res.Text, "refused") && res.Code != reason.SandboxViolation {
		t.Fatalf("unexpected result %s: %s", res.Code, res.Text)
	}
}

// TestWorkspaceReadOnly: nothing inside the sandbox can change the
// workspace.
func TestWorkspaceReadOnly(t *testing.T) {
	ws := workspace(t)
	tl := newTool(t, realRuntime(t), ws, nil)
	before := snapshot(t, ws)
	code := `import errno, os
def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print(err(lambda: open("/workspace/new.txt", "w")))
print(err(lambda: open("/workspace/hello.txt", "a")))
print(err(lambda: os.remove("/workspace/hello.txt")))
print(err(lambda: os.rename("/workspace/hello.txt", "/workspace/moved.txt")))
print(err(lambda: os.mkdir("/workspace/d")))
print(err(lambda: os.chmod("/workspace/hello.txt", 0o777)))
print(err(lambda: os.symlink("/etc/passwd", "/workspace/link")))
print(err(lambda: open("/work/scratch.txt", "w").write("x")))
`
	out := mustRun(t, tl, "python3", "-c", code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 {
		t.Fatalf("output %q", out)
	}
	for i, l := range lines[:7] {
		if l == "ok" {
			t.Errorf("write %d to the workspace succeeded", i)
		}
	}
	if lines[7] != "ok" {
		t.Errorf("the private work dir is not writable: %s", lines[7])
	}
	if after := snapshot(t, ws); after != before {
		t.Fatalf("workspace changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestHostInvisible: the host's files outside the workspace and the system
// paths are not in the sandbox, even through a symbolic link in the
// workspace.
func TestHostInvisible(t *testing.T) {
	ws := workspace(t)
	secretDir := t.TempDir()
	if err := os.Chmod(secretDir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(secretDir, "secret.txt")
	if err := os.WriteFile(secret, []byte("TOPSECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(ws, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../../"+strings.TrimPrefix(secret, "/"), filepath.Join(ws, "rel")); err != nil {
		t.Fatal(err)
	}
	tl := newTool(t, realRuntime(t), ws, nil)
	for _, p := range []string{"/workspace/link", "/workspace/rel", secret, "/etc/shadow", "/root/.bash_history", "/proc/1/environ"} {
		res := run(t, tl, "cat", p)
		if strings.Contains(res.Text, "TOPSECRET") || !res.IsError {
			t.Errorf("cat %s: %s %q", p, res.Code, res.Text)
		}
	}
}

func TestTimeoutKills(t *testing.T) {
	ws := workspace(t)
	tl := newTool(t, realRuntime(t), ws, nil)
	start := time.Now()
	res, err := call(t, tl, map[string]any{"command": []string{"tail", "-f", "/workspace/hello.txt"}, "timeout_s": 1})
	if err != nil {
		t.Fatal(err)
	}
	if !res.IsError || res.Code != reason.Timeout || res.Structured["violation"] != "WALL_TIMEOUT" {
		t.Fatalf("result %s %v", res.Code, res.Structured)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Fatalf("timeout took %s", el)
	}
	res, err = call(t, tl, map[string]any{"command": []string{"python3", "-c", "while True: pass"}, "timeout_s": 1})
	if err != nil || res.Code != reason.Timeout {
		t.Fatalf("busy loop: %v %+v", err, res)
	}
}

func TestCancelKills(t *testing.T) {
	ws := workspace(t)
	tl := newTool(t, realRuntime(t), ws, nil)
	ctx, cancel := contextWithTimeout(t, 500*time.Millisecond)
	defer cancel()
	res, err := tl.Call(ctx, []byte(`{"command":["tail","-f","/workspace/hello.txt"]}`))
	switch {
	case err != nil:
		if c := codeOf(t, err); c != reason.Cancelled && c != reason.Timeout {
			t.Fatalf("error %v", err)
		}
	case !res.IsError || (res.Code != reason.Cancelled && res.Code != reason.Timeout):
		t.Fatalf("result %s %v", res.Code, res.Structured)
	}
}

func TestOutputCap(t *testing.T) {
	ws := workspace(t)
	writeFile(t, ws, "big.txt", strings.Repeat("0123456789abcdef", 64<<10)) // 1 MiB
	tl := newTool(t, realRuntime(t), ws, func(c *command.Config) { c.MaxOutputBytes = 4096 })
	res := run(t, tl, "cat", "/workspace/big.txt")
	out := res.Structured["stdout"].(string)
	if len(out) > 4096 || res.Structured["stdout_truncated"] != true {
		t.Fatalf("stdout %d bytes, truncated %v", len(out), res.Structured["stdout_truncated"])
	}
	if res.IsError && res.Code != reason.NonZeroExit {
		t.Fatalf("a truncated output is %s", res.Code)
	}
}

// snapshot returns a digest of every entry under dir: names, modes and
// contents.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", p, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
