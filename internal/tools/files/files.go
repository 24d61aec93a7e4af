// Package files implements the built-in file tools (list_directory,
// read_file, search_files, file_info, write_file, edit_file, move_file,
// delete_file), confined to one workspace directory.
//
// Confinement rests on os.Root (Go 1.24+): every path is resolved relative
// to a directory file descriptor, ".." and symbolic links are followed only
// while they stay inside the root, and absolute symbolic links are refused.
// On top of that the package refuses, fail closed:
//
//   - absolute paths, NUL bytes and lexical ".." escapes before any system
//     call (PATH_OUTSIDE_WORKSPACE / PATH_FORBIDDEN);
//   - any path that resolves outside the root, including through a symlink
//     to a sibling whose name has the workspace's name as a prefix
//     (/tmp/ws -> /tmp/ws-evil; the CVE-2025-53109/53110 class);
//   - reads, writes, edits, moves and deletes of devices, FIFOs and
//     sockets, and of regular files with more than one hard link, which may
//     be the other name of a file outside the workspace (directories are
//     listed, searched, moved and, when empty, deleted; symbolic links are
//     followed inside the root, except that file_info describes a link,
//     delete_file removes only the link and move_file refuses to move one);
//   - names on a configurable deny-list (Config.Deny, default DefaultDeny():
//     ".env", "*.pem", "id_rsa*", ".git/config", ...), checked against the
//     path as given and as resolved through links inside the workspace,
//     for every tool (PATH_FORBIDDEN); search_files skips them;
//   - every mutating tool (write_file, edit_file, move_file, delete_file)
//     in a read-only workspace (READ_ONLY).
//
// Every file system operation, rename and remove included, goes through
// the *os.Root (or, for move_file on Linux, through directory descriptors
// opened with it), so a directory swapped for a symlink during a call
// cannot make it act outside the root.
//
// Reads open first (O_RDONLY|O_NONBLOCK|O_NOCTTY, so a FIFO cannot block
// and a terminal cannot become the controlling tty) and then check the
// opened descriptor with fstat; there is no stat-then-open window. Writes
// (write_file, edit_file) open the target's directory once, through the
// root, go to a fresh temporary file (O_CREATE|O_EXCL) in it and are
// renamed over the target there; rename never follows the final component,
// so a racing swap of the target for a symlink or hard link cannot redirect
// the write, and a racing swap of the directory cannot strand the
// temporary file.
//
// Percent-encodings and backslashes are ordinary file-name characters: the
// path "%2e%2e%2f" names a file of that name inside the workspace.
//
// Client-visible messages (tool.Error.Msg) never contain host paths or OS
// error strings; the cause is kept in tool.Error.Err for the audit log.
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
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// Default limits applied when a Config field is zero.
const (
	// DefaultMaxReadBytes is the default cap on bytes returned by one
	// read_file call (1 MiB).
	DefaultMaxReadBytes int64 = 1 << 20
	// DefaultMaxWriteBytes is the default cap on write_file content
	// (10 MiB).
	DefaultMaxWriteBytes int64 = 10 << 20
	// DefaultMaxListEntries is the default cap on entries returned by one
	// list_directory call.
	DefaultMaxListEntries = 1000
	// DefaultMaxSearchResults is the default cap on matches returned by one
	// search_files call.
	DefaultMaxSearchResults = 200
	// DefaultMaxSearchEntries is the default cap on directory entries one
	// search_files call examines.
	DefaultMaxSearchEntries = 20000
	// DefaultMaxSearchBytes is the default cap on file bytes one
	// search_files call reads for content matching (16 MiB).
	DefaultMaxSearchBytes int64 = 16 << 20
)

// Tool names. They are public contract: clients and policies refer to them.
const (
	ToolListDirectory = "list_directory"
	ToolReadFile      = "read_file"
	ToolSearchFiles   = "search_files"
	ToolFileInfo      = "file_info"
	ToolWriteFile     = "write_file"
	ToolEditFile      = "edit_file"
	ToolMoveFile      = "move_file"
	ToolDeleteFile    = "delete_file"
)

// maxPathBytes bounds the path argument (bytes). Linux PATH_MAX is 4096.
const maxPathBytes = 4096

// tempPrefix starts the name of every temporary file write_file creates.
const tempPrefix = ".portcullis-tmp-"

// Errors returned by New, wrapped with the offending detail.
var (
	// ErrInvalidConfig reports a Config that cannot be used (empty root,
	// negative limits).
	ErrInvalidConfig = errors.New("files: invalid config")
	// ErrRoot reports a workspace root that is missing, is not a
	// directory, or cannot be opened.
	ErrRoot = errors.New("files: bad workspace root")
)

// Causes recorded in tool.Error.Err (audit only).
var (
	errNotRegular   = errors.New("not a regular file")
	errNotDir       = errors.New("not a directory")
	errHardLink     = errors.New("regular file has more than one hard link")
	errSymlink      = errors.New("final path component is a symbolic link")
	errNoLinkCount  = errors.New("link count unavailable")
	errLexicalEsc   = errors.New("path escapes the workspace lexically")
	errAbsolute     = errors.New("absolute path")
	errNUL          = errors.New("path contains NUL")
	errTrailingDir  = errors.New("path ends in a slash")
	errEscapeProbe  = errors.New("os.Root did not report an escape for \"..\"")
	errPathTooLong  = errors.New("path too long")
	errEmptyPath    = errors.New("empty path")
	errTrailingData = errors.New("trailing data after arguments object")
)

// Config configures the workspace.
type Config struct {
	// Root is the workspace directory. It must exist and be a directory;
	// it is made absolute with filepath.Abs. Symbolic links in Root itself
	// are followed once, when the workspace is opened.
	Root string
	// ReadOnly makes every mutating tool (write_file, edit_file,
	// move_file, delete_file) refuse every call with reason.ReadOnly.
	ReadOnly bool
	// MaxReadBytes caps the bytes returned by one read_file call
	// (default DefaultMaxReadBytes; negative is an error).
	MaxReadBytes int64
	// MaxWriteBytes caps the content bytes of one write_file call
	// (default DefaultMaxWriteBytes; negative is an error).
	MaxWriteBytes int64
	// MaxListEntries caps the entries returned by one list_directory call
	// (default DefaultMaxListEntries; negative is an error). The result
	// says "truncated": true when entries were left off.
	MaxListEntries int
	// MaxSearchResults, MaxSearchEntries and MaxSearchBytes bound one
	// search_files call: matches returned, directory entries examined and
	// file bytes read for content matching (defaults
	// DefaultMaxSearchResults, DefaultMaxSearchEntries,
	// DefaultMaxSearchBytes; negative is an error). The result says
	// "truncated": true and which bound stopped it.
	MaxSearchResults int
	MaxSearchEntries int
	MaxSearchBytes   int64
	// Deny lists workspace paths no tool may read, list, write, edit,
	// move or delete, and search_files skips (PATH_FORBIDDEN). A pattern
	// without '/' is a path.Match glob matched against every component of
	// a path ("*.pem" covers "a/key.pem" and everything under a directory
	// "x.pem/"); one with '/' is matched component by component from the
	// workspace root and covers what lies below (".git/config",
	// ".git/hooks"). Matching ignores case. "**", absolute patterns and
	// "."/".." components are invalid (ErrInvalidConfig). Nil means
	// DefaultDeny(); an empty, non-nil slice disables the deny-list.
	Deny []string
}

// Workspace is an open workspace directory. Its methods and tools are safe
// for concurrent use.
type Workspace struct {
	root *os.Root
	cfg  Config
	deny []denyRule // compiled cfg.Deny
	// escapeErr is os.Root's (unexported) "path escapes from parent"
	// sentinel, captured in New so errors.Is can recognise it.
	escapeErr error
	// beforeRename, if set (tests only), runs in write_file after the
	// temporary file tmp (root-relative) is complete, before the final
	// context check and the rename over the target.
	beforeRename func(tmp string) error
}

// New validates cfg, applies defaults and opens the workspace root with
// os.OpenRoot. It returns an error wrapping ErrInvalidConfig for an empty
// Root or negative limits and ErrRoot when Root does not exist, is not a
// directory or cannot be opened. The caller must Close the Workspace.
func New(cfg Config) (*Workspace, error) {
	if cfg.Root == "" {
		return nil, fmt.Errorf("%w: Root is empty", ErrInvalidConfig)
	}
	if strings.IndexByte(cfg.Root, 0) >= 0 {
		return nil, fmt.Errorf("%w: Root contains NUL", ErrInvalidConfig)
	}
	if cfg.MaxReadBytes < 0 || cfg.MaxWriteBytes < 0 || cfg.MaxListEntries < 0 ||
		cfg.MaxSearchResults < 0 || cfg.MaxSearchEntries < 0 || cfg.MaxSearchBytes < 0 {
		return nil, fmt.Errorf("%w: negative limit (MaxReadBytes=%d MaxWriteBytes=%d MaxListEntries=%d "+
			"MaxSearchResults=%d MaxSearchEntries=%d MaxSearchBytes=%d)",
			ErrInvalidConfig, cfg.MaxReadBytes, cfg.MaxWriteBytes, cfg.MaxListEntries,
			cfg.MaxSearchResults, cfg.MaxSearchEntries, cfg.MaxSearchBytes)
	}
	if cfg.Deny == nil {
		cfg.Deny = DefaultDeny()
	} else {
		cfg.Deny = slices.Clone(cfg.Deny)
	}
	deny, err := compileDeny(cfg.Deny)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.MaxReadBytes == 0 {
		cfg.MaxReadBytes = DefaultMaxReadBytes
	}
	if cfg.MaxWriteBytes == 0 {
		cfg.MaxWriteBytes = DefaultMaxWriteBytes
	}
	if cfg.MaxListEntries == 0 {
		cfg.MaxListEntries = DefaultMaxListEntries
	}
	if cfg.MaxSearchResults == 0 {
		cfg.MaxSearchResults = DefaultMaxSearchResults
	}
	if cfg.MaxSearchEntries == 0 {
		cfg.MaxSearchEntries = DefaultMaxSearchEntries
	}
	if cfg.MaxSearchBytes == 0 {
		cfg.MaxSearchBytes = DefaultMaxSearchBytes
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoot, err)
	}
	cfg.Root = abs
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s does not exist", ErrRoot, abs)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrRoot, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%w: %s is not a directory", ErrRoot, abs)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoot, err)
	}
	escapeErr, err := probeEscapeError(root)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("%w: %w", ErrRoot, err)
	}
	return &Workspace{root: root, cfg: cfg, deny: deny, escapeErr: escapeErr}, nil
}

// probeEscapeError returns the error value os.Root wraps in a *PathError
// when a path escapes the root. The standard library does not export it,
// so ask the root for ".." (refused lexically, no system call) and keep the
// inner error. Without it escapes could not be told apart from other
// failures, so New fails closed.
func probeEscapeError(root *os.Root) (error, error) {
	_, err := root.Lstat("..")
	var pe *fs.PathError
	if err == nil || !errors.As(err, &pe) || pe.Err == nil {
		return nil, fmt.Errorf("%w (got %v)", errEscapeProbe, err)
	}
	return pe.Err, nil
}

// Close closes the workspace root. Calls in flight finish; later calls fail.
func (w *Workspace) Close() error { return w.root.Close() }

// Tools returns the eight file tools, in this order: list_directory,
// read_file, write_file, file_info (the original four, order kept),
// search_files, edit_file, move_file, delete_file. In a read-only
// workspace the mutating tools are still listed and refuse every call.
func (w *Workspace) Tools() []tool.Tool {
	return []tool.Tool{
		&tool.Func{Def: listDirectoryDef(), Fn: w.listDirectory},
		&tool.Func{Def: readFileDef(), Fn: w.readFile},
		&tool.Func{Def: writeFileDef(), Fn: w.writeFile},
		&tool.Func{Def: fileInfoDef(), Fn: w.fileInfo},
		&tool.Func{Def: searchFilesDef(), Fn: w.searchFiles},
		&tool.Func{Def: editFileDef(), Fn: w.editFile},
		&tool.Func{Def: moveFileDef(), Fn: w.moveFile},
		&tool.Func{Def: deleteFileDef(), Fn: w.deleteFile},
	}
}

// --- definitions -----------------------------------------------------------

func ptr[T any](v T) *T { return &v }

// pathSchema is the schema of every tool's "path" argument.
func pathSchema(desc string) *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:        "string",
		Description: desc,
		MinLength:   ptr(1),
		MaxLength:   ptr(maxPathBytes),
	}
}

// objectSchema returns an object schema with the given properties, in
// order, and additionalProperties: false ({"not": {}} marshals to false).
func objectSchema(required []string, order []string, props map[string]*jsonschema.Schema) *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:                 "object",
		Properties:           props,
		PropertyOrder:        order,
		Required:             required,
		AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
	}
}

const pathDesc = "Path relative to the workspace root, with '/' separators. Absolute paths and paths leaving the workspace are refused."

func listDirectoryDef() tool.Definition {
	return tool.Definition{
		Name:        ToolListDirectory,
		Title:       "List directory",
		Description: "List the entries of a directory in the workspace, sorted by name, with type (file, dir, symlink, other) and size.",
		InputSchema: objectSchema([]string{"path"}, []string{"path"}, map[string]*jsonschema.Schema{
			"path": pathSchema(pathDesc + ` "." is the workspace root.`),
		}),
		Sensitivity: tool.Low,
		ReadOnly:    true,
		Labels:      []string{"filesystem", "read"},
	}
}

func readFileDef() tool.Definition {
	return tool.Definition{
		Name:        ToolReadFile,
		Title:       "Read file",
		Description: "Read a regular file in the workspace. Returns UTF-8 text, or base64 in content_base64 when the bytes are not valid UTF-8.",
		InputSchema: objectSchema([]string{"path"}, []string{"path", "offset", "limit"}, map[string]*jsonschema.Schema{
			"path": pathSchema(pathDesc),
			"offset": {
				Type:        "integer",
				Description: "Byte offset to start reading at (default 0).",
				Minimum:     ptr(0.0),
			},
			"limit": {
				Type:        "integer",
				Description: "Maximum bytes to return (default and cap: the server's read limit).",
				Minimum:     ptr(1.0),
			},
		}),
		Sensitivity: tool.Low,
		ReadOnly:    true,
		Labels:      []string{"filesystem", "read"},
	}
}

func writeFileDef() tool.Definition {
	return tool.Definition{
		Name:        ToolWriteFile,
		Title:       "Write file",
		Description: "Atomically create or replace a regular file in the workspace with the given text. The parent directory must exist.",
		InputSchema: objectSchema([]string{"path", "content"}, []string{"path", "content"}, map[string]*jsonschema.Schema{
			"path":    pathSchema(pathDesc),
			"content": {Type: "string", Description: "The complete new file content (UTF-8 text)."},
		}),
		Sensitivity: tool.Medium,
		Destructive: true, // replaces existing content (MCP destructiveHint)
		Labels:      []string{"filesystem", "write"},
	}
}

func fileInfoDef() tool.Definition {
	return tool.Definition{
		Name:        ToolFileInfo,
		Title:       "File info",
		Description: "Report type, size, permission bits and modification time of a path in the workspace. Symbolic links are reported as links, not followed.",
		InputSchema: objectSchema([]string{"path"}, []string{"path"}, map[string]*jsonschema.Schema{
			"path": pathSchema(pathDesc),
		}),
		Sensitivity: tool.Low,
		ReadOnly:    true,
		Labels:      []string{"filesystem", "read"},
	}
}

// --- arguments -------------------------------------------------------------

// decodeArgs decodes the JSON object raw into v strictly: raw must be one
// JSON object (or empty/null, read as {}), every key must be one of
// allowed exactly (encoding/json would otherwise match keys
// case-insensitively), unknown fields and trailing data are refused. Any
// failure is reason.InvalidArguments.
func decodeArgs(raw json.RawMessage, v any, allowed ...string) *tool.Error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return tool.Errorf(reason.InvalidArguments, err, "arguments must be a JSON object")
	}
	for k := range keys {
		known := false
		for _, a := range allowed {
			if k == a {
				known = true
				break
			}
		}
		if !known {
			return tool.Errorf(reason.InvalidArguments, fmt.Errorf("unknown argument %q", k), "unknown argument %q", clip(k))
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return tool.Errorf(reason.InvalidArguments, err, "invalid arguments")
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return tool.Errorf(reason.InvalidArguments, errTrailingData, "invalid arguments")
	}
	return nil
}

// clip shortens s for a client message (client input only, never a host
// path) to at most 200 bytes.
func clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// cleanPath validates a client path and returns it cleaned, relative to the
// workspace root, using '/' separators ("." is the root). It refuses,
// before any system call:
//   - "" with reason.InvalidArguments (for every tool, list_directory
//     included: the root must be named ".");
//   - paths longer than maxPathBytes with reason.InvalidArguments;
//   - NUL bytes with reason.PathForbidden;
//   - absolute paths ("/etc/passwd", "//x") and paths whose cleaned form
//     starts with ".." with reason.PathOutsideWorkspace.
//
// Nothing is decoded: '%' and '\' are ordinary file-name bytes.
func cleanPath(p string) (string, *tool.Error) {
	switch {
	case p == "":
		return "", tool.Errorf(reason.InvalidArguments, errEmptyPath, "path is required")
	case len(p) > maxPathBytes:
		return "", tool.Errorf(reason.InvalidArguments, errPathTooLong, "path is too long")
	case strings.IndexByte(p, 0) >= 0:
		return "", tool.Errorf(reason.PathForbidden, errNUL, "path contains a NUL byte")
	case strings.HasPrefix(p, "/"):
		return "", tool.Errorf(reason.PathOutsideWorkspace, errAbsolute, "absolute paths are not allowed; use a path relative to the workspace")
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", tool.Errorf(reason.PathOutsideWorkspace, errLexicalEsc, "%q: %s", clip(p), reason.Message(reason.PathOutsideWorkspace))
	}
	return c, nil
}

// --- errors ----------------------------------------------------------------

// fsError maps an error from os.Root or an opened file to a *tool.Error.
// The client message names only the client's own path (rel); err, which
// may contain host paths, becomes the audit-only cause.
//
//   - os.Root escape (".." past the root, symlink leaving it, absolute
//     symlink) -> PATH_OUTSIDE_WORKSPACE
//   - ENOENT, ENOTDIR (a parent is not a directory) -> NOT_FOUND
//   - ELOOP (too many links), ENXIO (socket), EISDIR, EACCES/EPERM ->
//     PATH_FORBIDDEN
//   - ENAMETOOLONG -> INVALID_ARGUMENTS
//   - anything else -> TOOL_FAILED with a generic message
func (w *Workspace) fsError(rel string, err error) *tool.Error {
	q := clip(rel)
	switch {
	case errors.Is(err, w.escapeErr):
		return tool.Errorf(reason.PathOutsideWorkspace, err, "%q: %s", q, reason.Message(reason.PathOutsideWorkspace))
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return tool.Errorf(reason.NotFound, err, "%q: not found", q)
	case errors.Is(err, syscall.ELOOP):
		return tool.Errorf(reason.PathForbidden, err, "%q: too many levels of symbolic links", q)
	case errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.EISDIR):
		return tool.Errorf(reason.PathForbidden, err, "%q: not a regular file", q)
	case errors.Is(err, fs.ErrPermission):
		return tool.Errorf(reason.PathForbidden, err, "%q: permission denied", q)
	case errors.Is(err, syscall.ENAMETOOLONG):
		return tool.Errorf(reason.InvalidArguments, err, "%q: name too long", q)
	default:
		return tool.Errorf(reason.ToolFailed, err, "%q: %s", q, reason.Message(reason.ToolFailed))
	}
}

// ctxError returns reason.Cancelled (or Timeout) if ctx is done, else nil.
func ctxError(ctx context.Context) *tool.Error {
	err := ctx.Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return tool.Errorf(reason.Timeout, err, "%s", reason.Message(reason.Timeout))
	default:
		return tool.Errorf(reason.Cancelled, err, "%s", reason.Message(reason.Cancelled))
	}
}

// asErr converts a possibly-nil *tool.Error into an error without the
// typed-nil trap.
func asErr(te *tool.Error) error {
	if te == nil {
		return nil
	}
	return te
}
