package python

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
)

// CodePolicy is how execute_python treats the findings of the code check
// (seed 000: three levels). The check is defence in depth; the sandbox is
// the boundary (DESIGN §4).
//
//	strict  refuses every finding (rules of level normal and strict)
//	normal  refuses the findings of level normal and records the rest
//	legacy  refuses nothing: findings are recorded and the code runs
//
// The rules (checker.py), by the least strict level that refuses them:
//
//	rule              level   matches
//	import            normal  import of subprocess, _posixsubprocess, multiprocessing, pty, socket,
//	                          _socket, ctypes, _ctypes, importlib, _imp, posix (or a submodule;
//	                          "import x", "from x import y")
//	os-process        normal  os.system, os.popen, os.exec*, os.spawn*, os.fork, os.forkpty, os.kill,
//	                          os.killpg, os.posix_spawn[p], os.startfile: as an attribute of a name
//	                          bound by "import os [as o]", by "from os import ..." (and "from os
//	                          import *"), or getattr(os, "system")
//	dynamic-import    normal  the name __import__
//	import            strict  import of builtins, code, codeop, runpy, pdb, pickle, _pickle, marshal
//	dynamic-code      strict  the names eval, exec, compile, breakpoint
//	dunder-attribute  strict  x.__y__ (also "from m import __y__", "case C(__y__=v)") except
//	                          __init__, __name__, __qualname__, __doc__, __module__, __version__
//	dunder-name       strict  reading a bare __y__ except __name__, __file__, __doc__
//	                          (so "if __name__ == '__main__'" passes); __import__ is dynamic-import
//	dunder-string     strict  a dunder string constant (same exceptions as attributes) as the name
//	                          argument of getattr, setattr, delattr, hasattr, in attrgetter or
//	                          methodcaller, or as a subscript key (globals()["__builtins__"])
//
// Code that does not parse (a syntax error, a NUL byte) or cannot be
// checked within the checker's limits (nesting beyond CPython's parser and
// recursion limits, more memory or time than the run may use) is refused
// at strict and normal and recorded at legacy. A refusal is a tool error
// INVALID_ARGUMENTS whose message names the first rule and line ("invalid
// arguments: import of subprocess is not allowed by the strict code policy
// (line 3)"); the detail (audit only) lists every finding. Findings a
// policy does not enforce go to the result's Detail, never to the client.
//
// Names are matched as the parser reports them (NFKC-normalised, so
// full-width letters do not hide an import); scopes and assignments are
// not followed: "o = os; o.system()" and the bypasses in the package
// comment pass. That is the nature of a blocklist, and why the sandbox
// decides what code can do.
type CodePolicy string

// Code policies, strictest first.
const (
	CodePolicyStrict CodePolicy = "strict"
	CodePolicyNormal CodePolicy = "normal"
	CodePolicyLegacy CodePolicy = "legacy"
)

// ParseCodePolicy parses "strict", "normal" or "legacy"; anything else,
// including "", is an error.
func ParseCodePolicy(s string) (CodePolicy, error) {
	switch p := CodePolicy(s); p {
	case CodePolicyStrict, CodePolicyNormal, CodePolicyLegacy:
		return p, nil
	}
	return "", fmt.Errorf("python: unknown code policy %q (want strict, normal or legacy)", s)
}

// DefaultCodePolicy is the policy when the configuration names none:
// strict in production, normal in development.
func DefaultCodePolicy(production bool) CodePolicy {
	if production {
		return CodePolicyStrict
	}
	return CodePolicyNormal
}

// enforces reports whether p refuses a finding of the given rule level
// ("normal" or "strict").
func (p CodePolicy) enforces(level CodePolicy) bool {
	switch p {
	case CodePolicyStrict:
		return level == CodePolicyStrict || level == CodePolicyNormal
	case CodePolicyNormal:
		return level == CodePolicyNormal
	}
	return false
}

// Verdict statuses.
const (
	// VerdictParsed: the code parsed; Findings lists what the rules found
	// (possibly nothing).
	VerdictParsed = "ok"
	// VerdictSyntaxError: CPython could not parse the code; Line and
	// Message are its own.
	VerdictSyntaxError = "syntax_error"
	// VerdictTooComplex: the code could not be checked within the
	// checker's limits (nesting beyond CPython's parser or recursion
	// limits, or the checker's memory or time).
	VerdictTooComplex = "too_complex"
)

// Finding is one rule match in the code.
type Finding struct {
	// Rule is the stable rule id: import, os-process, dynamic-import,
	// dynamic-code, dunder-attribute, dunder-name or dunder-string.
	Rule string `json:"rule"`
	// Level is the least strict policy that refuses it (normal or strict).
	Level CodePolicy `json:"level"`
	// Line is the 1-based line of the match.
	Line int `json:"line"`
	// What names the match without quoting the code beyond identifiers,
	// e.g. "import of subprocess", "os.system", "attribute __class__".
	What string `json:"what"`
}

// String returns "<what> (line N)".
func (f Finding) String() string { return fmt.Sprintf("%s (line %d)", f.What, f.Line) }

// Verdict is the result of checking one piece of code.
type Verdict struct {
	// Status is VerdictParsed, VerdictSyntaxError or VerdictTooComplex.
	Status string `json:"status"`
	// Line (1-based; 0 if unknown) and Message describe a syntax error:
	// CPython's own message, at most 200 bytes. For VerdictTooComplex
	// Message names the cause (RecursionError, MemoryError, or the limit
	// that stopped the checker).
	Line    int    `json:"line,omitempty"`
	Message string `json:"message,omitempty"`
	// Findings are the rule matches of parsed code.
	Findings []Finding `json:"findings,omitempty"`
	// Total counts the findings; Findings holds the first 50 of each
	// level (normal, strict), ordered by line.
	Total int `json:"total,omitempty"`
}

// Refused returns the findings that policy p refuses.
func (v *Verdict) Refused(p CodePolicy) []Finding {
	var out []Finding
	for _, f := range v.Findings {
		if p.enforces(f.Level) {
			out = append(out, f)
		}
	}
	return out
}

// Errors of the code check.
var (
	// ErrCodeRefused: the code policy refused the code (a finding it
	// enforces, a syntax error, or code too complex to check).
	ErrCodeRefused = errors.New("python: code refused by the code policy")
	// ErrCheckFailed: the checker gave no verdict (it crashed or printed
	// something else); the call is refused unless the policy is legacy.
	ErrCheckFailed = errors.New("python: code check failed")
)

// checkerSource is the checker script, run with -c.
//
//go:embed checker.py
var checkerSource string

// Limits of one check (memory is the run's limit). Parsing 256 KiB of
// dense code (the default MaxCodeBytes) takes about a second of CPU and
// 160 MiB; code beyond the limits is refused as too complex to check.
const (
	checkTime        = 10 * time.Second // wall clock and CPU
	checkOutputBytes = 64 << 10
	maxVerdictText   = 200 // bytes of a checker message kept
)

// Check parses code with the interpreter's own parser inside a fresh
// sandbox (maximum level, no network, the run's memory limit, 10 s) and
// applies the rules of every level; the verdict does not depend on the
// tool's policy (Verdict.Refused does). The code is passed as data on
// stdin and never executed. The error is ErrCheckFailed when the checker
// gave no verdict, wraps the context's error when ctx ended, and the
// runtime's error when no sandbox could run. A checker stopped by a limit
// (memory, CPU, wall time, output) is a VerdictTooComplex.
func (t *Tool) Check(ctx context.Context, code string) (*Verdict, error) {
	limits := t.cfg.Limits
	limits.WallTime, limits.CPUTime, limits.OutputBytes = checkTime, checkTime, checkOutputBytes
	spec := &sandbox.Spec{
		// -S: the checker needs no site-packages, and starts faster.
		Argv:   []string{t.cfg.Interpreter.Executable, "-I", "-S", "-B", "-c", checkerSource},
		Env:    pythonEnv(),
		Stdin:  []byte(code),
		Dir:    "/work",
		Level:  sandbox.LevelMaximum,
		Limits: limits,
		Mounts: t.mounts(),
	}
	res, err := t.rt.Run(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("python: code check: %w", err)
	}
	if res.Has(sandbox.ViolationCancelled) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("python: code check: %w", err)
		}
		return nil, fmt.Errorf("python: code check: %w", context.Canceled)
	}
	for _, v := range res.Violations {
		switch v.Code {
		case sandbox.ViolationWallTimeout, sandbox.ViolationCPUTimeout, sandbox.ViolationOOM,
			sandbox.ViolationMemoryExceeded, sandbox.ViolationOutputTrunc:
			return &Verdict{Status: VerdictTooComplex, Message: "checker stopped: " + string(v.Code)}, nil
		}
	}
	if res.ExitCode != 0 || len(res.Violations) > 0 {
		return nil, fmt.Errorf("%w: exit %d signal %q violations %v: %s", ErrCheckFailed,
			res.ExitCode, res.Signal, res.Violations, clip(text(res.Stderr), 500))
	}
	v, err := decodeVerdict(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCheckFailed, err)
	}
	return v, nil
}

// decodeVerdict parses the checker's output: exactly one JSON object with
// known fields and a known status.
func decodeVerdict(out []byte) (*Verdict, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	var v Verdict
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("verdict: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("verdict: trailing data")
	}
	switch v.Status {
	case VerdictParsed:
		if v.Total < len(v.Findings) {
			return nil, fmt.Errorf("verdict: total %d below %d findings", v.Total, len(v.Findings))
		}
		for _, f := range v.Findings {
			if f.Rule == "" || f.Line < 0 || (f.Level != CodePolicyNormal && f.Level != CodePolicyStrict) {
				return nil, fmt.Errorf("verdict: malformed finding %+v", f)
			}
		}
	case VerdictSyntaxError, VerdictTooComplex:
		if len(v.Findings) > 0 || v.Total != 0 {
			return nil, fmt.Errorf("verdict: findings with status %s", v.Status)
		}
	default:
		return nil, fmt.Errorf("verdict: unknown status %q", clip(v.Status, 40))
	}
	if v.Line < 0 {
		return nil, fmt.Errorf("verdict: negative line %d", v.Line)
	}
	v.Message = clip(v.Message, maxVerdictText)
	return &v, nil
}

// enforce checks code under the tool's policy. It returns a refusal
// (*tool.Error) or, for a call that may run, a note for the audit detail
// listing what was found but not enforced ("" when nothing was).
func (t *Tool) enforce(ctx context.Context, code string) (note string, refusal error) {
	p := t.cfg.CodePolicy
	v, err := t.Check(ctx, code)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "", tool.Errorf(reason.Timeout, err, "")
	case errors.Is(err, context.Canceled):
		return "", tool.Errorf(reason.Cancelled, err, "")
	case errors.Is(err, ErrCheckFailed) && p == CodePolicyLegacy:
		return "code policy legacy: " + err.Error(), nil
	case errors.Is(err, ErrCheckFailed):
		return "", tool.Errorf(reason.ToolFailed, err, "")
	case err != nil:
		return "", tool.Errorf(reason.SandboxUnavailable, err, "")
	}
	var msg, detail string
	switch v.Status {
	case VerdictSyntaxError:
		msg = fmt.Sprintf("syntax error at line %d: %s", v.Line, v.Message)
		detail = msg
	case VerdictTooComplex:
		msg = "code is too complex to check (nesting too deep or too large)"
		detail = msg + ": " + v.Message
	default:
		refused := v.Refused(p)
		if len(refused) == 0 {
			if len(v.Findings) == 0 {
				return "", nil
			}
			return fmt.Sprintf("code policy %s: not enforced: %s", p, listFindings(v.Findings, v.Total)), nil
		}
		msg = fmt.Sprintf("%s is not allowed by the %s code policy (line %d)", refused[0].What, p, refused[0].Line)
		if n := len(refused) - 1; n > 0 {
			msg += fmt.Sprintf(" and %d more", n)
		}
		detail = "refused: " + listFindings(refused, len(refused))
		if len(v.Findings) > len(refused) || v.Total > len(v.Findings) {
			detail += "; all findings: " + listFindings(v.Findings, v.Total)
		}
		return "", tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: code policy %s: %s", ErrCodeRefused, p, detail),
			"invalid arguments: %s", msg)
	}
	if p == CodePolicyLegacy {
		return "code policy legacy: not enforced: " + detail, nil
	}
	return "", tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: code policy %s: %s", ErrCodeRefused, p, detail), "invalid arguments: %s", msg)
}

// listFindings joins findings as "rule: what (line N)", noting how many
// more the checker counted.
func listFindings(fs []Finding, total int) string {
	parts := make([]string, 0, len(fs)+1)
	for _, f := range fs {
		parts = append(parts, f.Rule+": "+f.String())
	}
	if total > len(fs) {
		parts = append(parts, fmt.Sprintf("%d more", total-len(fs)))
	}
	return strings.Join(parts, "; ")
}

// clip returns s cut to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n] + "…"
}
