//go:build !unix

package datadir

// openFlags: no O_NOFOLLOW / O_NONBLOCK outside Unix; readPrivate still
// refuses anything that is not a regular file.
const openFlags = 0
