//go:build linux

package files

import (
	"errors"
	"os"
	"path"
	"syscall"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames src to dst (clean, workspace-relative, neither
// ".") with renameat2(RENAME_NOREPLACE): atomically, failing with EEXIST
// if dst exists, whatever it is. The two parent directories are opened
// through the root (O_DIRECTORY; links among their components are followed
// only inside the root, as for any os.Root call) and the rename acts on
// single names relative to those descriptors, which renameat2 never
// follows: this is what os.Root.Rename does, plus the flag. It returns
// errNoReplaceUnsupported when the kernel or file system lacks the flag
// (ENOSYS, EINVAL); EINVAL is also a directory moved into itself, which
// the fallback then reports.
func (w *Workspace) renameNoReplace(src, dst string) error {
	sd, err := w.root.OpenFile(path.Dir(src), openReadFlags|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer sd.Close()
	dd, err := w.root.OpenFile(path.Dir(dst), openReadFlags|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer dd.Close()
	err = withFd(sd, func(sfd int) error {
		return withFd(dd, func(dfd int) error {
			return unix.Renameat2(sfd, path.Base(src), dfd, path.Base(dst), unix.RENAME_NOREPLACE)
		})
	})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return errNoReplaceUnsupported
	}
	if err != nil {
		return &os.LinkError{Op: "renameat2", Old: src, New: dst, Err: err}
	}
	return nil
}

// withFd runs fn with f's descriptor, kept open for the duration (unlike
// File.Fd, it leaves f in non-blocking mode).
func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
