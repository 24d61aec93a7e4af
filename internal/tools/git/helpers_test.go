//go:build linux

package git_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/sandbox/native"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/git"
)

func TestMain(m *testing.M) {
	native.Main() // the runtime re-executes this binary as the sandbox init
	code := m.Run()
	if rt, err := sharedRuntime(); err == nil {
		rt.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// systemPaths matches the gateway's default read-only sandbox paths.
var systemPaths = []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/alternatives"}

// sharedRuntime is one native runtime for the whole test binary (the
// runtime keeps warm inits per mount layout); its error, if any, skips the
// tests that need it.
var sharedRuntime = sync.OnceValues(func() (*native.Runtime, error) {
	return native.New(native.Config{ReadOnlyPaths: systemPaths}, slog.New(slog.DiscardHandler))
})

// runtime returns the native runtime or skips the test when this host
// cannot run it (not root, no seccomp or cgroups): the same preconditions
// as internal/tools/python's tests, which fail instead of skipping.
func runtime(t *testing.T) sandbox.Runtime {
	t.Helper()
	rt, err := sharedRuntime()
	if err != nil {
		if errors.Is(err, sandbox.ErrUnavailable) {
			t.Skipf("SKIP: native sandbox unavailable on this host (run as root on Linux with cgroups and seccomp): %v", err)
		}
		t.Fatalf("native.New: %v", err)
	}
	return rt
}

// gitBinary returns the real git or skips the test.
func gitBinary(t *testing.T) string {
	t.Helper()
	p, err := git.Detect()
	if err != nil {
		t.Skipf("SKIP: git is not installed: %v", err)
	}
	return p
}

// hostGit runs git on the host for test setup and verification only:
// isolated from the host's configuration and hardened like the tool, so
// that the attacks planted in a fixture never run during setup either.
func hostGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := hostGitErr(t, dir, nil, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func hostGitErr(t *testing.T, dir string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	full := []string{"-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "protocol.allow=never",
		"-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main",
		"-c", "commit.gpgSign=false", "-c", "log.showSignature=false", "-c", "core.pager=cat"}
	cmd := exec.Command(gitBinary(t), append(full, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"LC_ALL=C", "GIT_TERMINAL_PROMPT=0", "GIT_AUTHOR_DATE=1700000000 +0000", "GIT_COMMITTER_DATE=1700000000 +0000"}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeFile writes content to dir/rel, creating parents, mode perm.
func writeFile(t *testing.T, dir, rel, content string, perm fs.FileMode) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
}

// hostRuntime runs a Spec directly on the host, without any isolation:
// mount targets in argv and environment are mapped back to their host
// sources and the program starts in Dir, an empty directory like the
// sandbox's work dir. Attack tests use it to show that the hardened
// invocation alone, without the sandbox, runs nothing from the repository.
type hostRuntime struct{ Dir string }

func (h *hostRuntime) Name() string { return "host (no sandbox)" }

func (h *hostRuntime) Run(ctx context.Context, spec *sandbox.Spec) (*sandbox.Result, error) {
	var repl []string
	for _, m := range spec.Mounts {
		if m.Target != "" && m.Target != m.Source {
			repl = append(repl, m.Target, m.Source)
		}
	}
	r := strings.NewReplacer(repl...)
	argv := make([]string, len(spec.Argv))
	for i, a := range spec.Argv {
		argv[i] = r.Replace(a)
	}
	env := make([]string, len(spec.Env))
	for i, e := range spec.Env {
		env[i] = r.Replace(e)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, h.Dir
	cmd.Stdin = bytes.NewReader(spec.Stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := &sandbox.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), WallTime: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
	case err != nil:
		return nil, err
	}
	return res, nil
}

// fixture is a workspace with a git repository and one or two commits.
type fixture struct {
	ws      string // workspace (host path)
	outside string // a directory outside the workspace
	tools   *git.Tools
	byName  map[string]tool.Tool
	initial string // first commit id
	second  string // second commit id
	listen  string // address of a loopback listener (attack tests)
}

// newRepo creates a world-readable workspace with a repository holding
// a.txt and dir/b.txt in a first commit and a change to a.txt in a second.
func newRepo(t *testing.T) (ws, outside, first, second string) {
	t.Helper()
	ws = t.TempDir()
	outside = t.TempDir()
	for _, d := range []string{ws, outside} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hostGit(t, ws, "init", "-q")
	writeFile(t, ws, "a.txt", "alpha\n", 0o644)
	writeFile(t, ws, "dir/b.txt", "bravo\n", 0o644)
	hostGit(t, ws, "add", "-A")
	hostGit(t, ws, "commit", "-q", "-m", "initial commit")
	first = strings.TrimSpace(hostGit(t, ws, "rev-parse", "HEAD"))
	writeFile(t, ws, "a.txt", "alpha\nalpha 2\n", 0o644)
	hostGit(t, ws, "commit", "-q", "-a", "-m", "second commit")
	second = strings.TrimSpace(hostGit(t, ws, "rev-parse", "HEAD"))
	return ws, outside, first, second
}

// newTools returns the tools on ws with the native runtime.
func newTools(t *testing.T, ws string, edit func(*git.Config)) *git.Tools {
	t.Helper()
	return newToolsOn(t, ws, runtime(t), edit)
}

func newToolsOn(t *testing.T, ws string, rt sandbox.Runtime, edit func(*git.Config)) *git.Tools {
	t.Helper()
	cfg := git.Config{
		Workspace:      ws,
		Git:            gitBinary(t),
		Timeout:        30 * time.Second,
		MaxOutputBytes: 1 << 20,
	}
	if edit != nil {
		edit(&cfg)
	}
	tl, err := git.New(cfg, rt)
	if err != nil {
		t.Fatalf("git.New: %v", err)
	}
	t.Cleanup(func() {
		if err := tl.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tl
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ws, outside, first, second := newRepo(t)
	f := &fixture{ws: ws, outside: outside, initial: first, second: second}
	f.tools = newTools(t, ws, nil)
	f.byName = byName(f.tools)
	return f
}

func byName(tl *git.Tools) map[string]tool.Tool {
	m := map[string]tool.Tool{}
	for _, x := range tl.Tools() {
		m[x.Definition().Name] = x
	}
	return m
}

// call invokes a tool with args marshalled to JSON.
func (f *fixture) call(t *testing.T, name string, args map[string]any) (*tool.Result, error) {
	t.Helper()
	return f.callCtx(t.Context(), t, name, args)
}

func (f *fixture) callCtx(ctx context.Context, t *testing.T, name string, args map[string]any) (*tool.Result, error) {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	tl, ok := f.byName[name]
	if !ok {
		t.Fatalf("no tool %s", name)
	}
	return tl.Call(ctx, raw)
}

// ok invokes a tool and requires success.
func (f *fixture) ok(t *testing.T, name string, args map[string]any) *tool.Result {
	t.Helper()
	res, err := f.call(t, name, args)
	if err != nil {
		t.Fatalf("%s(%v): error %v", name, args, err)
	}
	if res.IsError {
		t.Fatalf("%s(%v): %s (%s)\n%s", name, args, res.Code, res.Detail, res.Text)
	}
	return res
}

// codeOf returns the reason code of a refusal error or failed result.
func codeOf(res *tool.Result, err error) reason.Code {
	if err != nil {
		if te, ok := tool.AsError(err); ok {
			return te.Code
		}
		return "GO_ERROR:" + reason.Code(err.Error())
	}
	if res != nil && res.IsError {
		return res.Code
	}
	return reason.OK
}

// snapshot records every path under dir except .git (type, mode and
// content), to prove that a call changed nothing in the work tree.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == ".git" {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " -> " + l
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			v += " " + string(b)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			d = append(d, "removed "+k)
		} else if w != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	sort.Strings(d)
	return d
}

// structured returns a string field of the structured content.
func structured(res *tool.Result, key string) string {
	if res == nil || res.Structured == nil {
		return ""
	}
	s, _ := res.Structured[key].(string)
	return s
}
