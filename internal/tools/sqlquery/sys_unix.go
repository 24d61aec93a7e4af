//go:build unix

package sqlquery

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// openReadFlags opens a workspace file for reading without side effects
// a special file could cause: O_NONBLOCK (a FIFO does not block),
// O_NOCTTY (a terminal does not become the controlling terminal). os.Root
// adds O_NOFOLLOW and O_CLOEXEC and follows symbolic links only inside
// the root.
const openReadFlags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY

// linkCount returns the hard link count of fi; ok is false when the
// platform does not report one.
func linkCount(fi fs.FileInfo) (n uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true
}

// isLoop reports too many levels of symbolic links.
func isLoop(err error) bool { return errors.Is(err, syscall.ELOOP) }

// isBusy reports a lock held by another process.
func isBusy(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES)
}
