//go:build linux

package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/sandbox/native"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/command"
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

// sharedRuntime is one native runtime for the whole test binary.
var sharedRuntime = sync.OnceValues(func() (*native.Runtime, error) {
	return native.New(native.Config{ReadOnlyPaths: systemPaths}, slog.New(slog.DiscardHandler))
})

// realRuntime returns the native runtime or skips the test when this host
// cannot run it (not root, no seccomp or cgroups), as the git tests do.
func realRuntime(t *testing.T) sandbox.Runtime {
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

// fakeRuntime records the specs it is given and answers with res; it
// lets argument checks be tested without a sandbox and proves that a
// refused call never reaches the runtime.
type fakeRuntime struct {
	mu    sync.Mutex
	specs []*sandbox.Spec
	res   *sandbox.Result
	err   error
}

func (f *fakeRuntime) Name() string { return "fake" }

func (f *fakeRuntime) Run(_ context.Context, spec *sandbox.Spec) (*sandbox.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.specs = append(f.specs, spec)
	if f.err != nil {
		return nil, f.err
	}
	if f.res != nil {
		return f.res, nil
	}
	return &sandbox.Result{}, nil
}

func (f *fakeRuntime) runs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.specs)
}

// pathSearch is the test process's PATH (with a pyenv shim for python3 on
// the dev and CI machines) as a search path.
func pathSearch() []string { return filepath.SplitList(os.Getenv("PATH")) }

// defaultAllow is the allow-list of most tests.
var defaultAllow = []string{"ls", "cat", "grep", "wc", "head", "tail", "python3"}

// workspace returns a world-readable workspace with a few files (the
// sandbox user is "other"; the parents do not matter, the workspace is
// bind-mounted by itself).
func workspace(t *testing.T) string {
	t.Helper()
	ws := t.TempDir()
	if err := os.Chmod(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, ws, "hello.txt", "hello world\nsecond line\nthird line\n")
	writeFile(t, ws, "src/main.go", "package main\n\n// TODO: everything\nfunc main() {}\n")
	return ws
}

func writeFile(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newTool returns run_command on rt over ws; edit adjusts the config.
func newTool(t *testing.T, rt sandbox.Runtime, ws string, edit func(*command.Config)) *command.Tool {
	t.Helper()
	cfg := command.Config{
		Workspace:      ws,
		Allow:          defaultAllow,
		SearchPath:     pathSearch(),
		Timeout:        20 * time.Second,
		MaxTimeout:     30 * time.Second,
		MaxOutputBytes: 1 << 16,
	}
	if edit != nil {
		edit(&cfg)
	}
	tl, err := command.New(t.Context(), cfg, rt)
	if err != nil {
		t.Fatalf("command.New: %v", err)
	}
	return tl
}

// call invokes the tool with args marshalled to JSON.
func call(t *testing.T, tl *command.Tool, args map[string]any) (*tool.Result, error) {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	return tl.Call(t.Context(), raw)
}

// run invokes the tool with the argv and requires a result (which may
// still have IsError set).
func run(t *testing.T, tl *command.Tool, argv ...string) *tool.Result {
	t.Helper()
	res, err := call(t, tl, map[string]any{"command": argv})
	if err != nil {
		t.Fatalf("Call(%q): %v", argv, err)
	}
	return res
}

// mustRun is run for a call that must succeed.
func mustRun(t *testing.T, tl *command.Tool, argv ...string) string {
	t.Helper()
	res := run(t, tl, argv...)
	if res.IsError {
		t.Fatalf("Call(%q) failed: %s (%s)\n%s", argv, res.Code, res.Detail, res.Text)
	}
	return res.Structured["stdout"].(string)
}

// codeOf returns the reason code of a refusal error.
func codeOf(t *testing.T, err error) reason.Code {
	t.Helper()
	te, ok := tool.AsError(err)
	if !ok {
		t.Fatalf("error %v is not a *tool.Error", err)
	}
	return te.Code
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
