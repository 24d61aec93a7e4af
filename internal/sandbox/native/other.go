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
	DefaultOutput   int64
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

// Run implements sandbox.Runtime.
func (*Runtime) Run(context.Context, *sandbox.Spec) (*sandbox.Result, error) {
	return nil, sandbox.ErrUnavailable
}
