//go:build !unix

package datadir

import "os"

// openFlags: no O_NOFOLLOW / O_NONBLOCK outside Unix; readPrivate still
// refuses anything that is not a regular file.
const openFlags = 0

// lockFile: no advisory locks outside Unix; the lock file only marks use.
func lockFile(*os.File) error { return nil }
