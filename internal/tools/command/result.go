package command

import (
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/sandboxed"
)

// toResult maps a sandbox result to a tool result the way execute_python
// does: exit code, output, violations; a failure gets a reason code
// (TIMEOUT, CANCELLED, SANDBOX_VIOLATION, NON_ZERO_EXIT). Output that was
// cut at the cap is not a failure by itself (stdout_truncated).
func toResult(res *sandbox.Result) *tool.Result {
	return sandboxed.Result(res, sandboxed.Options{ExitInMessage: true, EmptyText: "(no output)"})
}
