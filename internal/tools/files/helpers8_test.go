package files_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/files"
)

// Helpers for the black-box tests of issue 8 (package files_test): they
// use only the exported API, as the gateway does.

// Short names for the expectation tables.
const (
	xOK  = reason.OK
	xOut = reason.PathOutsideWorkspace
	xFbd = reason.PathForbidden
	xNF  = reason.NotFound
	xInv = reason.InvalidArguments
	xEx  = reason.AlreadyExists
	xTF  = reason.ToolFailed
	xRO  = reason.ReadOnly
)

// callLimit bounds every call: a tool that blocks (a FIFO opened without
// O_NONBLOCK) fails its test instead of hanging it.
const callLimit = 10 * time.Second

// ws is an open workspace and its tools by name.
type ws struct {
	w     *files.Workspace
	root  string
	tools map[string]tool.Tool
}

// openWS opens a workspace on cfg.Root (a fresh directory when empty) and
// closes it at the end of the test.
func openWS(t testing.TB, cfg files.Config) *ws {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	w, err := files.New(cfg)
	if err != nil {
		t.Fatalf("files.New: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	s := &ws{w: w, root: cfg.Root, tools: map[string]tool.Tool{}}
	for _, tl := range w.Tools() {
		s.tools[tl.Definition().Name] = tl
	}
	return s
}

// call runs tool name with args (marshalled; a string is sent as raw
// JSON) under callLimit. A call that does not return in time fails t
// (Errorf: call also runs on non-test goroutines).
func (s *ws) call(t testing.TB, name string, args any) (*tool.Result, error) {
	t.Helper()
	return s.callCtx(context.Background(), t, name, args)
}

func (s *ws) callCtx(ctx context.Context, t testing.TB, name string, args any) (*tool.Result, error) {
	t.Helper()
	var raw json.RawMessage
	if str, ok := args.(string); ok {
		raw = json.RawMessage(str)
	} else {
		b, err := json.Marshal(args)
		if err != nil {
			t.Errorf("marshal %v: %v", args, err)
			return nil, err
		}
		raw = b
	}
	tl, ok := s.tools[name]
	if !ok {
		t.Errorf("no tool %q", name)
		return nil, errors.New("no such tool")
	}
	type out struct {
		res *tool.Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := tl.Call(ctx, raw)
		ch <- out{res, err}
	}()
	timer := time.NewTimer(callLimit)
	defer timer.Stop()
	select {
	case o := <-ch:
		return o.res, o.err
	case <-timer.C:
		t.Errorf("%s(%s) did not return within %v (blocked?)", name, raw, callLimit)
		return nil, errors.New("test: call timed out")
	}
}

// code returns the reason code of a call's error: OK for nil, the
// *tool.Error's code, or a marker no expectation equals.
func code(err error) reason.Code {
	if err == nil {
		return reason.OK
	}
	if te, ok := tool.AsError(err); ok {
		return te.Code
	}
	return reason.Code("NOT_A_TOOL_ERROR: " + err.Error())
}

// clientMsg returns what a client would see of err.
func clientMsg(err error) string {
	if te, ok := tool.AsError(err); ok {
		return te.ClientMessage()
	}
	return ""
}

// put writes content to root/rel, creating parents.
func put(t testing.TB, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mkdirs creates root/rel and its parents.
func mkdirs(t testing.TB, root, rel string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(rel)), 0o755); err != nil {
		t.Fatal(err)
	}
}

// symlink creates root/rel -> target.
func symlink(t testing.TB, root, rel, target string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(root, filepath.FromSlash(rel))); err != nil {
		t.Fatal(err)
	}
}

// content returns root/rel's content, or "<absent>" / "<err: ...>".
func content(root, rel string) string {
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "<absent>"
	case err != nil:
		return "<err: " + err.Error() + ">"
	}
	return string(b)
}

// exists reports whether root/rel exists (lstat).
func exists(root, rel string) bool {
	_, err := os.Lstat(filepath.Join(root, filepath.FromSlash(rel)))
	return err == nil
}

// leftoverTemps lists temporary files of write_file/edit_file under dir.
func leftoverTemps(t testing.TB, dir string) []string {
	t.Helper()
	var left []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".portcullis-tmp-") {
			left = append(left, p)
		}
		return nil
	})
	return left
}

// matchPaths returns the "path" of every search_files match.
func matchPaths(t testing.TB, res *tool.Result) []string {
	t.Helper()
	if res == nil {
		return nil
	}
	ms, ok := res.Structured["matches"].([]map[string]any)
	if !ok {
		t.Fatalf("matches has type %T", res.Structured["matches"])
	}
	var out []string
	for _, m := range ms {
		out = append(out, m["path"].(string))
	}
	return out
}
