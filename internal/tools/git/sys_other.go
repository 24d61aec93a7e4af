//go:build !unix

package git

import "io/fs"

// Open flags (no equivalents; the native sandbox needs Linux anyway).
const (
	oNoFollow = 0
	oNonBlock = 0
)

// linkCount is unavailable: files are refused as if linked twice.
func linkCount(fs.FileInfo) (uint64, bool) { return 0, false }
