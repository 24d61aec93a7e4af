//go:build !linux

package native

import "context"

// Verdicts of a host check.
const (
	VerdictOK   = "ok"
	VerdictWarn = "warn"
	VerdictFail = "fail"
)

// Check is one host capability as `portcullis doctor` reports it.
type Check struct {
	Name    string
	Verdict string
	Detail  string
}

// Probe reports that the native runtime needs Linux.
func Probe(context.Context, []string) []Check {
	return []Check{{Name: "os", Verdict: VerdictFail, Detail: "the native sandbox runtime needs Linux"}}
}
