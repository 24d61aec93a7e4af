//go:build linux

package native

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// TestNewRefusesBadConfig refuses a missing logger and read-only paths
// that are not clean absolute paths.
func TestNewRefusesBadConfig(t *testing.T) {
	if rt, err := New(Config{}, nil); err == nil {
		rt.Close()
		t.Errorf("New with a nil logger succeeded")
	}
	for _, p := range []string{"usr", "/usr/", "/usr/../etc", ""} {
		rt, err := New(Config{ReadOnlyPaths: []string{p}}, slog.New(slog.DiscardHandler))
		if !errors.Is(err, sandbox.ErrInvalidSpec) {
			if rt != nil {
				rt.Close()
			}
			t.Errorf("New with read-only path %q: %v, want ErrInvalidSpec", p, err)
		}
	}
}

// TestRuntimeReport checks the runtime reports every mechanism it uses on
// this host (root, Linux 6, cgroup controllers on v1), with nothing
// degraded.
func TestRuntimeReport(t *testing.T) {
	rt := newRuntime(t)
	if rt.Name() != "native" {
		t.Errorf("Name() = %q", rt.Name())
	}
	rep := rt.Report()
	if !rep.Seccomp || !rep.Memfd || rep.LandlockABI < 1 || rep.LandlockABI != landlockABI() || len(rep.Degraded) != 0 {
		t.Errorf("Report() = %+v, want seccomp, memfd, Landlock ABI %d and nothing degraded", rep, landlockABI())
	}
	for _, c := range cgroupControllers {
		if v := rep.Cgroups.Controllers[c]; v != "v1" && v != "v2" {
			t.Errorf("controller %s: %q", c, v)
		}
	}
	if rep.PoolSize != 2 {
		t.Errorf("default pool size %d, want 2", rep.PoolSize)
	}
	if got := newRuntimeWith(t, Config{PoolSize: -1}).Report().PoolSize; got != 0 {
		t.Errorf("pool size with PoolSize -1: %d, want 0", got)
	}
}

// TestClosedRuntime refuses runs and prewarming after Close, and Close
// is idempotent.
func TestClosedRuntime(t *testing.T) {
	rt, err := New(Config{ReadOnlyPaths: systemPaths}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, rt, &sandbox.Spec{Argv: []string{"/bin/true"}})
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if res, err := rt.Run(context.Background(), &sandbox.Spec{Argv: []string{"/bin/true"}}); !errors.Is(err, sandbox.ErrUnavailable) || res != nil {
		t.Errorf("Run after Close = %v, %v; want ErrUnavailable", res, err)
	}
	if err := rt.Prewarm(context.Background(), &sandbox.Spec{Argv: []string{"/bin/true"}}); !errors.Is(err, sandbox.ErrUnavailable) {
		t.Errorf("Prewarm after Close = %v; want ErrUnavailable", err)
	}
}

// TestPrewarm fills the pool of a layout before any run; a runtime
// without a pool has nothing to do, and a cancelled context stops the
// wait.
func TestPrewarm(t *testing.T) {
	spec := &sandbox.Spec{Argv: []string{"/bin/true"}}
	rt := newRuntimeWith(t, Config{PoolSize: 3})
	if err := rt.Prewarm(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	l, _ := rt.layoutOf(spec)
	rt.mu.Lock()
	p := rt.pools[l.key]
	rt.mu.Unlock()
	if p == nil || len(p.ch) != 3 {
		t.Fatalf("after Prewarm the pool holds %v inits, want 3", p)
	}
	mustSucceed(t, rt, spec) // from the pool

	cold := newRuntimeWith(t, Config{PoolSize: -1})
	if err := cold.Prewarm(t.Context(), spec); err != nil {
		t.Errorf("Prewarm without a pool: %v", err)
	}
	if len(cold.pools) != 0 {
		t.Errorf("Prewarm without a pool created %d pools", len(cold.pools))
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	other := &sandbox.Spec{Argv: []string{"/bin/true"}, Dir: "/elsewhere"}
	if err := newRuntimeWith(t, Config{PoolSize: 2}).Prewarm(ctx, other); !errors.Is(err, context.Canceled) {
		t.Errorf("Prewarm with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestMountTargetsConfined refuses Spec mounts whose target would be
// created through a symlink (which could point out of the new root) or
// below a file, or that would replace the root: the run fails to set up
// (ErrSetup) instead of mounting anywhere else.
func TestMountTargetsConfined(t *testing.T) {
	src := t.TempDir()
	rt := newRuntime(t)
	targets := []string{"/etc/ld.so.cache/x", "/"}
	if fi, err := os.Lstat("/lib"); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		targets = append(targets, "/lib/escape") // /lib is recreated as the host's symlink
	} else {
		t.Log("/lib is not a symlink on this host: the symlink case is not run")
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			spec := &sandbox.Spec{Argv: []string{"/bin/true"}, Mounts: []sandbox.Mount{{Source: src, Target: target}}}
			if res, err := rt.Run(t.Context(), spec); !errors.Is(err, sandbox.ErrSetup) {
				t.Errorf("mount at %s: %+v, %v; want ErrSetup", target, res, err)
			}
		})
	}
}

// TestViolations pins how a finished run's facts map to violation codes
// and their order.
func TestViolations(t *testing.T) {
	l := sandbox.Limits{WallTime: time.Second, CPUTime: 2 * time.Second, MemoryBytes: 1 << 20, Pids: 3, FileSizeBytes: 10, OutputBytes: 5}
	sig := func(s syscall.Signal) initStatus { return initStatus{Signal: int(s), ExitCode: -1} }
	for _, tc := range []struct {
		name string
		st   initStatus
		res  sandbox.Result
		cg   cgroupOutcome
		want []sandbox.ViolationCode
	}{
		{"clean exit", initStatus{}, sandbox.Result{}, cgroupOutcome{}, nil},
		{"non-zero exit", initStatus{ExitCode: 3}, sandbox.Result{}, cgroupOutcome{}, nil},
		{"timed out", initStatus{TimedOut: true, Signal: 9}, sandbox.Result{}, cgroupOutcome{}, []sandbox.ViolationCode{sandbox.ViolationWallTimeout}},
		{"timed out after an OOM kill", initStatus{TimedOut: true}, sandbox.Result{}, cgroupOutcome{oomKills: 1},
			[]sandbox.ViolationCode{sandbox.ViolationWallTimeout, sandbox.ViolationOOM}},
		{"OOM", sig(syscall.SIGKILL), sandbox.Result{}, cgroupOutcome{oomKills: 2}, []sandbox.ViolationCode{sandbox.ViolationOOM}},
		{"SIGXCPU", sig(syscall.SIGXCPU), sandbox.Result{}, cgroupOutcome{}, []sandbox.ViolationCode{sandbox.ViolationCPUTimeout}},
		{"SIGKILL at the CPU limit", sig(syscall.SIGKILL), sandbox.Result{CPUTime: 2 * time.Second}, cgroupOutcome{},
			[]sandbox.ViolationCode{sandbox.ViolationCPUTimeout}},
		{"SIGKILL below the CPU limit", sig(syscall.SIGKILL), sandbox.Result{CPUTime: time.Second, Signal: "SIGKILL"}, cgroupOutcome{},
			[]sandbox.ViolationCode{sandbox.ViolationSignalled}},
		{"SIGXFSZ", sig(syscall.SIGXFSZ), sandbox.Result{}, cgroupOutcome{}, []sandbox.ViolationCode{sandbox.ViolationFileSize}},
		{"SIGSYS", sig(syscall.SIGSYS), sandbox.Result{}, cgroupOutcome{}, []sandbox.ViolationCode{sandbox.ViolationSeccompKill}},
		{"SIGSEGV", sig(syscall.SIGSEGV), sandbox.Result{Signal: "SIGSEGV"}, cgroupOutcome{}, []sandbox.ViolationCode{sandbox.ViolationSignalled}},
		{"pids refused", initStatus{}, sandbox.Result{}, cgroupOutcome{pidsLimited: 4}, []sandbox.ViolationCode{sandbox.ViolationPidsExhausted}},
		{"stdout truncated", initStatus{}, sandbox.Result{StdoutTruncated: true}, cgroupOutcome{}, []sandbox.ViolationCode{sandbox.ViolationOutputTrunc}},
		{"stderr truncated", initStatus{}, sandbox.Result{StderrTruncated: true}, cgroupOutcome{}, []sandbox.ViolationCode{sandbox.ViolationOutputTrunc}},
		{"orphans", initStatus{Orphans: 2}, sandbox.Result{}, cgroupOutcome{}, []sandbox.ViolationCode{sandbox.ViolationOrphansKilled}},
		{"everything at once", initStatus{Signal: int(syscall.SIGSYS), Orphans: 1}, sandbox.Result{StdoutTruncated: true}, cgroupOutcome{pidsLimited: 1},
			[]sandbox.ViolationCode{sandbox.ViolationSeccompKill, sandbox.ViolationPidsExhausted, sandbox.ViolationOutputTrunc, sandbox.ViolationOrphansKilled}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.res
			res.Violations = violations(l, &tc.st, &res, tc.cg)
			if diff := cmp.Diff(tc.want, violationCodes(&res)); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
			for _, v := range res.Violations {
				if v.Detail == "" {
					t.Errorf("%s has no detail", v.Code)
				}
			}
		})
	}
}

// TestStepName names every step the program's start can fail at.
func TestStepName(t *testing.T) {
	want := map[uint32]string{
		stepGroups: "drop to the sandbox user", stepGID: "drop to the sandbox user", stepUID: "drop to the sandbox user",
		stepPdeathsig: "parent-death signal", stepRlimit: "resource limits", stepChdir: "chdir",
		stepLandlock: "landlock", stepSeccomp: "seccomp", stepExec: "exec", 99: "step 99",
	}
	for step, name := range want {
		if got := stepName(step); got != name {
			t.Errorf("stepName(%d) = %q, want %q", step, got, name)
		}
	}
}

// TestFilterEncoding round-trips every level's filter through the init's
// wire form and refuses malformed or empty filters (every program runs
// under one).
func TestFilterEncoding(t *testing.T) {
	for _, level := range sandbox.Levels {
		f, err := seccompFilter(level)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(SeccompFilter(level), f) {
			t.Errorf("SeccompFilter(%s) differs from the runtime's filter", level)
		}
		enc, err := encodedFilter(level)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := decodeFilter(enc)
		if err != nil || !slices.Equal(dec, f) {
			t.Errorf("%s filter does not round-trip: %v", level, err)
		}
	}
	if SeccompFilter("bogus") != nil {
		t.Errorf("SeccompFilter(bogus) is not nil")
	}
	for _, b := range [][]byte{nil, {}, make([]byte, 7), make([]byte, 8*4097)} {
		if _, err := decodeFilter(b); err == nil {
			t.Errorf("decodeFilter of %d bytes succeeded", len(b))
		}
	}
}

// TestProbe runs the doctor's host checks: on this host (root, Linux 6,
// seccomp, Landlock, cgroups, memfd) every check passes, ending with a
// real sandbox run.
func TestProbe(t *testing.T) {
	checks := Probe(t.Context(), systemPaths)
	var names []string
	for _, c := range checks {
		names = append(names, c.Name)
		if c.Verdict != VerdictOK {
			t.Errorf("check %s: %s (%s)", c.Name, c.Verdict, c.Detail)
		}
		if c.Detail == "" {
			t.Errorf("check %s has no detail", c.Name)
		}
	}
	want := []string{"kernel", "privileges", "user namespaces", "seccomp", "landlock", "cgroups", "memfd", "sandbox host ids", "sandbox run"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
	if users := hostIDUsers(); len(users) != 0 {
		t.Errorf("hostIDUsers() = %v on a host that assigns neither id", users)
	}
}

// TestProgramStartFailures makes the program's own start fail after the
// fork, at exec (a directory and a non-executable file as argv[0]): the
// init reports the step by name and Run fails with ErrSetup.
func TestProgramStartFailures(t *testing.T) {
	rt := newRuntime(t)
	for argv0, want := range map[string]string{"/usr": "exec", "/etc/hostname": "exec"} {
		_, err := rt.Run(t.Context(), &sandbox.Spec{Argv: []string{argv0}})
		if !errors.Is(err, sandbox.ErrSetup) || !strings.Contains(err.Error(), argv0) || !strings.Contains(err.Error(), ": "+want+": ") {
			t.Errorf("Run(%s): %v, want ErrSetup naming the %s step", argv0, err, want)
		}
	}
}

// TestPoolSkipsDeadInits kills a warm init behind the pool's back (as
// the OOM killer or an operator might): the next run does not get it, but
// a fresh init, and succeeds.
func TestPoolSkipsDeadInits(t *testing.T) {
	spec := &sandbox.Spec{Argv: []string{"/bin/true"}}
	rt := newRuntimeWith(t, Config{PoolSize: 1})
	if err := rt.Prewarm(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	l, _ := rt.layoutOf(spec)
	rt.mu.Lock()
	p := rt.pools[l.key]
	rt.mu.Unlock()
	ip := <-p.ch
	if err := ip.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed init to be reaped", func() bool { return !ip.alive() })
	p.ch <- ip
	mustSucceed(t, rt, spec)
}

// TestPoolCount bounds the number of layouts with a warm pool: past
// maxPools, Prewarm does nothing and runs start cold, and still succeed.
func TestPoolCount(t *testing.T) {
	rt := newRuntimeWith(t, Config{PoolSize: 1})
	for i := 0; i < maxPools+2; i++ {
		spec := &sandbox.Spec{Argv: []string{"/bin/true"}, Dir: "/work" + strconv.Itoa(i)}
		if err := rt.Prewarm(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
		if i >= maxPools {
			mustSucceed(t, rt, spec)
		}
	}
	rt.mu.Lock()
	n := len(rt.pools)
	rt.mu.Unlock()
	if n != maxPools {
		t.Errorf("%d pools, want %d", n, maxPools)
	}
}

// TestDegradedMode: with AllowDegraded, a runtime missing seccomp runs the
// program without a filter (and says so in its report), and one missing
// cgroups falls back to RLIMIT_AS for the memory limit. Without
// AllowDegraded a runtime without cgroups refuses to run.
func TestDegradedMode(t *testing.T) {
	rt := newRuntime(t)
	rt.cfg.AllowDegraded = true
	rt.report.Seccomp = false // as on a host without seccomp
	rt.cg = nil               // as on a host without the controllers
	rt.cfg.PoolSize = -1
	spec := pySpec(`
import resource
st = dict(l.split(":\t") for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
print(st["Seccomp"].strip(), resource.getrlimit(resource.RLIMIT_AS)[0])
`)
	spec.Limits.MemoryBytes = 256 << 20
	res := mustRun(t, rt, spec)
	if got, want := strings.TrimSpace(string(res.Stdout)), "0 268435456"; got != want {
		t.Errorf("degraded run: seccomp mode and RLIMIT_AS = %q, want %q (stderr %s)", got, want, res.Stderr)
	}
	rt.cfg.AllowDegraded = false
	if _, err := rt.Run(context.Background(), pySpec("pass")); !errors.Is(err, sandbox.ErrUnavailable) {
		t.Errorf("without cgroups and without AllowDegraded: %v, want ErrUnavailable", err)
	}
}

// TestStreamedStdio: a long-lived program talks over its standard streams
// for the whole run (an MCP server on stdio): each line written reaches it
// and its answer comes back before stdin closes; closing stdin ends it.
func TestStreamedStdio(t *testing.T) {
	rt := newRuntime(t)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var stderr bytes.Buffer
	spec := &sandbox.Spec{Argv: []string{"/bin/cat"}, Level: sandbox.LevelStrict,
		Limits: sandbox.Limits{WallTime: time.Minute},
		Stdio:  &sandbox.Stdio{Stdin: inR, Stdout: outW, Stderr: &stderr}}
	done := make(chan *sandbox.Result, 1)
	go func() {
		res, err := rt.Run(t.Context(), spec)
		if err != nil {
			t.Error(err)
		}
		outW.Close()
		done <- res
	}()
	br := bufio.NewReader(outR)
	for i := range 3 {
		line := fmt.Sprintf("line %d\n", i)
		if _, err := io.WriteString(inW, line); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != line {
			t.Fatalf("echo %d: got %q, %v; want %q", i, got, err, line)
		}
	}
	inW.Close()
	res := <-done
	if res == nil || res.ExitCode != 0 || len(res.Stdout) != 0 {
		t.Fatalf("result %+v: want exit 0 and nothing buffered", res)
	}
	if err := (&sandbox.Spec{Argv: []string{"/bin/cat"}, Stdin: []byte("x"),
		Stdio: &sandbox.Stdio{Stdout: io.Discard, Stderr: io.Discard}}).Validate(); err == nil {
		t.Error("Stdio with Spec.Stdin accepted")
	}
}
