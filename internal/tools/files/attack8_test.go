//go:build unix

package files_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/files"
)

// Attack tests for all eight file tools (issue 8), black-box. The fixture
// models CVE-2025-53110 (a sibling "workspace_evil" passing a
// string-prefix check) and CVE-2025-53109 (symlinks leading out), plus
// link chains, hard links to outside files, special files and a directory
// swapped for a link while calls run.
//
//	base/
//	  canary.txt                 canary next to the workspace
//	  outside/secret.txt         canary; outside/outside-only.txt (a name only outside)
//	  workspace_evil/secret.txt  canary in the prefix sibling
//	  workspace/                 the workspace
//	    data.txt  sub/inner.txt  .env  .git/config (deny-listed secrets)
//	    link-out -> ../outside            link-canary -> ../canary.txt
//	    link-abs -> <base>/canary.txt     link-evil -> ../workspace_evil
//	    link-prefix -> ../workspace_evil/secret.txt
//	    link-etc -> /etc                  link-passwd -> /etc/passwd
//	    chain-a -> chain-b -> chain-c -> ../outside
//	    sub/up -> ../../outside           sub/deep-chain -> ../chain-a
//	    loop1 <-> loop2
//	    hardlink (to canary.txt), fifo, sock, null (char device 1,3)

// corpusDir holds the shared traversal lists, copied with attribution
// (testdata/traversal/README.md).
const corpusDir = "testdata/traversal"

type fixture8 struct {
	base, ws string
	secrets  []string
	links    map[string]string
	has      map[string]bool
	s        *ws
}

// configs8 are the workspace configurations the attack tests run under:
// the default deny-list (paths resolved for it) and none (os.Root alone).
// Confinement must not depend on the deny-list machinery.
var configs8 = []struct {
	name string
	cfg  files.Config
}{
	{"default-deny", files.Config{}},
	{"no-deny", files.Config{Deny: []string{}}},
}

func setup8(t testing.TB, cfg files.Config) *fixture8 {
	t.Helper()
	base := t.TempDir()
	f := &fixture8{base: base, ws: filepath.Join(base, "workspace"), links: map[string]string{}, has: map[string]bool{}}
	secret := func(prefix string) string {
		s := prefix + "-" + rand.Text()
		f.secrets = append(f.secrets, s)
		return s
	}
	put(t, base, "canary.txt", secret("CANARY-NEXT"))
	put(t, base, "outside/secret.txt", secret("CANARY-OUT"))
	put(t, base, "outside/outside-only.txt", "outside only")
	put(t, base, "workspace_evil/secret.txt", secret("CANARY-EVIL"))
	put(t, f.ws, "data.txt", "inside data")
	put(t, f.ws, "sub/inner.txt", "inner data")
	// Deny-listed files are secrets too, when a deny-list is in force.
	denied := func(prefix string) string {
		if cfg.Deny != nil && len(cfg.Deny) == 0 {
			return prefix + "-readable"
		}
		return secret(prefix)
	}
	put(t, f.ws, ".env", denied("DENIED-ENV"))
	put(t, f.ws, ".git/config", denied("DENIED-GITCFG"))
	// The second canary: /etc/passwd, line by line.
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) >= 16 {
				f.secrets = append(f.secrets, line)
			}
		}
	}
	f.links = map[string]string{
		"link-out":       "../outside",
		"link-canary":    "../canary.txt",
		"link-abs":       filepath.Join(base, "canary.txt"),
		"link-evil":      "../workspace_evil",
		"link-prefix":    "../workspace_evil/secret.txt",
		"link-etc":       "/etc",
		"link-passwd":    "/etc/passwd",
		"chain-a":        "chain-b",
		"chain-b":        "chain-c",
		"chain-c":        "../outside",
		"sub/up":         "../../outside",
		"sub/deep-chain": "../chain-a",
		"loop1":          "loop2",
		"loop2":          "loop1",
	}
	for name, target := range f.links {
		symlink(t, f.ws, name, target)
	}
	switch err := os.Link(filepath.Join(base, "canary.txt"), filepath.Join(f.ws, "hardlink")); {
	case err == nil:
		f.has["hardlink"] = true
	case errors.Is(err, syscall.EXDEV), errors.Is(err, syscall.EPERM):
		t.Logf("hard link fixture unavailable: %v", err)
	default:
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(f.ws, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := net.Listen("unix", filepath.Join(f.ws, "sock")); err == nil {
		f.has["sock"] = true
		t.Cleanup(func() { l.Close() })
	} else {
		t.Logf("socket fixture unavailable: %v", err)
	}
	if runtime.GOOS == "linux" {
		if err := syscall.Mknod(filepath.Join(f.ws, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err == nil {
			f.has["null"] = true
		} else {
			t.Logf("device fixture unavailable (needs CAP_MKNOD): %v", err)
		}
	}
	cfg.Root = f.ws
	f.s = openWS(t, cfg)
	return f
}

// call runs one tool call and fails t if anything a client would see
// carries a secret, or a host path the request did not contain.
func (f *fixture8) call(t testing.TB, name string, args map[string]any) (*tool.Result, error) {
	t.Helper()
	res, err := f.s.call(t, name, args)
	req, _ := json.Marshal(args)
	var seen []string
	if res != nil {
		b, _ := json.Marshal(res.Structured)
		seen = append(seen, res.Text, string(b))
		if s, ok := res.Structured["content_base64"].(string); ok {
			d, _ := base64.StdEncoding.DecodeString(s)
			seen = append(seen, string(d))
		}
	}
	if err != nil {
		te, ok := tool.AsError(err)
		if !ok {
			t.Errorf("%s %s: error is not a *tool.Error: %v", name, req, err)
		} else {
			seen = append(seen, te.ClientMessage())
		}
	}
	for _, c := range seen {
		for _, s := range f.secrets {
			if strings.Contains(c, s) {
				t.Errorf("%s %s LEAKED secret %q in %q", name, req, s, c)
			}
		}
		if strings.Contains(c, f.base) && !strings.Contains(string(req), f.base) {
			t.Errorf("%s %s leaked host path %q in %q", name, req, f.base, c)
		}
	}
	return res, err
}

type snap8 struct {
	Mode  fs.FileMode
	Sum   string
	Link  string
	Nlink uint64
}

// snapshot records every entry under base outside the workspace, some
// host files, and the workspace's planted links and deny-listed files: a
// test compares it before and after to prove nothing there was written,
// created, removed or re-linked.
func (f *fixture8) snapshot(t testing.TB) map[string]snap8 {
	t.Helper()
	out := map[string]snap8{}
	add := func(p string) {
		fi, err := os.Lstat(p)
		if err != nil {
			out[p] = snap8{Sum: "absent"}
			return
		}
		e := snap8{Mode: fi.Mode()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() {
			e.Nlink = uint64(st.Nlink)
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			e.Sum = hex.EncodeToString(sum[:])
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Link, _ = os.Readlink(p)
		}
		out[p] = e
	}
	err := filepath.WalkDir(f.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == f.ws {
			return filepath.SkipDir
		}
		add(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/etc/passwd", "/etc/shadow", "/etc/hosts", "/etc/group", "/etc/hostname"} {
		if _, err := os.Lstat(p); err == nil {
			add(p)
		}
	}
	for name := range f.links {
		add(filepath.Join(f.ws, name))
	}
	for _, rel := range []string{".env", ".git/config", "hardlink"} {
		add(filepath.Join(f.ws, rel))
	}
	return out
}

func (f *fixture8) checkUnchanged(t testing.TB, before map[string]snap8) {
	t.Helper()
	if diff := cmp.Diff(before, f.snapshot(t)); diff != "" {
		t.Errorf("files outside the workspace (or protected inside it) changed (-before +after):\n%s", diff)
	}
	if left := leftoverTemps(t, f.base); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// pos is one path-taking argument position: a tool and how the payload is
// placed in its arguments. i makes names unique; prep runs before the call.
type pos struct {
	name string
	tool string
	args func(p string, i int) map[string]any
	prep func(t testing.TB, f *fixture8, i int)
}

// positions8 covers every path argument of all eight tools.
var positions8 = []pos{
	{name: "read", tool: files.ToolReadFile, args: func(p string, _ int) map[string]any { return map[string]any{"path": p} }},
	{name: "info", tool: files.ToolFileInfo, args: func(p string, _ int) map[string]any { return map[string]any{"path": p} }},
	{name: "list", tool: files.ToolListDirectory, args: func(p string, _ int) map[string]any { return map[string]any{"path": p} }},
	{name: "search-content", tool: files.ToolSearchFiles, args: func(p string, _ int) map[string]any {
		return map[string]any{"path": p, "pattern": "**", "content": "CANARY"}
	}},
	{name: "search-names", tool: files.ToolSearchFiles, args: func(p string, _ int) map[string]any {
		return map[string]any{"path": p, "pattern": "**"}
	}},
	{name: "write", tool: files.ToolWriteFile, args: func(p string, _ int) map[string]any { return map[string]any{"path": p, "content": "x"} }},
	{name: "edit", tool: files.ToolEditFile, args: func(p string, _ int) map[string]any {
		return map[string]any{"path": p, "old_text": "x", "new_text": "y"}
	}},
	{name: "move-source", tool: files.ToolMoveFile, args: func(p string, i int) map[string]any {
		return map[string]any{"source": p, "destination": fmt.Sprintf("moved-dst-%d", i)}
	}},
	{name: "move-destination", tool: files.ToolMoveFile, args: func(p string, i int) map[string]any {
		return map[string]any{"source": fmt.Sprintf("moved-src-%d", i), "destination": p}
	}, prep: func(t testing.TB, f *fixture8, i int) {
		put(t, f.ws, fmt.Sprintf("moved-src-%d", i), "z")
	}},
	{name: "delete", tool: files.ToolDeleteFile, args: func(p string, _ int) map[string]any { return map[string]any{"path": p} }},
}

// inside reports whether the workspace-relative rel a result named is
// inside the workspace.
func inside(rel string) bool {
	c := path.Clean(rel)
	return rel != "" && !path.IsAbs(c) && c != ".." && !strings.HasPrefix(c, "../")
}

// checkSuccess verifies what a successful call at position p claims:
// results name entries inside the workspace, and writes, edits, moves and
// deletes happened there.
func (f *fixture8) checkSuccess(t testing.TB, p pos, payload string, i int, res *tool.Result) {
	t.Helper()
	str := func(k string) string { s, _ := res.Structured[k].(string); return s }
	switch p.name {
	case "search-content", "search-names":
		for _, m := range matchPaths(t, res) {
			if !inside(m) || !exists(f.ws, m) {
				t.Errorf("%s %q: match %q is not inside the workspace", p.name, payload, m)
			}
			if path.Base(m) == "outside-only.txt" {
				t.Errorf("%s %q: listed %q from outside", p.name, payload, m)
			}
		}
	case "write", "edit":
		want := map[string]string{"write": "x", "edit": "y"}[p.name]
		if rel := str("path"); !inside(rel) || content(f.ws, rel) != want {
			t.Errorf("%s %q: reported %q, content %q, want %q inside", p.name, payload, rel, content(f.ws, rel), want)
		}
	case "move-source":
		if !exists(f.ws, fmt.Sprintf("moved-dst-%d", i)) || !inside(str("source")) {
			t.Errorf("move %q: result %v but nothing at moved-dst-%d", payload, res.Structured, i)
		}
	case "move-destination":
		if rel := str("destination"); !inside(rel) || content(f.ws, rel) != "z" {
			t.Errorf("move to %q: reported %q, content %q", payload, rel, content(f.ws, rel))
		}
	case "delete":
		if rel := str("path"); !inside(rel) || exists(f.ws, rel) {
			t.Errorf("delete %q: reported %q, still there or outside", payload, rel)
		}
	}
}

// corpus8 returns the shared traversal payloads, {FILE} replaced by the
// canary next to the workspace, the canary in the prefix sibling and
// etc/passwd (deep payloads climb to / from the temporary directory).
func corpus8(t testing.TB) map[string][]string {
	t.Helper()
	lists, err := filepath.Glob(filepath.Join(corpusDir, "*.txt"))
	if err != nil || len(lists) == 0 {
		t.Fatalf("traversal corpus missing in %s (%v); it is part of the repository", corpusDir, err)
	}
	out := map[string][]string{}
	for _, file := range lists {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			line = strings.TrimSuffix(line, "\r")
			for _, name := range []string{"canary.txt", "workspace_evil/secret.txt", "etc/passwd"} {
				p := strings.ReplaceAll(line, "{FILE}", name)
				if p != "" && !seen[p] {
					seen[p] = true
					out[filepath.Base(file)] = append(out[filepath.Base(file)], p)
				}
			}
		}
	}
	return out
}

// TestTraversalCorpusAllTools sends every payload of the shared traversal
// lists as every path argument of all eight tools (both sides of
// move_file). Pass: every call is refused or served from inside the
// workspace; no canary (the files next to the workspace, /etc/passwd's
// lines, deny-listed files) and no host path reaches the client; nothing
// outside the workspace, and none of the planted links or deny-listed
// files, changed.
func TestTraversalCorpusAllTools(t *testing.T) {
	corpus := corpus8(t)
	lists := slices.Sorted(func(yield func(string) bool) {
		for k := range corpus {
			if !yield(k) {
				return
			}
		}
	})
	allowed := []reason.Code{xOK, xOut, xFbd, xNF, xInv, xEx, xTF}
	for _, c := range configs8 {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // one goroutine each, mostly system calls
			f := setup8(t, c.cfg)
			before := f.snapshot(t)
			counts := map[string]map[reason.Code]int{}
			i := 0
			for _, list := range lists {
				for line, p := range corpus[list] {
					for _, ps := range positions8 {
						i++
						if ps.prep != nil {
							ps.prep(t, f, i)
						}
						res, err := f.call(t, ps.tool, ps.args(p, i))
						code := code(err)
						if counts[ps.name] == nil {
							counts[ps.name] = map[reason.Code]int{}
						}
						counts[ps.name][code]++
						if !slices.Contains(allowed, code) {
							t.Errorf("%s line %d %q %s: code %s (err %v)", list, line+1, p, ps.name, code, err)
						}
						if err == nil {
							f.checkSuccess(t, ps, p, i, res)
						} else if ps.name == "move-destination" {
							os.Remove(filepath.Join(f.ws, fmt.Sprintf("moved-src-%d", i)))
						}
					}
					if t.Failed() {
						t.Fatalf("stopping after the first failing payload (%s line %d)", list, line+1)
					}
				}
			}
			for _, ps := range positions8 {
				t.Logf("%-16s %v", ps.name, counts[ps.name])
			}
			f.checkUnchanged(t, before)
		})
	}
}

// TestCVEModelledCases8 sends each hostile fixture entry as every path
// argument: sibling-prefix escapes (CVE-2025-53110), symlinks leading out
// (CVE-2025-53109), chains, symlinked directories, hard links to outside
// files and special files, each refused with the expected code, promptly.
func TestCVEModelledCases8(t *testing.T) {
	// Codes per position, in positions8 order: read, info, list,
	// search-content, search-names, write, edit, move-source,
	// move-destination, delete. "-" skips (delete of a link is tested in
	// TestDeleteLinksLeavesTargets8).
	type row struct {
		path  string
		needs string
		want  string
	}
	codes := map[string]reason.Code{"O": xOut, "F": xFbd, "N": xNF, "E": xEx, "K": xOK}
	escapeAll := "O O O O O O O O O O"
	linkOut := "O O O O O O O F E -" // a link leading out: followed nowhere, moved nowhere
	tests := []row{
		{"../workspace_evil/secret.txt", "", escapeAll},
		{"../workspace_evil", "", escapeAll},
		{"../canary.txt", "", escapeAll},
		{"@base/workspace_evil/secret.txt", "", escapeAll},
		{"@base/workspace/data.txt", "", escapeAll},
		{"link-evil", "", linkOut},
		{"link-evil/secret.txt", "", escapeAll},
		{"link-evil/new.txt", "", escapeAll},
		{"link-prefix", "", linkOut},
		{"link-out", "", linkOut},
		{"link-out/", "", "O O O O O O O F F F"}, // a file moved to "x/" is refused before the lstat
		{"link-out/secret.txt", "", escapeAll},
		{"link-out/outside-only.txt", "", escapeAll},
		{"link-canary", "", linkOut},
		{"link-abs", "", linkOut},
		{"link-etc", "", linkOut},
		{"link-etc/passwd", "", escapeAll},
		{"link-passwd", "", linkOut},
		{"chain-a", "", linkOut},
		{"chain-b", "", linkOut},
		{"chain-a/secret.txt", "", escapeAll},
		{"sub/up", "", linkOut},
		{"sub/up/secret.txt", "", escapeAll},
		{"sub/deep-chain/secret.txt", "", escapeAll},
		{"sub/deep-chain/new.txt", "", escapeAll},
		{"loop1", "", "F K F F F F F F E -"},
		{"loop1/x", "", "F F F F F F F F F F"},
		{"hardlink", "hardlink", "F F F F F F F F E F"},
		{"fifo", "", "F F F F F F F F E F"},
		{"fifo/x", "", "N N N N N N N N N N"},
		{"sock", "sock", "F F F F F F F F E F"},
		{"null", "null", "F F F F F F F F E F"},
	}
	for _, c := range configs8 {
		t.Run(c.name, func(t *testing.T) {
			f := setup8(t, c.cfg)
			before := f.snapshot(t)
			i := 0
			for _, tt := range tests {
				p := strings.Replace(tt.path, "@base", f.base, 1)
				want := strings.Fields(tt.want)
				if len(want) != len(positions8) {
					t.Fatalf("%s: %d expectations for %d positions", tt.path, len(want), len(positions8))
				}
				for k, ps := range positions8 {
					if want[k] == "-" {
						continue
					}
					t.Run(ps.name+"/"+strings.ReplaceAll(tt.path, "/", "|"), func(t *testing.T) {
						if tt.needs != "" && !f.has[tt.needs] {
							t.Skipf("fixture %q unavailable", tt.needs)
						}
						i++
						if ps.prep != nil {
							ps.prep(t, f, i)
						}
						_, err := f.call(t, ps.tool, ps.args(p, i))
						if got := code(err); got != codes[want[k]] {
							t.Errorf("code = %s, want %s (err %v)", got, codes[want[k]], err)
						}
					})
				}
			}
			// Walks from the root never cross a link: no canary, no
			// /etc/passwd line, no name from outside.
			needles := []string{"CANARY", "root:"}
			if c.cfg.Deny == nil {
				needles = append(needles, "DENIED")
			}
			for _, needle := range needles {
				res, err := f.call(t, files.ToolSearchFiles, map[string]any{"path": ".", "pattern": "**", "content": needle})
				if err != nil || len(matchPaths(t, res)) != 0 {
					t.Errorf("content search %q from the root: %v, %v", needle, matchPaths(t, res), err)
				}
			}
			res, err := f.call(t, files.ToolSearchFiles, map[string]any{"path": ".", "pattern": "**"})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range matchPaths(t, res) {
				if strings.Count(m, "/") > 0 && !strings.HasPrefix(m, "sub/") && !strings.HasPrefix(m, ".git/") {
					t.Errorf("name search descended into %q", m)
				}
			}
			f.checkUnchanged(t, before)
		})
	}
}

// TestDeleteLinksLeavesTargets8: delete_file of a link, wherever it
// points, removes the link and nothing else.
func TestDeleteLinksLeavesTargets8(t *testing.T) {
	for _, c := range configs8 {
		t.Run(c.name, func(t *testing.T) {
			f := setup8(t, c.cfg)
			before := f.snapshot(t)
			for name := range f.links {
				if _, err := f.call(t, files.ToolDeleteFile, map[string]any{"path": name}); err != nil {
					t.Errorf("delete %s: %v", name, err)
				}
				if exists(f.ws, name) {
					t.Errorf("link %s still exists", name)
				}
			}
			after := f.snapshot(t)
			for p, e := range before {
				if rel, err := filepath.Rel(f.ws, p); err == nil && !strings.HasPrefix(rel, "..") {
					if _, planted := f.links[filepath.ToSlash(rel)]; planted {
						continue // the links themselves are gone, as asked
					}
				}
				if diff := cmp.Diff(e, after[p]); diff != "" {
					t.Errorf("%s changed:\n%s", p, diff)
				}
			}
		})
	}
}

// TestRaceDirSwap8 swaps a workspace directory for a link to the outside
// directory (or the prefix sibling) and back, as fast as it can, while all
// eight tools work on paths through it and searches walk the tree above
// it. os.Root resolves every call relative to descriptors, so no call may
// ever act outside: no canary or outside-only name in a result, nothing
// outside written, moved or removed.
func TestRaceDirSwap8(t *testing.T) {
	const iterations = 300
	for _, c := range configs8 {
		t.Run(c.name, func(t *testing.T) {
			f := setup8(t, c.cfg)
			before := f.snapshot(t)
			dst := filepath.Join(f.ws, "racedir")
			// fill (re)creates racedir's files atomically (a reader never
			// sees a half-written one); the swapper calls it only while
			// racedir is the directory.
			fill := func() error {
				var errs []error
				for _, name := range []string{"secret.txt", "other.txt"} {
					tmp := filepath.Join(dst, ".fill-"+name)
					errs = append(errs, os.WriteFile(tmp, []byte("inside x"), 0o644), os.Rename(tmp, filepath.Join(dst, name)))
				}
				return errors.Join(errs...)
			}
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := fill(); err != nil {
				t.Fatal(err)
			}
			outLinks := []string{filepath.Join(f.ws, ".swap-out"), filepath.Join(f.ws, ".swap-evil")}
			symlink(t, f.ws, ".swap-out", "../outside")
			symlink(t, f.ws, ".swap-evil", "../workspace_evil")
			// Prefer an atomic exchange: "racedir" then always exists, as a
			// directory or as a link leading out, and calls race the swap
			// itself rather than a missing entry.
			atomic := exchange(dst, outLinks[0]) == nil // probe: swap ...
			if atomic {
				atomic = exchange(dst, outLinks[0]) == nil // ... and swap back
			}
			t.Logf("atomic exchange: %v", atomic)
			stop := make(chan struct{})
			var swapper, callers sync.WaitGroup
			swapper.Go(func() {
				tmp := filepath.Join(f.ws, ".swap")
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if atomic {
						link := outLinks[i%2]
						if err := errors.Join(exchange(dst, link), exchange(dst, link)); err != nil {
							t.Errorf("exchange: %v", err)
							return
						}
						if !exists(f.ws, "racedir/secret.txt") || !exists(f.ws, "racedir/other.txt") {
							if err := fill(); err != nil {
								t.Errorf("refill: %v", err)
								return
							}
						}
						continue
					}
					os.RemoveAll(tmp)
					var err error
					switch i % 4 {
					case 0, 2:
						if err = os.Mkdir(tmp, 0o755); err == nil {
							err = errors.Join(
								os.WriteFile(filepath.Join(tmp, "secret.txt"), []byte("inside x"), 0o644),
								os.WriteFile(filepath.Join(tmp, "other.txt"), []byte("inside x"), 0o644))
						}
					case 1:
						err = os.Symlink("../outside", tmp)
					case 3:
						err = os.Symlink("../workspace_evil", tmp)
					}
					if err != nil {
						t.Errorf("swap: %v", err)
						return
					}
					// rename(2) cannot replace a non-empty directory or put
					// a directory over a non-directory: clear dst first
					// (RemoveAll unlinks a link without following it).
					os.RemoveAll(dst)
					os.Rename(tmp, dst)
				}
			})
			type job struct {
				name string
				tool string
				args func(g, i int) map[string]any
				prep func(g, i int)
			}
			jobs := []job{
				{"read", files.ToolReadFile, func(_, _ int) map[string]any { return map[string]any{"path": "racedir/secret.txt"} }, nil},
				{"info", files.ToolFileInfo, func(_, _ int) map[string]any { return map[string]any{"path": "racedir/secret.txt"} }, nil},
				{"list", files.ToolListDirectory, func(_, _ int) map[string]any { return map[string]any{"path": "racedir"} }, nil},
				{"search-content", files.ToolSearchFiles, func(_, _ int) map[string]any {
					return map[string]any{"path": "racedir", "pattern": "**", "content": "CANARY"}
				}, nil},
				{"search-root", files.ToolSearchFiles, func(_, _ int) map[string]any {
					return map[string]any{"path": ".", "pattern": "racedir/**", "content": "x"}
				}, nil},
				{"search-names", files.ToolSearchFiles, func(_, _ int) map[string]any { return map[string]any{"path": ".", "pattern": "**"} }, nil},
				{"write", files.ToolWriteFile, func(_, _ int) map[string]any { return map[string]any{"path": "racedir/new.txt", "content": "x"} }, nil},
				{"edit", files.ToolEditFile, func(_, _ int) map[string]any {
					return map[string]any{"path": "racedir/secret.txt", "old_text": "inside", "new_text": "edited"}
				}, nil},
				{"move-source", files.ToolMoveFile, func(g, i int) map[string]any {
					return map[string]any{"source": "racedir/secret.txt", "destination": fmt.Sprintf("moved-%d-%d", g, i)}
				}, nil},
				{"move-destination", files.ToolMoveFile, func(g, i int) map[string]any {
					return map[string]any{"source": fmt.Sprintf("src-%d-%d", g, i), "destination": fmt.Sprintf("racedir/dst-%d-%d", g, i)}
				}, func(g, i int) {
					if err := os.WriteFile(filepath.Join(f.ws, fmt.Sprintf("src-%d-%d", g, i)), []byte("z"), 0o644); err != nil {
						t.Errorf("prep: %v", err) // not Fatal: this is not the test goroutine
					}
				}},
				{"delete", files.ToolDeleteFile, func(_, _ int) map[string]any { return map[string]any{"path": "racedir/secret.txt"} }, nil},
			}
			var mu sync.Mutex
			counts := map[string]map[reason.Code]int{}
			for g, j := range jobs {
				callers.Go(func() {
					n := map[reason.Code]int{}
					for i := range iterations {
						if j.prep != nil {
							j.prep(g, i)
						}
						res, err := f.call(t, j.tool, j.args(g, i))
						n[code(err)]++
						if c := code(err); c != xOK && c != xOut && c != xNF && (c != xTF || j.name != "edit") {
							t.Logf("%s: %v", j.name, err) // unusual under this race; shown for diagnosis
						}
						if err != nil || res == nil {
							continue
						}
						if j.name == "read" && res.Text != "inside x" && res.Text != "edited x" {
							t.Errorf("read_file returned %q", res.Text)
						}
						b, _ := json.Marshal(res.Structured)
						if strings.Contains(string(b), "outside-only") {
							t.Errorf("%s listed a name from outside: %s", j.name, b)
						}
					}
					mu.Lock()
					counts[j.name] = n
					mu.Unlock()
				})
			}
			callers.Wait()
			close(stop)
			swapper.Wait()
			for _, j := range jobs {
				t.Logf("%-16s %v", j.name, counts[j.name])
			}
			f.checkUnchanged(t, before)
		})
	}
}
