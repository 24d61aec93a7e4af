//go:build unix

package files

import (
	"io/fs"
	"os"
	"syscall"
)

// openReadFlags opens an existing path for inspection or reading without
// side effects that a special file could cause: O_NONBLOCK so opening a
// FIFO returns at once instead of waiting for a writer, O_NOCTTY so a
// terminal device never becomes the controlling terminal. os.Root adds
// O_NOFOLLOW and O_CLOEXEC itself and resolves symlinks only inside the
// root.
const openReadFlags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY

// linkCount returns the hard link count of fi (from fstat or lstat); ok is
// false when the platform does not report one.
func linkCount(fi fs.FileInfo) (n uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true
}
