package files

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"syscall"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// errNoReplaceUnsupported reports that the platform or file system has no
// atomic rename-without-replace; rename falls back to check-then-rename.
var errNoReplaceUnsupported = errors.New("rename without replace unsupported")

func moveFileDef() tool.Definition {
	return tool.Definition{
		Name:  ToolMoveFile,
		Title: "Move file",
		Description: "Move or rename a regular file or a directory inside the workspace. " +
			"The destination must not exist (nothing is ever replaced) and its parent directory must exist. Symbolic links are not moved.",
		InputSchema: objectSchema([]string{"source", "destination"}, []string{"source", "destination"}, map[string]*jsonschema.Schema{
			"source":      pathSchema("Existing file or directory to move. " + pathDesc),
			"destination": pathSchema("New path; must not exist yet. " + pathDesc),
		}),
		Sensitivity: tool.Medium,
		// Not destructive (MCP destructiveHint false): it never replaces or
		// deletes content, only renames.
		Labels: []string{"filesystem", "write"},
	}
}

func deleteFileDef() tool.Definition {
	return tool.Definition{
		Name:  ToolDeleteFile,
		Title: "Delete file",
		Description: "Delete a regular file, a symbolic link (the link only, never its target) or an empty directory in the workspace. " +
			"Non-empty directories are refused.",
		InputSchema: objectSchema([]string{"path"}, []string{"path"}, map[string]*jsonschema.Schema{
			"path": pathSchema(pathDesc),
		}),
		Sensitivity: tool.High,
		Destructive: true,
		Labels:      []string{"filesystem", "write", "delete"},
	}
}

type moveArgs struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
}

// moveFile implements move_file.
//
// Arguments: {"source": string, "destination": string}. Both are checked
// by checkPath without following their last component (so both are names
// in the workspace, and the deny-list applies to both). Refusals, in
// order: READ_ONLY, INVALID_ARGUMENTS, path checks, PATH_FORBIDDEN for the
// workspace root as either side, NOT_FOUND for a missing source, then by
// the source's type:
//   - regular file: must have one hard link (PATH_FORBIDDEN);
//   - directory: refused (PATH_FORBIDDEN) when a multi-component deny rule
//     could match below source or destination (moving ".git" elsewhere
//     would expose ".git/config"); moving it into itself is TOOL_FAILED;
//   - symbolic link, device, FIFO, socket: PATH_FORBIDDEN. (Moving a
//     relative link changes what it points to.)
//
// An existing destination, of any type, is ALREADY_EXISTS: move_file never
// replaces. On Linux the rename is renameat2(RENAME_NOREPLACE) on parent
// directories opened through the root, so a destination created
// concurrently is not replaced either; elsewhere, or on a file system
// without that flag, it is an lstat then os.Root.Rename, and such a
// concurrent creation may be replaced (inside the workspace only). Neither
// form follows the final component of either path. Relative symbolic
// links inside a moved directory move with it unchanged. Result:
// Structured is {"source", "destination", "type" ("file" or "dir")}.
func (w *Workspace) moveFile(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	if w.cfg.ReadOnly {
		return nil, readOnlyError()
	}
	if te := ctxError(ctx); te != nil {
		return nil, te
	}
	var a moveArgs
	if te := decodeArgs(raw, &a, "source", "destination"); te != nil {
		return nil, te
	}
	src, srcCanon, te := w.checkPath(a.Source, false)
	if te != nil {
		return nil, te
	}
	dst, dstCanon, te := w.checkPath(a.Destination, false)
	if te != nil {
		return nil, te
	}
	if src == "." || dst == "." {
		return nil, tool.Errorf(reason.PathForbidden, errors.New("workspace root as source or destination"),
			"the workspace root cannot be moved or replaced")
	}
	li, err := w.root.Lstat(src)
	if err != nil {
		return nil, w.fsError(src, err)
	}
	typ := fileType(li.Mode())
	switch typ {
	case typeSymlink:
		return nil, tool.Errorf(reason.PathForbidden, errSymlink, "%q: is a symbolic link; symbolic links are not moved", clip(src))
	case typeDir:
		for _, c := range []struct{ client, p string }{
			{a.Source, src}, {a.Source, srcCanon}, {a.Destination, dst}, {a.Destination, dstCanon},
		} {
			if pat, bad := w.deniedBelow(c.p); bad {
				return nil, deniedError(c.client, pat)
			}
		}
		if under(dst, src) || under(dstCanon, srcCanon) {
			return nil, tool.Errorf(reason.ToolFailed, errors.New("destination inside source"),
				"cannot move %q into itself", clip(src))
		}
	default:
		if te := checkRegular(src, li); te != nil {
			return nil, te
		}
		if strings.HasSuffix(a.Source, "/") {
			return nil, tool.Errorf(reason.PathForbidden, errTrailingDir, "%q: not a directory", clip(a.Source))
		}
		if strings.HasSuffix(a.Destination, "/") {
			return nil, tool.Errorf(reason.PathForbidden, errTrailingDir,
				"%q: ends in '/' but %q is not a directory", clip(a.Destination), clip(src))
		}
	}
	switch _, err := w.root.Lstat(dst); {
	case err == nil:
		return nil, existsError(dst)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, w.fsError(dst, err)
	}
	if fi, err := w.root.Stat(path.Dir(dst)); err != nil || !fi.IsDir() {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, w.fsError(dst, err)
		}
		return nil, tool.Errorf(reason.NotFound, fmt.Errorf("destination parent: %w", err),
			"%q: parent directory does not exist", clip(path.Dir(dst)))
	}
	if te := ctxError(ctx); te != nil {
		return nil, te
	}
	if err := w.rename(src, dst); err != nil {
		return nil, w.renameError(src, dst, err)
	}
	w.syncDir(path.Dir(src))
	if path.Dir(dst) != path.Dir(src) {
		w.syncDir(path.Dir(dst))
	}
	return &tool.Result{
		Text: fmt.Sprintf("moved %s %s to %s", typ, displayName(src), displayName(dst)),
		Structured: map[string]any{
			"source":      src,
			"destination": dst,
			"type":        typ,
		},
	}, nil
}

// under reports whether p is dir or lies below it (clean relative paths).
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func existsError(dst string) *tool.Error {
	return tool.Errorf(reason.AlreadyExists, syscall.EEXIST,
		"destination %q already exists; move_file never replaces", clip(dst))
}

// rename moves src to dst without replacing an existing dst: atomically
// where renameNoReplace is supported, else by an lstat and os.Root.Rename.
func (w *Workspace) rename(src, dst string) error {
	err := w.renameNoReplace(src, dst)
	if !errors.Is(err, errNoReplaceUnsupported) {
		return err
	}
	if _, err := w.root.Lstat(dst); err == nil {
		return &fs.PathError{Op: "rename", Path: dst, Err: syscall.EEXIST}
	}
	return w.root.Rename(src, dst)
}

// renameError maps a failed rename to a *tool.Error.
func (w *Workspace) renameError(src, dst string, err error) *tool.Error {
	switch {
	case errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOTEMPTY):
		return existsError(dst)
	case errors.Is(err, syscall.EINVAL):
		return tool.Errorf(reason.ToolFailed, err, "cannot move %q into itself", clip(src))
	case errors.Is(err, syscall.EXDEV):
		return tool.Errorf(reason.ToolFailed, err, "cannot move %q to %q: different file systems", clip(src), clip(dst))
	case errors.Is(err, w.escapeErr):
		return w.fsError(dst, err)
	default:
		return w.fsError(src, err)
	}
}

// deleteFile implements delete_file.
//
// Arguments: {"path": string}, checked by checkPath without following the
// last component. Refusals, in order: READ_ONLY, INVALID_ARGUMENTS, path
// checks, PATH_FORBIDDEN for the workspace root, NOT_FOUND, then by type:
//   - regular file: must have one hard link (PATH_FORBIDDEN, like every
//     file tool);
//   - symbolic link: the link itself is removed, never its target, wherever
//     it points;
//   - directory: only when empty; a non-empty one is TOOL_FAILED
//     ("directory is not empty"): nothing is ever removed recursively;
//   - device, FIFO, socket: PATH_FORBIDDEN.
//
// Removal is os.Root.Remove (unlinkat through the root, never following
// the last component). If the entry is swapped between the type check and
// the removal, what is removed is still only that name inside the
// workspace. Result: Structured is {"path", "type"}.
func (w *Workspace) deleteFile(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	if w.cfg.ReadOnly {
		return nil, readOnlyError()
	}
	if te := ctxError(ctx); te != nil {
		return nil, te
	}
	var a pathArgs
	if te := decodeArgs(raw, &a, "path"); te != nil {
		return nil, te
	}
	rel, _, te := w.checkPath(a.Path, false)
	if te != nil {
		return nil, te
	}
	if rel == "." {
		return nil, tool.Errorf(reason.PathForbidden, errors.New("workspace root"), "the workspace root cannot be deleted")
	}
	li, err := w.root.Lstat(rel)
	if err != nil {
		return nil, w.fsError(rel, err)
	}
	typ := fileType(li.Mode())
	switch typ {
	case typeSymlink, typeDir:
	default:
		if te := checkRegular(rel, li); te != nil {
			return nil, te
		}
	}
	if typ != typeDir && strings.HasSuffix(a.Path, "/") {
		return nil, tool.Errorf(reason.PathForbidden, errTrailingDir, "%q: not a directory", clip(a.Path))
	}
	if te := ctxError(ctx); te != nil {
		return nil, te
	}
	if err := w.root.Remove(rel); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return nil, tool.Errorf(reason.ToolFailed, err, "%q: directory is not empty; delete its entries first", clip(rel))
		}
		return nil, w.fsError(rel, err)
	}
	w.syncDir(path.Dir(rel))
	return &tool.Result{
		Text:       fmt.Sprintf("deleted %s %s", typ, displayName(rel)),
		Structured: map[string]any{"path": rel, "type": typ},
	}, nil
}
