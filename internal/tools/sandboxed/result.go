// Package sandboxed maps the result of a program run in the sandbox to a
// tool result, the same way for every sandboxed tool (execute_python,
// run_command, the git tools): exit code, output and violations in
// structuredContent; a failure gets a stable reason code.
package sandboxed

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
)

// Options adapt the mapping to one tool. The zero value is execute_python's.
type Options struct {
	// Extra fields added to structuredContent (git: the step).
	Extra map[string]any
	// Classify, if set, may name a tool-specific failure code and client
	// message for a non-zero exit that is not a sandbox violation (git:
	// NOT_FOUND for "not a git repository"); "" falls through.
	Classify func(res *sandbox.Result, stderr string) (reason.Code, string)
	// DetailPrefix starts the audit-only detail of a failure.
	DetailPrefix string
	// ExitInMessage adds the exit code to the NON_ZERO_EXIT message.
	ExitInMessage bool
	// EmptyText replaces an empty text of a successful run.
	EmptyText string
}

// Code returns the reason code of a run: TIMEOUT, CANCELLED,
// SANDBOX_VIOLATION (a violation other than output truncation ended it),
// NON_ZERO_EXIT, or "" for success. Output cut at the cap is not a failure.
func Code(res *sandbox.Result) reason.Code {
	switch {
	case res.Has(sandbox.ViolationWallTimeout) || res.Has(sandbox.ViolationCPUTimeout):
		return reason.Timeout
	case res.Has(sandbox.ViolationCancelled):
		return reason.Cancelled
	case res.ExitCode != 0 && len(res.Violations) > 0 && !res.Has(sandbox.ViolationOutputTrunc):
		return reason.SandboxViolation
	case res.ExitCode != 0:
		return reason.NonZeroExit
	}
	return ""
}

// Result maps res to a tool result.
func Result(res *sandbox.Result, o Options) *tool.Result {
	stdout, stderr := Text(res.Stdout), Text(res.Stderr)
	violations := make([]map[string]any, 0, len(res.Violations))
	for _, v := range res.Violations {
		violations = append(violations, map[string]any{"code": string(v.Code), "detail": v.Detail})
	}
	structured := map[string]any{
		"exit_code":        res.ExitCode,
		"stdout":           stdout,
		"stderr":           stderr,
		"stdout_truncated": res.StdoutTruncated,
		"stderr_truncated": res.StderrTruncated,
		"duration_ms":      res.WallTime.Milliseconds(),
		"cpu_ms":           res.CPUTime.Milliseconds(),
		"violations":       violations,
	}
	for k, v := range o.Extra {
		structured[k] = v
	}
	if res.Signal != "" {
		structured["signal"] = res.Signal
	}
	var b strings.Builder
	b.WriteString(stdout)
	if stderr != "" {
		if b.Len() > 0 && !strings.HasSuffix(stdout, "\n") {
			b.WriteByte('\n')
		}
		b.WriteString("[stderr]\n")
		b.WriteString(stderr)
	}
	out := &tool.Result{Text: b.String(), Structured: structured, CPUTime: res.CPUTime}
	code := Code(res)
	msg := reason.Message(code)
	if code == reason.NonZeroExit && o.Classify != nil {
		if c, m := o.Classify(res, stderr); c != "" {
			code, msg = c, m
		}
	}
	if code == "" {
		if out.Text == "" {
			out.Text = o.EmptyText
		}
		return out
	}
	if code == reason.NonZeroExit && o.ExitInMessage {
		msg += " (exit code " + strconv.Itoa(res.ExitCode) + ")"
	}
	out.IsError, out.Code = true, code
	structured["code"] = string(code)
	if len(res.Violations) > 0 {
		structured["violation"] = string(res.Violations[0].Code)
	}
	if out.Text == "" {
		out.Text = msg
	} else {
		out.Text = msg + "\n" + out.Text
	}
	var details []string
	if o.DetailPrefix != "" {
		details = append(details, o.DetailPrefix)
	}
	for _, v := range res.Violations {
		details = append(details, string(v.Code)+": "+v.Detail)
	}
	out.Detail = strings.Join(details, "; ")
	return out
}

// Text returns b as a string, replacing invalid UTF-8.
func Text(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
