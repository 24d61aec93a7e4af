//go:build linux

package native

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// TestWallTimeout runs sleep 60 under a 500 ms wall limit: the init kills
// it with SIGKILL and reports WALL_TIMEOUT.
func TestWallTimeout(t *testing.T) {
	rt := newRuntime(t)
	spec := shSpec("")
	spec.Argv = []string{"/bin/sleep", "60"}
	spec.Limits.WallTime = 500 * time.Millisecond
	res := mustRun(t, rt, spec)
	if res.ExitCode != -1 || res.Signal != "SIGKILL" {
		t.Errorf("exit %d signal %q, want -1 SIGKILL", res.ExitCode, res.Signal)
	}
	if diff := cmp.Diff([]sandbox.ViolationCode{sandbox.ViolationWallTimeout}, violationCodes(res)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	if res.WallTime < spec.Limits.WallTime {
		t.Errorf("reported wall time %s is below the limit it hit", res.WallTime)
	}
}

// TestWallTimeoutKillsWholeTree puts the sleeping work in a grandchild:
// the deadline still ends the run and kills every process.
func TestWallTimeoutKillsWholeTree(t *testing.T) {
	tok := token(t)
	rt := newRuntime(t)
	spec := shSpec(`sh -c 'sleep 100.` + tok + `'; echo not reached`)
	spec.Limits.WallTime = 500 * time.Millisecond
	res := mustRun(t, rt, spec)
	if !res.Has(sandbox.ViolationWallTimeout) || res.Signal != "SIGKILL" {
		t.Errorf("violations %v signal %q, want WALL_TIMEOUT and SIGKILL", res.Violations, res.Signal)
	}
	if len(res.Stdout) != 0 {
		t.Errorf("stdout %q: the program went on after the deadline", res.Stdout)
	}
	if left := hostProcsWith(t, tok); len(left) > 0 {
		t.Errorf("processes survive the deadline: %+v", left)
	}
}

// TestCPUTimeout spins under a 1 s CPU limit and a much larger wall
// limit: RLIMIT_CPU stops it and the run reports CPU_TIMEOUT, not
// WALL_TIMEOUT. A program that ignores SIGXCPU at the soft limit is
// killed at the hard limit (2 s of CPU) and reported the same way. The
// wall limit is generous because on a loaded 2-core CI machine 2 s of
// CPU can take many seconds of wall time.
func TestCPUTimeout(t *testing.T) {
	rt := newRuntime(t)
	for _, tc := range []struct {
		name, script, signal string
	}{
		{"default action", "while :; do :; done", "SIGXCPU"},
		{"SIGXCPU ignored", "trap '' XCPU; while :; do :; done", "SIGKILL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := shSpec(tc.script)
			spec.Limits.CPUTime = time.Second
			spec.Limits.WallTime = time.Minute
			res := mustRun(t, rt, spec)
			if diff := cmp.Diff([]sandbox.ViolationCode{sandbox.ViolationCPUTimeout}, violationCodes(res)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
			if res.Signal != tc.signal || res.ExitCode != -1 {
				t.Errorf("exit %d signal %q, want -1 %s", res.ExitCode, res.Signal, tc.signal)
			}
			if res.CPUTime <= 0 {
				t.Errorf("no CPU time reported for a run that spun until its CPU limit")
			}
		})
	}
}

// TestOutputCap floods stdout and stderr: each keeps exactly the first
// OutputBytes bytes, is marked truncated, and the run reports
// OUTPUT_TRUNCATED while the program still exits normally.
func TestOutputCap(t *testing.T) {
	rt := newRuntime(t)
	for _, tc := range []struct {
		name, script string
		stderr       bool
	}{
		{"stdout", "yes | head -c 1000000", false},
		{"stderr", "yes | head -c 1000000 >&2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := shSpec(tc.script)
			spec.Limits.OutputBytes = 1000
			res := mustRun(t, rt, spec)
			got, truncated, other, otherTrunc := res.Stdout, res.StdoutTruncated, res.Stderr, res.StderrTruncated
			if tc.stderr {
				got, truncated, other, otherTrunc = res.Stderr, res.StderrTruncated, res.Stdout, res.StdoutTruncated
			}
			if want := strings.Repeat("y\n", 500); string(got) != want {
				t.Errorf("kept %d bytes (%.20q...), want exactly the first 1000", len(got), got)
			}
			if !truncated || otherTrunc || len(other) != 0 {
				t.Errorf("truncated %v (other stream %v, %d bytes), want only the flooded stream truncated", truncated, otherTrunc, len(other))
			}
			if res.ExitCode != 0 {
				t.Errorf("exit %d, want 0", res.ExitCode)
			}
			if diff := cmp.Diff([]sandbox.ViolationCode{sandbox.ViolationOutputTrunc}, violationCodes(res)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOutputFloodUntilDeadline runs an endless `yes`: the capped buffer
// never blocks it, memory stays at the cap, and the deadline ends it.
func TestOutputFloodUntilDeadline(t *testing.T) {
	rt := newRuntime(t)
	spec := shSpec("")
	spec.Argv = []string{"/usr/bin/yes"}
	spec.Limits.OutputBytes = 1000
	spec.Limits.WallTime = 500 * time.Millisecond
	res := mustRun(t, rt, spec)
	if len(res.Stdout) != 1000 || !res.StdoutTruncated {
		t.Errorf("stdout %d bytes truncated=%v, want 1000 and true", len(res.Stdout), res.StdoutTruncated)
	}
	want := []sandbox.ViolationCode{sandbox.ViolationWallTimeout, sandbox.ViolationOutputTrunc}
	if diff := cmp.Diff(want, violationCodes(res)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
}

// TestFileSizeLimit writes past RLIMIT_FSIZE: the writer dies of SIGXFSZ
// and the run reports FILE_SIZE_EXCEEDED; the file stops at the limit.
func TestFileSizeLimit(t *testing.T) {
	rt := newRuntime(t)
	spec := shSpec(`exec head -c 100000 /dev/zero > /work/big`)
	spec.Limits.FileSizeBytes = 4096
	res := mustRun(t, rt, spec)
	if res.Signal != "SIGXFSZ" {
		t.Errorf("signal %q, want SIGXFSZ", res.Signal)
	}
	if diff := cmp.Diff([]sandbox.ViolationCode{sandbox.ViolationFileSize}, violationCodes(res)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}

	// A program that ignores SIGXFSZ (as CPython does) gets EFBIG instead
	// and cannot grow the file past the limit either.
	spec = pySpec(pyProbe + `
try:
    with open("/work/big", "wb") as f:
        f.write(b"x" * 100000)
    res = "no error"
except OSError as e:
    res = _err(e)
print(json.dumps({"outcome": res, "size": os.path.getsize("/work/big")}))
`)
	spec.Limits.FileSizeBytes = 4096
	out := pyJSON(t, rt, spec)
	if diff := cmp.Diff(map[string]any{"outcome": "EFBIG", "size": 4096.0}, out); diff != "" {
		t.Errorf("python writing past the limit (-want +got):\n%s", diff)
	}
}

// TestOpenFilesLimit opens files until the kernel refuses: EMFILE, with
// the highest descriptor just below the OpenFiles limit.
func TestOpenFilesLimit(t *testing.T) {
	rt := newRuntime(t)
	spec := pySpec(pyProbe + `
files, res = [], "no error"
try:
    while len(files) < 100000:
        files.append(open("/dev/null"))
except OSError as e:
    res = _err(e)
print(json.dumps({"outcome": res, "highest fd": max(f.fileno() for f in files)}))
`)
	spec.Limits.OpenFiles = 16
	out := pyJSON(t, rt, spec)
	if diff := cmp.Diff(map[string]any{"outcome": "EMFILE", "highest fd": 15.0}, out); diff != "" {
		t.Errorf("opening files (-want +got):\n%s", diff)
	}
}

// TestStdinDelivered pipes 256 KiB of random bytes (more than a pipe
// holds) through cat: stdout is stdin, byte for byte.
func TestStdinDelivered(t *testing.T) {
	in := make([]byte, 256<<10)
	if _, err := rand.Read(in); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	spec := shSpec("exec cat")
	spec.Stdin = in
	res := mustSucceed(t, rt, spec)
	if !bytes.Equal(res.Stdout, in) {
		t.Errorf("stdout (%d bytes) differs from stdin (%d bytes)", len(res.Stdout), len(in))
	}
}

// TestStdinNotRead leaves a large stdin unread: the run still ends.
func TestStdinNotRead(t *testing.T) {
	rt := newRuntime(t)
	spec := shSpec("echo done")
	spec.Stdin = make([]byte, 1<<20)
	res := mustSucceed(t, rt, spec)
	if string(res.Stdout) != "done\n" {
		t.Errorf("stdout %q", res.Stdout)
	}
}

// TestExitCodes propagates exit statuses and deaths by signal.
func TestExitCodes(t *testing.T) {
	rt := newRuntime(t)
	for _, tc := range []struct {
		script     string
		code       int
		signal     string
		violations []sandbox.ViolationCode
	}{
		{"exit 0", 0, "", nil},
		{"exit 3", 3, "", nil},
		{"exit 255", 255, "", nil},
		{"kill -s SEGV $$", -1, "SIGSEGV", []sandbox.ViolationCode{sandbox.ViolationSignalled}},
		{"kill -s TERM $$", -1, "SIGTERM", []sandbox.ViolationCode{sandbox.ViolationSignalled}},
	} {
		t.Run(tc.script, func(t *testing.T) {
			res := mustRun(t, rt, shSpec(tc.script))
			if res.ExitCode != tc.code || res.Signal != tc.signal {
				t.Errorf("exit %d signal %q, want %d %q", res.ExitCode, res.Signal, tc.code, tc.signal)
			}
			if diff := cmp.Diff(tc.violations, violationCodes(res)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

// TestProgramNotStartable names programs that do not exist inside the
// sandbox (including a host path that is not mounted) or cannot be
// executed: Run fails with ErrSetup.
func TestProgramNotStartable(t *testing.T) {
	rt := newRuntime(t)
	for _, argv0 := range []string{"/nonexistent/program", "/root/.bashrc", "/etc/passwd", "/work"} {
		t.Run(argv0, func(t *testing.T) {
			spec := shSpec("")
			spec.Argv = []string{argv0}
			res, err := rt.Run(t.Context(), spec)
			if !errors.Is(err, sandbox.ErrSetup) {
				t.Fatalf("Run(%s): result %+v, err %v; want ErrSetup", argv0, res, err)
			}
		})
	}
}

// TestRunValidatesSpec refuses invalid Specs before starting anything.
func TestRunValidatesSpec(t *testing.T) {
	rt := newRuntime(t)
	for name, mutate := range map[string]func(*sandbox.Spec){
		"no wall time":  func(s *sandbox.Spec) { s.Limits.WallTime = 0 },
		"relative argv": func(s *sandbox.Spec) { s.Argv = []string{"sh"} },
		"bad file name": func(s *sandbox.Spec) { s.Files = []sandbox.File{{Name: "../x"}} },
	} {
		t.Run(name, func(t *testing.T) {
			spec := shSpec("true")
			mutate(spec)
			if _, err := rt.Run(t.Context(), spec); !errors.Is(err, sandbox.ErrInvalidSpec) {
				t.Errorf("Run: err %v, want ErrInvalidSpec", err)
			}
		})
	}
}

// TestPeakMemoryReported touches 64 MiB: the result reports a peak
// resident set of at least that (the figure comes from the reaped
// processes' rusage).
func TestPeakMemoryReported(t *testing.T) {
	rt := newRuntime(t)
	res := mustSucceed(t, rt, pySpec("b = bytearray(64 << 20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n"))
	if res.PeakMemoryBytes < 64<<20 {
		t.Errorf("PeakMemoryBytes = %d, want at least %d", res.PeakMemoryBytes, 64<<20)
	}
}

// TestUnenforceableLimitsRefused: memory and pids limits need cgroups,
// which this runtime does not set up yet; asking for one must fail rather
// than run without it.
func TestUnenforceableLimitsRefused(t *testing.T) {
	rt := newRuntime(t)
	for name, l := range map[string]sandbox.Limits{
		"memory": {WallTime: time.Second, MemoryBytes: 64 << 20},
		"pids":   {WallTime: time.Second, Pids: 10},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := rt.Run(context.Background(), &sandbox.Spec{Argv: []string{"/bin/true"}, Limits: l})
			if !errors.Is(err, sandbox.ErrUnavailable) || res != nil {
				t.Fatalf("Run = %v, %v; want ErrUnavailable and no result", res, err)
			}
		})
	}
}
