//go:build !unix

package sqlquery

import (
	"io/fs"
	"os"
)

const openReadFlags = os.O_RDONLY

// linkCount cannot tell the link count here: every file is refused (fail
// closed), as in internal/tools/files.
func linkCount(fs.FileInfo) (uint64, bool) { return 0, false }

func isLoop(error) bool { return false }

func isBusy(error) bool { return false }
