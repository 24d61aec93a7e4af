package files

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/reason"
)

// TestEditFileRefusesConcurrentChange: when the file is rewritten between
// edit_file reading it and renaming the edited copy over it, the edit is
// refused, the concurrent content survives and no temporary file is left.
func TestEditFileRefusesConcurrentChange(t *testing.T) {
	tests := []struct {
		name   string
		change func(root string) error
		want   string // t.txt afterwards
	}{
		{"rewritten in place", func(root string) error {
			return os.WriteFile(filepath.Join(root, "t.txt"), []byte("concurrent write!"), 0o644)
		}, "concurrent write!"},
		{"replaced by rename", func(root string) error {
			p := filepath.Join(root, "other")
			if err := os.WriteFile(p, []byte("replaced"), 0o644); err != nil {
				return err
			}
			return os.Rename(p, filepath.Join(root, "t.txt"))
		}, "replaced"},
		{"removed", func(root string) error { return os.Remove(filepath.Join(root, "t.txt")) }, "<absent>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, root := newWorkspace(t, Config{})
			writeFile(t, filepath.Join(root, "t.txt"), "hello world")
			w.beforeRename = func(string) error { return tt.change(root) }
			_, err := callTool(t, w, ToolEditFile, map[string]any{"path": "t.txt", "old_text": "world", "new_text": "there"})
			if got := codeOf(err); got != reason.ToolFailed || !strings.Contains(err.Error(), "changed during the edit") {
				t.Fatalf("code = %s (err %v), want TOOL_FAILED changed during the edit", got, err)
			}
			got := "<absent>"
			if b, err := os.ReadFile(filepath.Join(root, "t.txt")); err == nil {
				got = string(b)
			}
			if got != tt.want {
				t.Errorf("t.txt = %q, want %q", got, tt.want)
			}
			if left := tempFiles(t, root); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// FuzzCompileGlob: compileGlob never panics, and for patterns without
// "**" the NFA agrees with path.Match applied component by component.
func FuzzCompileGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"*.go", "main.go"}, {"**/*.go", "a/b/c.go"}, {"a/**/b", "a/b"}, {"[a-", "x"}, {"a//b", "a/b"},
		{"\\*", "*"}, {"**", ""}, {"?/?", "a/b"}, {"a/**/**/b", "a/x/y/b"}, {"/x", "x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		g, te := compileGlob(pattern)
		if te != nil {
			if te.Code != reason.InvalidArguments {
				t.Fatalf("compileGlob(%q) code %s", pattern, te.Code)
			}
			return
		}
		st := g.start()
		comps := strings.Split(name, "/")
		for _, c := range comps {
			st = g.step(st, c)
		}
		if strings.Contains("/"+pattern+"/", "/**/") {
			return
		}
		parts := strings.Split(pattern, "/")
		want := len(parts) == len(comps)
		for i := 0; want && i < len(parts); i++ {
			want, _ = path.Match(parts[i], comps[i])
		}
		if got := g.matches(st); got != want {
			t.Errorf("pattern %q name %q: NFA %v, path.Match %v", pattern, name, got, want)
		}
	})
}

// FuzzDenyResolve: for any client path, checkPath either refuses it or
// yields paths that are clean, relative and not deny-listed, and resolve
// never reports a path above the root.
func FuzzDenyResolve(f *testing.F) {
	for _, s := range []string{".env", "g/config", "alias", "sub/../.env", "a/b/c", "loop", "up/x", "x.PEM", "%2e%2e/.env"} {
		f.Add(s)
	}
	dir := f.TempDir()
	for _, l := range [][2]string{{"g", ".git"}, {"alias", ".env"}, {"loop", "loop"}, {"up", "../.."}, {"in", "sub"}} {
		if err := os.Symlink(l[1], filepath.Join(dir, l[0])); err != nil {
			f.Fatal(err)
		}
	}
	writeFile(f, filepath.Join(dir, ".git", "config"), "x")
	writeFile(f, filepath.Join(dir, "sub", "f"), "x")
	w, err := New(Config{Root: dir})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { w.Close() })
	f.Fuzz(func(t *testing.T, p string) {
		for _, follow := range []bool{false, true} {
			rel, canon, te := w.checkPath(p, follow)
			if te != nil {
				continue
			}
			for _, q := range []string{rel, canon} {
				if q == "" || strings.HasPrefix(q, "/") || q == ".." || strings.HasPrefix(q, "../") || path.Clean(q) != q {
					t.Fatalf("checkPath(%q, %v) = %q, %q: not clean and relative", p, follow, rel, canon)
				}
				if pat, bad := w.deniedBy(q); bad {
					t.Fatalf("checkPath(%q, %v) let %q through (pattern %q)", p, follow, q, pat)
				}
			}
		}
	})
}
