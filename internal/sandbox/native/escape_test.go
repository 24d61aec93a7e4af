//go:build linux

package native

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// The escape and abuse suite: each case is an attack a sandboxed program
// could try, and asserts the specific way it fails (errno, signal,
// violation code). System calls the filter kills are in
// escape_syscalls_test.go, network attacks in escape_net_test.go.

// decode unmarshals a program's JSON output.
func decode(t *testing.T, res *sandbox.Result) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal(res.Stdout, &out); err != nil {
		t.Fatalf("decode program output %q: %v (exit %d signal %q violations %v stderr %s)",
			res.Stdout, err, res.ExitCode, res.Signal, res.Violations, res.Stderr)
	}
	return out
}

// wantViolations requires exactly these violations, in this order.
func wantViolations(t *testing.T, res *sandbox.Result, want ...sandbox.ViolationCode) {
	t.Helper()
	if diff := cmp.Diff(want, violationCodes(res)); diff != "" {
		t.Errorf("violations (-want +got):\n%s\nstderr: %s", diff, res.Stderr)
	}
}

// noSurvivors requires that no host process carries tok.
func noSurvivors(t *testing.T, tok string) {
	t.Helper()
	if left := hostProcsWith(t, tok); len(left) > 0 {
		t.Errorf("processes of the run survive on the host: %+v", left)
	}
}

// TestEscapeResourceExhaustion attacks the limits: process, thread,
// memory, disk, output, CPU and time bombs. Each must be stopped by its
// limit, reported with its violation code, and end the run by itself
// (never by the wall limit unless that is the limit under attack),
// leaving nothing behind on the host.
func TestEscapeResourceExhaustion(t *testing.T) {
	rt := newRuntime(t)

	t.Run("python fork bomb", func(t *testing.T) {
		tok := token(t)
		// Every process forks as fast as it can; each stops at its first
		// refused fork, so the bomb ends by itself once the limit holds.
		spec := atLevel(sandbox.LevelStrict, pySpec(`
import os
main = os.getpid()
refused = None
while True:
    try:
        os.fork()
    except OSError as e:
        refused = e.errno
        break
if os.getpid() != main:
    os._exit(0)
os._exit(0 if refused == 11 else 1)
#`+tok))
		spec.Limits.Pids = 16
		spec.Limits.WallTime = time.Minute
		res := mustRun(t, rt, spec)
		if res.Signal != "" || res.ExitCode != 0 {
			t.Errorf("exit %d signal %q, want 0: the first refused fork must be EAGAIN (stderr %s)", res.ExitCode, res.Signal, res.Stderr)
		}
		if res.Has(sandbox.ViolationWallTimeout) {
			t.Errorf("violations %v: the bomb did not end by itself", res.Violations)
		}
		noSurvivors(t, tok) // (PIDS_EXHAUSTED: TestPidsExhaustedReported)
	})

	t.Run("shell fork bomb", func(t *testing.T) {
		tok := token(t)
		// The classic bash bomb. bash retries refused forks with a growing
		// sleep; the run's own bash then either reaches the exec and
		// becomes a dash loop that exits at its first refused fork
		// ("Cannot fork", status 2), or gives up on a fork itself
		// ("fork: retry: Resource temporarily unavailable", status 254).
		// Which one happens is a race between the bomb's children; either
		// way the pid limit must hold and the bomb must end by itself.
		spec := atLevel(sandbox.LevelStrict, shSpec(""))
		spec.Argv = []string{"/bin/bash", "-c", `:(){ :|:& };: ; exec /bin/sh -c 'while :; do /bin/true; done' ` + tok}
		spec.Limits.WallTime = time.Minute
		res := mustRun(t, rt, spec)
		stderr := string(res.Stderr)
		dashGaveUp := res.ExitCode == 2 && strings.Contains(stderr, "Cannot fork")
		bashGaveUp := res.ExitCode == 254 && strings.Contains(stderr, "fork: retry: Resource temporarily unavailable")
		if res.Signal != "" || (!dashGaveUp && !bashGaveUp) {
			t.Errorf("exit %d signal %q stderr %.200q, want 2 and Cannot fork, or 254 and a refused fork (EAGAIN)", res.ExitCode, res.Signal, res.Stderr)
		}
		if res.Has(sandbox.ViolationWallTimeout) {
			t.Errorf("violations %v: the bomb did not end by itself", res.Violations)
		}
		noSurvivors(t, tok)
	})

	t.Run("thread bomb", func(t *testing.T) {
		// Threads are tasks: at maximum (threads allowed, 10 tasks) the
		// program gets 9 more threads, then "can't start new thread".
		out := decode(t, mustRun(t, rt, pySpec(`
import json, threading, time
started, error = 0, None
try:
    for i in range(1000):
        threading.Thread(target=time.sleep, args=(100,), daemon=True).start()
        started += 1
except RuntimeError as e:
    error = str(e)
print(json.dumps({"started": started, "error": error}), flush=True)
import os; os._exit(0)
`)))
		// The cap counts tasks: the program's main thread and its threads
		// (and, for a moment, a thread the init's Go runtime may start
		// for a blocking call), so at most Pids-1 more threads start.
		pids := float64(sandbox.LevelMaximum.Defaults().Pids)
		started, _ := out["started"].(float64)
		if out["error"] != "can't start new thread" || started > pids-1 || started < pids-2 {
			t.Errorf("thread bomb: %v; want %v-%v threads started, then \"can't start new thread\"", out, pids-2, pids-1)
		}
	})

	t.Run("memory bomb", func(t *testing.T) {
		spec := pySpec(`
chunks = []
while True:
    chunks.append(b"x" * (1 << 20))
`)
		spec.Limits.MemoryBytes = 64 << 20
		res := mustRun(t, rt, spec)
		if res.Signal != "SIGKILL" || res.ExitCode != -1 {
			t.Errorf("exit %d signal %q, want -1 SIGKILL (the OOM killer)", res.ExitCode, res.Signal)
		}
		wantViolations(t, res, sandbox.ViolationOOM)
		if res.PeakMemoryBytes > spec.Limits.MemoryBytes {
			t.Errorf("peak memory %d above the %d-byte limit", res.PeakMemoryBytes, spec.Limits.MemoryBytes)
		}
	})

	t.Run("memory bomb via mmap", func(t *testing.T) {
		// Anonymous memory touched page by page, not Python objects.
		spec := pySpec(`
import mmap
maps = []
while True:
    m = mmap.mmap(-1, 8 << 20)
    for i in range(0, len(m), 4096):
        m[i] = 1
    maps.append(m)
`)
		spec.Limits.MemoryBytes = 64 << 20
		res := mustRun(t, rt, spec)
		wantViolations(t, res, sandbox.ViolationOOM)
	})

	for _, dir := range []string{"/tmp", "/work"} {
		t.Run("disk fill "+dir, func(t *testing.T) {
			name := "fill-" + token(t)
			spec := pySpec(pyProbe + `
written, outcome = 0, "no error"
try:
    with open(os.path.join(sys.argv[1], sys.argv[2]), "wb") as f:
        while written < (1 << 30):
            f.write(b"x" * 65536)
            f.flush()
            written += 65536
except OSError as e:
    outcome = _err(e)
print(json.dumps({"outcome": outcome, "over cap": written > (1 << 20)}))
`)
			spec.Argv = append(spec.Argv, dir, name)
			spec.TmpSizeBytes, spec.WorkSizeBytes = 1<<20, 1<<20
			out := decode(t, mustSucceed(t, rt, spec))
			if diff := cmp.Diff(map[string]any{"outcome": "ENOSPC", "over cap": false}, out); diff != "" {
				t.Errorf("filling %s (-want +got):\n%s", dir, diff)
			}
			for _, host := range []string{filepath.Join("/tmp", name), filepath.Join(os.TempDir(), name), filepath.Join("/work", name)} {
				if _, err := os.Lstat(host); !os.IsNotExist(err) {
					t.Errorf("the sandbox's file appeared on the host at %s (%v)", host, err)
				}
			}
		})
	}

	for _, stream := range []string{"stdout", "stderr"} {
		t.Run("output flood "+stream, func(t *testing.T) {
			spec := pySpec(`
import sys
out = getattr(sys, sys.argv[1]).buffer
for i in range(10000):
    out.write(b"z" * 1000)
`)
			spec.Argv = append(spec.Argv, stream)
			spec.Limits.OutputBytes = 4096
			res := mustRun(t, rt, spec)
			got, trunc := res.Stdout, res.StdoutTruncated
			if stream == "stderr" {
				got, trunc = res.Stderr, res.StderrTruncated
			}
			if string(got) != strings.Repeat("z", 4096) || !trunc {
				t.Errorf("%s kept %d bytes, truncated %v; want exactly 4096 and true", stream, len(got), trunc)
			}
			if res.ExitCode != 0 {
				t.Errorf("exit %d, want 0: the capped stream must never block or fail the writer", res.ExitCode)
			}
			wantViolations(t, res, sandbox.ViolationOutputTrunc)
		})
	}

	t.Run("infinite loop under a CPU limit", func(t *testing.T) {
		spec := pySpec(`while True: pass`)
		spec.Limits.CPUTime = time.Second
		spec.Limits.WallTime = 2 * time.Minute
		res := mustRun(t, rt, spec)
		if res.Signal != "SIGXCPU" {
			t.Errorf("signal %q, want SIGXCPU", res.Signal)
		}
		wantViolations(t, res, sandbox.ViolationCPUTimeout)
	})

	t.Run("infinite loop under a wall limit", func(t *testing.T) {
		spec := pySpec(`while True: pass`)
		spec.Limits.CPUTime = time.Hour
		spec.Limits.WallTime = time.Second
		res := mustRun(t, rt, spec)
		if res.Signal != "SIGKILL" {
			t.Errorf("signal %q, want SIGKILL", res.Signal)
		}
		wantViolations(t, res, sandbox.ViolationWallTimeout)
	})

	t.Run("sleep past the deadline", func(t *testing.T) {
		spec := pySpec(`import time; time.sleep(3600)`)
		spec.Limits.WallTime = 500 * time.Millisecond
		res := mustRun(t, rt, spec)
		if res.Signal != "SIGKILL" || res.ExitCode != -1 {
			t.Errorf("exit %d signal %q, want -1 SIGKILL", res.ExitCode, res.Signal)
		}
		wantViolations(t, res, sandbox.ViolationWallTimeout)
	})

	t.Run("SIGXCPU ignored", func(t *testing.T) {
		// The soft CPU limit only warns; the hard limit (one second more)
		// kills whatever ignores the warning.
		spec := pySpec(`
import signal
signal.signal(signal.SIGXCPU, signal.SIG_IGN)
while True: pass
`)
		spec.Limits.CPUTime = time.Second
		spec.Limits.WallTime = 2 * time.Minute
		res := mustRun(t, rt, spec)
		if res.Signal != "SIGKILL" {
			t.Errorf("signal %q, want SIGKILL", res.Signal)
		}
		wantViolations(t, res, sandbox.ViolationCPUTimeout)
	})
}

// TestEscapeProcesses attacks process control: processes that outlive
// the run, and (at maximum) starting any new process or program.
func TestEscapeProcesses(t *testing.T) {
	rt := newRuntime(t)

	t.Run("daemon: setsid and double fork at strict", func(t *testing.T) {
		tok := token(t)
		res := mustRun(t, rt, atLevel(sandbox.LevelStrict, pySpec(`
import os, sys
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(r)
        fd = os.open("/dev/null", os.O_RDWR)
        for i in (0, 1, 2):
            os.dup2(fd, i)
        os.write(w, b"up")
        os.execv("/bin/sleep", ["sleep", "100.`+tok+`"])
    os._exit(0)
os.close(w)
print(os.read(r, 2).decode())
`)))
		if res.ExitCode != 0 || string(res.Stdout) != "up\n" {
			t.Errorf("exit %d stdout %q, want 0 and up (stderr %s)", res.ExitCode, res.Stdout, res.Stderr)
		}
		wantViolations(t, res, sandbox.ViolationOrphansKilled)
		noSurvivors(t, tok)
	})

	t.Run("orphans of a killed program", func(t *testing.T) {
		tok := token(t)
		// The program dies by a signal of its own while its child runs.
		res := mustRun(t, rt, atLevel(sandbox.LevelStrict, shSpec(`sleep 100.`+tok+` & kill -s KILL $$`)))
		if res.Signal != "SIGKILL" {
			t.Errorf("signal %q, want SIGKILL", res.Signal)
		}
		wantViolations(t, res, sandbox.ViolationSignalled, sandbox.ViolationOrphansKilled)
		noSurvivors(t, tok)
	})

	for _, tc := range []struct {
		name, code, want string
	}{
		{"maximum: os.fork", `os.fork()`, "EPERM"},
		{"maximum: posix_spawn", `os.posix_spawn("/bin/true", ["true"], {})`, "EPERM"},
		{"maximum: subprocess", `import subprocess; subprocess.run(["/bin/true"])`, "EPERM"},
		{"maximum: exec another program", `os.execv("/bin/cat", ["cat", "/etc/hostname"])`, "EACCES"},
		{"maximum: exec a copy in /tmp", `
import shutil
shutil.copy("/bin/cat", "/tmp/cat")
os.chmod("/tmp/cat", 0o755)
os.execv("/tmp/cat", ["cat", "/etc/hostname"])`, "EACCES"},
		{"maximum: exec a copy in the work dir", `
import shutil
shutil.copy("/bin/cat", "/work/cat")
os.chmod("/work/cat", 0o755)
os.execv("/work/cat", ["cat", "/etc/hostname"])`, "EACCES"},
		{"maximum: exec an O_TMPFILE file", `
fd = os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o755)
os.write(fd, open("/bin/cat", "rb").read())
os.execv("/proc/self/fd/%d" % fd, ["cat", "/etc/hostname"])`, "EACCES"},
		{"maximum: exec through a symlink in /tmp", `
os.symlink("/bin/cat", "/tmp/cat")
os.execv("/tmp/cat", ["cat", "/etc/hostname"])`, "EACCES"},
		{"maximum: execveat of /bin/cat by descriptor", `
fd = os.open("/bin/cat", os.O_PATH)
os.execve(fd, ["cat", "/etc/hostname"], {})`, "EACCES"},
		{"maximum: exec a script", `
open("/tmp/s.sh", "w").write("#!/bin/sh\necho ran\n")
os.chmod("/tmp/s.sh", 0o755)
os.execv("/tmp/s.sh", ["s.sh"])`, "EACCES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := mustRun(t, rt, pySpec(pyProbe+`
try:
`+indent(tc.code)+`
    print("no error")
except OSError as e:
    print(_err(e))
`))
			if got := strings.TrimSpace(string(res.Stdout)); got != tc.want || res.ExitCode != 0 {
				t.Errorf("got %q (exit %d, stderr %s), want %s", got, res.ExitCode, res.Stderr, tc.want)
			}
		})
	}

	t.Run("maximum: re-exec argv[0] is allowed", func(t *testing.T) {
		// The control for the refusals above: the program's own binary
		// (and its ELF interpreter) remain executable.
		res := mustSucceed(t, rt, pySpec(`
import os, sys
if len(sys.argv) == 1:
    os.execv("/usr/bin/python3", ["python3", "-I", "-c", "print('re-exec ok')"])
`))
		if string(res.Stdout) != "re-exec ok\n" {
			t.Errorf("stdout %q, want re-exec ok", res.Stdout)
		}
	})

	// Two ways around "nothing but argv[0]" that Landlock cannot see: a
	// memfd (an internal file system, outside every Landlock rule) and
	// the ELF interpreter run as a program (it maps its argument itself;
	// Landlock governs execve, not mmap). Neither gains anything: what
	// runs is bound by the same seccomp filter and Landlock domain, so
	// it can neither fork nor exec further. (At maximum a program that
	// can run machine code — python with ctypes — can do as much anyway.)
	interp := elfInterpreter(python)
	if interp == "" {
		t.Fatalf("%s has no ELF interpreter", python)
	}
	for _, tc := range []struct{ name, exec string }{
		{"maximum: shell from a memfd stays confined", `
fd = os.memfd_create("sh", 0)
os.write(fd, open("/bin/sh", "rb").read())
os.execv("/proc/self/fd/%d" % fd, ["sh", "-c", sys.argv[2]])`},
		{"maximum: shell through the ELF interpreter stays confined", `
os.execv(sys.argv[1], ["ld.so", "/bin/sh", "-c", sys.argv[2]])`},
	} {
		for _, sc := range []struct {
			script, stderr string
			exit           int
		}{
			{"cat /etc/hostname | cat", "Cannot fork", 2},
			{"exec cat /etc/hostname", "Permission denied", 126},
			{"exec unshare -U true", "Permission denied", 126},
		} {
			t.Run(tc.name+": "+sc.script, func(t *testing.T) {
				spec := pySpec("import os, sys\n" + tc.exec)
				spec.Argv = append(spec.Argv, interp, sc.script)
				res := mustRun(t, rt, spec)
				if res.ExitCode != sc.exit || !strings.Contains(string(res.Stderr), sc.stderr) || len(res.Stdout) != 0 {
					t.Errorf("exit %d stdout %q stderr %q; want %d, nothing, %q", res.ExitCode, res.Stdout, res.Stderr, sc.exit, sc.stderr)
				}
			})
		}
	}

	t.Run("maximum: shell pipeline", func(t *testing.T) {
		res := mustRun(t, rt, shSpec(`cat /etc/hostname | tr a-z A-Z`))
		if res.ExitCode != 2 || !strings.Contains(string(res.Stderr), "Cannot fork") || len(res.Stdout) != 0 {
			t.Errorf("exit %d stdout %q stderr %q, want 2, nothing and Cannot fork", res.ExitCode, res.Stdout, res.Stderr)
		}
	})

	t.Run("maximum: shell exec", func(t *testing.T) {
		res := mustRun(t, rt, shSpec(`exec cat /etc/hostname`))
		if res.ExitCode != 126 || !strings.Contains(string(res.Stderr), "Permission denied") {
			t.Errorf("exit %d stderr %q, want 126 and Permission denied", res.ExitCode, res.Stderr)
		}
	})

	t.Run("strict: shell pipeline runs", func(t *testing.T) {
		res := mustSucceed(t, rt, atLevel(sandbox.LevelStrict, shSpec(`cat /etc/hostname | tr a-z A-Z`)))
		if string(res.Stdout) != "SANDBOX\n" {
			t.Errorf("stdout %q, want SANDBOX", res.Stdout)
		}
	})
}

// indent indents python code by four spaces.
func indent(code string) string {
	lines := strings.Split(strings.TrimSpace(code), "\n")
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n")
}

// TestEscapeInitSignals has the program signal the init (PID 1) with
// every catchable and uncatchable signal, and every process it may
// signal (-1): each signal to PID 1 is refused with EPERM (another
// user, no capabilities, and Landlock's signal scope) and the run ends
// and reports normally.
func TestEscapeInitSignals(t *testing.T) {
	rt := newRuntime(t)
	for _, level := range []sandbox.Level{sandbox.LevelMaximum, sandbox.LevelMinimal} {
		t.Run(string(level), func(t *testing.T) {
			res := mustSucceed(t, rt, atLevel(level, pySpec(pyProbe+`
import signal
res = {}
for s in ["SIGKILL", "SIGTERM", "SIGINT", "SIGHUP", "SIGSTOP", "SIGSEGV", "SIGUSR1", "SIGPIPE", "SIGCONT"]:
    try:
        os.kill(1, getattr(signal, s))
        res[s] = "delivered"
    except OSError as e:
        res[s] = _err(e)
try:
    os.kill(-1, signal.SIGKILL)
    res["kill -1"] = "ok"
except OSError as e:
    res["kill -1"] = _err(e)
print(json.dumps(res))
`)))
			want := map[string]any{"kill -1": "ESRCH"}
			for _, s := range []string{"SIGKILL", "SIGTERM", "SIGINT", "SIGHUP", "SIGSTOP", "SIGSEGV", "SIGUSR1", "SIGPIPE", "SIGCONT"} {
				want[s] = "EPERM"
			}
			if diff := cmp.Diff(want, decode(t, res)); diff != "" {
				t.Errorf("signals to the init (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEscapeHostFiles tries, in one run, every way this suite knows to
// read the host or the gateway through /proc and the file system. The
// expectations, one subtest each:
//
//   - a host canary next to a mounted directory is unreachable by path,
//     through the init's or the program's root and cwd, and by ".." out
//     of the mount;
//   - the init's /proc entries that could leak (root, cwd, environ, exe,
//     maps, mem, fds) are refused (EACCES: another user); its cmdline is
//     the fixed init marker and nothing else;
//   - the program's environment is Spec.Env exactly (the gateway's
//     environment, with a canary planted in it, is absent);
//   - a descriptor the gateway left inheritable does not reach the
//     program, which holds only 0, 1 and 2;
//   - /proc/self/mountinfo lists only the sandbox's mount points (its
//     root fields show the host path of each mounted directory — what the
//     gateway chose to expose — and nothing of what it did not);
//   - /proc/self/cgroup shows the run's own groups, relative to the
//     cgroup namespace, and no cgroupfs is mounted to write to;
//   - the UTS names are the sandbox's.
func TestEscapeHostFiles(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	secret, shared := filepath.Join(base, "secret-dir"), filepath.Join(base, "shared")
	for _, d := range []string{secret, shared} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	canaryText := "PORTCULLIS-CANARY-" + token(t)
	canary := filepath.Join(secret, "canary.txt")
	if err := os.WriteFile(canary, []byte(canaryText), 0o644); err != nil {
		t.Fatal(err)
	}
	envCanary := "PORTCULLIS-ENV-CANARY-" + token(t)
	t.Setenv("PORTCULLIS_ESCAPE_CANARY", envCanary)
	fdCanary := filepath.Join(t.TempDir(), "inherited-canary")
	if err := os.WriteFile(fdCanary, []byte(canaryText), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(fdCanary, syscall.O_RDONLY, 0) // deliberately inheritable
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC != 0 {
		t.Fatalf("test setup: fd %d is not inheritable (%d, %v)", fd, flags, err)
	}

	rt := newRuntime(t)
	spec := pySpec(pyProbe + `
canary, shared = sys.argv[1], sys.argv[2]
res = {}
def attempt(name, fn):
    try:
        res[name] = fn()
    except OSError as e:
        res[name] = _err(e)
for name, p in [("canary absolute", canary),
                ("canary via init root", "/proc/1/root" + canary),
                ("canary via own root", "/proc/self/root" + canary),
                ("canary via init cwd", "/proc/1/cwd" + canary),
                ("canary via cwd dotdot", "/proc/self/cwd/../../../../.." + canary),
                ("canary via root dotdot", "/../../../.." + canary),
                ("canary via mount dotdot", "/mnt/shared/../../secret-dir/canary.txt"),
                ("canary via same-path mount dotdot", shared + "/../secret-dir/canary.txt"),
                ("init environ", "/proc/1/environ"),
                ("init maps", "/proc/1/maps"),
                ("init mem", "/proc/1/mem"),
                ("init stack", "/proc/1/stack")]:
    res[name] = try_read(p)
mnt = os.open("/mnt/shared", os.O_PATH)
up = os.open("..", os.O_PATH, dir_fd=mnt)
attempt("canary via dirfd dotdot", lambda: os.stat("secret-dir/canary.txt", dir_fd=up) and "found")
attempt("dirfd dotdot is", lambda: os.readlink("/proc/self/fd/%d" % up))
os.close(up)
os.close(mnt)
attempt("init exe readlink", lambda: os.readlink("/proc/1/exe"))
attempt("init exe open for write", lambda: os.open("/proc/1/exe", os.O_WRONLY) and "opened")
attempt("init fds", lambda: os.listdir("/proc/1/fd"))
attempt("own exe open for write", lambda: os.open("/proc/self/exe", os.O_WRONLY) and "opened")
res["init cmdline"] = open("/proc/1/cmdline").read()
res["environ"] = open("/proc/self/environ").read()
res["fds"] = sorted(int(n) for n in os.listdir("/proc/self/fd"))
res["fd targets"] = sorted(os.readlink("/proc/self/fd/%d" % n) for n in (0, 1, 2))
res["mountinfo"] = open("/proc/self/mountinfo").read()
res["cgroup"] = open("/proc/self/cgroup").read()
for p in ["/sys/fs/cgroup", "/sys/fs/cgroup/memory/release_agent", "/sys/fs/cgroup/release_agent"]:
    res["write " + p] = try_write(p)
res["write /proc/sysrq-trigger"] = try_write("/proc/sysrq-trigger")
res["write core_pattern"] = try_write("/proc/sys/kernel/core_pattern")
res["uname"] = [os.uname().nodename]
res["hostname file"] = try_read("/etc/hostname")
res["resolv.conf"] = try_read("/etc/resolv.conf")
print(json.dumps(res))
`)
	spec.Argv = append(spec.Argv, canary, shared)
	spec.Env = []string{"PATH=/usr/bin:/bin", "ONLY=this"}
	spec.Mounts = []sandbox.Mount{{Source: shared, Target: "/mnt/shared"}, {Source: shared}}
	res := mustSucceed(t, rt, spec)
	for _, leak := range []string{canaryText, envCanary, "inherited-canary", "secret-dir"} {
		if strings.Contains(string(res.Stdout)+string(res.Stderr), leak) {
			t.Errorf("the program's output holds %q", leak)
		}
	}
	out := decode(t, res)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	for name, want := range map[string]any{
		"canary absolute":                   "ENOENT",
		"canary via init root":              "EACCES",
		"canary via own root":               "ENOENT",
		"canary via init cwd":               "EACCES",
		"canary via cwd dotdot":             "ENOENT",
		"canary via root dotdot":            "ENOENT",
		"canary via mount dotdot":           "ENOENT",
		"canary via same-path mount dotdot": "ENOENT",
		"canary via dirfd dotdot":           "ENOENT",
		"dirfd dotdot is":                   "/mnt",
		"init environ":                      "EACCES",
		"init maps":                         "EACCES",
		"init mem":                          "EACCES",
		"init stack":                        "EACCES",
		"init exe readlink":                 "EACCES",
		"init exe open for write":           "EACCES",
		"init fds":                          "EACCES",
		"own exe open for write":            "EACCES", // Landlock: no write right on /usr
		"init cmdline":                      "portcullis-sandbox-init\x00" + InitArg + "\x00",
		"environ":                           "PATH=/usr/bin:/bin\x00ONLY=this\x00",
		"fds":                               []any{0.0, 1.0, 2.0, 3.0}, // 3: listdir's own handle
		"write /sys/fs/cgroup":              "ENOENT",
		"write /sys/fs/cgroup/memory/release_agent": "ENOENT",
		"write /sys/fs/cgroup/release_agent":        "ENOENT",
		"write /proc/sysrq-trigger":                 "ENOENT",
		"write core_pattern":                        "ENOENT",
		"uname":                                     []any{"sandbox"},
		"hostname file":                             "ok:sandbox\n",
		"resolv.conf":                               "ENOENT",
	} {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(want, out[name]); diff != "" {
				t.Errorf("%s (-want +got):\n%s", name, diff)
			}
		})
	}
	t.Run("fd targets", func(t *testing.T) {
		for _, target := range out["fd targets"].([]any) {
			if !strings.HasPrefix(target.(string), "pipe:") {
				t.Errorf("standard descriptor -> %v, want a pipe from the runtime", target)
			}
		}
	})
	t.Run("mountinfo", func(t *testing.T) {
		info := out["mountinfo"].(string)
		var points []string
		for _, line := range strings.Split(strings.TrimSpace(info), "\n") {
			if f := strings.Fields(line); len(f) > 4 {
				points = append(points, f[4])
			}
		}
		want := []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/", "/tmp", "/work", "/mnt/shared",
			shared, "/dev", "/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/proc"}
		for _, p := range systemPaths {
			if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink != 0 {
				want = slices.DeleteFunc(want, func(s string) bool { return s == p }) // a symlink, or absent
			}
		}
		slices.Sort(want)
		slices.Sort(points)
		if diff := cmp.Diff(want, points); diff != "" {
			t.Errorf("mount points (-want +got):\n%s", diff)
		}
		for _, leak := range []string{secret, "/root", "/home", "/sys", "/run", "/var"} {
			if strings.Contains(info, " "+leak) {
				t.Errorf("mountinfo names the host path %s:\n%s", leak, info)
			}
		}
	})
	t.Run("cgroup", func(t *testing.T) {
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out["cgroup"].(string)), "\n") {
			parts := strings.SplitN(line, ":", 3)
			for _, c := range strings.Split(parts[1], ",") {
				got[c] = parts[2]
			}
		}
		run := got["memory"]
		if !strings.HasPrefix(run, "/portcullis/run-") || strings.Count(run, "/") != 2 {
			t.Fatalf("memory cgroup %q, want /portcullis/run-* relative to the cgroup namespace", run)
		}
		for _, c := range cgroupControllers {
			if got[c] != run {
				t.Errorf("%s cgroup %q, want the run's group %q", c, got[c], run)
			}
		}
		for c, p := range got {
			if strings.Contains(p, "process_api") || (!strings.HasPrefix(p, "/portcullis/") && p != "/") {
				t.Errorf("%s cgroup %q leaks the host's cgroup path", c, p)
			}
		}
	})
	t.Run("host hostname", func(t *testing.T) {
		if host == "sandbox" {
			t.Skip("the host itself is named sandbox")
		}
		if strings.Contains(string(res.Stdout), `"`+host+`"`) {
			t.Errorf("the host's name %q reached the program", host)
		}
	})
	t.Run("init environment on the host", func(t *testing.T) {
		// From outside, during a run: the init has an empty environment
		// (the canary is in this process's).
		tok := token(t)
		stop := background(t, rt, pySpec("import time; time.sleep(100)\n#"+tok))
		init := hostStatusField(t, hostPID(t, tok), "PPid")
		b, err := os.ReadFile(filepath.Join("/proc", init, "environ"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", init, "cmdline"))
		stop()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(cmdline), InitArg) {
			t.Fatalf("parent %s of the program is %q, not the init", init, cmdline)
		}
		if len(b) != 0 {
			t.Errorf("the init's environment is %q, want empty", b)
		}
	})
}

// TestEscapeSealedInit attacks the binary the init runs from: through
// /proc/1/exe (refused: EACCES) and, from the gateway's side, through
// the memfd itself (sealed: EPERM). The binary on disk is unchanged.
func TestEscapeSealedInit(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	if !rt.Report().Memfd {
		t.Fatal("the runtime runs its init from the binary on disk, not a sealed memfd")
	}
	res := mustSucceed(t, rt, pySpec(pyProbe+`
res = {}
for name, flags in [("write", os.O_WRONLY), ("rdwr", os.O_RDWR), ("trunc", os.O_WRONLY | os.O_TRUNC)]:
    try:
        os.open("/proc/1/exe", flags)
        res[name] = "opened"
    except OSError as e:
        res[name] = _err(e)
print(json.dumps(res))
`))
	if diff := cmp.Diff(map[string]any{"write": "EACCES", "rdwr": "EACCES", "trunc": "EACCES"}, decode(t, res)); diff != "" {
		t.Errorf("opening the init's executable (-want +got):\n%s", diff)
	}
	// The gateway's copy: even a process holding it cannot change it.
	seals, err := unix.FcntlInt(rt.exe.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if seals&want != want {
		t.Errorf("memfd seals %#x, want %#x set", seals, want)
	}
	if _, err := unix.Pwrite(int(rt.exe.Fd()), []byte("overwritten"), 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("writing the sealed memfd: %v, want EPERM", err)
	}
	if _, err := unix.Mmap(int(rt.exe.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, syscall.EPERM) {
		t.Errorf("mapping the sealed memfd writable: %v, want EPERM", err)
	}
	if err := unix.Ftruncate(int(rt.exe.Fd()), 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("truncating the sealed memfd: %v, want EPERM", err)
	}
	after, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Errorf("the binary on disk changed: %v %d -> %v %d", before.ModTime(), before.Size(), after.ModTime(), after.Size())
	}
}

// TestEscapePrivileges checks the program holds no privilege at any
// level: ids stay nobody, every capability set is empty, no_new_privs
// cannot be cleared, and Landlock confines reads (the root directory
// itself is not listable, /usr is).
func TestEscapePrivileges(t *testing.T) {
	rt := newRuntime(t)
	for _, level := range sandbox.Levels {
		t.Run(string(level), func(t *testing.T) {
			spec := atLevel(level, pySpec(pyProbe+pyLibc+`
res = {}
def attempt(name, fn):
    try:
        fn()
        res[name] = "ok"
    except OSError as e:
        res[name] = _err(e)
attempt("setuid 0", lambda: os.setuid(0))
attempt("setgid 0", lambda: os.setgid(0))
attempt("setresuid 0", lambda: os.setresuid(0, 0, 0))
attempt("setgroups 0", lambda: os.setgroups([0]))
attempt("seteuid 0", lambda: os.seteuid(0))
# capset: try to raise CAP_SYS_ADMIN in every set (v3 header).
hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
data = (ctypes.c_uint32 * 6)(1 << 21, 1 << 21, 1 << 21, 0, 0, 0)
capset, prctl = int(sys.argv[1]), int(sys.argv[2])
res["capset"] = sys_call(capset, ctypes.addressof(hdr), ctypes.addressof(data))
res["clear no_new_privs"] = sys_call(prctl, 38, 0, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS 0
res["raise ambient"] = sys_call(prctl, 47, 2, 21, 0, 0)     # PR_CAP_AMBIENT_RAISE CAP_SYS_ADMIN
res["uids"] = list(os.getresuid()) + list(os.getresgid())
res["ls /"] = try_list("/")
res["ls /usr has bin"] = "bin" in try_list("/usr")
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"]:
    res[k] = status[k].strip()
res["Seccomp_filters >= 1"] = int(status["Seccomp_filters"]) >= 1
print(json.dumps(res))
`))
			spec.Argv = append(spec.Argv, strconv.Itoa(int(sysNR(t, "capset"))), strconv.Itoa(int(sysNR(t, "prctl"))))
			out := decode(t, mustSucceed(t, rt, spec))
			want := map[string]any{
				"setuid 0": "EPERM", "setgid 0": "EPERM", "setresuid 0": "EPERM", "setgroups 0": "EPERM", "seteuid 0": "EPERM",
				"capset": "EPERM", "clear no_new_privs": "EINVAL", "raise ambient": "EPERM",
				"uids":            []any{65534.0, 65534.0, 65534.0, 65534.0, 65534.0, 65534.0},
				"ls /":            "EACCES",
				"ls /usr has bin": true,
				"CapInh":          "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
				"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
				"NoNewPrivs": "1", "Seccomp": "2", "Seccomp_filters >= 1": true,
			}
			if diff := cmp.Diff(want, out); diff != "" {
				t.Errorf("privileges at %s (-want +got):\n%s", level, diff)
			}
		})
	}
}
