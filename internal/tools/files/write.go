package files

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

type writeArgs struct {
	Path    string  `json:"path"`
	Content *string `json:"content"`
}

// writeFile implements write_file.
//
// Arguments: {"path": string, "content": string}. Refusals, in order:
// READ_ONLY (Config.ReadOnly, before the arguments are read),
// INVALID_ARGUMENTS, TOO_LARGE (content longer than MaxWriteBytes bytes),
// then the path checks of checkPath (cleanPath and the deny-list,
// PATH_FORBIDDEN). The existing target, if any, must be a regular file
// with one hard link: a directory, special file or symlink is
// PATH_FORBIDDEN (a symlink resolving outside is PATH_OUTSIDE_WORKSPACE).
// The parent directory must exist (NOT_FOUND; no implicit mkdir).
//
// The write is atomic: the content goes to a new file named
// ".portcullis-tmp-<random>" in the target's directory, created with
// O_CREATE|O_EXCL (which never follows a symlink), fsynced and closed, then
// renamed over the target with os.Root.Rename. rename(2) replaces the
// directory entry and never follows it, so if the target is swapped for a
// symlink or hard link after the checks above, the swapped-in entry is
// replaced, and nothing it points to is written. On any failure the
// temporary file is removed. An existing target keeps its permission bits;
// a new file gets 0644 less the umask. Result: Structured is {"path",
// "bytes_written", "created" (bool)}.
func (w *Workspace) writeFile(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	if w.cfg.ReadOnly {
		return nil, readOnlyError()
	}
	if te := ctxError(ctx); te != nil {
		return nil, te
	}
	var a writeArgs
	if te := decodeArgs(raw, &a, "path", "content"); te != nil {
		return nil, te
	}
	if a.Content == nil {
		return nil, tool.Errorf(reason.InvalidArguments, errors.New("content missing"), "content is required")
	}
	if n := int64(len(*a.Content)); n > w.cfg.MaxWriteBytes {
		return nil, tool.Errorf(reason.TooLarge, fmt.Errorf("content %d bytes > limit %d", n, w.cfg.MaxWriteBytes),
			"content is %d bytes; the limit is %d bytes", n, w.cfg.MaxWriteBytes)
	}
	rel, _, te := w.checkPath(a.Path, true)
	if te != nil {
		return nil, te
	}
	if rel == "." {
		return nil, tool.Errorf(reason.PathForbidden, fmt.Errorf("%w: workspace root", errNotRegular), "%q: is a directory", clip(a.Path))
	}
	old, te := w.checkWriteTarget(rel)
	if te != nil {
		return nil, te
	}
	if strings.HasSuffix(a.Path, "/") { // "file/" names a directory
		return nil, tool.Errorf(reason.PathForbidden, errTrailingDir, "%q: not a regular file", clip(a.Path))
	}
	if err := w.replace(ctx, rel, []byte(*a.Content), old, nil); err != nil {
		return nil, err
	}
	n := len(*a.Content)
	return &tool.Result{
		Text: fmt.Sprintf("wrote %d bytes to %s", n, displayName(rel)),
		Structured: map[string]any{
			"path":          rel,
			"bytes_written": n,
			"created":       old == nil,
		},
	}, nil
}

// readOnlyError is the refusal of every mutating tool in a read-only
// workspace (Config.ReadOnly), given before the arguments are read.
func readOnlyError() *tool.Error {
	return tool.Errorf(reason.ReadOnly, nil, "%s", reason.Message(reason.ReadOnly))
}

// checkWriteTarget lstats rel and decides whether it may be replaced. It
// returns the target's lstat, or nil if it does not exist. A missing
// target is fine here (a missing parent is reported when the temporary
// file is created).
func (w *Workspace) checkWriteTarget(rel string) (fs.FileInfo, *tool.Error) {
	li, err := w.root.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, w.fsError(rel, err)
	}
	switch fileType(li.Mode()) {
	case typeSymlink:
		if _, err := w.root.Stat(rel); err != nil && errors.Is(err, w.escapeErr) {
			return nil, w.fsError(rel, err)
		}
		return nil, tool.Errorf(reason.PathForbidden, errSymlink,
			"%q: is a symbolic link; write to its target instead", clip(rel))
	case typeDir:
		return nil, tool.Errorf(reason.PathForbidden, fmt.Errorf("%w: is a directory", errNotRegular),
			"%q: is a directory", clip(rel))
	}
	if te := checkRegular(rel, li); te != nil {
		return nil, te
	}
	return li, nil
}

// replace writes data to a temporary file beside rel and renames it over
// rel. old is the target's lstat (nil when it does not exist): an existing
// target's permission bits are kept. precheck, if not nil, runs last
// before the rename, with the parent directory and the target's name in
// it, and may veto the rename.
//
// The parent directory is opened once, through the root, as a Root of its
// own (os.Root.OpenRoot): creating the temporary file, the rename and the
// clean-up all act on single names in that one directory. If the
// directory's path is swapped for a link (inside or out) during the call,
// the file still lands where it was created, and the temporary file can
// still be removed. The temporary file is removed on any failure.
func (w *Workspace) replace(ctx context.Context, rel string, data []byte, old fs.FileInfo,
	precheck func(dir *os.Root, name string) *tool.Error) (err error) {
	perm, exists := fs.FileMode(0o644), old != nil
	if exists {
		perm = old.Mode().Perm()
	}
	dir, name := path.Dir(rel), path.Base(rel)
	d, err := w.root.OpenRoot(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return tool.Errorf(reason.NotFound, err, "%q: parent directory does not exist", clip(dir))
		}
		return w.fsError(rel, err)
	}
	defer d.Close()
	tmp := tempPrefix + rand.Text()
	f, err := d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return w.fsError(rel, err)
	}
	closed := false
	defer func() {
		if err == nil {
			return
		}
		if !closed {
			f.Close()
		}
		// Best effort: the rename did not happen, so tmp is still ours.
		if rmErr := d.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			if te, ok := tool.AsError(err); ok {
				te.Err = errors.Join(te.Err, fmt.Errorf("removing temporary file: %w", rmErr))
			}
		}
	}()

	if exists {
		// fchmod on our descriptor: keep the target's bits exactly,
		// undoing the umask applied at creation.
		if err := f.Chmod(perm); err != nil {
			return w.fsError(rel, err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return w.fsError(rel, err)
	}
	if err := f.Sync(); err != nil {
		return w.fsError(rel, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return w.fsError(rel, err)
	}
	if w.beforeRename != nil {
		if err := w.beforeRename(path.Join(dir, tmp)); err != nil {
			return tool.Errorf(reason.ToolFailed, err, "%s", reason.Message(reason.ToolFailed))
		}
	}
	if te := ctxError(ctx); te != nil { // last chance to back out
		return te
	}
	if precheck != nil {
		if te := precheck(d, name); te != nil {
			return te
		}
	}
	if err := d.Rename(tmp, name); err != nil {
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENOTEMPTY) {
			return tool.Errorf(reason.PathForbidden, err, "%q: is a directory", clip(rel))
		}
		return w.fsError(rel, err)
	}
	if df, err := d.OpenFile(".", openReadFlags, 0); err == nil { // best effort: make the rename durable
		_ = df.Sync()
		df.Close()
	}
	return nil
}

// syncDir fsyncs directory dir so the rename is durable. It is best effort:
// the file has already been replaced, so a failure here is not reported.
func (w *Workspace) syncDir(dir string) {
	d, err := w.root.OpenFile(dir, openReadFlags, 0)
	if err != nil {
		return
	}
	defer d.Close()
	if fi, err := d.Stat(); err == nil && fi.IsDir() {
		_ = d.Sync()
	}
}
