//go:build unix

package datadir

import (
	"os"
	"syscall"
)

// openFlags harden opening a secret file: O_NOFOLLOW refuses a symbolic
// link in the last path component (the secret must be the file in the
// private data dir, not whatever a link points at), and O_NONBLOCK keeps a
// FIFO planted at the path from blocking open forever (it is then refused
// as not a regular file).
const openFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// lockFile takes an exclusive, non-blocking flock on f.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
