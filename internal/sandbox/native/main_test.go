//go:build linux

package native

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	initExitHook = func(coverFD int) { writeInitCoverage(m, coverFD) }
	Main() // become the sandbox init when re-executed
	flag.Parse()
	cleanup, err := setupInitCoverage()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox init coverage:", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	removeSysprobe()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// setupInitCoverage, when the tests run with coverage, gives the inits a
// directory they can write (they run as the sandbox's setup id) for their
// coverage data; see coverage.go.
func setupInitCoverage() (func(), error) {
	f := flag.Lookup("test.gocoverdir")
	if f == nil || f.Value.String() == "" || testing.CoverMode() == "" {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "sandbox-init-cover-")
	if err != nil {
		return nil, err
	}
	if err := os.Chown(dir, setupHostID, setupHostID); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	testCoverDir, testInitCoverDir = f.Value.String(), dir
	return func() { os.RemoveAll(dir) }, nil
}

// writeInitCoverage runs in a re-executed init just before it exits: it
// lets the test harness write this process's coverage data into the
// directory passed as spec.CoverFD (the harness does that at the end of
// m.Run; no test is run). Output is discarded so that nothing reaches the
// sandboxed program's stdout or stderr.
func writeInitCoverage(m *testing.M, coverFD int) {
	if coverFD == 0 {
		return
	}
	if null, err := unix.Open("/dev/null", unix.O_WRONLY, 0); err == nil {
		unix.Dup2(null, 1)
		unix.Dup2(null, 2)
	}
	args := []string{os.Args[0], "-test.run=^$", fmt.Sprintf("-test.gocoverdir=/proc/self/fd/%d", coverFD)}
	for _, a := range os.Args[2:] {
		if strings.HasPrefix(a, "-test.") && !strings.HasPrefix(a, "-test.run") && !strings.HasPrefix(a, "-test.gocoverdir") {
			args = append(args, a)
		}
	}
	os.Args = args
	m.Run()
}
