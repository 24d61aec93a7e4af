package sandboxed_test

import (
	"testing"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tools/sandboxed"
)

func TestResultCodes(t *testing.T) {
	v := func(c sandbox.ViolationCode) []sandbox.Violation { return []sandbox.Violation{{Code: c, Detail: "d"}} }
	notRepo := func(_ *sandbox.Result, stderr string) (reason.Code, string) {
		if stderr == "not a repo" {
			return reason.NotFound, "no repo"
		}
		return "", ""
	}
	for _, tc := range []struct {
		name string
		res  sandbox.Result
		o    sandboxed.Options
		code reason.Code
		text string
	}{
		{"ok", sandbox.Result{Stdout: []byte("hi")}, sandboxed.Options{}, "", "hi"},
		{"ok empty", sandbox.Result{}, sandboxed.Options{EmptyText: "(no output)"}, "", "(no output)"},
		{"output cut is not a failure", sandbox.Result{Violations: v(sandbox.ViolationOutputTrunc)}, sandboxed.Options{}, "", ""},
		{"wall timeout", sandbox.Result{ExitCode: -1, Violations: v(sandbox.ViolationWallTimeout)}, sandboxed.Options{}, reason.Timeout, "timed out"},
		{"cpu timeout", sandbox.Result{ExitCode: -1, Violations: v(sandbox.ViolationCPUTimeout)}, sandboxed.Options{}, reason.Timeout, "timed out"},
		{"cancelled", sandbox.Result{ExitCode: -1, Violations: v(sandbox.ViolationCancelled)}, sandboxed.Options{}, reason.Cancelled, "cancelled"},
		{"non-zero", sandbox.Result{ExitCode: 3}, sandboxed.Options{ExitInMessage: true}, reason.NonZeroExit,
			"program exited with a non-zero status (exit code 3)"},
		{"classified", sandbox.Result{ExitCode: 128, Stderr: []byte("not a repo")}, sandboxed.Options{Classify: notRepo},
			reason.NotFound, "no repo\n[stderr]\nnot a repo"},
		{"violation beats classify", sandbox.Result{ExitCode: 128, Stderr: []byte("not a repo"), Violations: v("SECCOMP")},
			sandboxed.Options{Classify: notRepo}, reason.SandboxViolation, "sandbox limit reached\n[stderr]\nnot a repo"},
		{"invalid utf-8", sandbox.Result{Stdout: []byte{0xff, 'a'}}, sandboxed.Options{}, "", "\uFFFDa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := sandboxed.Result(&tc.res, tc.o)
			if out.Code != tc.code || out.IsError != (tc.code != "") || out.Text != tc.text {
				t.Errorf("got code %q error %v text %q; want %q %q", out.Code, out.IsError, out.Text, tc.code, tc.text)
			}
			if _, has := out.Structured["code"]; has != (tc.code != "") {
				t.Errorf("structured code present %v", has)
			}
		})
	}
}
