//go:build linux

package native

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// systemPaths are the read-only host paths every test sandbox gets.
var systemPaths = []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache"}

// Programs the tests run inside the sandbox. /usr/bin/python3 is the
// distribution's interpreter, reachable through the /usr mount alone.
const (
	shell  = "/bin/sh"
	python = "/usr/bin/python3"
)

// testWall is the wall-clock limit of runs that are expected to finish on
// their own; reaching it is a test failure, never a measurement.
const testWall = 30 * time.Second

// newRuntime returns a runtime with the default warm pool, closed when
// the test ends.
func newRuntime(t testing.TB) *Runtime {
	t.Helper()
	return newRuntimeWith(t, Config{})
}

// newRuntimeWith returns a runtime for cfg (with the test system paths),
// closed when the test ends.
func newRuntimeWith(t testing.TB, cfg Config) *Runtime {
	t.Helper()
	cfg.ReadOnlyPaths = systemPaths
	rt, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// atLevel sets spec's security level. Specs run at maximum unless a test
// says otherwise; tests that need a shell pipeline, a subprocess or exec
// name strict (or a looser level) with it.
func atLevel(level sandbox.Level, spec *sandbox.Spec) *sandbox.Spec {
	spec.Level = level
	return spec
}

// shSpec runs script with /bin/sh -c (at maximum: the shell itself may
// run, but it cannot fork or exec anything else).
func shSpec(script string) *sandbox.Spec {
	return &sandbox.Spec{
		Argv:   []string{shell, "-c", script},
		Env:    []string{"PATH=/usr/bin:/bin"},
		Limits: sandbox.Limits{WallTime: testWall},
	}
}

// pySpec runs code with the system python3 in isolated mode.
func pySpec(code string) *sandbox.Spec {
	return &sandbox.Spec{
		Argv:   []string{python, "-I", "-c", code},
		Env:    []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"},
		Limits: sandbox.Limits{WallTime: testWall},
	}
}

// mustRun runs spec and fails the test if the run could not be set up.
func mustRun(t testing.TB, rt *Runtime, spec *sandbox.Spec) *sandbox.Result {
	t.Helper()
	res, err := rt.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run(%q): %v", spec.Argv, err)
	}
	return res
}

// mustSucceed runs spec and requires exit status 0 and no violations.
func mustSucceed(t testing.TB, rt *Runtime, spec *sandbox.Spec) *sandbox.Result {
	t.Helper()
	res := mustRun(t, rt, spec)
	if res.ExitCode != 0 || res.Signal != "" || len(res.Violations) > 0 {
		t.Fatalf("run of %q: exit %d signal %q violations %v\nstdout: %s\nstderr: %s",
			spec.Argv, res.ExitCode, res.Signal, res.Violations, res.Stdout, res.Stderr)
	}
	return res
}

// pyJSON runs a python program that prints one JSON object and decodes it.
func pyJSON(t testing.TB, rt *Runtime, spec *sandbox.Spec) map[string]any {
	t.Helper()
	res := mustSucceed(t, rt, spec)
	var out map[string]any
	if err := json.Unmarshal(res.Stdout, &out); err != nil {
		t.Fatalf("decode program output %q: %v (stderr %s)", res.Stdout, err, res.Stderr)
	}
	return out
}

// pyProbe is a python prelude with helpers that report the outcome of a
// file operation as "ok", "ok:<content>" or the errno name.
const pyProbe = `
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
def try_list(p):
    try:
        return sorted(os.listdir(p))
    except OSError as e:
        return _err(e)
`

// token returns a random decimal string that marks the processes of one
// test on the host (GNU sleep accepts "100.<token>" as a duration).
func token(t testing.TB) string {
	t.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(1e12))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%012d", n.Int64())
}

// hostProc is a host process seen from outside the sandbox.
type hostProc struct {
	PID     int
	UID     int // real uid on the host
	Cmdline string
}

// hostProcsWith lists host processes whose command line contains tok.
// Processes that exit during the scan are skipped.
func hostProcsWith(t testing.TB, tok string) []hostProc {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	var out []hostProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte(tok)) {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		uid := -1
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
				uid, _ = strconv.Atoi(f[1])
			}
		}
		out = append(out, hostProc{PID: pid, UID: uid, Cmdline: string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))})
	}
	return out
}

// waitFor polls cond until it holds; it fails the test if it does not
// within a generous liveness bound (a hang guard, not a measurement).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fileOwner returns the host uid and gid owning path.
func fileOwner(t testing.TB, path string) (uid, gid int) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid), int(st.Gid)
}

// violationCodes lists the codes of r's violations, in order.
func violationCodes(r *sandbox.Result) []sandbox.ViolationCode {
	var out []sandbox.ViolationCode
	for _, v := range r.Violations {
		out = append(out, v.Code)
	}
	return out
}

// wantSeccompKill requires that the program was killed by the seccomp
// filter before it could print anything: SIGSYS, exit -1, the single
// violation SECCOMP_KILL.
func wantSeccompKill(t testing.TB, res *sandbox.Result) {
	t.Helper()
	if res.Signal != "SIGSYS" || res.ExitCode != -1 {
		t.Errorf("exit %d signal %q, want -1 SIGSYS (stdout %q, stderr %q)", res.ExitCode, res.Signal, res.Stdout, res.Stderr)
	}
	if diff := cmp.Diff([]sandbox.ViolationCode{sandbox.ViolationSeccompKill}, violationCodes(res)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	if len(res.Stdout) != 0 {
		t.Errorf("the program went on after the refused call: stdout %q", res.Stdout)
	}
}

// hostPID returns the host pid of the one process whose command line
// contains tok, waiting until it runs.
func hostPID(t testing.TB, tok string) int {
	t.Helper()
	var procs []hostProc
	waitFor(t, "the sandboxed process to run", func() bool {
		procs = hostProcsWith(t, tok)
		return len(procs) == 1
	})
	return procs[0].PID
}

// hostStatusField returns a field of the host's /proc/<pid>/status.
func hostStatusField(t testing.TB, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return ""
}

// background starts a run and returns a function that cancels it and
// returns its result. The run must still be going when it is cancelled.
func background(t testing.TB, rt *Runtime, spec *sandbox.Spec) (stop func() *sandbox.Result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type outcome struct {
		res *sandbox.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := rt.Run(ctx, spec)
		done <- outcome{res, err}
	}()
	stopped := false
	stop = func() *sandbox.Result {
		t.Helper()
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		o := <-done
		if o.err != nil {
			t.Fatalf("Run(%q): %v", spec.Argv, o.err)
		}
		if !o.res.Has(sandbox.ViolationCancelled) {
			t.Fatalf("run of %q ended before it was cancelled: exit %d violations %v stderr %s",
				spec.Argv, o.res.ExitCode, o.res.Violations, o.res.Stderr)
		}
		return o.res
	}
	t.Cleanup(func() { stop() })
	return stop
}

// Syscall probes. sysprobe (testdata/sysprobe) is a static Go program that
// makes one raw system call named on its command line and prints
// "ret=N" or "errno=NAME". It is built once per test binary and mounted
// read-only at /probe.
var (
	sysprobeOnce sync.Once
	sysprobeDir  string
	sysprobeErr  error
)

const sysprobePath = "/probe/sysprobe"

// buildSysprobe builds testdata/sysprobe (CGO_ENABLED=0: a static binary
// that needs no ELF interpreter) into a directory the sandbox user can
// read. removeSysprobe (TestMain) deletes it.
func buildSysprobe(t testing.TB) string {
	t.Helper()
	sysprobeOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil && os.Getenv("GOROOT") != "" {
			goTool, err = filepath.Join(os.Getenv("GOROOT"), "bin", "go"), nil
		}
		if err != nil {
			sysprobeErr = fmt.Errorf("building testdata/sysprobe needs the go command: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "portcullis-sysprobe-")
		if err != nil {
			sysprobeErr = err
			return
		}
		sysprobeDir = dir
		if err := os.Chmod(dir, 0o755); err != nil {
			sysprobeErr = err
			return
		}
		cmd := exec.Command(goTool, "build", "-trimpath", "-o", filepath.Join(dir, "sysprobe"), "./testdata/sysprobe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			sysprobeErr = fmt.Errorf("go build ./testdata/sysprobe: %v\n%s", err, out)
		}
	})
	if sysprobeErr != nil {
		t.Fatal(sysprobeErr)
	}
	return sysprobeDir
}

func removeSysprobe() {
	if sysprobeDir != "" {
		os.RemoveAll(sysprobeDir)
	}
}

// probeSpec runs sysprobe with args at level.
func probeSpec(t testing.TB, level sandbox.Level, args ...string) *sandbox.Spec {
	t.Helper()
	dir := buildSysprobe(t)
	return &sandbox.Spec{
		Argv:   append([]string{sysprobePath}, args...),
		Mounts: []sandbox.Mount{{Source: dir, Target: "/probe"}},
		Limits: sandbox.Limits{WallTime: testWall},
		Level:  level,
	}
}

// probeOutput runs sysprobe, requires a normal exit and returns its one
// line ("ret=N" or "errno=NAME").
func probeOutput(t testing.TB, rt *Runtime, level sandbox.Level, args ...string) string {
	t.Helper()
	res := mustSucceed(t, rt, probeSpec(t, level, args...))
	return strings.TrimSpace(string(res.Stdout))
}

// pyLibc is a python prelude for raw system calls through ctypes:
// sys_call(nr, *args) returns the result or the errno name. Every
// argument is passed as a C long (a variadic int would leave the upper
// half of its register undefined).
const pyLibc = `
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sys_call(nr, *args):
    a = [x if isinstance(x, (bytes, ctypes.Array)) else ctypes.c_long(x) for x in args]
    r = libc.syscall(ctypes.c_long(nr), *a)
    if r < 0:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return r
`

// sysNR returns the number of a system call on this architecture, from
// the table the filters are built with.
func sysNR(t testing.TB, name string) uint32 {
	t.Helper()
	a, err := archInfo()
	if err != nil {
		t.Fatal(err)
	}
	n, ok := a.SyscallNames[name]
	if !ok {
		t.Fatalf("no system call %s on %s", name, a.Name)
	}
	return uint32(n)
}

// needAMD64 skips tests that use x86_64 system call numbers, ioctl
// request values or ABIs.
func needAMD64(t testing.TB) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("uses x86_64 system call numbers and ABIs; this is %s", runtime.GOARCH)
	}
}
