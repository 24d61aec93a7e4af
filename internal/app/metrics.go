package app

import (
	"errors"

	"github.com/portcullis/portcullis/internal/metrics"
)

// instrumentAudit wires the metrics to the audit writer (called right
// after it is created): Events counts what the writer acknowledges, and
// the queue depth, pending approvals and active quarantines become gauges.
// The writer's commit observer is set in its Config (OnCommit).
func (a *App) instrumentAudit() error {
	a.Events = metrics.Emitter{Next: a.Audit, M: a.Metrics}
	return errors.Join(
		a.Metrics.WatchAuditQueue(a.Audit.QueueDepth),
		a.Metrics.WatchStore(a.Store, a.Log.With("component", "metrics"), nil),
	)
}

// instrumentPlugins adds portcullis_plugin_up for the upstream servers
// (none without servers:).
func (a *App) instrumentPlugins() error {
	if a.Plugins == nil {
		return nil
	}
	p := a.Plugins
	return a.Metrics.WatchPlugins(func() []metrics.PluginState {
		st := p.Status()
		out := make([]metrics.PluginState, len(st))
		for i, s := range st {
			out[i] = metrics.PluginState{Name: s.Name, Up: s.State == "running"}
		}
		return out
	})
}
