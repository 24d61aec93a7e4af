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
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

func newRuntime(t testing.TB) *Runtime {
	t.Helper()
	rt, err := New(Config{ReadOnlyPaths: systemPaths}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return rt
}

// shSpec runs script with /bin/sh -c.
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
