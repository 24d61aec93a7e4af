// Package python provides the execute_python tool: the code runs in a
// fresh sandbox (sandbox.Runtime) with CPython in isolated mode. The
// boundary is the OS sandbox, not inspection of the code (seed 003).
//
// Before it runs, the code is checked against a code policy (seed 000:
// strict, normal, legacy). A first, separate sandboxed run of the same
// interpreter parses it with CPython's own parser (checker.py, the code
// passed as bytes on stdin, never executed) and a blocklist over the
// syntax tree reports imports of subprocess, socket, ctypes and importlib,
// os process functions, eval/exec/compile, dunder attribute walks and the
// like (CodePolicy lists the rules and their levels). That check is
// defence in depth, not a boundary (DESIGN §4): any Python object graph
// walks around a blocklist (shutil.os.system, sys.modules["posix"],
// getattr with a computed name pass it), and what such code reaches is
// still confined by the sandbox. It refuses the obvious and records the
// rest in the audit log.
package python

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/sandboxed"
)

// Interpreter is a resolved CPython installation.
type Interpreter struct {
	// Executable is the real interpreter binary (symlinks and shims
	// such as pyenv's resolved), e.g. /usr/bin/python3.11.
	Executable string `json:"executable"`
	// Prefix and BasePrefix are sys.prefix and sys.base_prefix.
	Prefix     string `json:"prefix"`
	BasePrefix string `json:"base_prefix"`
	Version    string `json:"version"`
}

// Mounts returns the host paths the interpreter needs inside a sandbox
// beyond /usr and /lib: its prefix when that lives elsewhere (pyenv,
// /opt, a virtualenv) and the directory of the executable.
func (in *Interpreter) Mounts() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range []string{in.BasePrefix, in.Prefix, filepath.Dir(in.Executable)} {
		if p == "" || seen[p] || underSystem(p) {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return out
}

func underSystem(p string) bool {
	for _, s := range []string{"/usr", "/lib", "/lib64", "/bin", "/sbin"} {
		if p == s || strings.HasPrefix(p, s+"/") {
			return true
		}
	}
	return false
}

const probe = `import json, os, sys; print(json.dumps({"executable": os.path.realpath(sys.executable), "prefix": sys.prefix, "base_prefix": sys.base_prefix, "version": sys.version.split()[0]}))`

// Detect resolves the interpreter named by path (absolute) or, when path
// is empty, the first python3 on PATH, by asking it for sys.executable and
// sys.prefix: a shim (pyenv's python3 is a shell script) resolves to the
// real binary it runs.
func Detect(ctx context.Context, path string) (*Interpreter, error) {
	if path == "" {
		p, err := exec.LookPath("python3")
		if err != nil {
			return nil, fmt.Errorf("python: no python3 on PATH: %w", err)
		}
		path = p
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-I", "-c", probe).Output()
	if err != nil {
		return nil, fmt.Errorf("python: probe %s: %w", path, err)
	}
	var in Interpreter
	if err := json.Unmarshal(bytes.TrimSpace(out), &in); err != nil {
		return nil, fmt.Errorf("python: probe %s: unexpected output: %w", path, err)
	}
	if !filepath.IsAbs(in.Executable) {
		return nil, fmt.Errorf("python: probe %s: executable %q is not absolute", path, in.Executable)
	}
	if fi, err := os.Stat(in.Executable); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("python: interpreter %s is not a regular file", in.Executable)
	}
	return &in, nil
}

// Config configures execute_python.
type Config struct {
	Interpreter    *Interpreter
	Timeout        time.Duration // default wall-clock limit
	MaxTimeout     time.Duration // largest timeout_s a caller may ask for
	MaxOutputBytes int64         // cap on stdout and stderr, each
	MaxCodeBytes   int64
	MaxStdinBytes  int64 // default 1 MiB
	// Level is the sandbox's security level (default maximum: no new
	// processes, nothing but the interpreter may be executed).
	Level sandbox.Level
	// Limits override the level's defaults (memory, CPU, pids, files);
	// WallTime is set per call from timeout_s.
	Limits sandbox.Limits
	// CodePolicy is the code check before each run: strict (the default
	// when empty), normal or legacy. DefaultCodePolicy gives the
	// configuration's default by mode.
	CodePolicy CodePolicy
}

// Tool is execute_python.
type Tool struct {
	cfg Config
	rt  sandbox.Runtime
}

var _ tool.Tool = (*Tool)(nil)

// New returns the tool.
func New(cfg Config, rt sandbox.Runtime) (*Tool, error) {
	if cfg.Interpreter == nil || rt == nil {
		return nil, errors.New("python: interpreter and runtime are required")
	}
	if cfg.Timeout <= 0 || cfg.MaxTimeout < cfg.Timeout || cfg.MaxOutputBytes <= 0 || cfg.MaxCodeBytes <= 0 {
		return nil, fmt.Errorf("python: invalid config (timeout %s, max %s, output %d, code %d)",
			cfg.Timeout, cfg.MaxTimeout, cfg.MaxOutputBytes, cfg.MaxCodeBytes)
	}
	if cfg.MaxStdinBytes <= 0 {
		cfg.MaxStdinBytes = 1 << 20
	}
	if cfg.Level == "" {
		cfg.Level = sandbox.LevelMaximum
	}
	if cfg.CodePolicy == "" {
		cfg.CodePolicy = CodePolicyStrict
	}
	if _, err := ParseCodePolicy(string(cfg.CodePolicy)); err != nil {
		return nil, err
	}
	return &Tool{cfg: cfg, rt: rt}, nil
}

// Definition implements tool.Tool.
func (t *Tool) Definition() tool.Definition {
	maxT := int(t.cfg.MaxTimeout / time.Second)
	return tool.Definition{
		Name:  "execute_python",
		Title: "Execute Python",
		Description: fmt.Sprintf("Run Python 3 code in an isolated sandbox (%s level: no network, read-only system, "+
			"private /tmp, %s default and %s maximum wall time). Returns stdout, stderr and the exit code.%s",
			t.cfg.Level, t.cfg.Timeout, t.cfg.MaxTimeout, policyDescription[t.cfg.CodePolicy]),
		InputSchema: &jsonschema.Schema{
			Type:     "object",
			Required: []string{"code"},
			Properties: map[string]*jsonschema.Schema{
				"code": {Type: "string", Description: "Python source to run as a script.",
					MinLength: jsonschema.Ptr(1), MaxLength: jsonschema.Ptr(int(t.cfg.MaxCodeBytes))},
				"timeout_s": {Type: "integer", Description: "Wall-clock limit in seconds.",
					Minimum: jsonschema.Ptr(1.0), Maximum: jsonschema.Ptr(float64(maxT))},
				"stdin": {Type: "string", Description: "Text fed to standard input.",
					MaxLength: jsonschema.Ptr(int(t.cfg.MaxStdinBytes))},
			},
			AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
		},
		Sensitivity: tool.High,
		Timeout:     t.cfg.MaxTimeout + 10*time.Second,
		Labels:      []string{"code-execution", "sandboxed"},
	}
}

type args struct {
	Code     string `json:"code"`
	TimeoutS int    `json:"timeout_s"`
	Stdin    string `json:"stdin"`
}

// Call implements tool.Tool.
func (t *Tool) Call(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	var a args
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, tool.Errorf(reason.InvalidArguments, err, "invalid arguments")
	}
	if int64(len(a.Code)) > t.cfg.MaxCodeBytes {
		return nil, tool.Errorf(reason.TooLarge, nil, "code larger than %d bytes", t.cfg.MaxCodeBytes)
	}
	wall := t.cfg.Timeout
	if a.TimeoutS > 0 {
		wall = min(time.Duration(a.TimeoutS)*time.Second, t.cfg.MaxTimeout)
	}
	note, err := t.enforce(ctx, a.Code)
	if err != nil {
		return nil, err
	}
	limits := t.cfg.Limits
	limits.WallTime = wall
	limits.OutputBytes = t.cfg.MaxOutputBytes
	spec := &sandbox.Spec{
		Argv:   []string{t.cfg.Interpreter.Executable, "-I", "-B", "/work/main.py"},
		Env:    pythonEnv(),
		Stdin:  []byte(a.Stdin),
		Dir:    "/work",
		Files:  []sandbox.File{{Name: "main.py", Data: []byte(a.Code), Mode: 0o400}},
		Level:  t.cfg.Level,
		Limits: limits,
		Mounts: t.mounts(),
	}
	res, err := t.rt.Run(ctx, spec)
	if err != nil {
		return nil, tool.Errorf(reason.SandboxUnavailable, err, "")
	}
	out := toResult(res)
	if note != "" { // audit only
		if out.Detail != "" {
			note += "; " + out.Detail
		}
		out.Detail = note
	}
	return out, nil
}

// pythonEnv returns the environment of the checker and of the code.
func pythonEnv() []string {
	return []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "PYTHONIOENCODING=utf-8"}
}

// mounts returns the interpreter's mounts: the checker and the code run
// with the same layout (and so share the runtime's warm pool).
func (t *Tool) mounts() []sandbox.Mount {
	var ms []sandbox.Mount
	for _, p := range t.cfg.Interpreter.Mounts() {
		ms = append(ms, sandbox.Mount{Source: p})
	}
	return ms
}

// policyDescription tells clients what the code check refuses, so that
// they do not have to learn it from refusals.
var policyDescription = map[CodePolicy]string{
	CodePolicyStrict: " Code is checked before it runs and refused if it imports subprocess, socket, ctypes, " +
		"importlib, multiprocessing, pickle, builtins or similar, calls os process functions (os.system, os.popen, " +
		"os.exec*, os.spawn*, os.fork, os.kill), uses eval, exec, compile or __import__, or reads dunder attributes " +
		"other than __init__, __name__, __qualname__, __doc__, __module__, __version__.",
	CodePolicyNormal: " Code is checked before it runs and refused if it imports subprocess, socket, ctypes, " +
		"importlib or multiprocessing, calls os process functions (os.system, os.popen, os.exec*, os.spawn*, " +
		"os.fork, os.kill) or uses __import__.",
	CodePolicyLegacy: "",
}

func toResult(res *sandbox.Result) *tool.Result { return sandboxed.Result(res, sandboxed.Options{}) }

// text returns b as a string, replacing invalid UTF-8.
func text(b []byte) string { return sandboxed.Text(b) }
