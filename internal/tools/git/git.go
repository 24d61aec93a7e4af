// Package git provides the built-in git tools of DESIGN §2: git_status,
// git_diff and git_log (LOW, read-only) and git_commit (CRITICAL), working
// on the git repository at the root of the workspace.
//
// # Threat model
//
// The workspace is attacker-influenced: agents write files there, and a
// repository can make git run programs in many ways — hooks (.git/hooks,
// core.hooksPath), core.fsmonitor, clean/smudge/process filter drivers
// (.gitattributes plus filter.<name>.* in .git/config), diff.external,
// diff.<driver>.textconv and .command, core.pager and pager.<cmd>,
// gpg.program via commit.gpgSign or log.showSignature, core.sshCommand,
// credential helpers, protocol handlers (remote helpers, ext::), and
// include.path / includeIf pulling in configuration from elsewhere.
// core.worktree can point the work tree at any directory.
//
// # The boundary: the sandbox
//
// Every git command runs in a fresh sandbox (sandbox.Runtime, the native
// runtime in production) at the configured level, maximum by default: no
// network namespace to reach anything, a read-only view of the system
// directories plus the workspace mounted read-only at /workspace, a
// private /tmp, no capabilities, uid nobody. At maximum git cannot create
// a process at all (clone without CLONE_THREAD fails with EPERM) and
// Landlock lets nothing but the git binary be executed, so every vector
// above that needs a program fails inside git instead of running; an
// include.path naming a host file outside the workspace resolves to
// nothing, because that file is not in the sandbox. That is the boundary.
//
// # Defence in depth: the invocation
//
// On top of the sandbox each command is hardened so that git does not
// even try (each line names what it covers):
//
//   - environment: nothing is inherited; GIT_CONFIG_NOSYSTEM=1 and
//     GIT_CONFIG_GLOBAL=/dev/null (no system or user config: helpers,
//     aliases, includes), HOME=/tmp and XDG_CONFIG_HOME=/tmp (private
//     and empty), GIT_DIR=/workspace/.git and GIT_WORK_TREE=/workspace
//     (no discovery, core.worktree ignored), GIT_TERMINAL_PROMPT=0 and no
//     GIT_ASKPASS (credential prompts), GIT_PAGER=cat and PAGER=cat,
//     GIT_OPTIONAL_LOCKS=0 (no opportunistic index refresh),
//     GIT_LITERAL_PATHSPECS=1 (":(magic)" and globs in a path are
//     literal), GIT_ATTR_NOSYSTEM=1, GIT_NO_REPLACE_OBJECTS=1 (refs/replace
//     cannot rewrite what is shown or committed), GIT_ALLOW_PROTOCOL= and
//     GIT_PROTOCOL_FROM_USER=0 (no transport at all), LC_ALL=C;
//   - global options --no-pager (core.pager, pager.<cmd>) and
//     -c core.hooksPath=/dev/null (every hook, core.hooksPath),
//     core.fsmonitor=false, core.pager=cat, diff.external= ,
//     core.sshCommand=false, core.askPass= , credential.helper= ,
//     protocol.allow=never, safe.directory=/workspace,
//     log.showSignature=false and commit.gpgSign=false (gpg.program),
//     status.submoduleSummary=false and submodule.recurse=false (child
//     git processes), gc.auto=0 and maintenance.auto=false (auto
//     maintenance children), core.attributesFile=/dev/null,
//     core.untrackedCache=false, core.splitIndex=false,
//     core.preloadIndex=false and index.threads=1 (no extra files or
//     threads), color.ui=never, i18n.commitEncoding=UTF-8;
//   - driver neutralisation: filter and diff driver names are arbitrary,
//     so each call first lists the configuration keys the repository
//     defines (git config --list --name-only, in the same sandbox) and
//     overrides every filter.<x>.clean/smudge/process (set empty, and
//     filter.<x>.required=false), diff.<x>.textconv/command and
//     merge.<x>.driver through GIT_CONFIG_COUNT; command-line configuration
//     wins over the repository's. The list can change between the two
//     runs, which is why this is depth and not the boundary;
//   - command options: --no-ext-diff and --no-textconv for diff,
//     --no-show-signature for log, --ignore-submodules=all for status and
//     diff, commit-tree --no-gpg-sign.
//
// # Arguments
//
// A path is relative to the workspace root with '/' separators: empty
// means the whole repository; absolute paths and lexical ".." escapes are
// refused (PATH_OUTSIDE_WORKSPACE), NUL bytes too (PATH_FORBIDDEN). Paths
// are passed after "--" and with GIT_LITERAL_PATHSPECS, so "--output=x" is
// a file name, never an option. A symbolic link is a link to git (it is
// committed as a link and never followed), and its target outside the
// workspace does not exist in the sandbox. A ref must match
// ^[A-Za-z0-9@^_][A-Za-z0-9._/@{}~^-]{0,127}$ and contain no "//" or "/."
// (never an option, never a path); it is passed after --end-of-options
// and before "--", so git reads it as a revision. Commands run from the
// sandbox's empty work directory, not from /workspace: in a repository git
// moves to GIT_WORK_TREE by itself, and should a damaged .git make
// "git diff" fall back to comparing two files (implicit --no-index), a ref
// and a path name nothing there.
//
// # git_commit
//
// The sandbox program runs as a host user id that owns no files, so the
// sandboxed git cannot write the workspace's .git, and is not allowed to:
// the workspace stays read-only for git_commit too. The commit is built in
// the sandbox against a private scratch directory (the one writable
// mount): git add (or add -u) into a copy of the index with
// GIT_OBJECT_DIRECTORY in the scratch directory and the repository's
// objects as an alternate, git write-tree, git commit-tree. The gateway
// then installs the result itself, confined to .git with os.Root: it copies
// the new objects into .git/objects, replaces .git/index and updates the
// branch (or a detached HEAD) under git's own lock files (index.lock,
// <ref>.lock), as a compare-and-swap against the index and the parent it
// started from, and appends the reflog entries. Nothing in the repository
// is executed by the gateway. Commits are serialised per Tools.
//
// With no paths, git_commit stages every modification and deletion of a
// tracked file (git commit -a); untracked files are committed only when
// named in paths. With paths, those paths are staged (git add -A -- paths:
// additions, modifications and deletions) and the whole index is
// committed, including anything staged before. An empty change is refused
// ("nothing to commit"). Author and committer are
// "Portcullis <portcullis@localhost>"; when the context carries a
// principal (internal/principal) the message gets the trailer
// "Portcullis-Principal: <name>", and a message that already contains such
// a line is refused so that it cannot be forged.
//
// # Results
//
// A workspace whose root has no .git directory (missing, a file such as a
// worktree's gitdir link, or a symbolic link) is NOT_FOUND ("workspace is
// not a git repository"), as is git's own "not a git repository". A git
// that exits non-zero is NON_ZERO_EXIT with its exit code and output;
// timeouts, cancellation and sandbox violations are mapped as for
// execute_python (TIMEOUT, CANCELLED, SANDBOX_VIOLATION). Output is capped
// per stream at MaxOutputBytes (stdout_truncated / stderr_truncated).
//
// # Deployment
//
// The sandbox user is "other" to every workspace file: the workspace must
// be world-readable (directories o+rx, files o+r), as git creates them by
// default, and the runtime's read-only system paths must hold git and its
// libraries (/usr, /lib, /lib64 ...). Only git 2.31 or later
// (GIT_CONFIG_COUNT) is supported; repositories using the reftable
// backend are refused by git_commit.
package git

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
)

// Tool names (DESIGN §2). They are public contract.
const (
	ToolStatus = "git_status"
	ToolDiff   = "git_diff"
	ToolLog    = "git_log"
	ToolCommit = "git_commit"
)

// Defaults and bounds.
const (
	// DefaultTimeout bounds one call, all its sandbox runs together.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxOutputBytes caps stdout and stderr of each run, each.
	DefaultMaxOutputBytes int64 = 1 << 20
	// DefaultLogLimit and MaxLogLimit bound git_log's limit argument.
	DefaultLogLimit = 20
	MaxLogLimit     = 200
	// MaxMessageBytes bounds git_commit's message (bytes, UTF-8).
	MaxMessageBytes = 10000
	// MaxPaths bounds git_commit's paths array.
	MaxPaths = 1000
	// MaxRefBytes bounds the ref argument.
	MaxRefBytes = 128
	// MaxPathBytes bounds a path argument (Linux PATH_MAX).
	MaxPathBytes = 4096
)

// Author is the fixed author and committer of every git_commit commit.
const (
	AuthorName  = "Portcullis"
	AuthorEmail = "portcullis@localhost"
	// PrincipalTrailer is the trailer naming the calling principal.
	PrincipalTrailer = "Portcullis-Principal"
)

// Paths inside the sandbox.
const (
	wsDir      = "/workspace"
	gitDir     = wsDir + "/.git"
	scratchDir = "/scratch"
)

// Errors returned by New and Detect, wrapped with detail.
var (
	// ErrInvalidConfig reports a Config that cannot be used.
	ErrInvalidConfig = errors.New("git: invalid config")
	// ErrNoGit reports that no usable git binary was found.
	ErrNoGit = errors.New("git: git not found")
)

// Causes recorded in tool.Error.Err (audit only).
var (
	errNotRepo      = errors.New("workspace has no .git directory")
	errAbsolute     = errors.New("absolute path")
	errLexicalEsc   = errors.New("path escapes the workspace lexically")
	errNUL          = errors.New("contains NUL")
	errTooLong      = errors.New("too long")
	errBadRef       = errors.New("ref is not in the allowed character set or starts with '-'")
	errEmptyMessage = errors.New("empty commit message")
	errForgedTrail  = errors.New("message contains the principal trailer")
	errTrailingData = errors.New("trailing data after arguments object")
)

// Config configures the git tools.
type Config struct {
	// Workspace is the workspace root on the host. It must be an existing
	// directory; it is made absolute and its symbolic links are resolved
	// once, in New.
	Workspace string
	// Git is the absolute path of the git binary; empty means Detect.
	Git string
	// Timeout bounds one call, all its sandbox runs together (default
	// DefaultTimeout).
	Timeout time.Duration
	// MaxOutputBytes caps stdout and stderr of each run, each (default
	// DefaultMaxOutputBytes).
	MaxOutputBytes int64
	// Limits override the level's defaults (memory, CPU, pids, file
	// size); WallTime and OutputBytes are set per run.
	Limits sandbox.Limits
	// Level is the sandbox level (default maximum: git cannot start any
	// other program).
	Level sandbox.Level
	// ScratchParent is the host directory under which the private scratch
	// directory of git_commit is created (default os.TempDir()).
	ScratchParent string
	// Now is the clock for commit and reflog timestamps (default time.Now).
	Now func() time.Time
}

// Tools are the four git tools on one workspace. Safe for concurrent use;
// Close removes the scratch directory.
type Tools struct {
	cfg      Config
	rt       sandbox.Runtime
	ws       string          // host workspace root, absolute, symlinks resolved
	mounts   []sandbox.Mount // git's own directories outside the system paths
	scratch  string          // host scratch directory (mode 0777 inside a 0700 parent)
	tmpRoot  string          // the 0700 parent, removed by Close
	commitMu chan struct{}   // one slot: serialises git_commit
}

// Detect returns the real path of the git on PATH: exec.LookPath, then
// filepath.EvalSymlinks, and it must be a regular executable file.
func Detect() (string, error) {
	p, err := exec.LookPath("git")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoGit, err)
	}
	return realBinary(p)
}

func realBinary(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: %q is not absolute", ErrNoGit, p)
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoGit, err)
	}
	fi, err := os.Stat(r)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoGit, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s is not an executable file", ErrNoGit, r)
	}
	return r, nil
}

// execPath asks git for its helper directory (git --exec-path prints a
// compiled-in path and exits before reading any configuration or
// repository).
func execPath(git string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, git, "--exec-path")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME=/nonexistent"}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s --exec-path: %w", ErrNoGit, git, err)
	}
	p := strings.TrimSpace(string(out))
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: %s --exec-path: %q is not absolute", ErrNoGit, git, p)
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return p, nil
}

// New returns the git tools on cfg.Workspace, running git on rt. It
// creates the scratch directory for git_commit; call Close to remove it.
func New(cfg Config, rt sandbox.Runtime) (*Tools, error) {
	if rt == nil {
		return nil, fmt.Errorf("%w: nil sandbox runtime", ErrInvalidConfig)
	}
	if cfg.Workspace == "" {
		return nil, fmt.Errorf("%w: empty workspace", ErrInvalidConfig)
	}
	if cfg.Timeout < 0 || cfg.MaxOutputBytes < 0 {
		return nil, fmt.Errorf("%w: negative timeout or output limit", ErrInvalidConfig)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxOutputBytes == 0 {
		cfg.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if cfg.Level == "" {
		cfg.Level = sandbox.LevelMaximum
	}
	if _, err := sandbox.ParseLevel(string(cfg.Level)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
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
	if cfg.Git == "" {
		if cfg.Git, err = Detect(); err != nil {
			return nil, err
		}
	} else if cfg.Git, err = realBinary(cfg.Git); err != nil {
		return nil, err
	}
	xp, err := execPath(cfg.Git)
	if err != nil {
		return nil, err
	}
	t := &Tools{cfg: cfg, rt: rt, ws: ws, commitMu: make(chan struct{}, 1)}
	seen := map[string]bool{}
	for _, p := range []string{filepath.Dir(cfg.Git), xp} {
		if seen[p] || underSystem(p) {
			continue
		}
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			continue
		}
		seen[p] = true
		t.mounts = append(t.mounts, sandbox.Mount{Source: p})
	}
	// The scratch directory must be writable by the sandbox user, who owns
	// no host files: mode 0777, inside a 0700 parent that no other host
	// user can enter.
	if t.tmpRoot, err = os.MkdirTemp(cfg.ScratchParent, "portcullis-git-"); err != nil {
		return nil, fmt.Errorf("%w: scratch directory: %w", ErrInvalidConfig, err)
	}
	t.scratch = filepath.Join(t.tmpRoot, "scratch")
	err = os.Mkdir(t.scratch, 0o700)
	if err == nil {
		err = os.Chmod(t.scratch, 0o777)
	}
	if err != nil {
		os.RemoveAll(t.tmpRoot)
		return nil, fmt.Errorf("%w: scratch directory: %w", ErrInvalidConfig, err)
	}
	return t, nil
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

// Close removes the scratch directory. Calls must not be in flight.
func (t *Tools) Close() error { return os.RemoveAll(t.tmpRoot) }

// Tools returns git_status, git_diff, git_log and git_commit, in this order.
func (t *Tools) Tools() []tool.Tool {
	return []tool.Tool{
		&tool.Func{Def: t.statusDef(), Fn: t.status},
		&tool.Func{Def: t.diffDef(), Fn: t.diff},
		&tool.Func{Def: t.logDef(), Fn: t.log},
		&tool.Func{Def: t.commitDef(), Fn: t.commit},
	}
}

// --- definitions -----------------------------------------------------------

func ptr[T any](v T) *T { return &v }

func objectSchema(required, order []string, props map[string]*jsonschema.Schema) *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:                 "object",
		Properties:           props,
		PropertyOrder:        order,
		Required:             required,
		AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
	}
}

func pathSchema(desc string) *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Description: desc, MinLength: ptr(1), MaxLength: ptr(MaxPathBytes)}
}

const pathDesc = "File or directory relative to the workspace root, with '/' separators (default: the whole repository). Absolute paths and paths leaving the workspace are refused."

func refSchema(desc string) *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Description: desc, MinLength: ptr(1), MaxLength: ptr(MaxRefBytes),
		Pattern: refPattern}
}

// refPattern is the ref syntax accepted (JSON Schema and code): it
// cannot start like an option or a path ('-', '.', '/', '~'); checkRef
// also refuses "//" and "/." so that no ref reads as a path leaving the
// work tree.
const refPattern = `^[A-Za-z0-9@^_][A-Za-z0-9._/@{}~^-]{0,127}$`

var refRE = regexp.MustCompile(refPattern)

func (t *Tools) readDef(name, title, desc string, props map[string]*jsonschema.Schema, order []string) tool.Definition {
	return tool.Definition{
		Name:        name,
		Title:       title,
		Description: desc,
		InputSchema: objectSchema(nil, order, props),
		Sensitivity: tool.Low,
		ReadOnly:    true,
		Timeout:     t.cfg.Timeout + 10*time.Second,
		Labels:      []string{"git", "read", "sandboxed"},
	}
}

func (t *Tools) statusDef() tool.Definition {
	return t.readDef(ToolStatus, "Git status",
		"Show the state of the workspace's git repository (git status --porcelain=v1 --branch): branch, staged, unstaged and untracked files. "+
			"With ref, list the files whose working-tree content differs from that revision instead (git diff --name-status <ref>). Runs in a read-only sandbox.",
		map[string]*jsonschema.Schema{
			"path": pathSchema(pathDesc),
			"ref":  refSchema("Revision to compare the working tree with (e.g. HEAD~1, main)."),
		}, []string{"path", "ref"})
}

func (t *Tools) diffDef() tool.Definition {
	return t.readDef(ToolDiff, "Git diff",
		"Show changes as a unified diff (git diff): without ref, the working tree against the index (unstaged changes); with ref, the working tree against that revision, "+
			"or between two revisions written A..B. External diff programs and textconv are never run. Runs in a read-only sandbox.",
		map[string]*jsonschema.Schema{
			"path": pathSchema(pathDesc),
			"ref":  refSchema("Revision or range (e.g. HEAD, main..feature)."),
		}, []string{"path", "ref"})
}

func (t *Tools) logDef() tool.Definition {
	return t.readDef(ToolLog, "Git log",
		fmt.Sprintf("Show commit history (git log, medium format), newest first, at most limit commits (default %d). Runs in a read-only sandbox.", DefaultLogLimit),
		map[string]*jsonschema.Schema{
			"path": pathSchema("Only commits touching this file or directory (relative to the workspace root)."),
			"ref":  refSchema("Revision or range to start from (default HEAD)."),
			"limit": {Type: "integer", Description: fmt.Sprintf("Maximum number of commits (1-%d, default %d).", MaxLogLimit, DefaultLogLimit),
				Minimum: ptr(1.0), Maximum: ptr(float64(MaxLogLimit))},
		}, []string{"path", "ref", "limit"})
}

func (t *Tools) commitDef() tool.Definition {
	return tool.Definition{
		Name:  ToolCommit,
		Title: "Git commit",
		Description: "Record a commit in the workspace's git repository as \"" + AuthorName + " <" + AuthorEmail + ">\". " +
			"Without paths, every modification and deletion of a tracked file is committed (git commit -a); with paths, those files or directories " +
			"(new ones too) are staged first and the whole index is committed. Hooks, filters and signing programs are never run.",
		InputSchema: objectSchema([]string{"message"}, []string{"message", "paths"}, map[string]*jsonschema.Schema{
			"message": {Type: "string", Description: fmt.Sprintf("Commit message (1-%d bytes, no NUL).", MaxMessageBytes),
				MinLength: ptr(1), MaxLength: ptr(MaxMessageBytes)},
			"paths": {Type: "array", Description: "Workspace-relative paths to stage before committing.",
				MaxItems: ptr(MaxPaths), Items: pathSchema("Path relative to the workspace root.")},
		}),
		Sensitivity: tool.Critical,
		Destructive: true, // moves the branch (MCP destructiveHint)
		Timeout:     t.cfg.Timeout + 10*time.Second,
		Labels:      []string{"git", "write", "sandboxed"},
	}
}

// --- arguments -------------------------------------------------------------

type readArgs struct {
	Path  string `json:"path"`
	Ref   string `json:"ref"`
	Limit int    `json:"limit"`
}

type commitArgs struct {
	Message string   `json:"message"`
	Paths   []string `json:"paths"`
}

// decodeArgs decodes raw strictly into v: one JSON object (empty or null
// read as {}), keys exactly from allowed (encoding/json alone would match
// them case-insensitively), no trailing data. Failures are
// INVALID_ARGUMENTS.
func decodeArgs(raw json.RawMessage, v any, allowed ...string) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return tool.Errorf(reason.InvalidArguments, err, "arguments must be a JSON object")
	}
	for k := range keys {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			return tool.Errorf(reason.InvalidArguments, fmt.Errorf("unknown argument %q", k), "unknown argument %q", clip(k))
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return tool.Errorf(reason.InvalidArguments, err, "invalid arguments")
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return tool.Errorf(reason.InvalidArguments, errTrailingData, "invalid arguments")
	}
	return nil
}

// clip shortens client input for a client message to at most 200 bytes.
func clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// cleanPath validates a workspace-relative path (the rules of
// internal/tools/files, whose helper is not exported) and returns it
// cleaned with '/' separators; "" stays "" (the whole repository) and a
// path that cleans to "." becomes "". It refuses NUL (PATH_FORBIDDEN),
// absolute paths and lexical escapes (PATH_OUTSIDE_WORKSPACE) and overlong
// paths (INVALID_ARGUMENTS). A leading '-' is fine: paths always follow
// "--".
func cleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", nil
	case len(p) > MaxPathBytes:
		return "", tool.Errorf(reason.InvalidArguments, errTooLong, "path is too long")
	case strings.IndexByte(p, 0) >= 0:
		return "", tool.Errorf(reason.PathForbidden, errNUL, "path contains a NUL byte")
	case strings.HasPrefix(p, "/"):
		return "", tool.Errorf(reason.PathOutsideWorkspace, errAbsolute, "absolute paths are not allowed; use a path relative to the workspace")
	}
	c := path.Clean(p)
	if !filepath.IsLocal(c) || c == ".." || strings.HasPrefix(c, "../") {
		return "", tool.Errorf(reason.PathOutsideWorkspace, errLexicalEsc, "%q: %s", clip(p), reason.Message(reason.PathOutsideWorkspace))
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// checkRef validates a revision argument: refPattern (at most
// MaxRefBytes, never starting with '-', '.', '/' or '~'), no "//", "/."
// or trailing '/'.
func checkRef(ref string) error {
	if ref == "" {
		return nil
	}
	if len(ref) > MaxRefBytes || !refRE.MatchString(ref) || ref[0] == '-' ||
		strings.Contains(ref, "//") || strings.Contains(ref, "/.") || strings.HasSuffix(ref, "/") {
		return tool.Errorf(reason.InvalidArguments, errBadRef, "invalid ref: use a branch, tag, commit id or an expression such as HEAD~2 (letters, digits and . _ / @ { } ~ ^ -, not starting with '-')")
	}
	return nil
}

// checkMessage validates a commit message: 1-MaxMessageBytes bytes, no
// NUL, not only white space, valid UTF-8, and no line that starts the
// principal trailer (which only the gateway writes).
func checkMessage(msg string) error {
	switch {
	case len(msg) > MaxMessageBytes:
		return tool.Errorf(reason.TooLarge, errTooLong, "message is longer than %d bytes", MaxMessageBytes)
	case strings.IndexByte(msg, 0) >= 0:
		return tool.Errorf(reason.InvalidArguments, errNUL, "message contains a NUL byte")
	case strings.TrimSpace(msg) == "":
		return tool.Errorf(reason.InvalidArguments, errEmptyMessage, "message is empty")
	case !utf8.ValidString(msg):
		return tool.Errorf(reason.InvalidArguments, errors.New("invalid UTF-8"), "message is not valid UTF-8")
	}
	for _, line := range strings.Split(msg, "\n") {
		k, _, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), PrincipalTrailer) {
			return tool.Errorf(reason.InvalidArguments, errForgedTrail, "message must not contain a %s line; the gateway adds it", PrincipalTrailer)
		}
	}
	return nil
}

// repoCheck refuses with NOT_FOUND a workspace whose root has no .git
// directory (a symbolic link or a gitdir file does not count) or whose
// .git lacks what git itself requires of a repository: HEAD, objects/ and
// refs/. git's own verdict, in the sandbox, is mapped the same way.
func (t *Tools) repoCheck() error {
	dir := filepath.Join(t.ws, ".git")
	fi, err := os.Lstat(dir)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%w: .git is %s", errNotRepo, fi.Mode().Type())
	}
	for _, want := range []struct {
		name string
		dir  bool
	}{{"HEAD", false}, {"objects", true}, {"refs", true}} {
		if err != nil {
			break
		}
		var e os.FileInfo
		if e, err = os.Stat(filepath.Join(dir, want.name)); err == nil && e.IsDir() != want.dir {
			err = fmt.Errorf("%w: .git/%s has the wrong type", errNotRepo, want.name)
		}
	}
	if err != nil {
		return notRepo(err)
	}
	return nil
}

func notRepo(cause error) error {
	return tool.Errorf(reason.NotFound, cause, "workspace is not a git repository")
}
