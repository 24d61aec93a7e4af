// Package command provides the run_command tool (DESIGN §2, HIGH): it runs
// one allow-listed program with an argument vector in a fresh sandbox
// (sandbox.Runtime, the native runtime in production), with the workspace
// mounted read-only.
//
// # No shell, ever
//
// The argument "command" is an argv array, passed to execve as it is: no
// shell parses it, so ";", "|", "$(...)", backquotes, globs, quotes and
// redirections are literal bytes of one argument. command[0] must be a bare
// program name (no '/') on Config.Allow; "sh", "/bin/sh", "../bin/sh" and
// "./ls" are refused (PERMISSION_DENIED) unless the exact name is on the
// list, and a name with '/' never is. An empty allow-list — the production
// default — refuses every call.
//
// Each allowed name is resolved once, in New, by searching
// Config.SearchPath (not the PATH of the moment) and resolving symbolic
// links: later changes to PATH or to a link on it do not change what runs.
// The resolved program must be an ELF executable outside the workspace. A
// name that looks like a Python interpreter (python, python3, python3.12)
// is resolved with python.Detect, so a pyenv shim (a shell script, which
// the sandbox would not run) becomes the real interpreter, and the
// interpreter's prefix is mounted read-only; any other script is refused at
// construction.
//
// # The sandbox
//
// At the default level, maximum, the program cannot create a process
// (fork and clone without CLONE_THREAD fail) and Landlock lets nothing but
// the program and its ELF interpreter be executed, so an allowed program
// cannot start a shell or any other program (python3 -c
// "os.system('sh')" fails). There is no network: the sandbox has an empty
// network namespace, not even loopback. The environment is fixed (nothing
// is inherited from the gateway). At a lower level programs may start other
// programs from the sandbox's read-only system directories: the allow-list
// then only names the first one.
//
// # Files
//
// The workspace is mounted read-only at /workspace (WorkspaceDir),
// recursively, nosuid and nodev; nothing a program does can change it. The
// working directory is a private, empty, size-capped tmpfs, /work
// (WorkDir), discarded after the call, as is /tmp: workspace files are
// named as /workspace/<path>. (The native runtime always makes the working
// directory its own tmpfs, so the workspace cannot be the working directory
// without a sandbox.Spec change.) The program runs as a host user id that
// owns no file, so it reads only what is world-readable: the workspace
// must be readable by "other", as git tools require too. A symbolic link in
// the workspace resolves inside the sandbox's file system, where nothing
// of the host but the read-only system directories exists; the files
// tools' deny-list (.env, *.pem, ...) does not apply inside the sandbox —
// run_command can read every world-readable workspace file.
//
// # Results
//
// As for execute_python: exit_code, stdout, stderr (each capped at
// MaxOutputBytes, with *_truncated flags), duration_ms, cpu_ms and
// violations in structuredContent; a program that exits non-zero is
// NON_ZERO_EXIT; timeouts, cancellation and sandbox violations are
// TIMEOUT, CANCELLED and SANDBOX_VIOLATION.
package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/python"
)

// ToolName is the tool's name (DESIGN §2). It is public contract.
const ToolName = "run_command"

// Paths inside the sandbox.
const (
	// WorkspaceDir is where the workspace is mounted, read-only.
	WorkspaceDir = "/workspace"
	// WorkDir is the program's working directory: a private tmpfs.
	WorkDir = "/work"
)

// Defaults and bounds.
const (
	DefaultTimeout              = 30 * time.Second
	DefaultMaxTimeout           = 120 * time.Second
	DefaultMaxOutputBytes int64 = 1 << 20
	DefaultMaxStdinBytes  int64 = 1 << 20
	// MaxArgs bounds the length of the command array, program included.
	MaxArgs = 64
	// MaxArgBytes bounds each element of the command array (bytes).
	MaxArgBytes = 4096
)

// DefaultSearchPath is searched for allow-listed programs when
// Config.SearchPath is nil.
var DefaultSearchPath = []string{"/usr/local/bin", "/usr/bin", "/bin"}

// Errors returned by New, wrapped with detail.
var (
	// ErrInvalidConfig reports a Config that cannot be used.
	ErrInvalidConfig = errors.New("command: invalid config")
	// ErrProgram reports an allow-listed program that cannot be resolved
	// to an executable the sandbox can run.
	ErrProgram = errors.New("command: unusable program")
)

// Causes recorded in tool.Error.Err (audit only).
var (
	errNotAllowed   = errors.New("program not on the allow-list")
	errPathProgram  = errors.New("program name contains '/'")
	errNoPrograms   = errors.New("the allow-list is empty")
	errNUL          = errors.New("argument contains NUL")
	errTrailingData = errors.New("trailing data after arguments object")
)

// Config configures run_command.
type Config struct {
	// Workspace is the workspace root on the host, mounted read-only at
	// WorkspaceDir. It must be an existing directory; it is made absolute
	// and its symbolic links are resolved once, in New.
	Workspace string
	// Allow lists the bare program names (no '/') that may be run, e.g.
	// ["ls", "cat", "grep", "wc", "head", "tail", "python3"]. Empty (the
	// production default) refuses every call. Each name must resolve in
	// New (ErrProgram otherwise).
	Allow []string
	// SearchPath lists the absolute directories searched, in order, for
	// the allowed names (default DefaultSearchPath). Relative and empty
	// entries are skipped, as exec.LookPath refuses them. To use the
	// gateway's PATH pass filepath.SplitList(os.Getenv("PATH")).
	SearchPath []string
	// Timeout is the default wall-clock limit of a call (default
	// DefaultTimeout); MaxTimeout the largest timeout_s a caller may ask
	// for (default DefaultMaxTimeout, at least Timeout).
	Timeout    time.Duration
	MaxTimeout time.Duration
	// MaxOutputBytes caps stdout and stderr, each (default
	// DefaultMaxOutputBytes).
	MaxOutputBytes int64
	// MaxStdinBytes caps the stdin argument (default DefaultMaxStdinBytes).
	MaxStdinBytes int64
	// Level is the sandbox level (default maximum: no new processes,
	// nothing but the program may be executed).
	Level sandbox.Level
	// Limits override the level's defaults (memory, CPU, pids, file
	// size); WallTime and OutputBytes are set per call.
	Limits sandbox.Limits
}

// Program is an allow-listed program as resolved by New.
type Program struct {
	// Name is the allow-listed name, e.g. "python3".
	Name string `json:"name"`
	// Path is the absolute real path that is executed, e.g.
	// /usr/bin/python3.11 (symbolic links and shims resolved).
	Path string `json:"path"`
	// Mounts are the host directories mounted read-only for it beyond the
	// runtime's system paths (a pyenv prefix, /opt/tool/bin).
	Mounts []string `json:"mounts,omitempty"`
}

// Tool is run_command. Safe for concurrent use.
type Tool struct {
	cfg      Config
	rt       sandbox.Runtime
	ws       string              // host workspace root, absolute, symlinks resolved
	programs map[string]*Program // by allowed name
	names    []string            // allowed names, sorted
}

var _ tool.Tool = (*Tool)(nil)

// pythonName matches names resolved as a Python interpreter.
var pythonName = regexp.MustCompile(`^python[0-9]*(\.[0-9]+)?$`)

// New validates cfg and resolves every allowed program (see the package
// comment). ctx bounds the interpreter probes of Python names. It returns
// errors wrapping ErrInvalidConfig or ErrProgram.
func New(ctx context.Context, cfg Config, rt sandbox.Runtime) (*Tool, error) {
	if rt == nil {
		return nil, fmt.Errorf("%w: nil sandbox runtime", ErrInvalidConfig)
	}
	if cfg.Workspace == "" {
		return nil, fmt.Errorf("%w: empty workspace", ErrInvalidConfig)
	}
	if cfg.Timeout < 0 || cfg.MaxTimeout < 0 || cfg.MaxOutputBytes < 0 || cfg.MaxStdinBytes < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxTimeout == 0 {
		cfg.MaxTimeout = max(DefaultMaxTimeout, cfg.Timeout)
	}
	if cfg.MaxTimeout < cfg.Timeout {
		return nil, fmt.Errorf("%w: MaxTimeout %s is less than Timeout %s", ErrInvalidConfig, cfg.MaxTimeout, cfg.Timeout)
	}
	if cfg.MaxTimeout < time.Second {
		return nil, fmt.Errorf("%w: MaxTimeout %s is less than one second", ErrInvalidConfig, cfg.MaxTimeout)
	}
	if cfg.MaxOutputBytes == 0 {
		cfg.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if cfg.MaxStdinBytes == 0 {
		cfg.MaxStdinBytes = DefaultMaxStdinBytes
	}
	if cfg.Level == "" {
		cfg.Level = sandbox.LevelMaximum
	}
	if _, err := sandbox.ParseLevel(string(cfg.Level)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.SearchPath == nil {
		cfg.SearchPath = DefaultSearchPath
	}
	cfg.SearchPath = slices.Clone(cfg.SearchPath)
	cfg.Allow = slices.Clone(cfg.Allow)
	ws, err := filepath.Abs(cfg.Workspace)
	if err == nil {
		ws, err = filepath.EvalSymlinks(ws)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: workspace: %w", ErrInvalidConfig, err)
	}
	if fi, err := os.Stat(ws); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: workspace %s is not a directory", ErrInvalidConfig, ws)
	}
	t := &Tool{cfg: cfg, rt: rt, ws: ws, programs: map[string]*Program{}}
	for _, name := range cfg.Allow {
		if err := checkName(name); err != nil {
			return nil, err
		}
		if t.programs[name] != nil {
			continue
		}
		p, err := t.resolve(ctx, name)
		if err != nil {
			return nil, err
		}
		t.programs[name] = p
		t.names = append(t.names, name)
	}
	slices.Sort(t.names)
	return t, nil
}

// checkName validates an allow-list entry: a bare file name.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: allow-list entry %q is not a program name", ErrInvalidConfig, name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: allow-list entry %q must be a bare program name (no '/')", ErrInvalidConfig, name)
	case len(name) > 255 || !utf8.ValidString(name):
		return fmt.Errorf("%w: allow-list entry %q is not a valid file name", ErrInvalidConfig, name)
	}
	return nil
}

// resolve finds name on the search path and pins the program it runs.
func (t *Tool) resolve(ctx context.Context, name string) (*Program, error) {
	found := ""
	for _, dir := range t.cfg.SearchPath {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		cand := filepath.Join(dir, name)
		fi, err := os.Stat(cand)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			continue
		}
		found = cand
		break
	}
	if found == "" {
		return nil, fmt.Errorf("%w: %q not found in %s", ErrProgram, name, strings.Join(t.cfg.SearchPath, ":"))
	}
	real, err := filepath.EvalSymlinks(found)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrProgram, name, err)
	}
	p := &Program{Name: name, Path: real}
	if pythonName.MatchString(name) {
		in, err := python.Detect(ctx, found)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrProgram, name, err)
		}
		p.Path = in.Executable
		p.Mounts = in.Mounts()
	} else if dir := filepath.Dir(real); !underSystem(dir) {
		p.Mounts = []string{dir}
	}
	if err := t.checkBinary(p.Path); err != nil {
		return nil, fmt.Errorf("%w: %q (%s): %w", ErrProgram, name, p.Path, err)
	}
	return p, nil
}

// checkBinary requires an executable regular ELF file outside the
// workspace (whose content callers influence).
func (t *Tool) checkBinary(p string) error {
	if p == t.ws || strings.HasPrefix(p, t.ws+string(filepath.Separator)) {
		return errors.New("the program is inside the workspace")
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable regular file")
	}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte("\x7fELF")) {
		return errors.New("not an ELF executable (a script needs an interpreter, which the sandbox does not run)")
	}
	return nil
}

// underSystem reports whether p is inside the runtime's usual read-only
// system directories.
func underSystem(p string) bool {
	for _, s := range []string{"/usr", "/lib", "/lib64", "/bin", "/sbin"} {
		if p == s || strings.HasPrefix(p, s+"/") {
			return true
		}
	}
	return false
}

// Programs returns the resolved allow-list, sorted by name.
func (t *Tool) Programs() []Program {
	out := make([]Program, 0, len(t.names))
	for _, n := range t.names {
		p := *t.programs[n]
		p.Mounts = slices.Clone(p.Mounts)
		out = append(out, p)
	}
	return out
}

// Definition implements tool.Tool.
func (t *Tool) Definition() tool.Definition {
	allowed := "none: this gateway allows no program, every call is refused"
	if len(t.names) > 0 {
		allowed = strings.Join(t.names, ", ")
	}
	maxT := int(t.cfg.MaxTimeout / time.Second)
	return tool.Definition{
		Name:  ToolName,
		Title: "Run command",
		Description: fmt.Sprintf("Run one allow-listed program with an argument vector in an isolated sandbox (%s level): "+
			"no shell (each array element is one literal argument: no pipes, redirections, globs or variables), no network, "+
			"the workspace mounted read-only at %s (name workspace files as %s/<path>), working directory an empty private "+
			"scratch directory (%s), %s default and %s maximum wall time. Allowed programs: %s. "+
			"Returns stdout, stderr and the exit code.",
			t.cfg.Level, WorkspaceDir, WorkspaceDir, WorkDir, t.cfg.Timeout, t.cfg.MaxTimeout, allowed),
		InputSchema: &jsonschema.Schema{
			Type:          "object",
			Required:      []string{"command"},
			PropertyOrder: []string{"command", "timeout_s", "stdin"},
			Properties: map[string]*jsonschema.Schema{
				"command": {Type: "array",
					Description: "Program and arguments, e.g. [\"grep\", \"-rn\", \"TODO\", \"/workspace/src\"]. The first element is a program name from the allow-list (no path).",
					MinItems:    jsonschema.Ptr(1), MaxItems: jsonschema.Ptr(MaxArgs),
					Items: &jsonschema.Schema{Type: "string", MaxLength: jsonschema.Ptr(MaxArgBytes)}},
				"timeout_s": {Type: "integer", Description: "Wall-clock limit in seconds.",
					Minimum: jsonschema.Ptr(1.0), Maximum: jsonschema.Ptr(float64(maxT))},
				"stdin": {Type: "string", Description: "Text fed to standard input (default: empty).",
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
	Command  []string `json:"command"`
	TimeoutS *int     `json:"timeout_s"`
	Stdin    string   `json:"stdin"`
}

// env is the complete environment of every program.
var env = []string{
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"HOME=/tmp",
	"TMPDIR=/tmp",
	"LANG=C.UTF-8",
	"PYTHONDONTWRITEBYTECODE=1",
	"PYTHONNOUSERSITE=1",
}

// Call implements tool.Tool.
func (t *Tool) Call(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	a, err := decodeArgs(raw)
	if err != nil {
		return nil, err
	}
	prog, err := t.check(a)
	if err != nil {
		return nil, err
	}
	wall := t.cfg.Timeout
	if a.TimeoutS != nil {
		wall = time.Duration(*a.TimeoutS) * time.Second
	}
	limits := t.cfg.Limits
	limits.WallTime = wall
	limits.OutputBytes = t.cfg.MaxOutputBytes
	argv := make([]string, 0, len(a.Command))
	argv = append(argv, prog.Path)
	argv = append(argv, a.Command[1:]...)
	spec := &sandbox.Spec{
		Argv:   argv,
		Env:    slices.Clone(env),
		Stdin:  []byte(a.Stdin),
		Dir:    WorkDir,
		Mounts: []sandbox.Mount{{Source: t.ws, Target: WorkspaceDir}},
		Level:  t.cfg.Level,
		Limits: limits,
	}
	for _, m := range prog.Mounts {
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: m})
	}
	res, err := t.rt.Run(ctx, spec)
	if err == nil && res == nil {
		err = errors.New("sandbox runtime returned no result")
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx)
		}
		return nil, tool.Errorf(reason.SandboxUnavailable, err, "")
	}
	out := toResult(res)
	out.Structured["program"] = prog.Name
	return out, nil
}

// check validates the arguments against the limits and the allow-list
// and returns the program to run.
func (t *Tool) check(a *args) (*Program, error) {
	switch {
	case len(a.Command) == 0:
		return nil, tool.Errorf(reason.InvalidArguments, errors.New("empty command"), "command must name a program")
	case len(a.Command) > MaxArgs:
		return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%d arguments", len(a.Command)), "command has more than %d elements", MaxArgs)
	}
	for i, s := range a.Command {
		switch {
		case len(s) > MaxArgBytes:
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("argument %d: %d bytes", i, len(s)), "command[%d] is longer than %d bytes", i, MaxArgBytes)
		case strings.IndexByte(s, 0) >= 0:
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("argument %d: %w", i, errNUL), "command[%d] contains a NUL byte", i)
		}
	}
	if a.TimeoutS != nil && (*a.TimeoutS < 1 || time.Duration(*a.TimeoutS)*time.Second > t.cfg.MaxTimeout) {
		return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("timeout_s %d", *a.TimeoutS),
			"timeout_s must be between 1 and %d", int(t.cfg.MaxTimeout/time.Second))
	}
	if int64(len(a.Stdin)) > t.cfg.MaxStdinBytes {
		return nil, tool.Errorf(reason.TooLarge, fmt.Errorf("stdin %d bytes", len(a.Stdin)), "stdin is larger than %d bytes", t.cfg.MaxStdinBytes)
	}
	name := a.Command[0]
	switch {
	case len(t.names) == 0:
		return nil, tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: %q", errNoPrograms, clip(name)),
			"run_command allows no program on this gateway")
	case name == "":
		return nil, tool.Errorf(reason.InvalidArguments, errors.New("empty program name"), "command[0] must name a program")
	case strings.IndexByte(name, '/') >= 0:
		return nil, tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: %q", errPathProgram, clip(name)),
			"command[0] must be a program name from the allow-list, not a path (allowed: %s)", strings.Join(t.names, ", "))
	}
	p := t.programs[name]
	if p == nil {
		return nil, tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: %q", errNotAllowed, clip(name)),
			"program %q is not allowed (allowed: %s)", clip(name), strings.Join(t.names, ", "))
	}
	return p, nil
}

// decodeArgs decodes raw strictly: one JSON object, keys exactly
// "command", "timeout_s" and "stdin" (encoding/json alone would match
// them case-insensitively), no trailing data. Failures are
// INVALID_ARGUMENTS.
func decodeArgs(raw json.RawMessage) (*args, error) {
	raw = bytes.TrimSpace(raw)
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil || keys == nil {
		return nil, tool.Errorf(reason.InvalidArguments, err, "arguments must be a JSON object")
	}
	for k := range keys {
		switch k {
		case "command", "timeout_s", "stdin":
		default:
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("unknown argument %q", k), "unknown argument %q", clip(k))
		}
	}
	var a args
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, tool.Errorf(reason.InvalidArguments, err, "invalid arguments: command must be an array of strings, timeout_s an integer, stdin a string")
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return nil, tool.Errorf(reason.InvalidArguments, errTrailingData, "invalid arguments")
	}
	return &a, nil
}

// clip shortens client input for a client message to at most 100 bytes.
func clip(s string) string {
	const n = 100
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// ctxError returns CANCELLED or TIMEOUT for a done context.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return tool.Errorf(reason.Timeout, err, "%s", reason.Message(reason.Timeout))
	}
	return tool.Errorf(reason.Cancelled, err, "%s", reason.Message(reason.Cancelled))
}
