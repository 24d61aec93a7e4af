// Package tool defines the contract between the gateway pipeline and the
// tools it runs: a Tool publishes a Definition (name, JSON Schema,
// sensitivity) and answers Call with a Result. Built-in tools
// (internal/tools/...) and plugin tools implement it; the gateway never
// depends on a concrete tool, and tools never depend on the HTTP layer.
package tool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/reason"
)

// Sensitivity is a tool's risk level (seed 000): it sets default limits,
// whether a call needs approval, and how violations are weighted.
type Sensitivity int

// Sensitivity levels, lowest first.
const (
	Low Sensitivity = iota + 1
	Medium
	High
	Critical
)

// String returns the level's upper-case name ("LOW" ... "CRITICAL").
func (s Sensitivity) String() string {
	switch s {
	case Low:
		return "LOW"
	case Medium:
		return "MEDIUM"
	case High:
		return "HIGH"
	case Critical:
		return "CRITICAL"
	default:
		return fmt.Sprintf("Sensitivity(%d)", int(s))
	}
}

// ParseSensitivity parses "LOW", "MEDIUM", "HIGH" or "CRITICAL"
// (case-insensitive). Anything else is an error.
func ParseSensitivity(s string) (Sensitivity, error) {
	for _, v := range []Sensitivity{Low, Medium, High, Critical} {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("unknown sensitivity %q (want LOW, MEDIUM, HIGH or CRITICAL)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (s Sensitivity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Sensitivity) UnmarshalText(b []byte) error {
	v, err := ParseSensitivity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Definition describes a tool as published in tools/list (MCP spec
// 2025-11-25, server/tools) plus the gateway's own metadata.
type Definition struct {
	// Name is the tool name: 1-128 characters from [A-Za-z0-9_.-]
	// (MCP spec, "Tool names"). Plugin tools are "<server>__<tool>".
	Name        string
	Title       string
	Description string
	// InputSchema is the JSON Schema (2020-12) of the arguments object.
	// The gateway validates every call against it before any guard,
	// policy or tool reads the arguments.
	InputSchema *jsonschema.Schema
	// Sensitivity sets default limits and approval requirements.
	Sensitivity Sensitivity
	// ReadOnly and Destructive become the MCP annotations readOnlyHint and
	// destructiveHint.
	ReadOnly    bool
	Destructive bool
	// Timeout bounds one call (wall clock). Zero means the gateway default.
	Timeout time.Duration
	// Server is the plugin server name; empty for built-in tools.
	Server string
	// Labels classify the tool for policies (Cedar resource.labels), e.g.
	// "filesystem", "write", "code-execution", "network".
	Labels []string
}

// Tool is one callable tool.
type Tool interface {
	// Definition returns the tool's static description.
	Definition() Definition
	// Call runs the tool with arguments already validated against
	// Definition().InputSchema. Refusals and failures the client should see
	// are returned as *Error (or as a Result with IsError); any other error
	// is reported to the client as a generic TOOL_FAILED.
	Call(ctx context.Context, args json.RawMessage) (*Result, error)
}

// Result is what a tool call produced.
type Result struct {
	// Text is the human-readable content returned to the client.
	Text string
	// Structured is returned as structuredContent; it must marshal to a
	// JSON object.
	Structured map[string]any
	// IsError marks a failed call (MCP isError: true).
	IsError bool
	// Code is the stable reason code for a failed call.
	Code reason.Code
	// Detail is recorded in the audit log only; it is never sent to the
	// client.
	Detail string
	// CPUTime is the CPU time the call consumed in a sandbox (user +
	// system), counted against the principal's daily quota.
	CPUTime time.Duration
}

// Error is a tool refusal or failure with a stable reason code. Msg is safe
// to show the client; Err (the cause) is recorded in the audit log only.
type Error struct {
	Code reason.Code
	Msg  string
	Err  error
}

// Error implements error. It includes the cause, so it must never be sent
// to a client; use ClientMessage for that.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.ClientMessage(), e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.ClientMessage())
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ClientMessage returns the text that may be shown to the client.
func (e *Error) ClientMessage() string {
	if e.Msg != "" {
		return e.Msg
	}
	return reason.Message(e.Code)
}

// Errorf returns an *Error with code, a client-safe message and a cause.
func Errorf(code reason.Code, cause error, clientFormat string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(clientFormat, args...), Err: cause}
}

// AsError returns err as an *Error, if it is one.
func AsError(err error) (*Error, bool) {
	var te *Error
	if errors.As(err, &te) {
		return te, true
	}
	return nil, false
}

// Func adapts a Definition and a function to the Tool interface.
type Func struct {
	Def Definition
	Fn  func(ctx context.Context, args json.RawMessage) (*Result, error)
}

var _ Tool = (*Func)(nil)

// Definition implements Tool.
func (f *Func) Definition() Definition { return f.Def }

// Call implements Tool.
func (f *Func) Call(ctx context.Context, args json.RawMessage) (*Result, error) {
	return f.Fn(ctx, args)
}

// ValidName reports whether name is a well-formed tool name: 1-128
// characters from [A-Za-z0-9_.-] (MCP spec 2025-11-25, "Tool names").
// Anything else (whitespace, NUL, Unicode look-alikes, '/', '*') is
// refused before any lookup.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}
