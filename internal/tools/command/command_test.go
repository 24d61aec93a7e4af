//go:build linux

package command_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/command"
)

func TestNewConfig(t *testing.T) {
	ws := workspace(t)
	rt := &fakeRuntime{}
	script := filepath.Join(t.TempDir(), "myscript")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	inWS := filepath.Join(ws, "bin")
	if err := os.MkdirAll(inWS, 0o755); err != nil {
		t.Fatal(err)
	}
	lsPath, err := exec.LookPath("ls")
	if err != nil {
		t.Fatal(err)
	}
	lsBytes, err := os.ReadFile(lsPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inWS, "wsls"), lsBytes, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*command.Config)
		rt   sandbox.Runtime
		want error
	}{
		{"nil runtime", nil, nil, command.ErrInvalidConfig},
		{"empty workspace", func(c *command.Config) { c.Workspace = "" }, rt, command.ErrInvalidConfig},
		{"missing workspace", func(c *command.Config) { c.Workspace = filepath.Join(ws, "nope") }, rt, command.ErrInvalidConfig},
		{"workspace is a file", func(c *command.Config) { c.Workspace = filepath.Join(ws, "hello.txt") }, rt, command.ErrInvalidConfig},
		{"negative timeout", func(c *command.Config) { c.Timeout = -1 }, rt, command.ErrInvalidConfig},
		{"max below default", func(c *command.Config) { c.Timeout, c.MaxTimeout = time.Minute, time.Second }, rt, command.ErrInvalidConfig},
		{"negative output", func(c *command.Config) { c.MaxOutputBytes = -1 }, rt, command.ErrInvalidConfig},
		{"bad level", func(c *command.Config) { c.Level = "lax" }, rt, command.ErrInvalidConfig},
		{"path entry", func(c *command.Config) { c.Allow = []string{"/bin/ls"} }, rt, command.ErrInvalidConfig},
		{"relative path entry", func(c *command.Config) { c.Allow = []string{"./ls"} }, rt, command.ErrInvalidConfig},
		{"dotdot entry", func(c *command.Config) { c.Allow = []string{".."} }, rt, command.ErrInvalidConfig},
		{"empty entry", func(c *command.Config) { c.Allow = []string{""} }, rt, command.ErrInvalidConfig},
		{"NUL entry", func(c *command.Config) { c.Allow = []string{"ls\x00"} }, rt, command.ErrInvalidConfig},
		{"unknown program", func(c *command.Config) { c.Allow = []string{"no-such-program-xyz"} }, rt, command.ErrProgram},
		{"shell script", func(c *command.Config) {
			c.Allow, c.SearchPath = []string{"myscript"}, []string{filepath.Dir(script)}
		}, rt, command.ErrProgram},
		{"program inside the workspace", func(c *command.Config) {
			c.Allow, c.SearchPath = []string{"wsls"}, []string{inWS}
		}, rt, command.ErrProgram},
		{"relative search path skipped", func(c *command.Config) {
			c.Allow, c.SearchPath = []string{"ls"}, []string{"bin", "."}
		}, rt, command.ErrProgram},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := command.Config{Workspace: ws, SearchPath: pathSearch()}
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			_, err := command.New(t.Context(), cfg, tc.rt)
			if !errors.Is(err, tc.want) {
				t.Fatalf("New: got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestResolution(t *testing.T) {
	ws := workspace(t)
	tl := newTool(t, &fakeRuntime{}, ws, nil)
	progs := tl.Programs()
	var names []string
	for _, p := range progs {
		names = append(names, p.Name)
		if !filepath.IsAbs(p.Path) {
			t.Errorf("%s: path %q is not absolute", p.Name, p.Path)
		}
		real, err := filepath.EvalSymlinks(p.Path)
		if err != nil || real != p.Path {
			t.Errorf("%s: path %q is not a resolved real path (%q, %v)", p.Name, p.Path, real, err)
		}
		head := make([]byte, 4)
		f, err := os.Open(p.Path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Read(head)
		f.Close()
		if err != nil || string(head) != "\x7fELF" {
			t.Errorf("%s: %s is not an ELF binary (a shim was not resolved)", p.Name, p.Path)
		}
	}
	want := slices.Clone(defaultAllow)
	slices.Sort(want)
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("Programs() names (-want +got):\n%s", diff)
	}
}

// TestResolutionPinned: what runs is fixed in New. A later change of PATH
// or of a symbolic link on the search path does not change it.
func TestResolutionPinned(t *testing.T) {
	ws := workspace(t)
	dir := t.TempDir()
	wc, err := exec.LookPath("wc")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "tool")
	if err := os.Symlink(wc, link); err != nil {
		t.Fatal(err)
	}
	rt := &fakeRuntime{}
	tl := newTool(t, rt, ws, func(c *command.Config) { c.Allow, c.SearchPath = []string{"tool"}, []string{dir} })
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cat, link); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	if res := run(t, tl, "tool", "-l"); res.IsError {
		t.Fatalf("call failed: %s", res.Text)
	}
	wantWC, _ := filepath.EvalSymlinks(wc)
	if got := rt.specs[0].Argv[0]; got != wantWC {
		t.Fatalf("argv[0] = %q, want the program resolved at construction %q", got, wantWC)
	}
}

func TestDefinition(t *testing.T) {
	ws := workspace(t)
	def := newTool(t, &fakeRuntime{}, ws, nil).Definition()
	if def.Name != "run_command" || command.ToolName != "run_command" {
		t.Errorf("name %q", def.Name)
	}
	if def.Sensitivity != tool.High {
		t.Errorf("sensitivity %s, want HIGH", def.Sensitivity)
	}
	if def.ReadOnly || def.Destructive {
		t.Errorf("annotations readOnly=%v destructive=%v", def.ReadOnly, def.Destructive)
	}
	for _, want := range []string{"cat, grep, head, ls, python3, tail, wc", "/workspace", "no shell"} {
		if !strings.Contains(def.Description, want) {
			t.Errorf("description %q lacks %q", def.Description, want)
		}
	}
	if diff := cmp.Diff([]string{"command"}, def.InputSchema.Required); diff != "" {
		t.Errorf("required (-want +got):\n%s", diff)
	}
	cmdSchema := def.InputSchema.Properties["command"]
	if cmdSchema.Type != "array" || *cmdSchema.MinItems != 1 || *cmdSchema.MaxItems != command.MaxArgs ||
		cmdSchema.Items.Type != "string" || *cmdSchema.Items.MaxLength != command.MaxArgBytes {
		t.Errorf("command schema %+v", cmdSchema)
	}
	if ts := def.InputSchema.Properties["timeout_s"]; *ts.Minimum != 1 || *ts.Maximum != 30 {
		t.Errorf("timeout_s schema %+v", ts)
	}
	b, err := json.Marshal(def.InputSchema)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"additionalProperties":false`) && !strings.Contains(string(b), `"additionalProperties":{"not":{}}`) {
		t.Errorf("schema allows additional properties: %s", b)
	}

	empty := newTool(t, &fakeRuntime{}, ws, func(c *command.Config) { c.Allow = nil }).Definition()
	if !strings.Contains(empty.Description, "every call is refused") {
		t.Errorf("empty allow-list description %q", empty.Description)
	}
}

// TestRefusals: calls refused before the sandbox, never reaching the
// runtime. Arguments are argv elements: shell syntax is not special, so
// a name such as "ls; rm" is simply not on the list.
func TestRefusals(t *testing.T) {
	ws := workspace(t)
	rt := &fakeRuntime{}
	tl := newTool(t, rt, ws, nil)
	long := strings.Repeat("a", command.MaxArgBytes+1)
	many := make([]string, command.MaxArgs+1)
	for i := range many {
		many[i] = "x"
	}
	many[0] = "ls"
	tests := []struct {
		name string
		args any
		want reason.Code
	}{
		{"not on the list", map[string]any{"command": []string{"rm", "-rf", "/workspace"}}, reason.PermissionDenied},
		{"sh -c", map[string]any{"command": []string{"sh", "-c", "id"}}, reason.PermissionDenied},
		{"bash", map[string]any{"command": []string{"bash"}}, reason.PermissionDenied},
		{"env wrapper", map[string]any{"command": []string{"env", "sh"}}, reason.PermissionDenied},
		{"absolute shell", map[string]any{"command": []string{"/bin/sh", "-c", "id"}}, reason.PermissionDenied},
		{"absolute allowed program", map[string]any{"command": []string{"/usr/bin/ls"}}, reason.PermissionDenied},
		{"relative path", map[string]any{"command": []string{"../bin/sh"}}, reason.PermissionDenied},
		{"dot slash", map[string]any{"command": []string{"./ls"}}, reason.PermissionDenied},
		{"workspace program", map[string]any{"command": []string{"/workspace/evil"}}, reason.PermissionDenied},
		{"trailing slash", map[string]any{"command": []string{"ls/"}}, reason.PermissionDenied},
		{"shell syntax in name", map[string]any{"command": []string{"ls; rm -rf /"}}, reason.PermissionDenied},
		{"pipe in name", map[string]any{"command": []string{"ls|sh"}}, reason.PermissionDenied},
		{"substitution in name", map[string]any{"command": []string{"$(sh)"}}, reason.PermissionDenied},
		{"whitespace", map[string]any{"command": []string{" ls"}}, reason.PermissionDenied},
		{"case", map[string]any{"command": []string{"LS"}}, reason.PermissionDenied},
		{"unicode look-alike", map[string]any{"command": []string{"l\u0455"}}, reason.PermissionDenied},
		{"empty program", map[string]any{"command": []string{""}}, reason.InvalidArguments},
		{"empty command", map[string]any{"command": []string{}}, reason.InvalidArguments},
		{"missing command", map[string]any{}, reason.InvalidArguments},
		{"command is a string", map[string]any{"command": "ls -la"}, reason.InvalidArguments},
		{"non-string element", map[string]any{"command": []any{"ls", 1}}, reason.InvalidArguments},
		{"NUL in argument", map[string]any{"command": []string{"ls", "a\x00b"}}, reason.InvalidArguments},
		{"NUL in program", map[string]any{"command": []string{"ls\x00"}}, reason.InvalidArguments},
		{"argument too long", map[string]any{"command": []string{"ls", long}}, reason.InvalidArguments},
		{"too many arguments", map[string]any{"command": many}, reason.InvalidArguments},
		{"unknown key", map[string]any{"command": []string{"ls"}, "shell": true}, reason.InvalidArguments},
		{"case-folded key", map[string]any{"Command": []string{"ls"}}, reason.InvalidArguments},
		{"timeout zero", map[string]any{"command": []string{"ls"}, "timeout_s": 0}, reason.InvalidArguments},
		{"timeout too large", map[string]any{"command": []string{"ls"}, "timeout_s": 31}, reason.InvalidArguments},
		{"timeout fractional", map[string]any{"command": []string{"ls"}, "timeout_s": 1.5}, reason.InvalidArguments},
		{"stdin too large", map[string]any{"command": []string{"cat"}, "stdin": strings.Repeat("x", int(command.DefaultMaxStdinBytes)+1)}, reason.TooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := json.Marshal(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			res, err := tl.Call(t.Context(), raw)
			if err == nil {
				t.Fatalf("call allowed: %+v", res)
			}
			if got := codeOf(t, err); got != tc.want {
				t.Fatalf("code %s, want %s (%v)", got, tc.want, err)
			}
		})
	}
	for _, raw := range []string{`[]`, `null`, `"ls"`, `{"command":["ls"]} {}`, `{"command":["ls"]`} {
		if _, err := tl.Call(t.Context(), json.RawMessage(raw)); err == nil || codeOf(t, err) != reason.InvalidArguments {
			t.Errorf("raw %s: %v, want INVALID_ARGUMENTS", raw, err)
		}
	}
	if n := rt.runs(); n != 0 {
		t.Fatalf("refused calls reached the runtime %d times", n)
	}
	// The client message names the allowed programs but never a host path.
	_, err := call(t, tl, map[string]any{"command": []string{"sh"}})
	te, _ := tool.AsError(err)
	if msg := te.ClientMessage(); !strings.Contains(msg, "allowed: cat, grep") || strings.Contains(msg, "/usr") {
		t.Errorf("client message %q", msg)
	}
}

func TestEmptyAllowListRefusesAll(t *testing.T) {
	ws := workspace(t)
	rt := &fakeRuntime{}
	tl := newTool(t, rt, ws, func(c *command.Config) { c.Allow = nil })
	for _, argv := range [][]string{{"ls"}, {"cat", "/workspace/hello.txt"}, {"sh"}, {"/bin/ls"}, {"python3", "-c", "1"}} {
		_, err := call(t, tl, map[string]any{"command": argv})
		if err == nil || codeOf(t, err) != reason.PermissionDenied {
			t.Errorf("%q: %v, want PERMISSION_DENIED", argv, err)
		}
	}
	if len(tl.Programs()) != 0 || rt.runs() != 0 {
		t.Fatalf("programs %v, runs %d", tl.Programs(), rt.runs())
	}
}

// TestSpec pins what reaches the sandbox: the resolved program with the
// caller's arguments untouched, the fixed environment, the read-only
// workspace mount, the private work dir and the limits.
func TestSpec(t *testing.T) {
	ws := workspace(t)
	rt := &fakeRuntime{}
	tl := newTool(t, rt, ws, nil)
	t.Setenv("PORTCULLIS_TEST_SECRET", "s3cret")
	argv := []string{"grep", "-r", "--", "$(id); `id` | sh > /x *", "/workspace"}
	res, err := call(t, tl, map[string]any{"command": argv, "timeout_s": 7, "stdin": "input"})
	if err != nil || res.IsError {
		t.Fatalf("call: %v %+v", err, res)
	}
	spec := rt.specs[0]
	grep := tl.Programs()[1]
	if grep.Name != "grep" {
		t.Fatalf("programs %v", tl.Programs())
	}
	if diff := cmp.Diff(append([]string{grep.Path}, argv[1:]...), spec.Argv); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	realWS, _ := filepath.EvalSymlinks(ws)
	if diff := cmp.Diff([]sandbox.Mount{{Source: realWS, Target: "/workspace"}}, spec.Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	if spec.Dir != command.WorkDir || spec.Level != sandbox.LevelMaximum || string(spec.Stdin) != "input" ||
		spec.Limits.WallTime != 7*time.Second || spec.Limits.OutputBytes != 1<<16 || spec.Network.Mode != "" {
		t.Errorf("spec %+v", spec)
	}
	for _, e := range spec.Env {
		if strings.Contains(e, "s3cret") {
			t.Errorf("environment leaks the gateway's: %q", e)
		}
	}
	if err := spec.Validate(); err != nil {
		t.Errorf("spec does not validate: %v", err)
	}
	if res.Structured["program"] != "grep" {
		t.Errorf("structured %v", res.Structured)
	}
}

func TestResultMapping(t *testing.T) {
	ws := workspace(t)
	tests := []struct {
		name    string
		res     *sandbox.Result
		isError bool
		code    reason.Code
	}{
		{"success", &sandbox.Result{Stdout: []byte("ok\n")}, false, ""},
		{"non-zero exit", &sandbox.Result{ExitCode: 2, Stderr: []byte("ls: cannot access\n")}, true, reason.NonZeroExit},
		{"wall timeout", &sandbox.Result{ExitCode: -1, Signal: "SIGKILL", Violations: []sandbox.Violation{{Code: sandbox.ViolationWallTimeout}}}, true, reason.Timeout},
		{"cancelled", &sandbox.Result{ExitCode: -1, Violations: []sandbox.Violation{{Code: sandbox.ViolationCancelled}}}, true, reason.Cancelled},
		{"seccomp", &sandbox.Result{ExitCode: -1, Signal: "SIGSYS", Violations: []sandbox.Violation{{Code: sandbox.ViolationSeccompKill}}}, true, reason.SandboxViolation},
		{"truncated only", &sandbox.Result{Stdout: []byte("xx"), StdoutTruncated: true, Violations: []sandbox.Violation{{Code: sandbox.ViolationOutputTrunc}}}, false, ""},
		{"truncated and SIGPIPE", &sandbox.Result{ExitCode: 141, StdoutTruncated: true, Violations: []sandbox.Violation{{Code: sandbox.ViolationOutputTrunc}}}, true, reason.NonZeroExit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTool(t, &fakeRuntime{res: tc.res}, ws, nil)
			res := run(t, tl, "ls")
			if res.IsError != tc.isError || res.Code != tc.code {
				t.Fatalf("isError %v code %q, want %v %q (%s)", res.IsError, res.Code, tc.isError, tc.code, res.Text)
			}
			if tc.isError && res.Structured["code"] != string(tc.code) {
				t.Errorf("structured code %v", res.Structured["code"])
			}
			if _, err := json.Marshal(res.Structured); err != nil {
				t.Errorf("structured does not marshal: %v", err)
			}
		})
	}
	tl := newTool(t, &fakeRuntime{err: sandbox.ErrUnavailable}, ws, nil)
	if _, err := call(t, tl, map[string]any{"command": []string{"ls"}}); err == nil || codeOf(t, err) != reason.SandboxUnavailable {
		t.Fatalf("runtime error: %v, want SANDBOX_UNAVAILABLE", err)
	}
}
