//go:build linux

package git_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/git"
)

// countingRuntime counts runs and refuses them: a call that must be
// refused before anything runs is made against it.
type countingRuntime struct{ n atomic.Int32 }

func (r *countingRuntime) Name() string { return "counting" }
func (r *countingRuntime) Run(context.Context, *sandbox.Spec) (*sandbox.Result, error) {
	r.n.Add(1)
	return nil, errors.New("countingRuntime: nothing may run")
}

// hookRuntime calls before ahead of each run of the wrapped runtime.
type hookRuntime struct {
	sandbox.Runtime
	before func(*sandbox.Spec)
}

func (h hookRuntime) Run(ctx context.Context, spec *sandbox.Spec) (*sandbox.Result, error) {
	h.before(spec)
	return h.Runtime.Run(ctx, spec)
}

func TestDefinitions(t *testing.T) {
	ws, _, _, _ := newRepo(t)
	tl, err := git.New(git.Config{Workspace: ws, Git: gitBinary(t)}, &countingRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	type def struct {
		Name        string
		Sensitivity tool.Sensitivity
		ReadOnly    bool
		Destructive bool
		Labels      []string
		Props       []string
		Required    []string
	}
	var got []def
	for _, x := range tl.Tools() {
		d := x.Definition()
		if !tool.ValidName(d.Name) || d.Description == "" || d.Timeout <= 0 {
			t.Errorf("%s: bad name, description or timeout: %+v", d.Name, d)
		}
		raw, err := json.Marshal(d.InputSchema)
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			Type                 string                     `json:"type"`
			AdditionalProperties *bool                      `json:"additionalProperties"`
			Properties           map[string]json.RawMessage `json:"properties"`
			Required             []string                   `json:"required"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		if s.Type != "object" || s.AdditionalProperties == nil || *s.AdditionalProperties {
			t.Errorf("%s: schema %s: want an object with additionalProperties false", d.Name, raw)
		}
		var props []string
		for k := range s.Properties {
			props = append(props, k)
		}
		slices.Sort(props)
		got = append(got, def{d.Name, d.Sensitivity, d.ReadOnly, d.Destructive, d.Labels, props, s.Required})
	}
	read := []string{"git", "read", "sandboxed"}
	want := []def{
		{"git_status", tool.Low, true, false, read, []string{"path", "ref"}, nil},
		{"git_diff", tool.Low, true, false, read, []string{"path", "ref"}, nil},
		{"git_log", tool.Low, true, false, read, []string{"limit", "path", "ref"}, nil},
		{"git_commit", tool.Critical, false, true, []string{"git", "write", "sandboxed"}, []string{"message", "paths"}, []string{"message"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("definitions (-want +got):\n%s", d)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ws, _, _, _ := newRepo(t)
	g := gitBinary(t)
	notExec := filepath.Join(t.TempDir(), "git")
	writeFile(t, filepath.Dir(notExec), "git", "not a program", 0o644)
	for _, c := range []struct {
		name string
		cfg  git.Config
		rt   sandbox.Runtime
	}{
		{"nil runtime", git.Config{Workspace: ws, Git: g}, nil},
		{"no workspace", git.Config{Git: g}, &countingRuntime{}},
		{"missing workspace", git.Config{Workspace: filepath.Join(ws, "missing"), Git: g}, &countingRuntime{}},
		{"workspace is a file", git.Config{Workspace: filepath.Join(ws, "a.txt"), Git: g}, &countingRuntime{}},
		{"git not executable", git.Config{Workspace: ws, Git: notExec}, &countingRuntime{}},
		{"relative git", git.Config{Workspace: ws, Git: "git"}, &countingRuntime{}},
		{"bad level", git.Config{Workspace: ws, Git: g, Level: "lenient"}, &countingRuntime{}},
		{"negative timeout", git.Config{Workspace: ws, Git: g, Timeout: -time.Second}, &countingRuntime{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tl, err := git.New(c.cfg, c.rt)
			if err == nil {
				tl.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestStatus(t *testing.T) {
	f := setup(t)
	writeFile(t, f.ws, "a.txt", "changed\n", 0o644)
	writeFile(t, f.ws, "new.txt", "new\n", 0o644)
	writeFile(t, f.ws, "dir/c.txt", "charlie\n", 0o644)
	for _, c := range []struct {
		name string
		args map[string]any
		want string
	}{
		{"all", nil, "## main\n M a.txt\n?? dir/c.txt\n?? new.txt\n"},
		{"path", map[string]any{"path": "dir"}, "## main\n?? dir/c.txt\n"},
		{"path dot", map[string]any{"path": "."}, "## main\n M a.txt\n?? dir/c.txt\n?? new.txt\n"},
		{"ref", map[string]any{"ref": f.initial}, "M\ta.txt\n"},
		{"ref and path", map[string]any{"ref": "HEAD~1", "path": "dir"}, "(no output)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := f.ok(t, "git_status", c.args)
			if res.Text != c.want {
				t.Errorf("text %q, want %q", res.Text, c.want)
			}
			if res.Structured["exit_code"] != 0 {
				t.Errorf("structured %v", res.Structured)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	f := setup(t)
	writeFile(t, f.ws, "dir/b.txt", "bravo\nbravo 2\n", 0o644)
	for _, c := range []struct {
		name        string
		args        map[string]any
		contains    []string
		notContains []string
	}{
		{"unstaged", nil, []string{"+++ b/dir/b.txt", "+bravo 2"}, []string{"a.txt"}},
		{"path outside the change", map[string]any{"path": "a.txt"}, nil, []string{"b.txt"}},
		{"against a commit", map[string]any{"ref": f.initial}, []string{"+alpha 2", "+bravo 2"}, nil},
		{"range", map[string]any{"ref": f.initial + ".." + f.second}, []string{"+alpha 2"}, []string{"bravo 2"}},
		{"range with path", map[string]any{"ref": "HEAD~1..HEAD", "path": "dir"}, nil, []string{"alpha"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := f.ok(t, "git_diff", c.args)
			for _, s := range c.contains {
				if !strings.Contains(res.Text, s) {
					t.Errorf("output lacks %q:\n%s", s, res.Text)
				}
			}
			for _, s := range c.notContains {
				if strings.Contains(res.Text, s) {
					t.Errorf("output has %q:\n%s", s, res.Text)
				}
			}
		})
	}
}

func TestLog(t *testing.T) {
	f := setup(t)
	for _, c := range []struct {
		name string
		args map[string]any
		want []string // commit ids, newest first
	}{
		{"default", nil, []string{f.second, f.initial}},
		{"limit", map[string]any{"limit": 1}, []string{f.second}},
		{"path", map[string]any{"path": "dir/b.txt"}, []string{f.initial}},
		{"ref", map[string]any{"ref": "HEAD~1"}, []string{f.initial}},
		{"range", map[string]any{"ref": f.initial + "..main"}, []string{f.second}},
		{"reflog syntax", map[string]any{"ref": "main@{1}"}, []string{f.initial}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := f.ok(t, "git_log", c.args)
			var got []string
			for _, line := range strings.Split(res.Text, "\n") {
				if id, ok := strings.CutPrefix(line, "commit "); ok {
					got = append(got, id)
				}
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("commits (-want +got):\n%s\n%s", d, res.Text)
			}
		})
	}
	t.Run("limit out of range", func(t *testing.T) {
		for _, n := range []int{-1, git.MaxLogLimit + 1} {
			if code := codeOf(f.call(t, "git_log", map[string]any{"limit": n})); code != reason.InvalidArguments {
				t.Errorf("limit %d: %s, want INVALID_ARGUMENTS", n, code)
			}
		}
	})
	t.Run("unknown revision", func(t *testing.T) {
		res, err := f.call(t, "git_log", map[string]any{"ref": "no-such-branch"})
		if code := codeOf(res, err); code != reason.NonZeroExit || res.Structured["exit_code"] != 128 {
			t.Errorf("%s %v, want NON_ZERO_EXIT with exit code 128", code, res)
		}
	})
}

// commitFields reads a commit object with host git: author and committer
// ("name <email>") and the message exactly as stored.
func commitFields(t *testing.T, ws, rev string) (author, committer, message string) {
	t.Helper()
	out := hostGit(t, ws, "cat-file", "commit", rev)
	header, message, ok := strings.Cut(out, "\n\n")
	if !ok {
		t.Fatalf("commit object %q", out)
	}
	for _, line := range strings.Split(header, "\n") {
		k, v, _ := strings.Cut(line, " ")
		if k == "author" || k == "committer" {
			if i := strings.Index(v, "> "); i >= 0 {
				v = v[:i+1]
			}
			if k == "author" {
				author = v
			} else {
				committer = v
			}
		}
	}
	return author, committer, message
}

func TestCommit(t *testing.T) {
	f := setup(t)
	writeFile(t, f.ws, "a.txt", "alpha changed\n", 0o644)
	writeFile(t, f.ws, "new.txt", "new\n", 0o644)
	writeFile(t, f.ws, "untracked.txt", "stays untracked\n", 0o644)
	before := snapshot(t, f.ws)

	// paths: only new.txt is staged and committed.
	res := f.ok(t, "git_commit", map[string]any{"message": "add new.txt", "paths": []string{"new.txt"}})
	first := structured(res, "commit")
	if head := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "HEAD")); head != first {
		t.Fatalf("HEAD %s, result %s", head, first)
	}
	if p := structured(res, "parent"); p != f.second {
		t.Errorf("parent %s, want %s", p, f.second)
	}
	if got := hostGit(t, f.ws, "diff-tree", "--no-commit-id", "--name-status", "-r", first); got != "A\tnew.txt\n" {
		t.Errorf("first commit changes %q, want only new.txt added", got)
	}
	author, committer, msg := commitFields(t, f.ws, first)
	if author != "Portcullis <portcullis@localhost>" || committer != author {
		t.Errorf("author %q committer %q", author, committer)
	}
	if msg != "add new.txt\n" {
		t.Errorf("message %q (no principal in ctx: no trailer)", msg)
	}

	// no paths: every tracked change (a.txt), not the untracked file.
	res = f.ok(t, "git_commit", map[string]any{"message": "update a.txt\n\nbody line\n"})
	second := structured(res, "commit")
	if got := hostGit(t, f.ws, "diff-tree", "--no-commit-id", "--name-status", "-r", second); got != "M\ta.txt\n" {
		t.Errorf("second commit changes %q, want only a.txt modified", got)
	}
	if got := hostGit(t, f.ws, "show", "HEAD:a.txt"); got != "alpha changed\n" {
		t.Errorf("committed a.txt %q", got)
	}
	if got := hostGit(t, f.ws, "status", "--porcelain"); got != "?? untracked.txt\n" {
		t.Errorf("status after commits %q, want only the untracked file", got)
	}
	if got := hostGit(t, f.ws, "reflog", "--format=%gs", "main"); !strings.HasPrefix(got, "commit: update a.txt\ncommit: add new.txt\n") {
		t.Errorf("branch reflog:\n%s", got)
	}
	if got := hostGit(t, f.ws, "reflog", "--format=%gs", "HEAD"); !strings.HasPrefix(got, "commit: update a.txt\ncommit: add new.txt\n") {
		t.Errorf("HEAD reflog:\n%s", got)
	}
	hostGit(t, f.ws, "fsck", "--strict", "--no-dangling")
	if d := diffSnapshots(before, snapshot(t, f.ws)); len(d) > 0 {
		t.Errorf("git_commit changed the work tree: %v", d)
	}
	if _, err := os.Lstat(filepath.Join(f.ws, ".git", "index.lock")); err == nil {
		t.Error("index.lock left behind")
	}
}

func TestCommitStagesDeletionsAndDirectories(t *testing.T) {
	f := setup(t)
	if err := os.Remove(filepath.Join(f.ws, "dir", "b.txt")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.ws, "dir/sub/c.txt", "charlie\n", 0o644)
	res := f.ok(t, "git_commit", map[string]any{"message": "rework dir", "paths": []string{"dir"}})
	got := hostGit(t, f.ws, "diff-tree", "--no-commit-id", "--name-status", "-r", structured(res, "commit"))
	if got != "D\tdir/b.txt\nA\tdir/sub/c.txt\n" {
		t.Errorf("changes %q", got)
	}
}

func TestCommitPrincipalTrailer(t *testing.T) {
	f := setup(t)
	writeFile(t, f.ws, "a.txt", "by alice\n", 0o644)
	ctx := principal.NewContext(t.Context(), &principal.Principal{Name: "alice", Roles: []string{"developer"}})
	res, err := f.callCtx(ctx, t, "git_commit", map[string]any{"message": "signed off"})
	if err != nil || res.IsError {
		t.Fatalf("commit: %v %v", err, res)
	}
	_, _, msg := commitFields(t, f.ws, "HEAD")
	if msg != "signed off\n\nPortcullis-Principal: alice\n" {
		t.Errorf("message %q", msg)
	}
	if got := hostGit(t, f.ws, "log", "-1", "--format=%(trailers:key=Portcullis-Principal,valueonly)"); strings.TrimSpace(got) != "alice" {
		t.Errorf("trailer value %q, want alice", got)
	}
}

func TestCommitNothingToCommit(t *testing.T) {
	f := setup(t)
	res, err := f.call(t, "git_commit", map[string]any{"message": "empty"})
	if code := codeOf(res, err); code != reason.NonZeroExit || !strings.Contains(res.Text, "nothing to commit") {
		t.Fatalf("%s %v, want NON_ZERO_EXIT nothing to commit", code, res)
	}
	if head := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "HEAD")); head != f.second {
		t.Errorf("HEAD moved to %s", head)
	}
}

func TestCommitUnbornBranch(t *testing.T) {
	ws := t.TempDir()
	if err := os.Chmod(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	hostGit(t, ws, "init", "-q", "-b", "feature/x")
	f := &fixture{ws: ws, tools: newTools(t, ws, nil)}
	f.byName = byName(f.tools)
	if code := codeOf(f.call(t, "git_commit", map[string]any{"message": "empty"})); code != reason.NonZeroExit {
		t.Errorf("commit of an empty tree: %s, want NON_ZERO_EXIT", code)
	}
	if code := codeOf(f.call(t, "git_log", nil)); code != reason.NonZeroExit {
		t.Errorf("log of an unborn branch: %s, want NON_ZERO_EXIT", code)
	}
	writeFile(t, ws, "first.txt", "one\n", 0o644)
	res := f.ok(t, "git_commit", map[string]any{"message": "root commit", "paths": []string{"first.txt"}})
	if structured(res, "parent") != "" || structured(res, "branch") != "feature/x" {
		t.Errorf("structured %v", res.Structured)
	}
	if got := hostGit(t, ws, "rev-list", "--parents", "feature/x"); strings.TrimSpace(got) != structured(res, "commit") {
		t.Errorf("rev-list %q: want one root commit", got)
	}
	if got := hostGit(t, ws, "reflog", "--format=%gs", "feature/x"); got != "commit (initial): root commit\n" {
		t.Errorf("reflog %q", got)
	}
	hostGit(t, ws, "fsck", "--strict")
}

func TestCommitDetachedHead(t *testing.T) {
	f := setup(t)
	hostGit(t, f.ws, "checkout", "-q", "--detach", f.initial)
	writeFile(t, f.ws, "a.txt", "detached\n", 0o644)
	res := f.ok(t, "git_commit", map[string]any{"message": "on a detached head"})
	if res.Structured["detached"] != true {
		t.Errorf("structured %v", res.Structured)
	}
	if head := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "HEAD")); head != structured(res, "commit") {
		t.Errorf("HEAD %s, want the new commit", head)
	}
	if main := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "main")); main != f.second {
		t.Errorf("main moved to %s", main)
	}
}

func TestCommitWithPackedRefs(t *testing.T) {
	f := setup(t)
	hostGit(t, f.ws, "pack-refs", "--all", "--prune")
	if _, err := os.Lstat(filepath.Join(f.ws, ".git", "refs", "heads", "main")); err == nil {
		t.Fatal("main is still a loose ref")
	}
	writeFile(t, f.ws, "a.txt", "packed\n", 0o644)
	res := f.ok(t, "git_commit", map[string]any{"message": "on a packed ref"})
	if p := structured(res, "parent"); p != f.second {
		t.Errorf("parent %s, want %s", p, f.second)
	}
	if main := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "main")); main != structured(res, "commit") {
		t.Errorf("main %s", main)
	}
}

// TestCommitRefusesRace moves the branch between the sandboxed build and
// the install: the compare-and-swap refuses, and the other commit stays.
func TestCommitRefusesRace(t *testing.T) {
	ws, _, _, second := newRepo(t)
	var racing string
	rt := hookRuntime{Runtime: runtime(t), before: func(spec *sandbox.Spec) {
		if slices.Contains(spec.Argv, "commit-tree") && racing == "" {
			hostGit(t, ws, "commit", "-q", "--allow-empty", "-m", "racing")
			racing = strings.TrimSpace(hostGit(t, ws, "rev-parse", "HEAD"))
		}
	}}
	tl, err := git.New(git.Config{Workspace: ws, Git: gitBinary(t)}, rt)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	f := &fixture{ws: ws, tools: tl, byName: byName(tl)}
	writeFile(t, ws, "a.txt", "mine\n", 0o644)
	res, err := f.call(t, "git_commit", map[string]any{"message": "mine"})
	if code := codeOf(res, err); code != reason.ToolFailed {
		t.Fatalf("%s %v, want TOOL_FAILED", code, err)
	}
	if head := strings.TrimSpace(hostGit(t, ws, "rev-parse", "HEAD")); head != racing || racing == second {
		t.Errorf("HEAD %s, want the racing commit %s", head, racing)
	}
	for _, l := range []string{"index.lock", "refs/heads/main.lock"} {
		if _, err := os.Lstat(filepath.Join(ws, ".git", l)); err == nil {
			t.Errorf("%s left behind", l)
		}
	}
}

func TestCommitRespectsGitLocks(t *testing.T) {
	f := setup(t)
	writeFile(t, f.ws, "a.txt", "locked\n", 0o644)
	lock := filepath.Join(f.ws, ".git", "index.lock")
	writeFile(t, filepath.Dir(lock), "index.lock", "", 0o644)
	res, err := f.call(t, "git_commit", map[string]any{"message": "while locked"})
	if code := codeOf(res, err); code != reason.ToolFailed {
		t.Fatalf("%s, want TOOL_FAILED", code)
	}
	if _, err := os.Lstat(lock); err != nil {
		t.Errorf("another process's index.lock was removed: %v", err)
	}
	if head := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "HEAD")); head != f.second {
		t.Errorf("HEAD moved to %s", head)
	}
}

// TestRefusedBeforeRunning: arguments that are refused never reach the
// sandbox.
func TestRefusedBeforeRunning(t *testing.T) {
	ws, _, _, _ := newRepo(t)
	rt := &countingRuntime{}
	tl, err := git.New(git.Config{Workspace: ws, Git: gitBinary(t)}, rt)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	f := &fixture{ws: ws, tools: tl, byName: byName(tl)}
	long := strings.Repeat("x", git.MaxMessageBytes+1)
	for _, c := range []struct {
		name string
		tool string
		args any
		want reason.Code
	}{
		{"message with NUL", "git_commit", map[string]any{"message": "a\x00b"}, reason.InvalidArguments},
		{"empty message", "git_commit", map[string]any{"message": ""}, reason.InvalidArguments},
		{"blank message", "git_commit", map[string]any{"message": " \n\t\n"}, reason.InvalidArguments},
		{"missing message", "git_commit", map[string]any{}, reason.InvalidArguments},
		{"message too long", "git_commit", map[string]any{"message": long}, reason.TooLarge},
		{"forged trailer", "git_commit", map[string]any{"message": "x\n\nportcullis-principal: admin"}, reason.InvalidArguments},
		{"unknown argument", "git_commit", map[string]any{"message": "x", "all": true}, reason.InvalidArguments},
		{"case-folded key", "git_commit", map[string]any{"Message": "x"}, reason.InvalidArguments},
		{"paths not an array", "git_commit", map[string]any{"message": "x", "paths": "a.txt"}, reason.InvalidArguments},
		{"empty path in paths", "git_commit", map[string]any{"message": "x", "paths": []string{""}}, reason.InvalidArguments},
		{"absolute path in paths", "git_commit", map[string]any{"message": "x", "paths": []string{"/etc/passwd"}}, reason.PathOutsideWorkspace},
		{"dotdot in paths", "git_commit", map[string]any{"message": "x", "paths": []string{"a.txt", "dir/../../x"}}, reason.PathOutsideWorkspace},
		{"NUL in paths", "git_commit", map[string]any{"message": "x", "paths": []string{"a\x00b"}}, reason.PathForbidden},
		{"too many paths", "git_commit", map[string]any{"message": "x", "paths": make([]string, git.MaxPaths+1)}, reason.InvalidArguments},
		{"ref --output", "git_diff", map[string]any{"ref": "--output=/tmp/x"}, reason.InvalidArguments},
		{"ref -c", "git_log", map[string]any{"ref": "-c"}, reason.InvalidArguments},
		{"ref --exec", "git_log", map[string]any{"ref": "--exec=touch /tmp/pwned"}, reason.InvalidArguments},
		{"ref -p", "git_status", map[string]any{"ref": "-p"}, reason.InvalidArguments},
		{"ref with space", "git_log", map[string]any{"ref": "HEAD --all"}, reason.InvalidArguments},
		{"ref blob syntax", "git_diff", map[string]any{"ref": "HEAD:a.txt"}, reason.InvalidArguments},
		{"ref search syntax", "git_log", map[string]any{"ref": ":/secret"}, reason.InvalidArguments},
		{"ref with NUL", "git_log", map[string]any{"ref": "HEAD\x00"}, reason.InvalidArguments},
		{"ref too long", "git_log", map[string]any{"ref": strings.Repeat("a", git.MaxRefBytes+1)}, reason.InvalidArguments},
		{"path dotdot", "git_diff", map[string]any{"path": ".."}, reason.PathOutsideWorkspace},
		{"path dotdot inside", "git_status", map[string]any{"path": "dir/../../etc"}, reason.PathOutsideWorkspace},
		{"path absolute", "git_log", map[string]any{"path": "/etc/passwd"}, reason.PathOutsideWorkspace},
		{"path NUL", "git_diff", map[string]any{"path": "a\x00"}, reason.PathForbidden},
		{"status limit", "git_status", map[string]any{"limit": 3}, reason.InvalidArguments},
		{"not an object", "git_status", []int{1}, reason.InvalidArguments},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, _ := json.Marshal(c.args)
			res, err := f.byName[c.tool].Call(t.Context(), raw)
			if code := codeOf(res, err); code != c.want {
				t.Errorf("%s: %s (%v), want %s", c.tool, code, err, c.want)
			}
		})
	}
	if n := rt.n.Load(); n != 0 {
		t.Errorf("%d sandbox runs for refused calls", n)
	}
}

func TestNotARepository(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, ws string)
	}{
		{"no .git", func(*testing.T, string) {}},
		{".git is a file", func(t *testing.T, ws string) { writeFile(t, ws, ".git", "gitdir: /elsewhere\n", 0o644) }},
		{".git is a symlink", func(t *testing.T, ws string) {
			other := t.TempDir()
			hostGit(t, other, "init", "-q")
			if err := os.Symlink(filepath.Join(other, ".git"), filepath.Join(ws, ".git")); err != nil {
				t.Fatal(err)
			}
		}},
		{".git is empty", func(t *testing.T, ws string) {
			if err := os.Mkdir(filepath.Join(ws, ".git"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		// Passes the gateway's check, not git's: git diff falls back to
		// comparing two files (implicit --no-index); ref "zz" and path
		// "a.txt" must not be diffed as files.
		{".git with a bad HEAD", func(t *testing.T, ws string) {
			hostGit(t, ws, "init", "-q")
			writeFile(t, ws, ".git/HEAD", "garbage\n", 0o644)
			writeFile(t, ws, "zz", "zulu\n", 0o644)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ws := t.TempDir()
			if err := os.Chmod(ws, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, ws, "a.txt", "alpha\n", 0o644)
			c.setup(t, ws)
			f := &fixture{ws: ws, tools: newTools(t, ws, nil)}
			f.byName = byName(f.tools)
			for _, name := range []string{"git_status", "git_diff", "git_log", "git_commit"} {
				args := map[string]any{"ref": "zz", "path": "a.txt"}
				switch name {
				case "git_status":
					args = nil
				case "git_commit":
					args = map[string]any{"message": "x"}
				}
				res, err := f.call(t, name, args)
				msg := ""
				if te, ok := tool.AsError(err); ok {
					msg = te.ClientMessage()
				} else if res != nil {
					msg = res.Text
				}
				if code := codeOf(res, err); code != reason.NotFound || !strings.HasPrefix(msg, "workspace is not a git repository") {
					t.Errorf("%s: %s %q, want NOT_FOUND", name, code, msg)
				}
				if strings.Contains(msg, "zulu") || strings.Contains(msg, "alpha") {
					t.Errorf("%s compared work-tree files outside a repository:\n%s", name, msg)
				}
			}
		})
	}
}

func TestOutputIsCapped(t *testing.T) {
	ws, _, _, _ := newRepo(t)
	tl := newTools(t, ws, func(c *git.Config) { c.MaxOutputBytes = 1024 })
	f := &fixture{ws: ws, tools: tl, byName: byName(tl)}
	writeFile(t, ws, "a.txt", strings.Repeat("a long line of changed text\n", 4000), 0o644)
	res := f.ok(t, "git_diff", nil)
	if res.Structured["stdout_truncated"] != true || len(structured(res, "stdout")) > 1024 {
		t.Errorf("stdout %d bytes, truncated %v; want at most 1024, truncated", len(structured(res, "stdout")), res.Structured["stdout_truncated"])
	}
}

func TestTimeoutAndCancellation(t *testing.T) {
	ws, _, _, _ := newRepo(t)
	tl := newTools(t, ws, func(c *git.Config) { c.Timeout = time.Nanosecond })
	f := &fixture{ws: ws, tools: tl, byName: byName(tl)}
	if code := codeOf(f.call(t, "git_status", nil)); code != reason.Timeout {
		t.Errorf("with a 1ns budget: %s, want TIMEOUT", code)
	}
	f = setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if code := codeOf(f.callCtx(ctx, t, "git_log", nil)); code != reason.Cancelled {
		t.Errorf("cancelled: %s, want CANCELLED", code)
	}
}

func TestCommitSHA256Repository(t *testing.T) {
	ws := t.TempDir()
	if err := os.Chmod(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := hostGitErr(t, ws, nil, "init", "-q", "--object-format=sha256"); err != nil {
		t.Skipf("SKIP: this git cannot create SHA-256 repositories: %s", out)
	}
	f := &fixture{ws: ws, tools: newTools(t, ws, nil)}
	f.byName = byName(f.tools)
	if code := codeOf(f.call(t, "git_commit", map[string]any{"message": "empty"})); code != reason.NonZeroExit {
		t.Errorf("commit of the empty tree: %s, want NON_ZERO_EXIT", code)
	}
	writeFile(t, ws, "a.txt", "alpha\n", 0o644)
	res := f.ok(t, "git_commit", map[string]any{"message": "sha256", "paths": []string{"a.txt"}})
	if id := structured(res, "commit"); len(id) != 64 || strings.TrimSpace(hostGit(t, ws, "rev-parse", "HEAD")) != id {
		t.Errorf("commit %q", id)
	}
	hostGit(t, ws, "fsck", "--strict")
	if log := f.ok(t, "git_log", nil); !strings.Contains(log.Text, "sha256") {
		t.Errorf("log:\n%s", log.Text)
	}
}
