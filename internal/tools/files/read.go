package files

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// Entry types reported by list_directory and file_info.
const (
	typeFile    = "file"
	typeDir     = "dir"
	typeSymlink = "symlink"
	typeOther   = "other"
)

// fileType names the type of m: "file", "dir", "symlink" or "other"
// (devices, FIFOs, sockets).
func fileType(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return typeFile
	case m.IsDir():
		return typeDir
	case m&fs.ModeSymlink != 0:
		return typeSymlink
	default:
		return typeOther
	}
}

// octalMode renders the permission, setuid, setgid and sticky bits of m as
// a Unix octal string such as "0644" or "4755".
func octalMode(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

// checkRegular refuses with reason.PathForbidden unless fi (from fstat of
// an open descriptor, or lstat) is a regular file with exactly one hard
// link. A second link may be the other name of a file outside the
// workspace; os.Root cannot see that, so such files are refused.
func checkRegular(rel string, fi fs.FileInfo) *tool.Error {
	q := clip(rel)
	if !fi.Mode().IsRegular() {
		return tool.Errorf(reason.PathForbidden,
			fmt.Errorf("%w (type %q, mode %v)", errNotRegular, fileType(fi.Mode()), fi.Mode().Type()),
			"%q: not a regular file", q)
	}
	n, ok := linkCount(fi)
	if !ok {
		return tool.Errorf(reason.PathForbidden, errNoLinkCount, "%q: %s", q, reason.Message(reason.PathForbidden))
	}
	if n > 1 {
		return tool.Errorf(reason.PathForbidden, fmt.Errorf("%w (%d links)", errHardLink, n),
			"%q: files with more than one hard link are not allowed", q)
	}
	return nil
}

// displayName returns name for a one-line text listing, quoted with
// strconv.Quote when it holds control or non-printable characters, so a
// file name cannot forge extra listing lines.
func displayName(name string) string {
	if !utf8.ValidString(name) || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(name)
	}
	return name
}

// --- list_directory ----------------------------------------------------------

type pathArgs struct {
	Path string `json:"path"`
}

// listDirectory implements list_directory.
//
// Arguments: {"path": string}, checked by checkPath (a deny-listed
// directory, or a link to one, is PATH_FORBIDDEN). Deny-listed entries of
// a listed directory are shown by name only, like every entry. Result:
// Text has one line per entry ("dir  name/", "file name 123", "link name@", "other name"); Structured
// is {"path": string, "entries": [{"name", "type", "size"}], "truncated":
// bool}, entries sorted by name (byte order) and cut to MaxListEntries.
// size is the byte size for files and 0 otherwise. Symlinks are listed, not
// followed, and their targets are not read (they may name host paths).
// Memory is proportional to the directory's full size (all entries are
// read to sort them before the cut).
func (w *Workspace) listDirectory(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	if te := ctxError(ctx); te != nil {
		return nil, te
	}
	var a pathArgs
	if te := decodeArgs(raw, &a, "path"); te != nil {
		return nil, te
	}
	rel, _, te := w.checkPath(a.Path, true)
	if te != nil {
		return nil, te
	}
	f, err := w.root.OpenFile(rel, openReadFlags, 0)
	if err != nil {
		return nil, w.fsError(rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, w.fsError(rel, err)
	}
	if !fi.IsDir() {
		return nil, tool.Errorf(reason.PathForbidden, fmt.Errorf("%w (type %q)", errNotDir, fileType(fi.Mode())),
			"%q: not a directory", clip(rel))
	}
	// For a directory opened through os.Root, ReadDir lstats each entry
	// relative to the open descriptor (fstatat), so the metadata is of this
	// directory's entries even if rel is swapped concurrently, and entries
	// are never followed.
	dents, err := f.ReadDir(-1)
	if err != nil {
		return nil, w.fsError(rel, err)
	}
	slices.SortFunc(dents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	total := len(dents)
	truncated := total > w.cfg.MaxListEntries
	if truncated {
		dents = dents[:w.cfg.MaxListEntries]
	}

	entries := make([]map[string]any, 0, len(dents))
	var b strings.Builder
	for _, d := range dents {
		name := d.Name()
		typ, size := fileType(d.Type()), int64(0)
		if typ == typeFile {
			if fi, err := d.Info(); err == nil {
				size = fi.Size()
			}
		}
		entries = append(entries, map[string]any{"name": name, "type": typ, "size": size})
		dn := displayName(name)
		switch typ {
		case typeDir:
			fmt.Fprintf(&b, "dir  %s/\n", dn)
		case typeFile:
			fmt.Fprintf(&b, "file %s %d\n", dn, size)
		case typeSymlink:
			fmt.Fprintf(&b, "link %s@\n", dn)
		default:
			fmt.Fprintf(&b, "other %s\n", dn)
		}
	}
	if len(entries) == 0 {
		b.WriteString("(empty directory)\n")
	}
	if truncated {
		fmt.Fprintf(&b, "(truncated: showing %d of %d entries)\n", len(dents), total)
	}
	return &tool.Result{
		Text: b.String(),
		Structured: map[string]any{
			"path":      rel,
			"entries":   entries,
			"truncated": truncated,
		},
	}, nil
}

// --- read_file ---------------------------------------------------------------

type readArgs struct {
	Path   string `json:"path"`
	Offset *int64 `json:"offset"`
	Limit  *int64 `json:"limit"`
}

// readFile implements read_file.
//
// Arguments: {"path": string, "offset"?: integer >= 0 (bytes), "limit"?:
// integer >= 1 (bytes, capped at MaxReadBytes)}. The path is checked by
// checkPath (deny-list, following links inside the root); the file is
// then opened (non-blocking, through the root) and the open descriptor is
// checked with fstat: it must be a regular file with one hard link and,
// with a deny-list, the very file checkPath approved (sameFile); else
// PATH_FORBIDDEN. Result: Text is the bytes read when they are valid
// UTF-8; otherwise Text says so and Structured["content_base64"] holds them.
// Structured is {"path", "size" (bytes, at open), "offset", "bytes_read",
// "eof" (the bytes read reach the end of the file), "truncated" (the
// MaxReadBytes cap cut the read short), "encoding" ("utf-8" or "base64")}.
// A chunk that splits a multi-byte character is not valid UTF-8 and comes
// back as base64.
func (w *Workspace) readFile(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	if te := ctxError(ctx); te != nil {
		return nil, te
	}
	var a readArgs
	if te := decodeArgs(raw, &a, "path", "offset", "limit"); te != nil {
		return nil, te
	}
	rel, canon, te := w.checkPath(a.Path, true)
	if te != nil {
		return nil, te
	}
	var offset int64
	if a.Offset != nil {
		if *a.Offset < 0 {
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("offset %d", *a.Offset), "offset must be >= 0")
		}
		offset = *a.Offset
	}
	want, capped := w.cfg.MaxReadBytes, true
	if a.Limit != nil {
		if *a.Limit < 1 {
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("limit %d", *a.Limit), "limit must be >= 1")
		}
		if *a.Limit <= want {
			want, capped = *a.Limit, false
		}
	}

	f, err := w.root.OpenFile(rel, openReadFlags, 0)
	if err != nil {
		return nil, w.fsError(rel, err)
	}
	defer f.Close()
	fi, err := f.Stat() // fstat of the descriptor we will read: no TOCTOU
	if err != nil {
		return nil, w.fsError(rel, err)
	}
	if te := checkRegular(rel, fi); te != nil {
		return nil, te
	}
	if te := w.sameFile(a.Path, canon, fi); te != nil {
		return nil, te
	}
	if strings.HasSuffix(a.Path, "/") { // "file/" names a directory
		return nil, tool.Errorf(reason.PathForbidden, errTrailingDir, "%q: not a regular file", clip(a.Path))
	}
	size := fi.Size()
	n := want
	if rem := size - offset; rem < n {
		n = max(rem, 0)
	}
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, w.fsError(rel, err)
	}
	buf = buf[:got]
	eof := offset+int64(got) >= size

	st := map[string]any{
		"path":       rel,
		"size":       size,
		"offset":     offset,
		"bytes_read": got,
		"eof":        eof,
		"truncated":  !eof && capped,
	}
	res := &tool.Result{Structured: st}
	if utf8.Valid(buf) {
		st["encoding"] = "utf-8"
		res.Text = string(buf)
	} else {
		st["encoding"] = "base64"
		st["content_base64"] = base64.StdEncoding.EncodeToString(buf)
		res.Text = fmt.Sprintf("%d bytes at offset %d are not valid UTF-8; returned base64-encoded in content_base64", got, offset)
	}
	return res, nil
}

// --- file_info ---------------------------------------------------------------

// fileInfo implements file_info.
//
// Arguments: {"path": string}, checked by checkPath without following
// the last component (a deny-listed name is PATH_FORBIDDEN; a link to a
// deny-listed file is described as a link). It uses lstat, so a symlink is
// reported as type "symlink" and never followed for its metadata; a
// symlink that resolves outside the workspace is refused
// (PATH_OUTSIDE_WORKSPACE).
// Special files (devices, FIFOs, sockets) and regular files with more than
// one hard link are refused (PATH_FORBIDDEN), as read_file and write_file
// refuse them. Result: Structured is {"path", "type" ("file", "dir",
// "symlink"), "size" (bytes, lstat), "mode" (octal string, e.g. "0644"),
// "modified" (RFC 3339, UTC)}.
func (w *Workspace) fileInfo(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
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
	li, err := w.root.Lstat(rel)
	if err != nil {
		return nil, w.fsError(rel, err)
	}
	typ := fileType(li.Mode())
	switch typ {
	case typeSymlink:
		// Only classifies the link; the reported metadata is the link's.
		if _, err := w.root.Stat(rel); err != nil && errors.Is(err, w.escapeErr) {
			return nil, w.fsError(rel, err)
		}
	case typeFile:
		if te := checkRegular(rel, li); te != nil {
			return nil, te
		}
	case typeOther:
		return nil, asErr(checkRegular(rel, li))
	}
	mode := octalMode(li.Mode())
	mod := li.ModTime().UTC().Format(time.RFC3339)
	return &tool.Result{
		Text: fmt.Sprintf("%s %s: %d bytes, mode %s, modified %s", typ, displayName(rel), li.Size(), mode, mod),
		Structured: map[string]any{
			"path":     rel,
			"type":     typ,
			"size":     li.Size(),
			"mode":     mode,
			"modified": mod,
		},
	}, nil
}
