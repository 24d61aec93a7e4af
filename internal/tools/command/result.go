package command

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
)

// toResult maps a sandbox result to a tool result the way execute_python
// does: exit code, output, violations; a failure gets a reason code
// (TIMEOUT, CANCELLED, SANDBOX_VIOLATION, NON_ZERO_EXIT). Output that was
// cut at the cap is not a failure by itself (stdout_truncated).
func toResult(res *sandbox.Result) *tool.Result {
	stdout, stderr := text(res.Stdout), text(res.Stderr)
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
	var code reason.Code
	switch {
	case res.Has(sandbox.ViolationWallTimeout) || res.Has(sandbox.ViolationCPUTimeout):
		code = reason.Timeout
	case res.Has(sandbox.ViolationCancelled):
		code = reason.Cancelled
	case res.ExitCode != 0 && len(res.Violations) > 0 && !res.Has(sandbox.ViolationOutputTrunc):
		code = reason.SandboxViolation
	case res.ExitCode != 0:
		code = reason.NonZeroExit
	}
	if code == "" {
		if out.Text == "" {
			out.Text = "(no output)"
		}
		return out
	}
	out.IsError = true
	out.Code = code
	structured["code"] = string(code)
	if len(res.Violations) > 0 {
		structured["violation"] = string(res.Violations[0].Code)
	}
	msg := reason.Message(code)
	if code == reason.NonZeroExit {
		msg += fmt.Sprintf(" (exit code %d)", res.ExitCode)
	}
	if out.Text == "" {
		out.Text = msg
	} else {
		out.Text = msg + "\n" + out.Text
	}
	var details []string
	for _, v := range res.Violations {
		details = append(details, string(v.Code)+": "+v.Detail)
	}
	out.Detail = strings.Join(details, "; ")
	return out
}

// text returns b as a string, replacing invalid UTF-8.
func text(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
