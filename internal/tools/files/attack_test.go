//go:build unix

package files

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// traversalDir holds the traversal payload lists, copied with attribution
// from shared/testdata/traversal (see testdata/traversal/README.md).
const traversalDir = "testdata/traversal"

// callTimeout bounds every call in the attack suite: a tool that blocks
// (for example opening a FIFO) fails the test instead of hanging it.
const callTimeout = 10 * time.Second

// attackFixture is a workspace with hostile entries and canaries outside:
//
//	base/
//	  outside/secret.txt      canary
//	  ws-evil/secret.txt      canary (sibling whose name has "ws" as prefix)
//	  ws/                     the workspace
//	    data.txt, sub/inner.txt
//	    link-outside -> ../outside          link-etc -> /etc
//	    link-evil -> ../ws-evil             link-canary -> ../outside/secret.txt
//	    link-canary-abs -> <abs canary>     chain-a -> chain-b -> ../outside
//	    sub/up -> ../../outside             updown -> ../ws/data.txt
//	    abs-inside -> <abs ws>/data.txt     loop1 <-> loop2
//	    hardlink (hard link to the canary), fifo, sock, null (char device 1,3)
type attackFixture struct {
	base, ws   string
	canaryPath string
	secrets    []string // strings that must never reach a client
	links      map[string]string
	has        map[string]bool // "hardlink", "sock", "null"
	w          *Workspace
	tools      map[string]tool.Tool
}

func setupAttack(t testing.TB) *attackFixture {
	t.Helper()
	base := t.TempDir()
	f := &attackFixture{
		base:       base,
		ws:         filepath.Join(base, "ws"),
		canaryPath: filepath.Join(base, "outside", "secret.txt"),
		links:      map[string]string{},
		has:        map[string]bool{},
		tools:      map[string]tool.Tool{},
	}
	canary := "CANARY-" + rand.Text()
	evil := "CANARY-EVIL-" + rand.Text()
	f.secrets = []string{canary, evil}
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		if line, _, _ := strings.Cut(string(b), "\n"); len(line) > 8 {
			f.secrets = append(f.secrets, line)
		}
	}
	writeFile(t, f.canaryPath, canary)
	writeFile(t, filepath.Join(base, "ws-evil", "secret.txt"), evil)
	writeFile(t, filepath.Join(f.ws, "data.txt"), "inside data")
	writeFile(t, filepath.Join(f.ws, "sub", "inner.txt"), "inner data")

	f.links = map[string]string{
		"link-outside":    "../outside",
		"link-etc":        "/etc",
		"link-evil":       "../ws-evil",
		"link-canary":     "../outside/secret.txt",
		"link-canary-abs": f.canaryPath,
		"chain-a":         "chain-b",
		"chain-b":         "../outside",
		"sub/up":          "../../outside",
		"updown":          "../ws/data.txt",
		"abs-inside":      filepath.Join(f.ws, "data.txt"),
		"loop1":           "loop2",
		"loop2":           "loop1",
	}
	for name, target := range f.links {
		if err := os.Symlink(target, filepath.Join(f.ws, name)); err != nil {
			t.Fatal(err)
		}
	}
	switch err := os.Link(f.canaryPath, filepath.Join(f.ws, "hardlink")); {
	case err == nil:
		f.has["hardlink"] = true
	case errors.Is(err, syscall.EXDEV):
		t.Logf("hard link fixture unavailable: %v", err)
	default:
		t.Fatalf("os.Link: %v", err)
	}
	if err := syscall.Mkfifo(filepath.Join(f.ws, "fifo"), 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	if l, err := net.Listen("unix", filepath.Join(f.ws, "sock")); err == nil {
		f.has["sock"] = true
		t.Cleanup(func() { l.Close() })
	} else {
		t.Logf("unix socket fixture unavailable: %v", err)
	}
	if runtime.GOOS == "linux" {
		// Character device 1,3 (/dev/null); needs CAP_MKNOD.
		if err := syscall.Mknod(filepath.Join(f.ws, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err == nil {
			f.has["null"] = true
		} else {
			t.Logf("device fixture unavailable: %v", err)
		}
	}

	w, err := New(Config{Root: f.ws})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	f.w = w
	for _, tl := range w.Tools() {
		f.tools[tl.Definition().Name] = tl
	}
	return f
}

var errCallTimeout = errors.New("test: call timed out")

// call runs one tool call with a deadline on the test itself and checks
// its result with assertNoLeak.
func (f *attackFixture) call(t testing.TB, name, path string) (*tool.Result, error) {
	t.Helper()
	args := map[string]any{"path": path}
	if name == ToolWriteFile {
		args["content"] = "x"
	}
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	type out struct {
		res *tool.Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := f.tools[name].Call(context.Background(), raw)
		ch <- out{res, err}
	}()
	select {
	case o := <-ch:
		f.assertNoLeak(t, name, path, o.res, o.err)
		return o.res, o.err
	case <-time.After(callTimeout):
		// Errorf, not Fatalf: call also runs on non-test goroutines.
		t.Errorf("%s(%q) did not return within %v (blocked?)", name, path, callTimeout)
		return nil, errCallTimeout
	}
}

// assertNoLeak fails t if a result or client message carries a secret or
// a host path, or if a failure is not a *tool.Error.
func (f *attackFixture) assertNoLeak(t testing.TB, name, path string, res *tool.Result, err error) {
	t.Helper()
	var client []string
	if res != nil {
		b, _ := json.Marshal(res.Structured)
		client = append(client, res.Text, string(b))
		if s, ok := res.Structured["content_base64"].(string); ok {
			d, _ := base64.StdEncoding.DecodeString(s)
			client = append(client, string(d))
		}
	}
	if err != nil {
		te, ok := tool.AsError(err)
		if !ok {
			t.Errorf("%s(%q): error is not a *tool.Error: %v", name, path, err)
			return
		}
		client = append(client, te.ClientMessage())
	}
	for _, c := range client {
		for _, s := range f.secrets {
			if strings.Contains(c, s) {
				t.Errorf("%s(%q) LEAKED secret %q in %q", name, path, s, c)
			}
		}
		if strings.Contains(c, f.base) {
			t.Errorf("%s(%q) leaked host path %q in %q", name, path, f.base, c)
		}
	}
}

type snapEntry struct {
	Mode fs.FileMode
	Sum  string
	Link string
}

// snapshotOutside records every entry under base except the workspace,
// plus well-known host files, so a test can prove nothing outside changed.
func (f *attackFixture) snapshotOutside(t testing.TB) map[string]snapEntry {
	t.Helper()
	snap := map[string]snapEntry{}
	add := func(p string, fi fs.FileInfo) {
		e := snapEntry{Mode: fi.Mode()}
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
		snap[p] = e
	}
	err := filepath.Walk(f.base, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == f.ws {
			return filepath.SkipDir
		}
		add(p, fi)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/etc/passwd", "/etc/shadow", "/etc/hosts", "/etc/hostname", "/etc/group"} {
		if fi, err := os.Lstat(p); err == nil {
			add(p, fi)
		}
	}
	// The planted links and the hard link must still be what they were.
	for name := range f.links {
		fi, err := os.Lstat(filepath.Join(f.ws, name))
		if err != nil {
			t.Fatal(err)
		}
		add(filepath.Join(f.ws, name), fi)
	}
	return snap
}

// Short names for the expectation tables.
const (
	cOut = reason.PathOutsideWorkspace
	cFbd = reason.PathForbidden
	cNF  = reason.NotFound
	cInv = reason.InvalidArguments
	cOK  = reason.OK
)

var toolOrder = []string{ToolReadFile, ToolFileInfo, ToolListDirectory, ToolWriteFile}

// TestAttackFixtures sends every hostile entry to every tool: each must be
// refused with the expected code, promptly, without leaking, and the
// writes must change nothing outside the workspace.
func TestAttackFixtures(t *testing.T) {
	f := setupAttack(t)
	before := f.snapshotOutside(t)
	tests := []struct {
		path  string
		needs string
		want  [4]reason.Code // read, info, list, write
	}{
		{"link-outside", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"link-outside/secret.txt", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"link-outside/new.txt", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"link-outside/", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"link-etc", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"link-etc/passwd", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"link-evil", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"link-evil/secret.txt", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"link-canary", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"link-canary-abs", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"chain-a", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"chain-a/secret.txt", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"chain-b/secret.txt", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"sub/up", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"sub/up/secret.txt", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		// Cleaned lexically first: "sub/ws/data.txt", which does not exist.
		{"sub/up/../ws/data.txt", "", [4]reason.Code{cNF, cNF, cNF, cNF}},
		{"updown", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"abs-inside", "", [4]reason.Code{cOut, cOut, cOut, cOut}},
		{"loop1", "", [4]reason.Code{cFbd, cOK, cFbd, cFbd}},
		{"loop1/x", "", [4]reason.Code{cFbd, cFbd, cFbd, cFbd}},
		{"hardlink", "hardlink", [4]reason.Code{cFbd, cFbd, cFbd, cFbd}},
		{"fifo", "", [4]reason.Code{cFbd, cFbd, cFbd, cFbd}},
		{"fifo/x", "", [4]reason.Code{cNF, cNF, cNF, cNF}},
		{"sock", "sock", [4]reason.Code{cFbd, cFbd, cFbd, cFbd}},
		{"null", "null", [4]reason.Code{cFbd, cFbd, cFbd, cFbd}},
	}
	for _, tt := range tests {
		for i, name := range toolOrder {
			t.Run(name+"/"+tt.path, func(t *testing.T) {
				if tt.needs != "" && !f.has[tt.needs] {
					t.Skipf("fixture %q unavailable on this system", tt.needs)
				}
				_, err := f.call(t, name, tt.path)
				if got := codeOf(err); got != tt.want[i] {
					t.Errorf("code = %s, want %s (err %v)", got, tt.want[i], err)
				}
			})
		}
	}
	if diff := cmp.Diff(before, f.snapshotOutside(t)); diff != "" {
		t.Errorf("files outside the workspace changed (-before +after):\n%s", diff)
	}
	if left := tempFiles(t, f.base); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestAttackLexical covers paths refused before any system call and names
// that only look like escapes: '%' and '\' are literal, so such a path is a
// file inside the workspace (NOT_FOUND to read, created by write_file).
func TestAttackLexical(t *testing.T) {
	f := setupAttack(t)
	before := f.snapshotOutside(t)
	tests := []struct {
		path    string
		want    [4]reason.Code // read, info, list, write
		literal bool           // write_file creates this literal name in the root
	}{
		{"/etc/passwd", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"//x", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"/", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{f.canaryPath, [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{filepath.Join(f.ws, "data.txt"), [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"..", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"../", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"../outside/secret.txt", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"../ws-evil/secret.txt", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"../ws/data.txt", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"sub/../../outside/secret.txt", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"./../outside", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"a/b/../../../outside", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"data.txt/../../outside/secret.txt", [4]reason.Code{cOut, cOut, cOut, cOut}, false},
		{"data.txt\x00.png", [4]reason.Code{cFbd, cFbd, cFbd, cFbd}, false},
		{"\x00", [4]reason.Code{cFbd, cFbd, cFbd, cFbd}, false},
		{"", [4]reason.Code{cInv, cInv, cInv, cInv}, false},
		{"%2e%2e%2foutside%2fsecret.txt", [4]reason.Code{cNF, cNF, cNF, cOK}, true},
		{"..\\outside\\secret.txt", [4]reason.Code{cNF, cNF, cNF, cOK}, true},
		{"\\..\\..\\etc\\passwd", [4]reason.Code{cNF, cNF, cNF, cOK}, true},
		{"..%2f..%2f..%2fetc%2fpasswd", [4]reason.Code{cNF, cNF, cNF, cOK}, true},
		{"..%252f..%252foutside", [4]reason.Code{cNF, cNF, cNF, cOK}, true},
		{"...", [4]reason.Code{cNF, cNF, cNF, cOK}, true},
		{"..;/outside/secret.txt", [4]reason.Code{cNF, cNF, cNF, cNF}, false},
		{"%2e%2e/outside/secret.txt", [4]reason.Code{cNF, cNF, cNF, cNF}, false},
		{"....//outside/secret.txt", [4]reason.Code{cNF, cNF, cNF, cNF}, false},
		{"~/.ssh/id_rsa", [4]reason.Code{cFbd, cFbd, cFbd, cFbd}, false}, // deny-list "id_rsa*"
		{"file:///etc/passwd", [4]reason.Code{cNF, cNF, cNF, cNF}, false},
	}
	for _, tt := range tests {
		for i, name := range toolOrder {
			t.Run(name+"/"+strings.ReplaceAll(tt.path, "/", "|"), func(t *testing.T) {
				_, err := f.call(t, name, tt.path)
				if got := codeOf(err); got != tt.want[i] {
					t.Errorf("code = %s, want %s (err %v)", got, tt.want[i], err)
				}
				if name == ToolWriteFile && tt.literal {
					b, err := os.ReadFile(filepath.Join(f.ws, tt.path))
					if err != nil || string(b) != "x" {
						t.Errorf("literal file %q in workspace = %q (%v), want %q", tt.path, b, err, "x")
					}
				}
			})
		}
	}
	if diff := cmp.Diff(before, f.snapshotOutside(t)); diff != "" {
		t.Errorf("files outside the workspace changed (-before +after):\n%s", diff)
	}
}

// corpusPayloads returns every line of the shared traversal lists, with
// {FILE} replaced by the canaries' names relative to the workspace's
// parent, deduplicated. A missing corpus is fatal: CI has it.
func corpusPayloads(t testing.TB) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(traversalDir, "*.txt"))
	if err != nil || len(files) == 0 {
		abs, _ := filepath.Abs(traversalDir)
		t.Fatalf("traversal corpus missing: no *.txt in %s (%v); the corpus is part of the repository", abs, err)
	}
	out := map[string][]string{}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		for _, line := range lines {
			line = strings.TrimSuffix(line, "\r")
			for _, name := range []string{"outside/secret.txt", "ws-evil/secret.txt"} {
				p := strings.ReplaceAll(line, "{FILE}", name)
				if !seen[p] {
					seen[p] = true
					out[filepath.Base(file)] = append(out[filepath.Base(file)], p)
				}
			}
		}
	}
	return out
}

// TestTraversalCorpus sends every payload of the shared traversal lists to
// every tool. Pass: each call is refused or answered from inside the
// workspace, no secret or host path reaches the client, and after the
// write run nothing outside the workspace changed.
func TestTraversalCorpus(t *testing.T) {
	f := setupAttack(t)
	corpus := corpusPayloads(t)
	before := f.snapshotOutside(t)
	allowed := []reason.Code{cOK, cOut, cFbd, cNF, cInv}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range corpus {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range toolOrder {
		t.Run(name, func(t *testing.T) {
			if name == ToolWriteFile && t.Failed() {
				t.Fatal("read-only tools failed; not running writes")
			}
			for _, file := range names {
				counts := map[reason.Code]int{}
				for i, p := range corpus[file] {
					res, err := f.call(t, name, p)
					code := codeOf(err)
					counts[code]++
					if !slices.Contains(allowed, code) {
						t.Errorf("%s line %d %q: code %s (err %v)", file, i+1, p, code, err)
					}
					if name == ToolWriteFile && err == nil {
						rel, _ := res.Structured["path"].(string)
						b, rerr := os.ReadFile(filepath.Join(f.ws, rel))
						if rel == "" || rel == ".." || strings.HasPrefix(rel, "../") || strings.HasPrefix(rel, "/") || rerr != nil || string(b) != "x" {
							t.Errorf("%s line %d %q: write reported %q, not found inside the workspace (%v)", file, i+1, p, rel, rerr)
						}
					}
				}
				t.Logf("%s: %d payloads: %v", file, len(corpus[file]), counts)
			}
		})
	}
	if diff := cmp.Diff(before, f.snapshotOutside(t)); diff != "" {
		t.Errorf("files outside the workspace changed (-before +after):\n%s", diff)
	}
}

// TestRaceSwap swaps a workspace entry between a regular file and escapes
// (symlink to the canary, hard link to the canary, or for a parent
// directory a symlink to the outside directory) while read_file, file_info
// and write_file run against it. The canary must never be returned and
// nothing outside may change.
func TestRaceSwap(t *testing.T) {
	const iterations = 2000
	tests := []struct {
		name string
		path string // argument sent to the tools
		swap func(f *attackFixture, i int, tmp string) error
		dst  string // workspace entry the swapper replaces
	}{
		{"final component", "race.txt", func(f *attackFixture, i int, tmp string) error {
			switch i % 4 {
			case 0:
				return os.WriteFile(tmp, []byte("inside"), 0o644)
			case 1:
				return os.Symlink("../outside/secret.txt", tmp)
			case 2:
				return os.Symlink(f.canaryPath, tmp)
			default:
				if f.has["hardlink"] {
					return os.Link(f.canaryPath, tmp)
				}
				return os.Symlink("link-canary", tmp)
			}
		}, "race.txt"},
		{"parent directory", "racedir/secret.txt", func(f *attackFixture, i int, tmp string) error {
			if i%2 == 0 {
				if err := os.Mkdir(tmp, 0o755); err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(tmp, "secret.txt"), []byte("inside"), 0o644)
			}
			return os.Symlink("../outside", tmp)
		}, "racedir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setupAttack(t)
			before := f.snapshotOutside(t)
			dst := filepath.Join(f.ws, tt.dst)
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
					os.RemoveAll(tmp)
					if err := tt.swap(f, i, tmp); err != nil {
						t.Errorf("swap: %v", err)
						return
					}
					// rename(2) cannot put a directory over a non-directory
					// or anything over a non-empty directory: clear dst.
					// RemoveAll unlinks a symlink without following it.
					if fi, err := os.Lstat(tmp); err == nil && fi.IsDir() {
						os.RemoveAll(dst)
					} else if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
						os.RemoveAll(dst)
					}
					os.Rename(tmp, dst)
				}
			})
			counts := map[string]map[reason.Code]int{}
			var mu sync.Mutex
			for _, name := range []string{ToolReadFile, ToolFileInfo, ToolWriteFile} {
				callers.Go(func() {
					c := map[reason.Code]int{}
					for range iterations {
						res, err := f.call(t, name, tt.path)
						c[codeOf(err)]++
						if name == ToolReadFile && err == nil && res.Text != "inside" && res.Text != "x" {
							t.Errorf("read_file returned %q, want %q or %q", res.Text, "inside", "x")
						}
					}
					mu.Lock()
					counts[name] = c
					mu.Unlock()
				})
			}
			callers.Wait()
			close(stop)
			swapper.Wait()
			t.Logf("codes per tool: %v", counts)
			if diff := cmp.Diff(before, f.snapshotOutside(t)); diff != "" {
				t.Errorf("files outside the workspace changed (-before +after):\n%s", diff)
			}
		})
	}
}

// FuzzResolve fuzzes the path argument of the read-only tools against the
// attack fixture. Invariant: no call panics, hangs or returns a secret or
// host path. Seeds: the first line of each shared traversal list plus the
// fixture's hostile names.
func FuzzResolve(f *testing.F) {
	for _, payloads := range corpusPayloads(f) {
		f.Add(payloads[0])
	}
	for _, s := range []string{"link-outside/secret.txt", "chain-a/secret.txt", "hardlink", "fifo", "sock",
		"../outside/secret.txt", "/etc/passwd", "%2e%2e%2f", "sub/up/../../outside", "..\\..\\outside"} {
		f.Add(s)
	}
	fx := setupAttack(f)
	f.Fuzz(func(t *testing.T, p string) {
		for _, name := range []string{ToolReadFile, ToolFileInfo, ToolListDirectory} {
			res, err := fx.call(t, name, p)
			if name == ToolReadFile && err == nil && strings.Contains(res.Text, "CANARY") {
				t.Errorf("read_file(%q) returned a canary", p)
			}
		}
	})
}
