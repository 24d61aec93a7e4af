//go:build linux

package native

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// TestProcessesOnlySandboxVisible lists /proc from inside: the only
// processes are the init (PID 1, the re-executed runtime), the program
// and the ls it started. The program is a child of the init, not PID 1.
//
// The program is not PID 2: the init is a Go binary whose runtime threads
// take the namespace's first thread ids before it forks.
func TestProcessesOnlySandboxVisible(t *testing.T) {
	rt := newRuntime(t)
	res := mustSucceed(t, rt, atLevel(sandbox.LevelStrict,
		shSpec(`echo "self $$"; grep '^PPid:' /proc/$$/status; tr '\0' ' ' </proc/1/cmdline; echo; ls /proc`)))
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if len(lines) < 4 {
		t.Fatalf("unexpected output %q", res.Stdout)
	}
	self, err := strconv.Atoi(strings.TrimPrefix(lines[0], "self "))
	if err != nil {
		t.Fatalf("pid line %q", lines[0])
	}
	if self == 1 {
		t.Errorf("the program is PID 1; the init must be")
	}
	if ppid := strings.Join(strings.Fields(lines[1]), " "); ppid != "PPid: 1" {
		t.Errorf("program's parent: %q, want PPid: 1", ppid)
	}
	if got, want := strings.TrimSpace(lines[2]), "portcullis-sandbox-init "+InitArg; got != want {
		t.Errorf("PID 1 is %q, want the sandbox init %q", got, want)
	}
	var pids []int
	for _, name := range lines[3:] {
		if n, err := strconv.Atoi(name); err == nil {
			pids = append(pids, n)
		}
	}
	// 1 (init), the shell, and ls (a child of the shell).
	if len(pids) != 3 || !slices.Contains(pids, 1) || !slices.Contains(pids, self) {
		t.Errorf("/proc lists pids %v; want exactly 1, %d and the ls process", pids, self)
	}
}

// TestInitCannotBeKilled has a shell signal PID 1: every signal is
// refused (different user, no capabilities, Landlock's signal scope) and
// the run is reported as usual by the surviving init. (TestEscapeInit
// Signals does the same from python at maximum and minimal.)
func TestInitCannotBeKilled(t *testing.T) {
	rt := newRuntime(t)
	res := mustSucceed(t, rt, atLevel(sandbox.LevelStrict, shSpec(`
for s in KILL TERM INT HUP STOP SEGV; do
  if kill -s $s 1 2>/dev/null; then echo "$s delivered"; else echo "$s refused"; fi
done
kill -s KILL -1 2>/dev/null; echo "broadcast done"
`)))
	want := "KILL refused\nTERM refused\nINT refused\nHUP refused\nSTOP refused\nSEGV refused\nbroadcast done\n"
	if diff := cmp.Diff(want, string(res.Stdout)); diff != "" {
		t.Errorf("signals to the init (-want +got):\n%s", diff)
	}
}

// TestBackgroundChildKilled leaves a child running and exits 0: the run
// ends when the program does (far before the child's 100 s and the wall
// limit), reports ORPHANS_KILLED, and no process of the run is left on
// the host.
func TestBackgroundChildKilled(t *testing.T) {
	tok := token(t)
	rt := newRuntime(t)
	spec := atLevel(sandbox.LevelStrict, shSpec(`sleep 100.`+tok+` & exit 0`))
	res := mustRun(t, rt, spec)
	if res.ExitCode != 0 || res.Signal != "" {
		t.Errorf("exit %d signal %q, want 0 and none", res.ExitCode, res.Signal)
	}
	if diff := cmp.Diff([]sandbox.ViolationCode{sandbox.ViolationOrphansKilled}, violationCodes(res)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	if res.WallTime >= spec.Limits.WallTime {
		t.Errorf("run took %s: it waited for the child instead of killing it", res.WallTime)
	}
	if left := hostProcsWith(t, tok); len(left) > 0 {
		t.Errorf("processes of the run survive on the host: %+v", left)
	}
}

// TestDaemonKilled double-forks into a new session with its output
// detached (a classic daemon): it is reparented to the init and killed
// with everything else when the program exits.
func TestDaemonKilled(t *testing.T) {
	tok := token(t)
	rt := newRuntime(t)
	spec := atLevel(sandbox.LevelStrict, shSpec(`setsid -f sh -c 'sleep 100.`+tok+`' </dev/null >/dev/null 2>&1; `+
		`setsid -f sleep 100.`+tok+` </dev/null >/dev/null 2>&1; `+
		// Wait until both daemons run sleep (their cmdline is "sleep\0100.<tok>").
		`n=0; while [ "$n" -lt 2 ]; do n=$(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n' | grep -c '^100\.`+tok+`$'); done; exit 0`))
	res := mustRun(t, rt, spec)
	if res.ExitCode != 0 {
		t.Errorf("exit %d, want 0 (stderr %s)", res.ExitCode, res.Stderr)
	}
	if !res.Has(sandbox.ViolationOrphansKilled) {
		t.Errorf("violations %v, want ORPHANS_KILLED", res.Violations)
	}
	if res.WallTime >= spec.Limits.WallTime {
		t.Errorf("run took %s: it waited for the daemon", res.WallTime)
	}
	if left := hostProcsWith(t, tok); len(left) > 0 {
		t.Errorf("daemonized processes survive on the host: %+v", left)
	}
}

// TestCancelKillsEverything cancels a run while its processes are seen
// running on the host (as the sandbox's host uid, the positive control of
// the scan): Run returns with CANCELLED, well before the wall limit, and
// none of them is left.
func TestCancelKillsEverything(t *testing.T) {
	tok := token(t)
	rt := newRuntime(t)
	spec := atLevel(sandbox.LevelStrict, shSpec(`sleep 100.`+tok+` & exec sleep 100.`+tok))
	spec.Limits.WallTime = time.Minute
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type outcome struct {
		res *sandbox.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := rt.Run(ctx, spec)
		done <- outcome{res, err}
	}()
	var running []hostProc
	waitFor(t, "both sleeps to run", func() bool {
		running = hostProcsWith(t, tok)
		return len(running) == 2
	})
	for _, p := range running {
		if p.UID != programHostID {
			t.Errorf("sandbox process %+v runs as host uid %d, want %d", p, p.UID, programHostID)
		}
	}
	cancel()
	o := <-done
	if o.err != nil {
		t.Fatalf("Run: %v", o.err)
	}
	if diff := cmp.Diff([]sandbox.ViolationCode{sandbox.ViolationCancelled}, violationCodes(o.res)); diff != "" {
		t.Errorf("violations (-want +got):\n%s", diff)
	}
	if o.res.ExitCode != -1 || o.res.Signal != "SIGKILL" {
		t.Errorf("exit %d signal %q, want -1 SIGKILL", o.res.ExitCode, o.res.Signal)
	}
	if o.res.WallTime >= spec.Limits.WallTime {
		t.Errorf("cancelled run took %s, the whole wall limit", o.res.WallTime)
	}
	if left := hostProcsWith(t, tok); len(left) > 0 {
		t.Errorf("processes survive cancellation: %+v", left)
	}
}
