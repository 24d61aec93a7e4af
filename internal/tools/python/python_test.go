//go:build linux

package python_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/sandbox/native"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/python"
)

func TestMain(m *testing.M) {
	native.Main() // the runtime re-executes this binary as the sandbox init
	goleak.VerifyTestMain(m)
}

// systemPaths matches the gateway's default read-only sandbox paths.
var systemPaths = []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache"}

// pathInterpreter is the python3 on PATH (a pyenv shim on the dev and CI
// machines), detected once.
var pathInterpreter = sync.OnceValues(func() (*python.Interpreter, error) {
	return python.Detect(context.Background(), "")
})

func interpreter(t testing.TB) *python.Interpreter {
	t.Helper()
	in, err := pathInterpreter()
	if err != nil {
		t.Fatalf("Detect(\"\"): %v", err)
	}
	return in
}

func baseConfig(in *python.Interpreter) python.Config {
	return python.Config{
		Interpreter:    in,
		Timeout:        20 * time.Second,
		MaxTimeout:     30 * time.Second,
		MaxOutputBytes: 1 << 16,
		MaxCodeBytes:   8 << 10,
		Limits:         sandbox.Limits{CPUTime: 30 * time.Second, FileSizeBytes: 64 << 20, OpenFiles: 256},
	}
}

// newTool returns execute_python on the native runtime with the PATH
// interpreter; edit adjusts the config.
func newTool(t testing.TB, edit func(*python.Config)) *python.Tool {
	t.Helper()
	rt, err := native.New(native.Config{ReadOnlyPaths: systemPaths}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("native.New: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	cfg := baseConfig(interpreter(t))
	if edit != nil {
		edit(&cfg)
	}
	tl, err := python.New(cfg, rt)
	if err != nil {
		t.Fatalf("python.New: %v", err)
	}
	return tl
}

// call invokes the tool with args marshalled to JSON.
func call(t *testing.T, tl *python.Tool, args map[string]any) (*tool.Result, error) {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return tl.Call(t.Context(), raw)
}

// mustCall invokes the tool and requires a result (the call may still
// have IsError set).
func mustCall(t *testing.T, tl *python.Tool, args map[string]any) *tool.Result {
	t.Helper()
	res, err := call(t, tl, args)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	return res
}

// runJSON runs code that prints one JSON object, requires success and
// decodes the object.
func runJSON(t *testing.T, tl *python.Tool, code string) map[string]any {
	t.Helper()
	res := mustCall(t, tl, map[string]any{"code": code})
	if res.IsError {
		t.Fatalf("code failed: %s (%s)\n%s", res.Code, res.Detail, res.Text)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(res.Structured["stdout"].(string)), &out); err != nil {
		t.Fatalf("decode %q: %v", res.Structured["stdout"], err)
	}
	return out
}

// probe is a Python prelude reporting file operations as "ok",
// "ok:<content>" or the errno name.
const probe = `
import errno, json, os, sys
def _err(e):
    return errno.errorcode.get(e.errno, str(e.errno))
def try_write(p):
    try:
        with open(p, "w") as f:
            f.write("x")
        return "ok"
    except OSError as e:
        return _err(e)
def try_read(p):
    try:
        with open(p) as f:
            return "ok:" + f.read()
    except OSError as e:
        return _err(e)
`

func isELF(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 4)
	_, err = f.Read(head)
	return err == nil && string(head) == "\x7fELF"
}

// TestDetectResolvesShim detects python3 on PATH: a pyenv shim (a shell
// script) resolves to the real interpreter binary it runs.
func TestDetectResolvesShim(t *testing.T) {
	onPath, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("no python3 on PATH: %v", err)
	}
	in := interpreter(t)
	if !isELF(t, in.Executable) {
		t.Errorf("Executable %s is not an ELF binary", in.Executable)
	}
	if script, _ := os.ReadFile(onPath); bytes.HasPrefix(script, []byte("#!")) && in.Executable == onPath {
		t.Errorf("Detect returned the shim %s itself", onPath)
	}
	if !filepath.IsAbs(in.Prefix) || !filepath.IsAbs(in.BasePrefix) || !strings.HasPrefix(in.Version, "3.") {
		t.Errorf("incomplete interpreter %+v", in)
	}
}

// TestDetectSystemPython detects the distribution's interpreter by path:
// the symlink resolves to the versioned binary under /usr, and nothing
// beyond the system mounts is needed.
func TestDetectSystemPython(t *testing.T) {
	in, err := python.Detect(t.Context(), "/usr/bin/python3")
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	want, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Fatal(err)
	}
	if in.Executable != want || !isELF(t, in.Executable) {
		t.Errorf("Executable %s, want the ELF binary %s", in.Executable, want)
	}
	if m := in.Mounts(); len(m) != 0 {
		t.Errorf("Mounts() = %v, want none for a python under /usr", m)
	}
}

// TestDetectRejectsNonPython points Detect at programs that are not
// Python or lie about what they are: each fails with an error.
func TestDetectRejectsNonPython(t *testing.T) {
	dir := t.TempDir()
	fake := func(name, output string) string {
		p := filepath.Join(dir, name)
		script := "#!/bin/sh\necho '" + output + "'\n"
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"true", "/bin/true", "unexpected output"},
		{"false", "/bin/false", "probe /bin/false: exit status 1"},
		{"echo", "/bin/echo", "unexpected output"},
		{"missing", filepath.Join(dir, "python3"), "no such file"},
		{"not executable", "/etc/passwd", "permission denied"},
		{"relative executable", fake("rel", `{"executable": "python3", "prefix": "/usr", "base_prefix": "/usr", "version": "3.11.2"}`), "is not absolute"},
		{"executable is a dir", fake("dir", `{"executable": "/usr", "prefix": "/usr", "base_prefix": "/usr", "version": "3.11.2"}`), "not a regular file"},
		{"executable not found", fake("gone", `{"executable": "/nonexistent/python3", "prefix": "/usr", "base_prefix": "/usr", "version": "3.11.2"}`), "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := python.Detect(t.Context(), tc.path)
			if err == nil || in != nil {
				t.Fatalf("Detect(%s) = %+v, %v; want an error", tc.path, in, err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Detect(%s) error %q, want it to mention %q", tc.path, err, tc.wantErr)
			}
		})
	}
}

// TestInterpreterMounts checks which host paths an interpreter needs
// mounted: none under the system paths (already mounted), its prefixes
// and binary directory otherwise, each once.
func TestInterpreterMounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   python.Interpreter
		want []string
	}{
		{"system", python.Interpreter{Executable: "/usr/bin/python3.11", Prefix: "/usr", BasePrefix: "/usr"}, nil},
		{"usr local", python.Interpreter{Executable: "/usr/local/bin/python3.12", Prefix: "/usr/local", BasePrefix: "/usr/local"}, nil},
		{"pyenv", python.Interpreter{Executable: "/root/.pyenv/versions/3.11.7/bin/python3.11",
			Prefix: "/root/.pyenv/versions/3.11.7", BasePrefix: "/root/.pyenv/versions/3.11.7"},
			[]string{"/root/.pyenv/versions/3.11.7", "/root/.pyenv/versions/3.11.7/bin"}},
		{"venv over opt", python.Interpreter{Executable: "/opt/py/bin/python3", Prefix: "/srv/venv", BasePrefix: "/opt/py"},
			[]string{"/opt/py", "/srv/venv", "/opt/py/bin"}},
		{"look-alike of /usr", python.Interpreter{Executable: "/usrx/bin/python3", Prefix: "/usrx", BasePrefix: "/usrx"},
			[]string{"/usrx", "/usrx/bin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.in.Mounts()); diff != "" {
				t.Errorf("Mounts() (-want +got):\n%s", diff)
			}
		})
	}

	in := interpreter(t)
	got := in.Mounts()
	for _, p := range got {
		if p == "/usr" || strings.HasPrefix(p, "/usr/") {
			t.Errorf("Mounts() of the PATH interpreter includes system path %s", p)
		}
	}
	if strings.HasPrefix(in.Prefix, "/usr/") || in.Prefix == "/usr" {
		if len(got) != 0 {
			t.Errorf("Mounts() = %v for a PATH interpreter under /usr, want none", got)
		}
		return
	}
	if !slices.Contains(got, in.Prefix) {
		t.Errorf("Mounts() = %v, want it to include the prefix %s", got, in.Prefix)
	}
}

// TestToolPrint runs a print on both interpreters.
func TestToolPrint(t *testing.T) {
	sys, err := python.Detect(t.Context(), "/usr/bin/python3")
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]*python.Interpreter{"path": interpreter(t), "system": sys} {
		t.Run(name, func(t *testing.T) {
			tl := newTool(t, func(c *python.Config) { c.Interpreter = in })
			res := mustCall(t, tl, map[string]any{"code": `import sys; print("hello", sys.version_info[0])`})
			if res.IsError || res.Text != "hello 3\n" {
				t.Errorf("result: error %v code %s text %q, want %q", res.IsError, res.Code, res.Text, "hello 3\n")
			}
			if res.Structured["exit_code"] != 0 || res.Structured["stdout"] != "hello 3\n" {
				t.Errorf("structured %v", res.Structured)
			}
			if _, ok := res.Structured["code"]; ok {
				t.Errorf("a successful call carries a reason code: %v", res.Structured["code"])
			}
		})
	}
}

// TestToolStdin feeds stdin to the code.
func TestToolStdin(t *testing.T) {
	tl := newTool(t, nil)
	res := mustCall(t, tl, map[string]any{"code": "import sys; print(sys.stdin.read().upper())", "stdin": "abc\ndef"})
	if res.IsError || res.Text != "ABC\nDEF\n" {
		t.Errorf("result: error %v text %q, want %q", res.IsError, res.Text, "ABC\nDEF\n")
	}
}

// TestToolExitCode reports a non-zero exit as NON_ZERO_EXIT with the
// status in structuredContent.
func TestToolExitCode(t *testing.T) {
	tl := newTool(t, nil)
	res := mustCall(t, tl, map[string]any{"code": "import sys; print('bye'); sys.exit(3)"})
	if !res.IsError || res.Code != reason.NonZeroExit {
		t.Errorf("isError %v code %q, want true %s", res.IsError, res.Code, reason.NonZeroExit)
	}
	if res.Structured["exit_code"] != 3 || res.Structured["code"] != string(reason.NonZeroExit) {
		t.Errorf("structured exit_code %v code %v, want 3 %s", res.Structured["exit_code"], res.Structured["code"], reason.NonZeroExit)
	}
	if !strings.Contains(res.Text, "bye") {
		t.Errorf("text %q lost the program's output", res.Text)
	}
}

// TestToolException returns the traceback on stderr.
func TestToolException(t *testing.T) {
	tl := newTool(t, nil)
	res := mustCall(t, tl, map[string]any{"code": "def f():\n    return 1 / 0\nf()\n"})
	stderr, _ := res.Structured["stderr"].(string)
	if !res.IsError || res.Code != reason.NonZeroExit || res.Structured["exit_code"] != 1 {
		t.Errorf("isError %v code %q exit %v, want true %s 1", res.IsError, res.Code, res.Structured["exit_code"], reason.NonZeroExit)
	}
	for _, want := range []string{"Traceback (most recent call last)", `File "/work/main.py", line 2`, "ZeroDivisionError"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
}

// TestToolTimeout stops an endless loop at timeout_s.
func TestToolTimeout(t *testing.T) {
	tl := newTool(t, nil)
	res := mustCall(t, tl, map[string]any{"code": "while True:\n    pass\n", "timeout_s": 1})
	if !res.IsError || res.Code != reason.Timeout {
		t.Errorf("isError %v code %q, want true %s", res.IsError, res.Code, reason.Timeout)
	}
	if res.Structured["violation"] != string(sandbox.ViolationWallTimeout) || res.Structured["signal"] != "SIGKILL" {
		t.Errorf("structured violation %v signal %v, want WALL_TIMEOUT SIGKILL", res.Structured["violation"], res.Structured["signal"])
	}
}

// TestToolOutputCap keeps MaxOutputBytes of a flood and says so.
func TestToolOutputCap(t *testing.T) {
	tl := newTool(t, func(c *python.Config) { c.MaxOutputBytes = 1000 })
	res := mustCall(t, tl, map[string]any{"code": "print('x' * 100000)"})
	if res.Structured["stdout_truncated"] != true || res.Structured["stderr_truncated"] != false {
		t.Errorf("truncation flags %v/%v, want true/false", res.Structured["stdout_truncated"], res.Structured["stderr_truncated"])
	}
	if out := res.Structured["stdout"].(string); out != strings.Repeat("x", 1000) {
		t.Errorf("stdout kept %d bytes, want the first 1000", len(out))
	}
	if res.IsError {
		t.Errorf("a truncated but successful run is an error: %s", res.Code)
	}
}

// TestToolCodeTooLarge refuses code over MaxCodeBytes before running it.
func TestToolCodeTooLarge(t *testing.T) {
	tl := newTool(t, func(c *python.Config) { c.MaxCodeBytes = 100 })
	_, err := call(t, tl, map[string]any{"code": "#" + strings.Repeat("x", 100)})
	te, ok := tool.AsError(err)
	if !ok || te.Code != reason.TooLarge {
		t.Fatalf("err %v, want a %s tool error", err, reason.TooLarge)
	}
	if res, err := call(t, tl, map[string]any{"code": "#" + strings.Repeat("x", 99)}); err != nil || res.IsError {
		t.Errorf("code of exactly MaxCodeBytes refused: %v %+v", err, res)
	}
}

// TestToolInvalidArguments refuses unknown fields and wrong types.
func TestToolInvalidArguments(t *testing.T) {
	tl := newTool(t, nil)
	for name, raw := range map[string]string{
		"unknown field":     `{"code": "print(1)", "interpreter": "/bin/sh"}`,
		"code not a string": `{"code": 5}`,
		"timeout a string":  `{"code": "print(1)", "timeout_s": "1"}`,
		"not an object":     `["print(1)"]`,
		"malformed":         `{"code": `,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tl.Call(t.Context(), json.RawMessage(raw))
			if te, ok := tool.AsError(err); !ok || te.Code != reason.InvalidArguments {
				t.Errorf("err %v, want a %s tool error", err, reason.InvalidArguments)
			}
		})
	}
}

// TestToolCannotReadHostFiles plants a world-readable canary on the host
// and reads for it, through the init's root and directly, and for the
// host's shadow file, from the code.
func TestToolCannotReadHostFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(dir, "canary.txt")
	const content = "PORTCULLIS-PY-CANARY-91c2"
	if err := os.WriteFile(canary, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tl := newTool(t, nil)
	res := mustCall(t, tl, map[string]any{"code": probe + fmt.Sprintf(`
canary = %q
print(json.dumps({"absolute": try_read(canary), "init root": try_read("/proc/1/root" + canary),
                  "dotdot": try_read("/work/../../.." + canary), "shadow": try_read("/etc/shadow"),
                  "host passwd": try_read("/etc/passwd").count(":x:")}))
`, canary)})
	if strings.Contains(res.Text, content) {
		t.Fatalf("the code read the host canary: %s", res.Text)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(res.Structured["stdout"].(string)), &out); err != nil {
		t.Fatalf("decode %q: %v", res.Text, err)
	}
	want := map[string]any{"absolute": "ENOENT", "init root": "EACCES", "dotdot": "ENOENT", "shadow": "ENOENT",
		"host passwd": 2.0} // the sandbox's root and nobody only
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("host files from the code (-want +got):\n%s", diff)
	}
}

// TestToolWriteConfinement writes everywhere: only /work and /tmp take
// it. In particular the interpreter's own tree (site-packages, where a
// planted module would run in every later call) is read-only.
func TestToolWriteConfinement(t *testing.T) {
	in := interpreter(t)
	tl := newTool(t, nil)
	out := runJSON(t, tl, probe+`
import site, sysconfig
targets = {"root": "/x", "usr": "/usr/lib/x", "etc": "/etc/x", "prefix": sys.prefix + "/x",
           "bindir": os.path.dirname(sys.executable) + "/x",
           "site-packages": sysconfig.get_paths()["purelib"] + "/evil.py",
           "work": "/work/x", "tmp": "/tmp/x"}
res = {k: try_write(p) for k, p in targets.items()}
res["prefix seen"] = sys.prefix
print(json.dumps(res))
`)
	want := map[string]any{
		"root": "EROFS", "usr": "EROFS", "etc": "EROFS", "prefix": "EROFS", "bindir": "EROFS",
		"site-packages": "EROFS", "work": "ok", "tmp": "ok", "prefix seen": in.Prefix,
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("write outcomes (-want +got):\n%s", diff)
	}
}

// TestToolRunsAsNobody checks the code's user and capabilities.
func TestToolRunsAsNobody(t *testing.T) {
	tl := newTool(t, nil)
	out := runJSON(t, tl, `
import json, os
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                  "CapEff": status["CapEff"].strip(), "NoNewPrivs": status["NoNewPrivs"].strip()}))
`)
	want := map[string]any{"uid": 65534.0, "euid": 65534.0, "gid": 65534.0, "CapEff": "0000000000000000", "NoNewPrivs": "1"}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
}

// TestToolNoNetwork connects from the code to a listener the test runs on
// the host loopback: the connection fails and the listener sees nothing.
func TestToolNoNetwork(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()
	port := ln.Addr().(*net.TCPAddr).Port
	c, err := net.Dial("tcp4", ln.Addr().String()) // positive control
	if err != nil {
		t.Fatalf("host dial: %v", err)
	}
	c.Close()
	<-accepted
	tl := newTool(t, func(c *python.Config) { c.CodePolicy = python.CodePolicyLegacy }) // the sandbox is under test
	out := runJSON(t, tl, probe+fmt.Sprintf(`
import socket
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("127.0.0.1", %d))
    r = "connected"
except OSError as e:
    r = _err(e) if e.errno else type(e).__name__
print(json.dumps({"connect": r}))
`, port))
	// Landlock refuses any TCP connect first (EACCES); without Landlock the
	// empty network namespace would answer ENETUNREACH.
	if out["connect"] != "EACCES" {
		t.Errorf("connect to the host loopback: %v, want EACCES (Landlock: no TCP without the egress bridge)", out["connect"])
	}
	if len(accepted) != 0 {
		t.Errorf("the host listener accepted a connection from the sandbox")
	}
}

// TestToolSubprocessRefusedAtMaximum: at the default (maximum) level the
// code cannot start processes: no fork, and nothing but the interpreter
// may be executed.
func TestToolSubprocessRefusedAtMaximum(t *testing.T) {
	tl := newTool(t, func(c *python.Config) { c.CodePolicy = python.CodePolicyLegacy }) // the sandbox is under test
	out := runJSON(t, tl, probe+`
import subprocess
res = {}
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    res["fork"] = "ok"
except OSError as e:
    res["fork"] = _err(e)
try:
    subprocess.run(["/bin/echo", "x"])
    res["subprocess"] = "ok"
except OSError as e:
    res["subprocess"] = _err(e)
try:
    os.execv("/bin/echo", ["echo", "replaced"])
except OSError as e:
    res["exec"] = _err(e)
print(json.dumps(res))
`)
	want := map[string]any{"fork": "EPERM", "subprocess": "EPERM", "exec": "EACCES"}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("process creation at maximum (-want +got):\n%s", diff)
	}
}

// TestToolSubprocessChildrenKilled (strict level) runs a subprocess to
// completion and leaves another running: when the code exits the run
// reports ORPHANS_KILLED and no process of it remains on the host.
func TestToolSubprocessChildrenKilled(t *testing.T) {
	tok := fmt.Sprintf("%d", time.Now().UnixNano()%1e12)
	tl := newTool(t, func(c *python.Config) { c.Level, c.CodePolicy = sandbox.LevelStrict, python.CodePolicyLegacy })
	res := mustCall(t, tl, map[string]any{"code": fmt.Sprintf(`
import subprocess
print(subprocess.run(["/bin/echo", "child ran"], capture_output=True, text=True).stdout, end="")
p = subprocess.Popen(["/bin/sleep", "100.%s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while "sleep" not in open("/proc/%%d/cmdline" %% p.pid).read():
    pass
print("left running")
`, tok)})
	if res.IsError || res.Structured["stdout"] != "child ran\nleft running\n" {
		t.Fatalf("result: error %v code %s text %q", res.IsError, res.Code, res.Text)
	}
	codes := res.Structured["violations"].([]map[string]any)
	if len(codes) != 1 || codes[0]["code"] != string(sandbox.ViolationOrphansKilled) {
		t.Errorf("violations %v, want ORPHANS_KILLED", codes)
	}
	if left := hostProcsWith(t, tok); len(left) > 0 {
		t.Errorf("processes of the run survive on the host: %v", left)
	}
}

// hostProcsWith lists the command lines of host processes that contain
// tok.
func hostProcsWith(t *testing.T, tok string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte(tok)) {
			out = append(out, e.Name()+": "+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		}
	}
	return out
}

// TestNewRejectsInvalidConfig refuses a tool without its dependencies or
// with limits that make no sense.
func TestNewRejectsInvalidConfig(t *testing.T) {
	in := &python.Interpreter{Executable: "/usr/bin/python3.11", Prefix: "/usr", BasePrefix: "/usr"}
	rt, err := native.New(native.Config{ReadOnlyPaths: systemPaths}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*python.Config, *sandbox.Runtime){
		"no interpreter":    func(c *python.Config, _ *sandbox.Runtime) { c.Interpreter = nil },
		"no runtime":        func(_ *python.Config, r *sandbox.Runtime) { *r = nil },
		"zero timeout":      func(c *python.Config, _ *sandbox.Runtime) { c.Timeout = 0 },
		"max below default": func(c *python.Config, _ *sandbox.Runtime) { c.MaxTimeout = c.Timeout - time.Second },
		"no output cap":     func(c *python.Config, _ *sandbox.Runtime) { c.MaxOutputBytes = 0 },
		"no code cap":       func(c *python.Config, _ *sandbox.Runtime) { c.MaxCodeBytes = 0 },
		"negative code cap": func(c *python.Config, _ *sandbox.Runtime) { c.MaxCodeBytes = -1 },
		"unknown policy":    func(c *python.Config, _ *sandbox.Runtime) { c.CodePolicy = "lenient" },
		"policy in caps":    func(c *python.Config, _ *sandbox.Runtime) { c.CodePolicy = "STRICT" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := baseConfig(in)
			var r sandbox.Runtime = rt
			edit(&cfg, &r)
			if tl, err := python.New(cfg, r); err == nil {
				t.Errorf("New accepted %+v: %v", cfg, tl)
			}
		})
	}
	tl, err := python.New(baseConfig(in), rt)
	if err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	def := tl.Definition()
	if def.Name != "execute_python" || def.Sensitivity != tool.High || def.Timeout <= baseConfig(in).MaxTimeout {
		t.Errorf("definition name %q sensitivity %s timeout %s", def.Name, def.Sensitivity, def.Timeout)
	}
}
