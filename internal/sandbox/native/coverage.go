//go:build linux

package native

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// Coverage of the code that runs inside the sandbox. The init is this
// package's test binary re-executed; it ends behind pivot_root as an
// unmapped host id, so Go's coverage tooling would count all of it as
// never run. When the package's tests run with -cover (main_test.go) they
// set testCoverDir to the run's coverage directory and testInitCoverDir
// to a directory the init can write; the parent passes the latter to the
// init as a descriptor (baseSpec.CoverFD), the init writes its coverage
// data there through /proc/self/fd/N on its way out (initExitHook), and
// the parent moves the files next to the test binary's own, where
// `go test -cover` merges them (same binary, same meta-data hash).
// Outside those tests all of this is inert: the variables are empty and
// the hook is nil.
var (
	testCoverDir     string
	testInitCoverDir string
	// initExitHook, if set, runs in the init after it has reported its
	// status, just before it exits, with baseSpec.CoverFD.
	initExitHook func(coverFD int)
)

// collectCoverage moves the coverage files inits wrote into testCoverDir.
// Every init is PID 1 of its namespace, so counter files are renamed
// covcounters.<hash>.<host pid>.<unique> to keep them apart.
func collectCoverage(hostPID int) error {
	ents, err := os.ReadDir(testInitCoverDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		src := filepath.Join(testInitCoverDir, e.Name())
		dst := filepath.Join(testCoverDir, e.Name())
		if parts := strings.Split(e.Name(), "."); parts[0] == "covcounters" && len(parts) == 4 {
			dst = filepath.Join(testCoverDir, fmt.Sprintf("covcounters.%s.%d.%d", parts[1], hostPID, coverSeq.Add(1)))
		}
		if err := os.Rename(src, dst); err != nil && !os.IsNotExist(err) { // a concurrent run may have moved it
			return err
		}
	}
	return nil
}

var coverSeq atomic.Int64
