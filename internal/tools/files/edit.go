package files

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// errChanged is the audit-only cause of an edit refused because the file
// changed between reading and replacing it.
var errChanged = errors.New("file changed during the edit")

func editFileDef() tool.Definition {
	return tool.Definition{
		Name:  ToolEditFile,
		Title: "Edit file",
		Description: "Replace one exact occurrence of old_text with new_text in a regular file in the workspace, atomically. " +
			"old_text must occur exactly once (byte for byte, line endings included); otherwise nothing is changed.",
		InputSchema: objectSchema([]string{"path", "old_text", "new_text"}, []string{"path", "old_text", "new_text"}, map[string]*jsonschema.Schema{
			"path":     pathSchema(pathDesc),
			"old_text": {Type: "string", Description: "Text to replace; must occur exactly once in the file. Include surrounding lines to make it unique.", MinLength: ptr(1)},
			"new_text": {Type: "string", Description: "Replacement text (may be empty to delete old_text)."},
		}),
		Sensitivity: tool.Medium,
		Destructive: true, // replaces existing content (MCP destructiveHint)
		Labels:      []string{"filesystem", "write"},
	}
}

type editArgs struct {
	Path    string  `json:"path"`
	OldText *string `json:"old_text"`
	NewText *string `json:"new_text"`
}

// editFile implements edit_file.
//
// Arguments: {"path": string, "old_text": non-empty string, "new_text":
// string}. Refusals, in order: READ_ONLY, INVALID_ARGUMENTS, the path
// checks of write_file (checkPath, then the target must be an existing
// regular file with one hard link, not a symlink: PATH_FORBIDDEN,
// NOT_FOUND), TOO_LARGE when the file or the edited content exceeds
// MaxWriteBytes. old_text is searched for byte for byte (no line-ending or
// Unicode normalisation); an overlapping second occurrence counts too. None
// is NOT_FOUND ("old_text not found"), several is TOOL_FAILED ("old_text
// found N times"): ordinary mistakes, so not codes that count as
// violations. Either way the file is left unchanged.
//
// The file is read from a descriptor opened through the root and checked
// (fstat) to be the entry checked before; the new content is written like
// write_file (temporary file, fsync, rename through the root), keeping the
// permission bits. Just before the rename the target is lstat'ed again, in
// the directory the rename acts in: if it is no longer the same file (the
// one read) with the same size and modification time,
// the edit is refused (TOOL_FAILED, "changed during the edit") rather than
// lose a concurrent write. Result: Structured is {"path", "bytes_written",
// "line" (1-based line where old_text started), "replacements": 1}.
func (w *Workspace) editFile(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	if w.cfg.ReadOnly {
		return nil, readOnlyError()
	}
	if te := ctxError(ctx); te != nil {
		return nil, te
	}
	var a editArgs
	if te := decodeArgs(raw, &a, "path", "old_text", "new_text"); te != nil {
		return nil, te
	}
	switch {
	case a.OldText == nil:
		return nil, tool.Errorf(reason.InvalidArguments, errors.New("old_text missing"), "old_text is required")
	case *a.OldText == "":
		return nil, tool.Errorf(reason.InvalidArguments, errors.New("old_text empty"), "old_text must not be empty")
	case a.NewText == nil:
		return nil, tool.Errorf(reason.InvalidArguments, errors.New("new_text missing"), "new_text is required")
	}
	rel, canon, te := w.checkPath(a.Path, true)
	if te != nil {
		return nil, te
	}
	q := clip(rel)
	if rel == "." {
		return nil, tool.Errorf(reason.PathForbidden, fmt.Errorf("%w: workspace root", errNotRegular), "%q: is a directory", q)
	}
	old, te := w.checkWriteTarget(rel)
	if te != nil {
		return nil, te
	}
	if old == nil {
		return nil, tool.Errorf(reason.NotFound, fs.ErrNotExist, "%q: not found", q)
	}
	if strings.HasSuffix(a.Path, "/") {
		return nil, tool.Errorf(reason.PathForbidden, errTrailingDir, "%q: not a regular file", clip(a.Path))
	}
	data, fi, te := w.readForEdit(rel, canon, old)
	if te != nil {
		return nil, te
	}

	oldText, newText := []byte(*a.OldText), []byte(*a.NewText)
	at := bytes.Index(data, oldText)
	if at < 0 {
		return nil, tool.Errorf(reason.NotFound, errors.New("old_text not found"), "old_text not found in %q; nothing was changed", q)
	}
	n := bytes.Count(data, oldText) // non-overlapping
	if n == 1 && bytes.Contains(data[at+1:], oldText) {
		n = 2 // "aa" in "aaa": an overlapping second occurrence is just as ambiguous
	}
	if n > 1 {
		return nil, tool.Errorf(reason.ToolFailed, fmt.Errorf("old_text found %d times", n),
			"old_text found %d times in %q; it must occur exactly once (include more surrounding text); nothing was changed", n, q)
	}
	size := int64(len(data) - len(oldText) + len(newText))
	if size > w.cfg.MaxWriteBytes {
		return nil, tool.Errorf(reason.TooLarge, fmt.Errorf("edited content %d bytes > limit %d", size, w.cfg.MaxWriteBytes),
			"the edited file would be %d bytes; the limit is %d bytes", size, w.cfg.MaxWriteBytes)
	}
	out := make([]byte, 0, size)
	out = append(append(append(out, data[:at]...), newText...), data[at+len(oldText):]...)

	unchanged := func(dir *os.Root, name string) *tool.Error {
		li, err := dir.Lstat(name)
		if err != nil || !os.SameFile(li, fi) || li.Size() != fi.Size() || !li.ModTime().Equal(fi.ModTime()) {
			return tool.Errorf(reason.ToolFailed, fmt.Errorf("%w (lstat err %v)", errChanged, err),
				"%q: changed during the edit; nothing was written, retry", q)
		}
		return nil
	}
	if err := w.replace(ctx, rel, out, fi, unchanged); err != nil {
		return nil, err
	}
	line := bytes.Count(data[:at], []byte{'\n'}) + 1
	return &tool.Result{
		Text: fmt.Sprintf("edited %s: replaced 1 occurrence at line %d (%d bytes)", displayName(rel), line, size),
		Structured: map[string]any{
			"path":          rel,
			"bytes_written": size,
			"line":          line,
			"replacements":  1,
		},
	}, nil
}

// readForEdit reads the whole of rel for edit_file. The descriptor is
// opened through the root (non-blocking) and must be a regular file with
// one link that is the entry old (lstat'ed by checkWriteTarget; a swap in
// between is refused) and, with a deny-list, the entry at canon. It returns
// the content and the descriptor's fstat.
func (w *Workspace) readForEdit(rel, canon string, old fs.FileInfo) ([]byte, fs.FileInfo, *tool.Error) {
	f, err := w.root.OpenFile(rel, openReadFlags, 0)
	if err != nil {
		return nil, nil, w.fsError(rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, w.fsError(rel, err)
	}
	if te := checkRegular(rel, fi); te != nil {
		return nil, nil, te
	}
	if !os.SameFile(fi, old) {
		return nil, nil, tool.Errorf(reason.ToolFailed, errChanged, "%q: changed during the edit; nothing was written, retry", clip(rel))
	}
	if te := w.sameFile(rel, canon, fi); te != nil {
		return nil, nil, te
	}
	if fi.Size() > w.cfg.MaxWriteBytes {
		return nil, nil, tool.Errorf(reason.TooLarge, fmt.Errorf("file %d bytes > limit %d", fi.Size(), w.cfg.MaxWriteBytes),
			"%q is %d bytes; edit_file handles files up to %d bytes", clip(rel), fi.Size(), w.cfg.MaxWriteBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, w.cfg.MaxWriteBytes+1))
	if err != nil {
		return nil, nil, w.fsError(rel, err)
	}
	if int64(len(data)) != fi.Size() { // grew or shrank while we read
		return nil, nil, tool.Errorf(reason.ToolFailed, errChanged, "%q: changed during the edit; nothing was written, retry", clip(rel))
	}
	return data, fi, nil
}
