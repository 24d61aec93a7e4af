//go:build !linux

package native

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// Config configures the native runtime (Linux only).
type Config struct {
	ReadOnlyPaths   []string
	Executable      string
	DefaultTmpSize  int64
	DefaultWorkSize int64
	PoolSize        int
	AllowDegraded   bool
}

// Report says which isolation mechanisms the runtime uses.
type Report struct {
	Seccomp     bool
	LandlockABI int
	Cgroups     struct{ Controllers, Base map[string]string }
	Memfd       bool
	PoolSize    int
	Degraded    []string
}

// Runtime is unavailable on this OS.
type Runtime struct{}

// Main does nothing on this OS.
func Main() {}

// New always fails with sandbox.ErrUnavailable on this OS.
func New(Config, *slog.Logger) (*Runtime, error) {
	return nil, fmt.Errorf("%w: the native runtime needs Linux", sandbox.ErrUnavailable)
}

// Name implements sandbox.Runtime.
func (*Runtime) Name() string { return "native" }

// Report implements the Linux runtime's method.
func (*Runtime) Report() Report { return Report{} }

// Close implements the Linux runtime's method.
func (*Runtime) Close() error { return nil }

// Run implements sandbox.Runtime.
func (*Runtime) Run(context.Context, *sandbox.Spec) (*sandbox.Result, error) {
	return nil, sandbox.ErrUnavailable
}
