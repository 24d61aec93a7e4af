//go:build linux

package git_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/portcullis/portcullis/internal/tools/toolstest"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/git"
)

// Traversal corpus (issue 8) against every path argument of the git
// tools: the path of git_status, git_diff and git_log and the paths array
// of git_commit. The fixture mirrors the file tools' (attack8_test.go):
//
//	base/
//	  canary.txt                 canary next to the workspace (world-readable)
//	  workspace_evil/secret.txt  canary in the prefix sibling (CVE-2025-53110)
//	  workspace/                 the workspace: a repository with a.txt and
//	                             dir/b.txt committed, a.txt modified, notes.txt untracked
//
// and /etc/passwd's lines are the second canary.
//
// Every call runs git in a fresh sandbox, and most of the corpus is
// refused before that: the full corpus goes through a recording runtime
// (which counts runs, keeps their argv and answers "exit 0, no output"),
// and a deterministic sample of the payloads that reach git goes through
// the real sandbox.

// travCorpusDir is the shared corpus, kept once in the repository with the
// file tools (see its README.md for attribution).
const travCorpusDir = "../files/testdata/traversal"

// travSandboxSample is about how many payloads that pass validation are
// sent through the real sandbox (each to all four tools). All of them
// (about 1,900, 15,000 sandbox runs) take about seven minutes with -race
// on two CPUs; a hundred take about twenty seconds.
const travSandboxSample = 100

type travPayload = toolstest.Payload

// travCorpus returns the payloads of the shared lists in file and line
// order, {FILE} replaced by the canary next to the workspace, the canary
// in the prefix sibling and etc/passwd (deep payloads climb to / from the
// temporary directory), without duplicates.
func travCorpus(t *testing.T) []travPayload {
	return toolstest.Corpus(t, travCorpusDir, "canary.txt", "workspace_evil/secret.txt", "etc/passwd")
}

type travFixture struct {
	base, ws string
	secrets  []string
	head     string
}

func travSetup(t *testing.T) *travFixture {
	t.Helper()
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &travFixture{base: base, ws: filepath.Join(base, "workspace")}
	secret := func(prefix string) string {
		s := prefix + "-" + rand.Text()
		f.secrets = append(f.secrets, s)
		return s
	}
	// World-readable: were the sandbox user to reach them, it could read them.
	writeFile(t, base, "canary.txt", secret("CANARY-NEXT")+"\n", 0o644)
	writeFile(t, base, "workspace_evil/secret.txt", secret("CANARY-EVIL")+"\n", 0o644)
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) >= 16 {
				f.secrets = append(f.secrets, line)
			}
		}
	}
	if err := os.Mkdir(f.ws, 0o755); err != nil {
		t.Fatal(err)
	}
	hostGit(t, f.ws, "init", "-q")
	writeFile(t, f.ws, "a.txt", "alpha\n", 0o644)
	writeFile(t, f.ws, "dir/b.txt", "bravo\n", 0o644)
	hostGit(t, f.ws, "add", "-A")
	hostGit(t, f.ws, "commit", "-q", "-m", "initial commit")
	f.head = strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "HEAD"))
	// Something for git_status, git_diff and git_commit to act on.
	writeFile(t, f.ws, "a.txt", "alpha\nalpha 2\n", 0o644)
	writeFile(t, f.ws, "notes.txt", "notes\n", 0o644)
	return f
}

// travPositions are the path arguments of the four tools.
var travPositions = []struct {
	name string
	args func(p string) map[string]any
}{
	{git.ToolStatus, func(p string) map[string]any { return map[string]any{"path": p} }},
	{git.ToolDiff, func(p string) map[string]any { return map[string]any{"path": p} }},
	{git.ToolLog, func(p string) map[string]any { return map[string]any{"path": p} }},
	{git.ToolCommit, func(p string) map[string]any { return map[string]any{"message": "traversal", "paths": []string{p}} }},
}

// call runs one tool call and fails t if anything a client would see
// carries a canary, a line of /etc/passwd or a host path the request did
// not contain.
func (f *travFixture) call(t *testing.T, byName map[string]tool.Tool, name string, args map[string]any) (*tool.Result, error) {
	t.Helper()
	req, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	res, err := byName[name].Call(t.Context(), req)
	var seen []string
	if res != nil {
		b, _ := json.Marshal(res.Structured)
		seen = append(seen, res.Text, string(b))
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

// travEntry is one file system entry in a snapshot.
type travEntry struct {
	Mode fs.FileMode
	Sum  string
	Link string
}

// snapshot records every entry under base (the workspace and its .git
// included) and some host files, to prove that nothing was written,
// created, removed or re-linked anywhere, inside or out.
func (f *travFixture) snapshot(t *testing.T) map[string]travEntry {
	t.Helper()
	out := map[string]travEntry{}
	add := func(p string) {
		fi, err := os.Lstat(p)
		if err != nil {
			out[p] = travEntry{Sum: "absent"}
			return
		}
		e := travEntry{Mode: fi.Mode()}
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
	err := filepath.WalkDir(f.base, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
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
	return out
}

// travRecorder is a runtime that runs nothing: it counts the runs, keeps
// their specs and answers every one with exit 0 and no output.
type travRecorder struct {
	mu    sync.Mutex
	specs []*sandbox.Spec
}

func (r *travRecorder) Name() string { return "recorder" }

func (r *travRecorder) Run(_ context.Context, spec *sandbox.Spec) (*sandbox.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.specs = append(r.specs, spec)
	return &sandbox.Result{}, nil
}

// take returns the specs recorded since the last take.
func (r *travRecorder) take() []*sandbox.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.specs
	r.specs = nil
	return s
}

// checkSpecs verifies what would have run for a payload that passed
// validation: the path after "--" is relative and lexically inside
// /workspace, git reads it as a literal pathspec (no ":(top)" magic, no
// globs), and the only host directory under base given to the sandbox is
// the workspace itself.
func (f *travFixture) checkSpecs(t *testing.T, what string, specs []*sandbox.Spec) {
	t.Helper()
	sawPath := false
	for _, s := range specs {
		if !slices.Contains(s.Env, "GIT_LITERAL_PATHSPECS=1") {
			t.Errorf("%s: run without GIT_LITERAL_PATHSPECS=1: %q", what, s.Env)
		}
		for _, m := range s.Mounts {
			if m.Source != f.ws && (m.Source == f.base || strings.HasPrefix(m.Source, f.base+"/")) {
				t.Errorf("%s: mount %+v outside the workspace", what, m)
			}
			if m.Source == f.ws && (m.Target != "/workspace" || m.Writable) {
				t.Errorf("%s: workspace mounted as %+v", what, m)
			}
		}
		i := slices.Index(s.Argv, "--")
		if i < 0 {
			continue // the configuration listing
		}
		for _, a := range s.Argv[i+1:] {
			sawPath = true
			j := path.Join("/workspace", a)
			if a == "" || path.IsAbs(a) || j != "/workspace" && !strings.HasPrefix(j, "/workspace/") {
				t.Errorf("%s: git would get path %q, not inside /workspace", what, a)
			}
		}
	}
	if !sawPath {
		t.Errorf("%s: no run carried the path (runs: %d)", what, len(specs))
	}
}

// TestTraversalCorpusGit sends every payload of the shared traversal lists
// as the path of git_status, git_diff and git_log and as the one element
// of git_commit's paths.
//
// Phase 1, full corpus on a recording runtime: a payload is either refused
// before any sandbox run (PATH_OUTSIDE_WORKSPACE, PATH_FORBIDDEN or
// INVALID_ARGUMENTS, zero runs) or reaches git with a relative path
// lexically inside /workspace (checkSpecs). Phase 2, a deterministic
// sample of the payloads that reach git, through the real sandbox: each is
// served (OK) or fails in git (NON_ZERO_EXIT). In both phases no canary,
// no /etc/passwd line and no host path reaches the client; afterwards
// nothing under base (workspace and .git included) or in /etc changed,
// HEAD did not move and no object in the repository holds a canary.
func TestTraversalCorpusGit(t *testing.T) {
	corpus := travCorpus(t)
	f := travSetup(t)
	before := f.snapshot(t)

	// Phase 1: validation, full corpus.
	rec := &travRecorder{}
	byRec := byName(newToolsOn(t, f.ws, rec, nil))
	refusedCodes := []reason.Code{reason.PathOutsideWorkspace, reason.PathForbidden, reason.InvalidArguments}
	reachCodes := map[string][]reason.Code{
		git.ToolStatus: {reason.OK}, git.ToolDiff: {reason.OK}, git.ToolLog: {reason.OK},
		// the recorder's write-tree prints no tree id
		git.ToolCommit: {reason.ToolFailed},
	}
	counts := map[string]map[reason.Code]int{}
	reaches := map[string]bool{} // payloads that reached the runtime
	var reaching []travPayload
	start := time.Now()
	for _, pl := range corpus {
		for _, pos := range travPositions {
			what := fmt.Sprintf("%s %s:%d %q", pos.name, pl.List, pl.Line, pl.Path)
			res, err := f.call(t, byRec, pos.name, pos.args(pl.Path))
			code := codeOf(res, err)
			if counts[pos.name] == nil {
				counts[pos.name] = map[reason.Code]int{}
			}
			counts[pos.name][code]++
			specs := rec.take()
			if len(specs) == 0 {
				if !slices.Contains(refusedCodes, code) {
					t.Errorf("%s: nothing ran, code %s (err %v)", what, code, err)
				}
				continue
			}
			if !slices.Contains(reachCodes[pos.name], code) {
				t.Errorf("%s: %d runs, code %s (err %v)", what, len(specs), code, err)
			}
			f.checkSpecs(t, what, specs)
			if !reaches[pl.Path] {
				reaches[pl.Path] = true
				reaching = append(reaching, pl)
			}
		}
		if t.Failed() {
			t.Fatalf("stopping after the first failing payload (%s line %d)", pl.List, pl.Line)
		}
	}
	for _, pos := range travPositions {
		t.Logf("validation %-10s %v", pos.name, counts[pos.name])
	}
	t.Logf("validation: %d payloads x %d tools in %v; %d payloads reach git", len(corpus), len(travPositions), time.Since(start), len(reaching))

	// Phase 2: a deterministic sample of the payloads that reach git, in
	// the real sandbox (skipped where it is unavailable; the checks below
	// still run). The tools run concurrently: reads in parallel, commits
	// serialised by the tools.
	step := max(1, (len(reaching)+travSandboxSample-1)/travSandboxSample)
	var sample []travPayload
	for i := 0; i < len(reaching); i += step {
		sample = append(sample, reaching[i])
	}
	t.Run("sandbox", func(t *testing.T) {
		var runs atomic.Int64
		live := hookRuntime{Runtime: runtime(t), before: func(*sandbox.Spec) { runs.Add(1) }}
		byLive := byName(newToolsOn(t, f.ws, live, nil))
		start := time.Now()
		var mu sync.Mutex
		counts := map[string]map[reason.Code]int{}
		var wg sync.WaitGroup
		for _, pos := range travPositions {
			wg.Go(func() {
				n := map[reason.Code]int{}
				for _, pl := range sample {
					res, err := f.call(t, byLive, pos.name, pos.args(pl.Path))
					code := codeOf(res, err)
					n[code]++
					if code != reason.OK && code != reason.NonZeroExit || pos.name == git.ToolCommit && code == reason.OK {
						t.Errorf("%s %s:%d %q: code %s (err %v)\n%s", pos.name, pl.List, pl.Line, pl.Path, code, err, resultText(res))
					}
				}
				mu.Lock()
				counts[pos.name] = n
				mu.Unlock()
			})
		}
		wg.Wait()
		for _, pos := range travPositions {
			t.Logf("sandbox %-10s %v", pos.name, counts[pos.name])
		}
		t.Logf("sandbox: %d payloads x %d tools in %v, %d sandbox runs", len(sample), len(travPositions), time.Since(start), runs.Load())
		if want := int64(len(sample) * len(travPositions) * 2); runs.Load() < want {
			t.Errorf("%d sandbox runs, want at least %d (configuration listing and command per call)", runs.Load(), want)
		}
	})

	if diff := cmp.Diff(before, f.snapshot(t)); diff != "" {
		t.Errorf("files changed (-before +after):\n%s", diff)
	}
	if head := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "HEAD")); head != f.head {
		t.Errorf("HEAD moved from %s to %s:\n%s", f.head, head, hostGit(t, f.ws, "log", "--stat", f.head+"..HEAD"))
	}
	all := hostGit(t, f.ws, "cat-file", "--batch-all-objects", "--batch")
	for _, s := range f.secrets {
		if strings.Contains(all, s) {
			t.Errorf("object store holds secret %q", s)
		}
	}
}

func resultText(res *tool.Result) string {
	if res == nil {
		return ""
	}
	return res.Text
}
