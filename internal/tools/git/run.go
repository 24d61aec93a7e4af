package git

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/sandboxed"
)

// hardening are the -c options of every git command (see the package
// comment for what each covers). Command-line configuration wins over
// every configuration file.
var hardening = []string{
	"core.hooksPath=/dev/null",
	"core.fsmonitor=false",
	"core.pager=cat",
	"core.sshCommand=false",
	"core.askPass=",
	"core.attributesFile=/dev/null",
	"core.untrackedCache=false",
	"core.splitIndex=false",
	"core.preloadIndex=false",
	"index.threads=1",
	"diff.external=",
	"credential.helper=",
	"protocol.allow=never",
	"safe.directory=" + wsDir,
	"log.showSignature=false",
	"commit.gpgSign=false",
	"status.submoduleSummary=false",
	"submodule.recurse=false",
	"gc.auto=0",
	"maintenance.auto=false",
	"color.ui=never",
	"i18n.commitEncoding=UTF-8",
}

// baseEnv is the complete environment of every git command (nothing is
// inherited from the gateway).
var baseEnv = []string{
	"PATH=/usr/bin:/bin",
	"HOME=/tmp",
	"XDG_CONFIG_HOME=/tmp",
	"LC_ALL=C",
	"LANG=C",
	"GIT_DIR=" + gitDir,
	"GIT_WORK_TREE=" + wsDir,
	"GIT_CONFIG_NOSYSTEM=1",
	"GIT_CONFIG_GLOBAL=/dev/null",
	"GIT_TERMINAL_PROMPT=0",
	"GIT_OPTIONAL_LOCKS=0",
	"GIT_PAGER=cat",
	"PAGER=cat",
	"GIT_LITERAL_PATHSPECS=1",
	"GIT_ATTR_NOSYSTEM=1",
	"GIT_NO_REPLACE_OBJECTS=1",
	"GIT_ALLOW_PROTOCOL=",
	"GIT_PROTOCOL_FROM_USER=0",
}

// maxDrivers bounds the filter, diff and merge drivers a repository may
// define; more is refused rather than left partly un-neutralised.
const maxDrivers = 200

// invocation is one git command.
type invocation struct {
	step  string   // name for results ("status", "add", ...)
	args  []string // after the global options
	stdin []byte
	env   []string // in addition to baseEnv
	// commit selects the git_commit layout: the scratch directory is
	// mounted writable at /scratch.
	commit bool
}

// call is the state shared by the runs of one tool call.
type call struct {
	t         *Tools
	deadline  time.Time
	overrides []string // GIT_CONFIG_COUNT environment
	commit    bool
	cpu       time.Duration
}

func (t *Tools) newCall(commit bool) *call {
	return &call{t: t, deadline: time.Now().Add(t.cfg.Timeout), commit: commit}
}

// spec builds the sandbox Spec for inv.
func (c *call) spec(inv invocation) (*sandbox.Spec, error) {
	wall := time.Until(c.deadline)
	if wall <= 0 {
		return nil, tool.Errorf(reason.Timeout, context.DeadlineExceeded, "%s", reason.Message(reason.Timeout))
	}
	t := c.t
	// No -C: the working directory is the sandbox's empty private work
	// dir. In a repository git moves to GIT_WORK_TREE itself, so paths are
	// relative to the workspace root; should git decide the repository is
	// not one (a damaged .git), "git diff" falls back to comparing two
	// files (implicit --no-index), and then a ref and a path name nothing.
	argv := make([]string, 0, 2+2*len(hardening)+len(inv.args))
	argv = append(argv, t.cfg.Git, "--no-pager")
	for _, h := range hardening {
		argv = append(argv, "-c", h)
	}
	argv = append(argv, inv.args...)
	env := append(append(append([]string{}, baseEnv...), c.overrides...), inv.env...)
	mounts := []sandbox.Mount{{Source: t.ws, Target: wsDir}}
	mounts = append(mounts, t.mounts...)
	if c.commit {
		mounts = append(mounts, sandbox.Mount{Source: t.scratch, Target: scratchDir, Writable: true})
	}
	limits := t.cfg.Limits
	limits.WallTime = wall
	limits.OutputBytes = t.cfg.MaxOutputBytes
	return &sandbox.Spec{
		Argv:   argv,
		Env:    env,
		Stdin:  inv.stdin,
		Mounts: mounts,
		Level:  t.cfg.Level,
		Limits: limits,
	}, nil
}

// run runs inv in a fresh sandbox and maps its result. out.IsError
// means the run failed (out is what the client should see); err means it
// could not run (or the call's time is up).
func (c *call) run(ctx context.Context, inv invocation) (res *sandbox.Result, out *tool.Result, err error) {
	spec, err := c.spec(inv)
	if err != nil {
		return nil, nil, err
	}
	res, err = c.t.rt.Run(ctx, spec)
	if err == nil && res == nil {
		err = errors.New("sandbox runtime returned no result")
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctxError(ctx)
		}
		return nil, nil, tool.Errorf(reason.SandboxUnavailable, err, "")
	}
	c.cpu += res.CPUTime
	out = toResult(res, inv.step)
	out.CPUTime = c.cpu
	return res, out, nil
}

// mustRun is run for a step whose failure ends the call: failed is the
// result to return when the step did not succeed.
func (c *call) mustRun(ctx context.Context, inv invocation) (res *sandbox.Result, failed *tool.Result, err error) {
	res, out, err := c.run(ctx, inv)
	if err != nil || out.IsError {
		return nil, out, err
	}
	return res, nil, nil
}

// neutraliseDrivers lists the configuration keys in force (repository
// config, its includes, the command line) and overrides every filter,
// diff and merge driver command they define, for the rest of the call.
func (c *call) neutraliseDrivers(ctx context.Context) (*tool.Result, error) {
	res, failed, err := c.mustRun(ctx, invocation{step: "config", args: []string{"config", "--null", "--name-only", "--list"}, commit: c.commit})
	if err != nil || failed != nil {
		return failed, err
	}
	if res.StdoutTruncated {
		return nil, tool.Errorf(reason.ToolFailed, errors.New("config key list truncated"), "repository configuration is too large")
	}
	type driver struct{ section, sub string }
	seen := map[driver]bool{}
	var drivers []driver
	for _, key := range strings.Split(string(res.Stdout), "\x00") {
		first, last := strings.IndexByte(key, '.'), strings.LastIndexByte(key, '.')
		if first < 0 || first == last {
			continue // no subsection
		}
		d := driver{section: strings.ToLower(key[:first]), sub: key[first+1 : last]}
		switch d.section {
		case "filter", "diff", "merge":
		default:
			continue
		}
		if !seen[d] {
			seen[d] = true
			drivers = append(drivers, d)
		}
	}
	if len(drivers) > maxDrivers {
		return nil, tool.Errorf(reason.ToolFailed, fmt.Errorf("%d drivers configured", len(drivers)), "repository configuration defines too many filter or diff drivers")
	}
	var kv [][2]string
	for _, d := range drivers {
		p := d.section + "." + d.sub + "."
		switch d.section {
		case "filter":
			kv = append(kv, [2]string{p + "clean", ""}, [2]string{p + "smudge", ""}, [2]string{p + "process", ""}, [2]string{p + "required", "false"})
		case "diff":
			kv = append(kv, [2]string{p + "textconv", ""}, [2]string{p + "command", ""})
		case "merge":
			kv = append(kv, [2]string{p + "driver", ""})
		}
	}
	if len(kv) > 0 {
		c.overrides = append(c.overrides, "GIT_CONFIG_COUNT="+strconv.Itoa(len(kv)))
		for i, p := range kv {
			c.overrides = append(c.overrides, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, p[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, p[1]))
		}
	}
	return nil, nil
}

// readOnly runs one read-only git command: repository check, the hard
// link check of linkScope (nil: none), driver neutralisation, the command.
func (t *Tools) readOnly(ctx context.Context, step string, args []string, linkScope []string) (*tool.Result, error) {
	if err := t.repoCheck(); err != nil {
		return nil, err
	}
	if linkScope != nil {
		if err := t.checkHardLinks(ctx, linkScope); err != nil {
			return nil, err
		}
	}
	c := t.newCall(false)
	if failed, err := c.neutraliseDrivers(ctx); err != nil || failed != nil {
		return failed, err
	}
	_, out, err := c.run(ctx, invocation{step: step, args: args})
	if err != nil {
		return nil, err
	}
	if out.Text == "" {
		out.Text = "(no output)"
	}
	return out, nil
}

func (t *Tools) parseRead(raw json.RawMessage, allowed ...string) (readArgs, error) {
	var a readArgs
	if err := decodeArgs(raw, &a, allowed...); err != nil {
		return a, err
	}
	p, err := cleanPath(a.Path)
	if err != nil {
		return a, err
	}
	a.Path = p
	if err := checkRef(a.Ref); err != nil {
		return a, err
	}
	return a, nil
}

// revAndPath appends "--end-of-options <ref>" (if any), "--" and the path
// (if any): neither can be read as an option.
func revAndPath(args []string, ref, p string) []string {
	if ref != "" {
		args = append(args, "--end-of-options", ref)
	}
	args = append(args, "--")
	if p != "" {
		args = append(args, p)
	}
	return args
}

func (t *Tools) status(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	a, err := t.parseRead(raw, "path", "ref")
	if err != nil {
		return nil, err
	}
	if a.Ref == "" {
		return t.readOnly(ctx, "status", revAndPath([]string{"status", "--porcelain=v1", "--branch", "--ignore-submodules=all"}, "", a.Path), nil)
	}
	return t.readOnly(ctx, "status", revAndPath([]string{"diff", "--name-status", "--no-ext-diff", "--no-textconv", "--no-color", "--ignore-submodules=all"}, a.Ref, a.Path), nil)
}

func (t *Tools) diff(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	a, err := t.parseRead(raw, "path", "ref")
	if err != nil {
		return nil, err
	}
	// The diff prints work-tree content: no file with a second name.
	return t.readOnly(ctx, "diff", revAndPath([]string{"diff", "--no-ext-diff", "--no-textconv", "--no-color", "--ignore-submodules=all"}, a.Ref, a.Path), []string{a.Path})
}

func (t *Tools) log(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	a, err := t.parseRead(raw, "path", "ref", "limit")
	if err != nil {
		return nil, err
	}
	limit := a.Limit
	switch {
	case limit == 0:
		limit = DefaultLogLimit
	case limit < 1 || limit > MaxLogLimit:
		return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("limit %d", limit), "limit must be between 1 and %d", MaxLogLimit)
	}
	return t.readOnly(ctx, "log", revAndPath([]string{"log", "--no-color", "--no-show-signature", "--no-ext-diff", "--no-textconv",
		"--format=medium", "--max-count=" + strconv.Itoa(limit)}, a.Ref, a.Path), nil)
}

// toResult maps a sandbox result to a tool result (as execute_python
// does): exit code, output, violations; a failure gets a reason code:
// TIMEOUT, CANCELLED, SANDBOX_VIOLATION, NOT_FOUND (git's "not a git
// repository") or NON_ZERO_EXIT.
func toResult(res *sandbox.Result, step string) *tool.Result {
	return sandboxed.Result(res, sandboxed.Options{Extra: map[string]any{"step": step}, DetailPrefix: "step " + step,
		Classify: func(res *sandbox.Result, stderr string) (reason.Code, string) {
			if (res.ExitCode == 128 || res.ExitCode == 129) && strings.Contains(strings.ToLower(stderr), "not a git repository") {
				return reason.NotFound, "workspace is not a git repository"
			}
			return "", ""
		}})
}

// text returns b as a string, replacing invalid UTF-8.

// firstLine returns the first line of b, trimmed.
func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return strings.TrimSpace(string(line))
}

// ctxError returns CANCELLED or TIMEOUT for a done context.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return tool.Errorf(reason.Timeout, err, "%s", reason.Message(reason.Timeout))
	}
	return tool.Errorf(reason.Cancelled, err, "%s", reason.Message(reason.Cancelled))
}
