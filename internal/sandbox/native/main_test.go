//go:build linux

package native

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	Main() // become the sandbox init when re-executed
	goleak.VerifyTestMain(m)
	os.Exit(0)
}
