// Package alert raises operator alerts: events that need a human soon
// (a lockout, a rejected policy reload, later quarantines and anomaly
// rules). A Sink must never block or fail the request that raised the
// alert; sinks that talk to the network queue and retry on their own.
package alert

import (
	"context"
	"log/slog"
	"time"
)

// Severity levels (seed 004).
const (
	Low      = "LOW"
	Medium   = "MEDIUM"
	High     = "HIGH"
	Critical = "CRITICAL"
)

// Kinds of alerts raised today.
const (
	KindAuthLockout        = "auth.lockout"
	KindPolicyReloadFailed = "policy.reload_failed"
)

// Alert is one alert. Subject names who or what (a principal, a source
// address, a policy file); Detail is for humans. Neither may hold a
// secret.
type Alert struct {
	Kind     string
	Severity string
	Subject  string
	Detail   string
	Time     time.Time
}

// Sink receives alerts.
type Sink interface {
	Alert(ctx context.Context, a Alert)
}

// LogSink writes alerts to the operator log at ERROR (CRITICAL, HIGH) or
// WARN level.
type LogSink struct{ Logger *slog.Logger }

// Alert implements Sink.
func (s LogSink) Alert(ctx context.Context, a Alert) {
	level := slog.LevelWarn
	if a.Severity == High || a.Severity == Critical {
		level = slog.LevelError
	}
	s.Logger.Log(ctx, level, "ALERT "+a.Kind, "severity", a.Severity, "subject", a.Subject, "detail", a.Detail)
}

// Multi sends each alert to every sink.
type Multi []Sink

// Alert implements Sink.
func (m Multi) Alert(ctx context.Context, a Alert) {
	for _, s := range m {
		s.Alert(ctx, a)
	}
}
