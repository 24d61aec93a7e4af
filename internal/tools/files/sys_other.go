//go:build !unix

package files

import (
	"io/fs"
	"os"
)

// openReadFlags: see sys_unix.go. Without O_NONBLOCK and O_NOCTTY the
// descriptor checks still run, but opening a FIFO may block.
const openReadFlags = os.O_RDONLY

// linkCount reports no link count, so reads and writes of regular files
// are refused (fail closed) on platforms without one.
func linkCount(fs.FileInfo) (uint64, bool) { return 0, false }
