//go:build unix

package files_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tools/files"
)

// --- edit_file ------------------------------------------------------------------

func TestEditFile(t *testing.T) {
	tests := []struct {
		name        string
		file        string // initial content of f.txt
		old, new    string
		wantCode    reason.Code
		wantMsg     string // substring of the client message
		wantContent string // f.txt afterwards
		wantLine    int
	}{
		{"unique match", "one\ntwo\nthree\n", "two", "2", xOK, "", "one\n2\nthree\n", 2},
		{"multi-line match", "a\nb\nc\n", "b\nc", "B\nC", xOK, "", "a\nB\nC\n", 2},
		{"delete text", "keep DROP keep", " DROP", "", xOK, "", "keep keep", 1},
		{"first line", "x = 1\n", "x = 1", "x = 2", xOK, "", "x = 2\n", 1},
		{"not found", "alpha\n", "beta", "gamma", xNF, "not found", "alpha\n", 0},
		{"found three times", "x x x", "x", "y", xTF, "found 3 times", "x x x", 0},
		{"found twice overlapping", "aaa", "aa", "b", xTF, "found 2 times", "aaa", 0},
		{"line endings are exact", "a\r\nb\r\n", "a\nb", "c", xNF, "not found", "a\r\nb\r\n", 0},
		{"case-sensitive", "Hello", "hello", "bye", xNF, "not found", "Hello", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openWS(t, files.Config{})
			put(t, s.root, "f.txt", tt.file)
			res, err := s.call(t, files.ToolEditFile, map[string]any{"path": "f.txt", "old_text": tt.old, "new_text": tt.new})
			if got := code(err); got != tt.wantCode {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.wantCode, err)
			}
			if !strings.Contains(clientMsg(err), tt.wantMsg) {
				t.Errorf("message %q does not contain %q", clientMsg(err), tt.wantMsg)
			}
			if got := content(s.root, "f.txt"); got != tt.wantContent {
				t.Errorf("f.txt = %q, want %q", got, tt.wantContent)
			}
			if err == nil {
				if got := res.Structured["line"]; got != tt.wantLine {
					t.Errorf("line = %v, want %d", got, tt.wantLine)
				}
				if got := res.Structured["bytes_written"]; got != int64(len(tt.wantContent)) {
					t.Errorf("bytes_written = %v, want %d", got, len(tt.wantContent))
				}
			}
			if left := leftoverTemps(t, s.root); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// TestEditFileIsAtomic: a successful edit replaces the file by rename (a
// reader holding the old file sees the old content in full, the mode is
// kept), and a failing edit of any kind leaves the bytes untouched.
func TestEditFileIsAtomic(t *testing.T) {
	s := openWS(t, files.Config{MaxWriteBytes: 64})
	put(t, s.root, "f.txt", "before middle after")
	p := filepath.Join(s.root, "f.txt")
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := s.call(t, files.ToolEditFile, map[string]any{"path": "f.txt", "old_text": "middle", "new_text": "MIDDLE"}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, _ := held.ReadAt(buf, 0)
	if got := string(buf[:n]); got != "before middle after" {
		t.Errorf("reader of the old file sees %q: the file was rewritten in place", got)
	}
	if got := content(s.root, "f.txt"); got != "before MIDDLE after" {
		t.Errorf("f.txt = %q", got)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after edit = %v (%v), want 0640", fi.Mode().Perm(), err)
	}

	failures := []struct {
		name string
		args map[string]any
		want reason.Code
	}{
		{"too large after edit", map[string]any{"path": "f.txt", "old_text": "MIDDLE", "new_text": strings.Repeat("z", 100)}, reason.TooLarge},
		{"ambiguous", map[string]any{"path": "f.txt", "old_text": "e", "new_text": "E"}, xTF},
		{"absent", map[string]any{"path": "f.txt", "old_text": "nope", "new_text": "x"}, xNF},
		{"empty old_text", map[string]any{"path": "f.txt", "old_text": "", "new_text": "x"}, xInv},
		{"missing new_text", map[string]any{"path": "f.txt", "old_text": "MIDDLE"}, xInv},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.call(t, files.ToolEditFile, tt.args)
			if got := code(err); got != tt.want {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.want, err)
			}
			if got := content(s.root, "f.txt"); got != "before MIDDLE after" {
				t.Errorf("f.txt = %q after a failed edit", got)
			}
		})
	}
	put(t, s.root, "big.txt", strings.Repeat("b", 65))
	if _, err := s.call(t, files.ToolEditFile, map[string]any{"path": "big.txt", "old_text": "bb", "new_text": ""}); code(err) != reason.TooLarge {
		t.Errorf("edit of a file over MaxWriteBytes: %v, want TOO_LARGE", err)
	}
	if left := leftoverTemps(t, s.root); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestEditFileTargets: what edit_file refuses to edit.
func TestEditFileTargets(t *testing.T) {
	s := openWS(t, files.Config{})
	put(t, s.root, "f.txt", "text")
	mkdirs(t, s.root, "dir")
	symlink(t, s.root, "alias", "f.txt")
	if err := syscall.Mkfifo(filepath.Join(s.root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(s.root, "f.txt"), filepath.Join(s.root, "f2.txt")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want reason.Code
	}{
		{"missing.txt", xNF},
		{"dir", xFbd},
		{".", xFbd},
		{"alias", xFbd},    // a symlink: edit its target instead
		{"fifo", xFbd},     // not a regular file, and never opened
		{"f.txt", xFbd},    // two hard links now
		{"f.txt/", xFbd},   // names a directory
		{"nodir/x", xNF},   // missing parent
		{"../f.txt", xOut}, // lexical escape
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := s.call(t, files.ToolEditFile, map[string]any{"path": tt.path, "old_text": "text", "new_text": "edited"})
			if got := code(err); got != tt.want {
				t.Errorf("code = %s, want %s (err %v)", got, tt.want, err)
			}
		})
	}
	if got := content(s.root, "f.txt"); got != "text" {
		t.Errorf("f.txt = %q", got)
	}
}

// --- move_file ------------------------------------------------------------------

func TestMoveFile(t *testing.T) {
	type check func(t *testing.T, root string)
	has := func(rel, want string) check {
		return func(t *testing.T, root string) {
			t.Helper()
			if got := content(root, rel); got != want {
				t.Errorf("%s = %q, want %q", rel, got, want)
			}
		}
	}
	gone := func(rel string) check {
		return func(t *testing.T, root string) {
			t.Helper()
			if exists(root, rel) {
				t.Errorf("%s still exists", rel)
			}
		}
	}
	tests := []struct {
		name     string
		src, dst string
		want     reason.Code
		checks   []check
	}{
		{"rename in place", "a/f.txt", "a/g.txt", xOK, []check{has("a/g.txt", "F"), gone("a/f.txt")}},
		{"across directories", "a/f.txt", "b/c/f.txt", xOK, []check{has("b/c/f.txt", "F"), gone("a/f.txt")}},
		{"to the root", "b/c/deep.txt", "deep.txt", xOK, []check{has("deep.txt", "D"), gone("b/c/deep.txt")}},
		{"directory", "a", "moved-a", xOK, []check{has("moved-a/f.txt", "F"), gone("a")}},
		{"onto existing file", "a/f.txt", "b/other.txt", xEx, []check{has("a/f.txt", "F"), has("b/other.txt", "O")}},
		{"onto itself", "a/f.txt", "a/f.txt", xEx, []check{has("a/f.txt", "F")}},
		{"onto existing directory", "a/f.txt", "b", xEx, []check{has("a/f.txt", "F")}},
		{"onto dangling symlink", "a/f.txt", "dangling", xEx, []check{has("a/f.txt", "F")}},
		{"directory onto empty directory", "a", "empty", xEx, []check{has("a/f.txt", "F")}},
		{"directory into itself", "a", "a/sub/a", xTF, []check{has("a/f.txt", "F")}},
		{"missing source", "nope.txt", "x.txt", xNF, []check{gone("x.txt")}},
		{"missing destination parent", "a/f.txt", "nodir/f.txt", xNF, []check{has("a/f.txt", "F")}},
		{"destination parent is a file", "a/f.txt", "b/other.txt/f.txt", xNF, []check{has("a/f.txt", "F")}},
		{"symlink source", "alias", "alias2", xFbd, []check{gone("alias2")}},
		{"workspace root as source", ".", "x", xFbd, nil},
		{"workspace root as destination", "a/f.txt", ".", xFbd, []check{has("a/f.txt", "F")}},
		{"file with trailing slash", "a/f.txt/", "z.txt", xFbd, []check{has("a/f.txt", "F")}},
		{"escape source", "../x", "x", xOut, nil},
		{"escape destination", "a/f.txt", "../f.txt", xOut, []check{has("a/f.txt", "F")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openWS(t, files.Config{})
			put(t, s.root, "a/f.txt", "F")
			mkdirs(t, s.root, "a/sub")
			put(t, s.root, "b/other.txt", "O")
			put(t, s.root, "b/c/deep.txt", "D")
			mkdirs(t, s.root, "empty")
			symlink(t, s.root, "dangling", "nowhere")
			symlink(t, s.root, "alias", "a/f.txt")
			res, err := s.call(t, files.ToolMoveFile, map[string]any{"source": tt.src, "destination": tt.dst})
			if got := code(err); got != tt.want {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.want, err)
			}
			if tt.want == xEx && !strings.Contains(clientMsg(err), "already exists") {
				t.Errorf("message %q does not say the destination exists", clientMsg(err))
			}
			if err == nil && (res.Structured["source"] != tt.src || res.Structured["destination"] != tt.dst) {
				t.Errorf("result %v", res.Structured)
			}
			for _, c := range tt.checks {
				c(t, s.root)
			}
		})
	}
}

// --- delete_file ----------------------------------------------------------------

func TestDeleteFile(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		want    reason.Code
		gone    []string // must not exist afterwards
		kept    []string // must still exist afterwards
		wantMsg string
	}{
		{"file", "f.txt", xOK, []string{"f.txt"}, []string{"d/inner.txt"}, ""},
		{"empty directory", "empty", xOK, []string{"empty"}, nil, ""},
		{"non-empty directory", "d", xTF, nil, []string{"d", "d/inner.txt"}, "not empty"},
		{"symlink to a file removes the link only", "alias", xOK, []string{"alias"}, []string{"f.txt"}, ""},
		{"symlink to a directory removes the link only", "dirlink", xOK, []string{"dirlink"}, []string{"d/inner.txt"}, ""},
		{"dangling symlink", "dangling", xOK, []string{"dangling"}, nil, ""},
		{"through a directory symlink", "dirlink/inner.txt", xOK, []string{"d/inner.txt"}, []string{"dirlink"}, ""},
		{"directory with trailing slash", "empty/", xOK, []string{"empty"}, nil, ""},
		{"file with trailing slash", "f.txt/", xFbd, nil, []string{"f.txt"}, ""},
		{"missing", "nope", xNF, nil, nil, ""},
		{"workspace root", ".", xFbd, nil, []string{"f.txt"}, ""},
		{"hard-linked file", "hl1", xFbd, nil, []string{"hl1", "hl2"}, ""},
		{"fifo", "fifo", xFbd, nil, []string{"fifo"}, ""},
		{"escape", "../x", xOut, nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openWS(t, files.Config{})
			put(t, s.root, "f.txt", "F")
			put(t, s.root, "d/inner.txt", "I")
			mkdirs(t, s.root, "empty")
			symlink(t, s.root, "alias", "f.txt")
			symlink(t, s.root, "dirlink", "d")
			symlink(t, s.root, "dangling", "nowhere")
			put(t, s.root, "hl1", "H")
			if err := os.Link(filepath.Join(s.root, "hl1"), filepath.Join(s.root, "hl2")); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(filepath.Join(s.root, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := s.call(t, files.ToolDeleteFile, map[string]any{"path": tt.path})
			if got := code(err); got != tt.want {
				t.Fatalf("code = %s, want %s (err %v)", got, tt.want, err)
			}
			if !strings.Contains(clientMsg(err), tt.wantMsg) {
				t.Errorf("message %q does not contain %q", clientMsg(err), tt.wantMsg)
			}
			for _, p := range tt.gone {
				if exists(s.root, p) {
					t.Errorf("%s still exists", p)
				}
			}
			for _, p := range tt.kept {
				if !exists(s.root, p) {
					t.Errorf("%s was removed", p)
				}
			}
		})
	}
}

// --- search_files ---------------------------------------------------------------

// searchTree lays out a small tree for the search tests.
func searchTree(t *testing.T, root string) {
	t.Helper()
	put(t, root, "main.go", "package main\n\nfunc main() { println(\"needle here\") }\n")
	put(t, root, "README.md", "no match\n")
	put(t, root, "pkg/a.go", "package pkg\n// needle\n")
	put(t, root, "pkg/b.txt", "needle in text\n")
	put(t, root, "pkg/deep/c.go", "package deep\n")
	put(t, root, "pkg/deep/d.go", "x\ny\nz needle\n")
	put(t, root, "docs/x/y/z.go", "needle")
	mkdirs(t, root, "emptydir")
}

func TestSearchFilesPatterns(t *testing.T) {
	s := openWS(t, files.Config{})
	searchTree(t, s.root)
	tests := []struct {
		path, pattern string
		want          []string
	}{
		{".", "*.go", []string{"main.go"}},
		{".", "**/*.go", []string{"main.go", "docs/x/y/z.go", "pkg/a.go", "pkg/deep/c.go", "pkg/deep/d.go"}},
		{".", "pkg/*", []string{"pkg/a.go", "pkg/b.txt", "pkg/deep"}},
		{".", "pkg/**/*.go", []string{"pkg/a.go", "pkg/deep/c.go", "pkg/deep/d.go"}},
		{".", "docs/**/z.go", []string{"docs/x/y/z.go"}},
		{".", "*/deep", []string{"pkg/deep"}},
		{".", "?.go", nil},
		{".", "[A-Z]*", []string{"README.md"}},
		{"pkg", "*.go", []string{"pkg/a.go"}},
		{"pkg", "**", []string{"pkg/a.go", "pkg/b.txt", "pkg/deep", "pkg/deep/c.go", "pkg/deep/d.go"}},
		{"pkg/deep", "c.go", []string{"pkg/deep/c.go"}},
		{"pkg/../pkg/deep", "*.go", []string{"pkg/deep/c.go", "pkg/deep/d.go"}},
		{".", "nomatch", nil},
		{"emptydir", "**", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path+"|"+tt.pattern, func(t *testing.T) {
			res, err := s.call(t, files.ToolSearchFiles, map[string]any{"path": tt.path, "pattern": tt.pattern})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, matchPaths(t, res)); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
			if res.Structured["truncated"] != false {
				t.Errorf("truncated = %v", res.Structured["truncated"])
			}
		})
	}
}

func TestSearchFilesContent(t *testing.T) {
	s := openWS(t, files.Config{})
	searchTree(t, s.root)
	res, err := s.call(t, files.ToolSearchFiles, map[string]any{"path": ".", "pattern": "**", "content": "needle"})
	if err != nil {
		t.Fatal(err)
	}
	type m struct {
		Path, Excerpt string
		Line          int
	}
	var got []m
	for _, e := range res.Structured["matches"].([]map[string]any) {
		got = append(got, m{e["path"].(string), e["excerpt"].(string), e["line"].(int)})
	}
	want := []m{
		{"main.go", `func main() { println("needle here") }`, 3},
		{"docs/x/y/z.go", "needle", 1},
		{"pkg/a.go", "// needle", 2},
		{"pkg/b.txt", "needle in text", 1},
		{"pkg/deep/d.go", "z needle", 3},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("content matches (-want +got):\n%s", diff)
	}
	if !strings.Contains(res.Text, "pkg/deep/d.go:3: z needle") {
		t.Errorf("text %q lacks the path:line: excerpt form", res.Text)
	}
}

// TestSearchFilesChunkBoundary: a needle split across two reads, far into
// a large file, is found with the right line number.
func TestSearchFilesChunkBoundary(t *testing.T) {
	s := openWS(t, files.Config{})
	line := strings.Repeat("a", 99) + "\n"
	body := strings.Repeat(line, 700)                 // 70,000 bytes
	body = body[:65530] + "NEEDLE-XYZ" + body[65540:] // straddles 64 KiB
	put(t, s.root, "big.txt", body)
	res, err := s.call(t, files.ToolSearchFiles, map[string]any{"path": ".", "pattern": "big.txt", "content": "NEEDLE-XYZ"})
	if err != nil {
		t.Fatal(err)
	}
	ms := res.Structured["matches"].([]map[string]any)
	if len(ms) != 1 || ms[0]["line"] != strings.Count(body[:65530], "\n")+1 {
		t.Errorf("matches = %v, want one at line %d", ms, strings.Count(body[:65530], "\n")+1)
	}
}

func TestSearchFilesBounds(t *testing.T) {
	setup := func(t *testing.T, cfg files.Config) *ws {
		s := openWS(t, cfg)
		for i := range 20 {
			put(t, s.root, fmt.Sprintf("d%02d/f.txt", i), strings.Repeat("x", 1000)+"needle")
		}
		return s
	}
	tests := []struct {
		name      string
		cfg       files.Config
		content   string
		wantN     int
		wantTrunc string
	}{
		{"results", files.Config{MaxSearchResults: 3}, "", 3, "max_results"},
		{"results exactly at the cap", files.Config{MaxSearchResults: 20}, "", 20, ""},
		{"entries", files.Config{MaxSearchEntries: 30}, "", 10, "max_entries"}, // 20 dirs + 10 of their files
		{"bytes", files.Config{MaxSearchBytes: 5000}, "needle", 4, "max_bytes"},
		{"unbounded enough", files.Config{}, "needle", 20, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := setup(t, tt.cfg)
			args := map[string]any{"path": ".", "pattern": "*/f.txt"}
			if tt.content != "" {
				args["content"] = tt.content
			}
			res, err := s.call(t, files.ToolSearchFiles, args)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(matchPaths(t, res)); got != tt.wantN {
				t.Errorf("%d matches, want %d", got, tt.wantN)
			}
			if got := res.Structured["truncated"]; got != (tt.wantTrunc != "") {
				t.Errorf("truncated = %v, want %v", got, tt.wantTrunc != "")
			}
			if got, _ := res.Structured["truncated_by"].(string); got != tt.wantTrunc {
				t.Errorf("truncated_by = %q, want %q", got, tt.wantTrunc)
			}
			if tt.cfg.MaxSearchBytes > 0 {
				if got := res.Structured["bytes_read"].(int64); got > tt.cfg.MaxSearchBytes {
					t.Errorf("bytes_read = %d > MaxSearchBytes %d", got, tt.cfg.MaxSearchBytes)
				}
			}
			if tt.cfg.MaxSearchEntries > 0 {
				if got := res.Structured["entries_scanned"].(int); got > tt.cfg.MaxSearchEntries {
					t.Errorf("entries_scanned = %d > MaxSearchEntries %d", got, tt.cfg.MaxSearchEntries)
				}
			}
			if tt.wantTrunc != "" && !strings.Contains(res.Text, "truncated") {
				t.Errorf("text does not say it was truncated: %q", res.Text)
			}
		})
	}
}

// TestSearchFilesNeverFollowsLinks: links are reported as links, never
// descended into or read, whether they point inside or outside.
func TestSearchFilesNeverFollowsLinks(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "ws")
	put(t, base, "outside/secret.txt", "needle OUTSIDE")
	put(t, root, "real/file.txt", "needle inside")
	symlink(t, root, "out", "../outside")
	symlink(t, root, "inlink", "real")
	symlink(t, root, "filelink", "real/file.txt")
	s := openWS(t, files.Config{Root: root})

	res, err := s.call(t, files.ToolSearchFiles, map[string]any{"path": ".", "pattern": "**"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"filelink", "inlink", "out", "real", "real/file.txt"}
	if diff := cmp.Diff(want, matchPaths(t, res)); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}
	for _, m := range res.Structured["matches"].([]map[string]any) {
		if p := m["path"].(string); p != "real" && p != "real/file.txt" && m["type"] != "symlink" {
			t.Errorf("%s reported as %v, want symlink", p, m["type"])
		}
	}
	res, err = s.call(t, files.ToolSearchFiles, map[string]any{"path": ".", "pattern": "**", "content": "needle"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"real/file.txt"}, matchPaths(t, res)); diff != "" || strings.Contains(res.Text, "OUTSIDE") {
		t.Errorf("content matches (-want +got):\n%s\ntext %q", diff, res.Text)
	}
	// A link as the search root is followed only inside the workspace.
	if _, err := s.call(t, files.ToolSearchFiles, map[string]any{"path": "out", "pattern": "**"}); code(err) != xOut {
		t.Errorf("search under a link leaving the workspace: %v, want PATH_OUTSIDE_WORKSPACE", err)
	}
	res, err = s.call(t, files.ToolSearchFiles, map[string]any{"path": "inlink", "pattern": "*"})
	if err != nil || !slices.Equal(matchPaths(t, res), []string{"inlink/file.txt"}) {
		t.Errorf("search under an inside link = %v, %v", matchPaths(t, res), err)
	}
}

func TestSearchFilesArguments(t *testing.T) {
	s := openWS(t, files.Config{})
	put(t, s.root, "f.txt", "x")
	tests := []struct {
		name string
		args any
		want reason.Code
	}{
		{"absolute pattern", map[string]any{"path": ".", "pattern": "/etc/*"}, xInv},
		{"dotdot pattern", map[string]any{"path": ".", "pattern": "../*"}, xInv},
		{"empty component", map[string]any{"path": ".", "pattern": "a//b"}, xInv},
		{"trailing slash", map[string]any{"path": ".", "pattern": "a/"}, xInv},
		{"malformed", map[string]any{"path": ".", "pattern": "[a"}, xInv},
		{"empty pattern", map[string]any{"path": ".", "pattern": ""}, xInv},
		{"missing pattern", map[string]any{"path": "."}, xInv},
		{"empty content", map[string]any{"path": ".", "pattern": "*", "content": ""}, xInv},
		{"content too long", map[string]any{"path": ".", "pattern": "*", "content": strings.Repeat("c", 1025)}, xInv},
		{"NUL in pattern", map[string]any{"path": ".", "pattern": "a\x00"}, xInv},
		{"unknown field", `{"path":".","pattern":"*","regex":true}`, xInv},
		{"path is a file", map[string]any{"path": "f.txt", "pattern": "*"}, xFbd},
		{"missing path", map[string]any{"path": "nope", "pattern": "*"}, xNF},
		{"escape", map[string]any{"path": "..", "pattern": "*"}, xOut},
		{"absolute path", map[string]any{"path": "/etc", "pattern": "*"}, xOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.call(t, files.ToolSearchFiles, tt.args)
			if got := code(err); got != tt.want {
				t.Errorf("code = %s, want %s (err %v)", got, tt.want, err)
			}
		})
	}
}

// --- deny-list ------------------------------------------------------------------

// denyTree plants deny-listed files (with a secret each) and links to them.
func denyTree(t *testing.T, root string) []string {
	t.Helper()
	secrets := []string{"ENV-SECRET-1", "PEM-SECRET-2", "GITCFG-SECRET-3", "RSA-SECRET-4", "SUBENV-SECRET-5", "HOOK-SECRET-6"}
	put(t, root, ".env", secrets[0])
	put(t, root, "keys/server.pem", secrets[1])
	put(t, root, ".git/config", secrets[2])
	put(t, root, "home/id_rsa", secrets[3])
	put(t, root, "app/.env", secrets[4])
	put(t, root, ".git/hooks/pre-commit", secrets[5])
	put(t, root, ".git/HEAD", "ref: refs/heads/main\n")
	put(t, root, "ok.txt", "fine")
	symlink(t, root, "alias-env", ".env")
	symlink(t, root, "g", ".git")
	symlink(t, root, "k", "keys")
	return secrets
}

func TestDenyListAllTools(t *testing.T) {
	paths := []string{
		".env", "app/.env", ".ENV", "sub/../.env", "keys/server.pem", "keys/SERVER.PEM", ".git/config",
		".git/hooks/pre-commit", ".git/hooks", "home/id_rsa", "home/id_rsa.pub", "g/config", "k/server.pem",
		"new/.env", "x.pem",
	}
	s := openWS(t, files.Config{})
	secrets := denyTree(t, s.root)
	calls := func(p string) []struct {
		tool string
		args map[string]any
	} {
		return []struct {
			tool string
			args map[string]any
		}{
			{files.ToolReadFile, map[string]any{"path": p}},
			{files.ToolFileInfo, map[string]any{"path": p}},
			{files.ToolListDirectory, map[string]any{"path": p}},
			{files.ToolSearchFiles, map[string]any{"path": p, "pattern": "**"}},
			{files.ToolWriteFile, map[string]any{"path": p, "content": "PWNED"}},
			{files.ToolEditFile, map[string]any{"path": p, "old_text": "SECRET", "new_text": "PWNED"}},
			{files.ToolMoveFile, map[string]any{"source": p, "destination": "stolen"}},
			{files.ToolMoveFile, map[string]any{"source": "ok.txt", "destination": p}},
			{files.ToolDeleteFile, map[string]any{"path": p}},
		}
	}
	for _, p := range paths {
		for i, c := range calls(p) {
			t.Run(fmt.Sprintf("%s#%d/%s", c.tool, i, strings.ReplaceAll(p, "/", "|")), func(t *testing.T) {
				res, err := s.call(t, c.tool, c.args)
				if got := code(err); got != xFbd {
					t.Errorf("code = %s, want PATH_FORBIDDEN (err %v, result %+v)", got, err, res)
				}
				if msg := clientMsg(err); strings.Contains(msg, "deny") || strings.Contains(msg, "*") {
					t.Errorf("client message %q names the rule", msg)
				}
			})
		}
	}
	// A link to a denied file: every tool that would follow it refuses;
	// file_info describes the link itself and delete_file removes only it.
	for _, c := range calls("alias-env")[:6] {
		if c.tool == files.ToolFileInfo {
			continue
		}
		if _, err := s.call(t, c.tool, c.args); code(err) != xFbd {
			t.Errorf("%s(alias-env): %v, want PATH_FORBIDDEN", c.tool, err)
		}
	}
	if r, err := s.call(t, files.ToolFileInfo, map[string]any{"path": "alias-env"}); err != nil || r.Structured["type"] != "symlink" {
		t.Errorf("file_info(alias-env) = %v, %v; want the link's own metadata", r, err)
	}
	if _, err := s.call(t, files.ToolDeleteFile, map[string]any{"path": "alias-env"}); err != nil || exists(s.root, "alias-env") {
		t.Errorf("delete_file(alias-env): %v; want the link removed", err)
	}
	want := map[string]string{".env": secrets[0], "keys/server.pem": secrets[1], ".git/config": secrets[2],
		"home/id_rsa": secrets[3], "app/.env": secrets[4], ".git/hooks/pre-commit": secrets[5], "ok.txt": "fine"}
	for rel, c := range want {
		if got := content(s.root, rel); got != c {
			t.Errorf("%s = %q, want %q", rel, got, c)
		}
	}
	for _, rel := range []string{"stolen", "new", "x.pem", "home/id_rsa.pub"} {
		if exists(s.root, rel) {
			t.Errorf("%s was created", rel)
		}
	}
}

// TestDenyListSearchAndMoves: search never reports or reads deny-listed
// entries; directories holding a multi-part deny rule cannot be moved away
// (or into place); the rest of .git stays usable.
func TestDenyListSearchAndMoves(t *testing.T) {
	s := openWS(t, files.Config{})
	secrets := denyTree(t, s.root)
	res, err := s.call(t, files.ToolSearchFiles, map[string]any{"path": ".", "pattern": "**"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".git", "alias-env", "app", "g", "home", "k", "keys", "ok.txt", ".git/HEAD"}
	if diff := cmp.Diff(want, matchPaths(t, res)); diff != "" {
		t.Errorf("name search (-want +got):\n%s", diff)
	}
	for _, needle := range append([]string{"SECRET"}, secrets...) {
		res, err := s.call(t, files.ToolSearchFiles, map[string]any{"path": ".", "pattern": "**", "content": needle})
		if err != nil {
			t.Fatal(err)
		}
		if got := matchPaths(t, res); len(got) != 0 || strings.Contains(res.Text, needle) {
			t.Errorf("content search %q found %v (%q)", needle, got, res.Text)
		}
	}
	// Through a link to .git, config is still refused; HEAD is not denied.
	if r, err := s.call(t, files.ToolReadFile, map[string]any{"path": "g/HEAD"}); err != nil || !strings.HasPrefix(r.Text, "ref:") {
		t.Errorf("read g/HEAD = %v, %v", r, err)
	}
	mkdirs(t, s.root, "plain")
	put(t, s.root, "cfgdir/config", "[core]\n")
	moves := []struct {
		src, dst string
		want     reason.Code
	}{
		{".git", "git-copy", xFbd},       // would expose .git/config as git-copy/config
		{"cfgdir", ".git/hooks", xFbd},   // denied destination
		{"keys", "plain/keys", xOK},      // one-part rules follow the name: still denied after the move
		{".git/HEAD", "plain/HEAD", xOK}, // not denied
	}
	for _, m := range moves {
		_, err := s.call(t, files.ToolMoveFile, map[string]any{"source": m.src, "destination": m.dst})
		if got := code(err); got != m.want {
			t.Errorf("move %s -> %s: code %s, want %s (err %v)", m.src, m.dst, got, m.want, err)
		}
	}
	if _, err := s.call(t, files.ToolReadFile, map[string]any{"path": "plain/keys/server.pem"}); code(err) != xFbd {
		t.Errorf("read of a moved .pem: %v, want PATH_FORBIDDEN", err)
	}
	// A second workspace without .git: moving a directory with a config
	// file into place as .git would create .git/config.
	s2 := openWS(t, files.Config{})
	put(t, s2.root, "cfgdir/config", "[core]\n")
	if _, err := s2.call(t, files.ToolMoveFile, map[string]any{"source": "cfgdir", "destination": ".git"}); code(err) != xFbd {
		t.Errorf("move cfgdir -> .git: %v, want PATH_FORBIDDEN", err)
	}
}

func TestDenyListConfig(t *testing.T) {
	t.Run("custom list replaces the default", func(t *testing.T) {
		s := openWS(t, files.Config{Deny: []string{"secret*", "conf/prod.yaml"}})
		put(t, s.root, ".env", "E")
		put(t, s.root, "a/Secret.txt", "S")
		put(t, s.root, "conf/prod.yaml", "P")
		put(t, s.root, "conf/dev.yaml", "D")
		for p, want := range map[string]reason.Code{".env": xOK, "a/Secret.txt": xFbd, "conf/prod.yaml": xFbd, "conf/dev.yaml": xOK, "CONF/PROD.YAML": xFbd} {
			if _, err := s.call(t, files.ToolReadFile, map[string]any{"path": p}); code(err) != want {
				t.Errorf("read %s: %v, want %s", p, err, want)
			}
		}
	})
	t.Run("empty list disables", func(t *testing.T) {
		s := openWS(t, files.Config{Deny: []string{}})
		put(t, s.root, ".env", "E")
		symlink(t, s.root, "alias", ".env")
		for _, p := range []string{".env", "alias"} {
			if r, err := s.call(t, files.ToolReadFile, map[string]any{"path": p}); err != nil || r.Text != "E" {
				t.Errorf("read %s = %v, %v", p, r, err)
			}
		}
	})
}

// --- read-only, cancellation ----------------------------------------------------

func TestReadOnlyAllMutatingTools(t *testing.T) {
	s := openWS(t, files.Config{ReadOnly: true})
	put(t, s.root, "f.txt", "data")
	mkdirs(t, s.root, "d")
	tests := []struct {
		tool string
		args any
		want reason.Code
	}{
		{files.ToolWriteFile, map[string]any{"path": "f.txt", "content": "x"}, xRO},
		{files.ToolEditFile, map[string]any{"path": "f.txt", "old_text": "data", "new_text": "x"}, xRO},
		{files.ToolEditFile, `{"bogus":1}`, xRO},
		{files.ToolMoveFile, map[string]any{"source": "f.txt", "destination": "g.txt"}, xRO},
		{files.ToolMoveFile, map[string]any{"source": "../x", "destination": "/etc/passwd"}, xRO},
		{files.ToolDeleteFile, map[string]any{"path": "f.txt"}, xRO},
		{files.ToolDeleteFile, map[string]any{"path": "d"}, xRO},
		{files.ToolSearchFiles, map[string]any{"path": ".", "pattern": "*", "content": "data"}, xOK},
		{files.ToolReadFile, map[string]any{"path": "f.txt"}, xOK},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			if _, err := s.call(t, tt.tool, tt.args); code(err) != tt.want {
				t.Errorf("code = %s, want %s (err %v)", code(err), tt.want, err)
			}
		})
	}
	if content(s.root, "f.txt") != "data" || !exists(s.root, "d") || exists(s.root, "g.txt") {
		t.Error("read-only workspace changed")
	}
}

func TestNewToolsCancelled(t *testing.T) {
	s := openWS(t, files.Config{})
	put(t, s.root, "f.txt", "data")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, args := range map[string]map[string]any{
		files.ToolSearchFiles: {"path": ".", "pattern": "*"},
		files.ToolEditFile:    {"path": "f.txt", "old_text": "data", "new_text": "x"},
		files.ToolMoveFile:    {"source": "f.txt", "destination": "g.txt"},
		files.ToolDeleteFile:  {"path": "f.txt"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := s.callCtx(ctx, t, name, args); code(err) != reason.Cancelled {
				t.Errorf("code = %s, want CANCELLED (err %v)", code(err), err)
			}
		})
	}
	if content(s.root, "f.txt") != "data" || exists(s.root, "g.txt") {
		t.Error("cancelled calls changed the workspace")
	}
}
