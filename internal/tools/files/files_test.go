package files

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// --- helpers -------------------------------------------------------------------

// newWorkspace opens a Workspace on cfg.Root, or on a fresh temporary
// directory when cfg.Root is empty, and closes it at the end of the test.
func newWorkspace(t testing.TB, cfg Config) (*Workspace, string) {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { w.Close() })
	return w, cfg.Root
}

// callTool calls the tool name of w with args marshalled to JSON
// (a json.RawMessage or string is sent as is).
func callTool(t testing.TB, w *Workspace, name string, args any) (*tool.Result, error) {
	t.Helper()
	return callToolCtx(context.Background(), t, w, name, args)
}

func callToolCtx(ctx context.Context, t testing.TB, w *Workspace, name string, args any) (*tool.Result, error) {
	t.Helper()
	var raw json.RawMessage
	switch a := args.(type) {
	case json.RawMessage:
		raw = a
	case string:
		raw = json.RawMessage(a)
	default:
		b, err := json.Marshal(args)
		if err != nil {
			t.Fatalf("marshal args: %v", err)
		}
		raw = b
	}
	for _, tl := range w.Tools() {
		if tl.Definition().Name == name {
			return tl.Call(ctx, raw)
		}
	}
	t.Fatalf("no tool %q", name)
	return nil, nil
}

// codeOf returns the reason code of err: OK for nil, the *tool.Error's
// code, or a marker that makes any comparison fail for other errors.
func codeOf(err error) reason.Code {
	if err == nil {
		return reason.OK
	}
	if te, ok := tool.AsError(err); ok {
		return te.Code
	}
	return reason.Code("NOT_A_TOOL_ERROR: " + err.Error())
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tempFiles returns the write_file temporary files left under dir.
func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	var left []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			left = append(left, p)
		}
		return nil
	})
	return left
}

// --- New -----------------------------------------------------------------------

func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain.txt")
	writeFile(t, file, "x")

	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"empty root", Config{}, ErrInvalidConfig},
		{"NUL in root", Config{Root: dir + "\x00"}, ErrInvalidConfig},
		{"negative MaxReadBytes", Config{Root: dir, MaxReadBytes: -1}, ErrInvalidConfig},
		{"negative MaxWriteBytes", Config{Root: dir, MaxWriteBytes: -1}, ErrInvalidConfig},
		{"negative MaxListEntries", Config{Root: dir, MaxListEntries: -1}, ErrInvalidConfig},
		{"negative MaxSearchResults", Config{Root: dir, MaxSearchResults: -1}, ErrInvalidConfig},
		{"negative MaxSearchEntries", Config{Root: dir, MaxSearchEntries: -1}, ErrInvalidConfig},
		{"negative MaxSearchBytes", Config{Root: dir, MaxSearchBytes: -1}, ErrInvalidConfig},
		{"empty deny pattern", Config{Root: dir, Deny: []string{""}}, ErrInvalidConfig},
		{"absolute deny pattern", Config{Root: dir, Deny: []string{"/etc/x"}}, ErrInvalidConfig},
		{"dotdot deny pattern", Config{Root: dir, Deny: []string{"a/../b"}}, ErrInvalidConfig},
		{"empty deny component", Config{Root: dir, Deny: []string{"a//b"}}, ErrInvalidConfig},
		{"doublestar deny pattern", Config{Root: dir, Deny: []string{"**/.env"}}, ErrInvalidConfig},
		{"malformed deny pattern", Config{Root: dir, Deny: []string{"[a"}}, ErrInvalidConfig},
		{"NUL deny pattern", Config{Root: dir, Deny: []string{"a\x00"}}, ErrInvalidConfig},
		{"no deny-list", Config{Root: dir, Deny: []string{}}, nil},
		{"missing dir", Config{Root: filepath.Join(dir, "nope")}, ErrRoot},
		{"not a directory", Config{Root: file}, ErrRoot},
		{"ok", Config{Root: dir}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := New(tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New error = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				w.Close()
			} else if w != nil {
				t.Errorf("New returned a workspace with an error")
			}
		})
	}
}

func TestNewDefaultsAndAbsoluteRoot(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("ws", 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{Root: "ws"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	want := Config{
		Root:             filepath.Join(dir, "ws"),
		MaxReadBytes:     DefaultMaxReadBytes,
		MaxWriteBytes:    DefaultMaxWriteBytes,
		MaxListEntries:   DefaultMaxListEntries,
		MaxSearchResults: DefaultMaxSearchResults,
		MaxSearchEntries: DefaultMaxSearchEntries,
		MaxSearchBytes:   DefaultMaxSearchBytes,
		Deny:             DefaultDeny(),
	}
	if diff := cmp.Diff(want, w.cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

// --- definitions -------------------------------------------------------------------

func TestToolDefinitions(t *testing.T) {
	w, _ := newWorkspace(t, Config{})
	type def struct {
		Name        string
		Sensitivity tool.Sensitivity
		ReadOnly    bool
		Destructive bool
		Required    []string
		Props       []string
	}
	want := []def{
		{ToolListDirectory, tool.Low, true, false, []string{"path"}, []string{"path"}},
		{ToolReadFile, tool.Low, true, false, []string{"path"}, []string{"limit", "offset", "path"}},
		{ToolWriteFile, tool.Medium, false, true, []string{"content", "path"}, []string{"content", "path"}},
		{ToolFileInfo, tool.Low, true, false, []string{"path"}, []string{"path"}},
		{ToolSearchFiles, tool.Low, true, false, []string{"path", "pattern"}, []string{"content", "path", "pattern"}},
		{ToolEditFile, tool.Medium, false, true, []string{"new_text", "old_text", "path"}, []string{"new_text", "old_text", "path"}},
		{ToolMoveFile, tool.Medium, false, false, []string{"destination", "source"}, []string{"destination", "source"}},
		{ToolDeleteFile, tool.High, false, true, []string{"path"}, []string{"path"}},
	}
	var got []def
	for _, tl := range w.Tools() {
		d := tl.Definition()
		if !tool.ValidName(d.Name) || d.Description == "" || d.InputSchema == nil {
			t.Errorf("%s: bad definition %+v", d.Name, d)
			continue
		}
		b, err := json.Marshal(d.InputSchema)
		if err != nil {
			t.Fatalf("%s: marshal schema: %v", d.Name, err)
		}
		var s struct {
			Type                 string                     `json:"type"`
			Required             []string                   `json:"required"`
			Properties           map[string]json.RawMessage `json:"properties"`
			AdditionalProperties json.RawMessage            `json:"additionalProperties"`
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", d.Name, err)
		}
		if s.Type != "object" || string(s.AdditionalProperties) != "false" {
			t.Errorf("%s: schema %s: want type object and additionalProperties false", d.Name, b)
		}
		var props []string
		for k := range s.Properties {
			props = append(props, k)
		}
		slices.Sort(props)
		req := slices.Sorted(slices.Values(s.Required))
		got = append(got, def{d.Name, d.Sensitivity, d.ReadOnly, d.Destructive, req, props})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("definitions (-want +got):\n%s", diff)
	}
}

// --- list_directory ------------------------------------------------------------------

func TestListDirectory(t *testing.T) {
	w, root := newWorkspace(t, Config{})
	writeFile(t, filepath.Join(root, "b.txt"), "12345")
	writeFile(t, filepath.Join(root, "a.txt"), "")
	writeFile(t, filepath.Join(root, "sub", "inner.txt"), "in")
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}

	rootEntries := []map[string]any{
		{"name": "a.txt", "type": "file", "size": int64(0)},
		{"name": "b.txt", "type": "file", "size": int64(5)},
		{"name": "empty", "type": "dir", "size": int64(0)},
		{"name": "link", "type": "symlink", "size": int64(0)},
		{"name": "sub", "type": "dir", "size": int64(0)},
	}
	subEntries := []map[string]any{{"name": "inner.txt", "type": "file", "size": int64(2)}}
	tests := []struct {
		name     string
		path     string
		wantCode reason.Code
		wantPath string
		want     []map[string]any
		wantText string
	}{
		{"root", ".", reason.OK, ".", rootEntries,
			"file a.txt 0\nfile b.txt 5\ndir  empty/\nlink link@\ndir  sub/\n"},
		{"root dot slash", "./", reason.OK, ".", rootEntries, ""},
		{"subdir", "sub", reason.OK, "sub", subEntries, "file inner.txt 2\n"},
		{"subdir trailing slash", "sub/", reason.OK, "sub", subEntries, ""},
		{"subdir via dotdot", "sub/../sub/./", reason.OK, "sub", subEntries, ""},
		{"in-root symlink to dir", "link", reason.OK, "link", subEntries, ""},
		{"empty dir", "empty", reason.OK, "empty", []map[string]any{}, "(empty directory)\n"},
		{"file", "a.txt", reason.PathForbidden, "", nil, ""},
		{"missing", "nope", reason.NotFound, "", nil, ""},
		{"empty path", "", reason.InvalidArguments, "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := callTool(t, w, ToolListDirectory, map[string]any{"path": tt.path})
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.wantCode, err)
			}
			if err != nil {
				return
			}
			want := map[string]any{"path": tt.wantPath, "entries": tt.want, "truncated": false}
			if diff := cmp.Diff(want, res.Structured); diff != "" {
				t.Errorf("structured (-want +got):\n%s", diff)
			}
			if tt.wantText != "" && res.Text != tt.wantText {
				t.Errorf("text = %q, want %q", res.Text, tt.wantText)
			}
		})
	}
}

func TestListDirectoryTruncation(t *testing.T) {
	w, root := newWorkspace(t, Config{MaxListEntries: 3})
	for _, n := range []string{"e", "c", "a", "d", "b"} {
		writeFile(t, filepath.Join(root, n), n)
	}
	res, err := callTool(t, w, ToolListDirectory, map[string]any{"path": "."})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range res.Structured["entries"].([]map[string]any) {
		names = append(names, e["name"].(string))
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if res.Structured["truncated"] != true {
		t.Errorf("truncated = %v, want true", res.Structured["truncated"])
	}
	if !strings.Contains(res.Text, "showing 3 of 5") {
		t.Errorf("text does not say it was truncated: %q", res.Text)
	}
}

func TestListDirectoryQuotesOddNames(t *testing.T) {
	w, root := newWorkspace(t, Config{})
	odd := "evil\nfile forged 999"
	writeFile(t, filepath.Join(root, odd), "x")
	res, err := callTool(t, w, ToolListDirectory, map[string]any{"path": "."})
	if err != nil {
		t.Fatal(err)
	}
	if want := "file \"evil\\nfile forged 999\" 1\n"; res.Text != want {
		t.Errorf("text = %q, want %q", res.Text, want)
	}
}

// --- read_file ------------------------------------------------------------------------

func TestReadFile(t *testing.T) {
	w, root := newWorkspace(t, Config{MaxReadBytes: 8})
	writeFile(t, filepath.Join(root, "ten.txt"), "0123456789")
	writeFile(t, filepath.Join(root, "empty.txt"), "")
	writeFile(t, filepath.Join(root, "bin"), "\xff\xfe\x00A")
	writeFile(t, filepath.Join(root, "sub", "in.txt"), "inner")
	if err := os.Symlink("sub/in.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("link", filepath.Join(root, "link2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../in.txt", filepath.Join(root, "sub", "self")); err != nil {
		t.Fatal(err)
	}

	st := func(path string, size, offset int64, n int, eof, trunc bool) map[string]any {
		return map[string]any{"path": path, "size": size, "offset": offset, "bytes_read": n,
			"eof": eof, "truncated": trunc, "encoding": "utf-8"}
	}
	tests := []struct {
		name     string
		args     map[string]any
		wantCode reason.Code
		wantText string
		want     map[string]any
	}{
		{"capped at MaxReadBytes", map[string]any{"path": "ten.txt"}, reason.OK, "01234567", st("ten.txt", 10, 0, 8, false, true)},
		{"limit", map[string]any{"path": "ten.txt", "limit": 3}, reason.OK, "012", st("ten.txt", 10, 0, 3, false, false)},
		{"offset", map[string]any{"path": "ten.txt", "offset": 4}, reason.OK, "456789", st("ten.txt", 10, 4, 6, true, false)},
		{"offset and limit", map[string]any{"path": "ten.txt", "offset": 2, "limit": 2}, reason.OK, "23", st("ten.txt", 10, 2, 2, false, false)},
		{"limit above cap", map[string]any{"path": "ten.txt", "limit": 100}, reason.OK, "01234567", st("ten.txt", 10, 0, 8, false, true)},
		{"limit to eof", map[string]any{"path": "ten.txt", "offset": 8, "limit": 2}, reason.OK, "89", st("ten.txt", 10, 8, 2, true, false)},
		{"offset past eof", map[string]any{"path": "ten.txt", "offset": 1 << 40}, reason.OK, "", st("ten.txt", 10, 1<<40, 0, true, false)},
		{"empty file", map[string]any{"path": "empty.txt"}, reason.OK, "", st("empty.txt", 0, 0, 0, true, false)},
		{"in-root symlink", map[string]any{"path": "link"}, reason.OK, "inner", st("link", 5, 0, 5, true, false)},
		{"in-root symlink chain", map[string]any{"path": "link2"}, reason.OK, "inner", st("link2", 5, 0, 5, true, false)},
		{"symlink with dotdot inside", map[string]any{"path": "sub/self"}, reason.NotFound, "", nil},
		{"cleaned path", map[string]any{"path": "./sub//../sub/in.txt"}, reason.OK, "inner", st("sub/in.txt", 5, 0, 5, true, false)},
		{"directory", map[string]any{"path": "sub"}, reason.PathForbidden, "", nil},
		{"root", map[string]any{"path": "."}, reason.PathForbidden, "", nil},
		{"trailing slash", map[string]any{"path": "ten.txt/"}, reason.PathForbidden, "", nil},
		{"missing", map[string]any{"path": "nope.txt"}, reason.NotFound, "", nil},
		{"parent is a file", map[string]any{"path": "ten.txt/x"}, reason.NotFound, "", nil},
		{"negative offset", map[string]any{"path": "ten.txt", "offset": -1}, reason.InvalidArguments, "", nil},
		{"zero limit", map[string]any{"path": "ten.txt", "limit": 0}, reason.InvalidArguments, "", nil},
		{"fractional offset", map[string]any{"path": "ten.txt", "offset": 1.5}, reason.InvalidArguments, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := callTool(t, w, ToolReadFile, tt.args)
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.wantCode, err)
			}
			if err != nil {
				return
			}
			if res.Text != tt.wantText {
				t.Errorf("text = %q, want %q", res.Text, tt.wantText)
			}
			if diff := cmp.Diff(tt.want, res.Structured); diff != "" {
				t.Errorf("structured (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadFileBinaryIsBase64(t *testing.T) {
	w, root := newWorkspace(t, Config{})
	data := []byte("\xff\xfe\x00A")
	if err := os.WriteFile(filepath.Join(root, "bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := callTool(t, w, ToolReadFile, map[string]any{"path": "bin"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Structured["encoding"] != "base64" || !strings.Contains(res.Text, "base64") {
		t.Errorf("binary content not flagged: text %q, structured %v", res.Text, res.Structured)
	}
	got, err := base64.StdEncoding.DecodeString(res.Structured["content_base64"].(string))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("content_base64 decodes to %q (%v), want %q", got, err, data)
	}
}

// --- file_info -----------------------------------------------------------------------

func TestFileInfo(t *testing.T) {
	w, root := newWorkspace(t, Config{})
	mtime := time.Date(2025, 6, 1, 12, 30, 0, 0, time.UTC)
	f := filepath.Join(root, "f.txt")
	writeFile(t, f, "hello")
	for _, p := range []string{f} {
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	suid := filepath.Join(root, "suid")
	writeFile(t, suid, "")
	if err := os.Chmod(suid, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "d"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("missing", filepath.Join(root, "dangling")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f, suid, filepath.Join(root, "d")} {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	lstat := func(name string) os.FileInfo {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	info := func(path, typ string, size int64, mode, mod string) map[string]any {
		return map[string]any{"path": path, "type": typ, "size": size, "mode": mode, "modified": mod}
	}
	const mod = "2025-06-01T12:30:00Z"
	linkMod := lstat("link").ModTime().UTC().Format(time.RFC3339)
	dangMod := lstat("dangling").ModTime().UTC().Format(time.RFC3339)
	tests := []struct {
		name     string
		path     string
		wantCode reason.Code
		want     map[string]any
	}{
		{"file", "f.txt", reason.OK, info("f.txt", "file", 5, "0640", mod)},
		{"setuid", "suid", reason.OK, info("suid", "file", 0, "4755", mod)},
		{"dir", "d", reason.OK, info("d", "dir", lstat("d").Size(), "0750", mod)},
		{"symlink not followed", "link", reason.OK, info("link", "symlink", 5, "0777", linkMod)},
		{"dangling symlink", "dangling", reason.OK, info("dangling", "symlink", 7, "0777", dangMod)},
		{"missing", "nope", reason.NotFound, nil},
		{"empty", "", reason.InvalidArguments, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := callTool(t, w, ToolFileInfo, map[string]any{"path": tt.path})
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.wantCode, err)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, res.Structured); diff != "" {
				t.Errorf("structured (-want +got):\n%s", diff)
			}
		})
	}
}

// --- write_file ------------------------------------------------------------------------

func TestWriteFile(t *testing.T) {
	const limit = 16
	tests := []struct {
		name     string
		setup    func(t *testing.T, root string)
		path     string
		content  *string
		wantCode reason.Code
		check    func(t *testing.T, root string)
	}{
		{name: "create", path: "new.txt", content: ptr("hello"), check: wantContent("new.txt", "hello", 0o644)},
		{name: "create in subdir", path: "sub/new.txt", content: ptr("x"),
			setup: mkdir("sub"), check: wantContent("sub/new.txt", "x", 0o644)},
		{name: "through in-root dir symlink", path: "ln/new.txt", content: ptr("y"),
			setup: func(t *testing.T, root string) {
				mkdir("sub")(t, root)
				os.Symlink("sub", filepath.Join(root, "ln"))
			},
			check: wantContent("sub/new.txt", "y", 0o644)},
		{name: "empty content", path: "e.txt", content: ptr(""), check: wantContent("e.txt", "", 0o644)},
		{name: "exactly the limit", path: "m.txt", content: ptr(strings.Repeat("a", limit)),
			check: wantContent("m.txt", strings.Repeat("a", limit), 0o644)},
		{name: "replace keeps mode", path: "old.txt", content: ptr("new"),
			setup: func(t *testing.T, root string) {
				writeFile(t, filepath.Join(root, "old.txt"), "old content")
				os.Chmod(filepath.Join(root, "old.txt"), 0o600)
			},
			check: wantContent("old.txt", "new", 0o600)},
		{name: "too large", path: "big.txt", content: ptr(strings.Repeat("a", limit+1)),
			wantCode: reason.TooLarge, check: wantAbsent("big.txt")},
		{name: "parent missing", path: "nodir/x.txt", content: ptr("x"), wantCode: reason.NotFound, check: wantAbsent("nodir")},
		{name: "parent is a file", path: "f/x.txt", content: ptr("x"), wantCode: reason.NotFound,
			setup: func(t *testing.T, root string) { writeFile(t, filepath.Join(root, "f"), "f") }},
		{name: "existing directory", path: "sub", content: ptr("x"), wantCode: reason.PathForbidden, setup: mkdir("sub")},
		{name: "root", path: ".", content: ptr("x"), wantCode: reason.PathForbidden},
		{name: "trailing slash", path: "t.txt/", content: ptr("x"), wantCode: reason.PathForbidden, check: wantAbsent("t.txt")},
		{name: "in-root symlink", path: "link", content: ptr("x"), wantCode: reason.PathForbidden,
			setup: func(t *testing.T, root string) {
				writeFile(t, filepath.Join(root, "target"), "target")
				os.Symlink("target", filepath.Join(root, "link"))
			},
			check: wantContent("target", "target", 0o644)},
		{name: "missing content", path: "c.txt", wantCode: reason.InvalidArguments, check: wantAbsent("c.txt")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, root := newWorkspace(t, Config{MaxWriteBytes: limit})
			if tt.setup != nil {
				tt.setup(t, root)
			}
			args := map[string]any{"path": tt.path}
			if tt.content != nil {
				args["content"] = *tt.content
			}
			res, err := callTool(t, w, ToolWriteFile, args)
			if got := codeOf(err); got != tt.wantCode && !(tt.wantCode == "" && got == reason.OK) {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.wantCode, err)
			}
			if err == nil && res.Structured["bytes_written"] != len(*tt.content) {
				t.Errorf("bytes_written = %v, want %d", res.Structured["bytes_written"], len(*tt.content))
			}
			if left := tempFiles(t, root); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			if tt.check != nil {
				tt.check(t, root)
			}
		})
	}
}

func mkdir(rel string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func wantContent(rel, content string, perm fs.FileMode) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		p := filepath.Join(root, rel)
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Errorf("%s = %q (%v), want %q", rel, got, err, content)
		}
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&^0o022 != perm&^0o022 {
			t.Errorf("%s: mode %v (%v), want regular %v", rel, fi.Mode(), err, perm)
		}
	}
}

func wantAbsent(rel string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		t.Helper()
		if _, err := os.Lstat(filepath.Join(root, rel)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists (err %v), want absent", rel, err)
		}
	}
}

// TestWriteFileIsAtomicReplace shows the target is replaced by rename, not
// rewritten in place: a reader holding the old file keeps the old bytes,
// and at the moment before the rename the target is still intact.
func TestWriteFileIsAtomicReplace(t *testing.T) {
	w, root := newWorkspace(t, Config{})
	target := filepath.Join(root, "t.txt")
	writeFile(t, target, "old content")
	old, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	var beforeRename string
	w.beforeRename = func(tmp string) error {
		b, _ := os.ReadFile(target)
		beforeRename = string(b)
		if !strings.HasPrefix(filepath.Base(tmp), tempPrefix) {
			t.Errorf("temporary name %q lacks prefix %q", tmp, tempPrefix)
		}
		return nil
	}
	if _, err := callTool(t, w, ToolWriteFile, map[string]any{"path": "t.txt", "content": "new"}); err != nil {
		t.Fatal(err)
	}
	if beforeRename != "old content" {
		t.Errorf("target before rename = %q, want untouched %q", beforeRename, "old content")
	}
	b := make([]byte, 64)
	n, _ := old.Read(b)
	if got := string(b[:n]); got != "old content" {
		t.Errorf("old descriptor reads %q, want %q (file rewritten in place?)", got, "old content")
	}
	if got, _ := os.ReadFile(target); string(got) != "new" {
		t.Errorf("target = %q, want %q", got, "new")
	}
}

func TestWriteFileCleansUpOnFailure(t *testing.T) {
	tests := []struct {
		name     string
		hook     func(cancel context.CancelFunc, root string) func(string) error
		wantCode reason.Code
	}{
		{"hook error", func(context.CancelFunc, string) func(string) error {
			return func(string) error { return errors.New("injected") }
		}, reason.ToolFailed},
		{"cancelled before rename", func(cancel context.CancelFunc, _ string) func(string) error {
			return func(string) error { cancel(); return nil }
		}, reason.Cancelled},
		{"target became a directory", func(_ context.CancelFunc, root string) func(string) error {
			return func(string) error {
				os.Remove(filepath.Join(root, "t.txt"))
				os.Mkdir(filepath.Join(root, "t.txt"), 0o755)
				return os.WriteFile(filepath.Join(root, "t.txt", "keep"), []byte("k"), 0o644)
			}
		}, reason.PathForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, root := newWorkspace(t, Config{})
			writeFile(t, filepath.Join(root, "t.txt"), "old")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w.beforeRename = tt.hook(cancel, root)
			_, err := callToolCtx(ctx, t, w, ToolWriteFile, map[string]any{"path": "t.txt", "content": "new"})
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.wantCode, err)
			}
			if left := tempFiles(t, root); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			if got, err := os.ReadFile(filepath.Join(root, "t.txt")); err == nil && string(got) != "old" {
				t.Errorf("target = %q, want untouched %q", got, "old")
			}
		})
	}
}

// --- read-only, arguments, context ------------------------------------------------------

func TestReadOnly(t *testing.T) {
	w, root := newWorkspace(t, Config{ReadOnly: true})
	writeFile(t, filepath.Join(root, "f.txt"), "data")
	tests := []struct {
		name     string
		tool     string
		args     any
		wantCode reason.Code
	}{
		{"write refused", ToolWriteFile, map[string]any{"path": "new.txt", "content": "x"}, reason.ReadOnly},
		{"overwrite refused", ToolWriteFile, map[string]any{"path": "f.txt", "content": "x"}, reason.ReadOnly},
		{"bad args still READ_ONLY", ToolWriteFile, `{"bogus":1}`, reason.ReadOnly},
		{"read allowed", ToolReadFile, map[string]any{"path": "f.txt"}, reason.OK},
		{"list allowed", ToolListDirectory, map[string]any{"path": "."}, reason.OK},
		{"info allowed", ToolFileInfo, map[string]any{"path": "f.txt"}, reason.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := callTool(t, w, tt.tool, tt.args)
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.wantCode, err)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(root, "f.txt")); string(b) != "data" {
		t.Errorf("f.txt = %q after read-only writes", b)
	}
	wantAbsent("new.txt")(t, root)
}

func TestArgumentDecoding(t *testing.T) {
	w, root := newWorkspace(t, Config{})
	writeFile(t, filepath.Join(root, "f.txt"), "data")
	tests := []struct {
		name string
		tool string
		args string
	}{
		{"unknown field", ToolReadFile, `{"path":"f.txt","mode":"x"}`},
		{"case-variant key", ToolReadFile, `{"PATH":"f.txt"}`},
		{"case-variant duplicate key", ToolReadFile, `{"path":"f.txt","Path":"../x"}`},
		{"wrong type", ToolReadFile, `{"path":7}`},
		{"string offset", ToolReadFile, `{"path":"f.txt","offset":"1"}`},
		{"trailing data", ToolReadFile, `{"path":"f.txt"} {}`},
		{"array", ToolListDirectory, `["."]`},
		{"string", ToolFileInfo, `"f.txt"`},
		{"malformed", ToolFileInfo, `{"path":`},
		{"missing path", ToolFileInfo, `{}`},
		{"null", ToolListDirectory, `null`},
		{"empty path", ToolListDirectory, `{"path":""}`},
		{"too long", ToolReadFile, `{"path":"` + strings.Repeat("a", maxPathBytes+1) + `"}`},
		{"content wrong type", ToolWriteFile, `{"path":"n.txt","content":1}`},
		{"content null", ToolWriteFile, `{"path":"n.txt","content":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := callTool(t, w, tt.tool, tt.args)
			if got := codeOf(err); got != reason.InvalidArguments {
				t.Fatalf("code = %s, want %s (err %v)", got, reason.InvalidArguments, err)
			}
		})
	}
}

func TestCancelledContext(t *testing.T) {
	w, root := newWorkspace(t, Config{})
	writeFile(t, filepath.Join(root, "f.txt"), "data")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, name := range []string{ToolListDirectory, ToolReadFile, ToolWriteFile, ToolFileInfo} {
		t.Run(name, func(t *testing.T) {
			_, err := callToolCtx(ctx, t, w, name, map[string]any{"path": "f.txt", "content": "x"})
			if got := codeOf(err); got != reason.Cancelled {
				t.Fatalf("code = %s, want %s (err %v)", got, reason.Cancelled, err)
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(root, "f.txt")); string(b) != "data" {
		t.Errorf("f.txt = %q after cancelled write", b)
	}
}

func TestClosedWorkspaceFails(t *testing.T) {
	w, root := newWorkspace(t, Config{})
	writeFile(t, filepath.Join(root, "f.txt"), "data")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ToolListDirectory, ToolReadFile, ToolWriteFile, ToolFileInfo} {
		t.Run(name, func(t *testing.T) {
			res, err := callTool(t, w, name, map[string]any{"path": "f.txt", "content": "x"})
			if err == nil {
				t.Fatalf("call on closed workspace succeeded: %+v", res)
			}
		})
	}
}
