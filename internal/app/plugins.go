package app

import (
	"context"
	"fmt"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/datadir"
	"github.com/portcullis/portcullis/internal/flow"
	"github.com/portcullis/portcullis/internal/metrics"
	"github.com/portcullis/portcullis/internal/plugins"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/secrets"
	"github.com/portcullis/portcullis/internal/store"
)

// flowTracker builds the flow rules of the config (nil when there are none).
func flowTracker(cfgRules []config.FlowRule) (*flow.Tracker, error) {
	if len(cfgRules) == 0 {
		return nil, nil
	}
	rules := make([]flow.Rule, 0, len(cfgRules))
	for _, r := range cfgRules {
		rules = append(rules, flow.Rule{Name: r.Name, After: flow.Match{Label: r.After.Label},
			Then: flow.Then{Label: r.Then.Label, Action: flow.Action(r.Then.Action)}})
	}
	if err := flow.Validate(rules); err != nil {
		return nil, err
	}
	return flow.New(flow.Config{Rules: rules})
}

// pluginThreshold is the violation engine's quarantine threshold for a
// plugin: its security level's (DESIGN §5), maximum's for an unknown one.
func (a *App) pluginThreshold(name string) int {
	if a.Plugins != nil {
		if l, ok := a.Plugins.Level(name); ok {
			return l.QuarantineAfter()
		}
	}
	return sandbox.LevelMaximum.QuarantineAfter()
}

// openPlugins builds the upstream server manager (servers start with
// StartBackground). A stdio server needs the sandbox: without it the
// start is refused rather than run the server unconfined.
func (a *App) openPlugins(ctx context.Context) error {
	cfg := a.Config
	db := a.Store
	pins, err := pin.New(db, nil)
	if err != nil {
		return err
	}
	a.Pins = pins
	if len(cfg.Servers) == 0 {
		return nil
	}
	key, _, err := datadir.LoadOrCreateSecret(cfg.DataDir, datadir.SecretsKey, secrets.KeySize)
	if err != nil {
		return err
	}
	sec, err := secrets.New(key, db, nil)
	if err != nil {
		return err
	}
	deps := plugins.Deps{Registry: a.Gateway, Pins: pins, Secrets: sec, Audit: a.Events, Alerts: a.Alerts,
		Logger:     a.Log.With("component", "plugins"),
		Violations: func(ctx context.Context, v store.Violation) { a.Violations.Record(ctx, v) }}
	for _, s := range cfg.Servers {
		if len(s.Command) == 0 {
			continue
		}
		rt, err := a.sandboxRuntime()
		if err != nil {
			return fmt.Errorf("server %s runs in the sandbox, which is unavailable: %w (see `portcullis doctor`)", s.Name, err)
		}
		deps.Runtime = rt
		break
	}
	a.Plugins, err = plugins.New(plugins.Config{Servers: cfg.Servers, Version: Version}, deps)
	return err
}

// sandboxRuntime returns the shared native runtime, creating it on first
// use, decorated with metrics (a.Sandbox stays the native one).
func (a *App) sandboxRuntime() (sandbox.Runtime, error) {
	if a.runtime != nil {
		return a.runtime, nil
	}
	rt, err := NewSandbox(a.Config, a.Log.With("component", "sandbox"))
	if err != nil {
		return nil, err
	}
	rep := rt.Report()
	a.Log.Info("sandbox ready", "seccomp", rep.Seccomp, "landlock_abi", rep.LandlockABI,
		"cgroups", fmt.Sprint(rep.Cgroups.Controllers), "memfd", rep.Memfd, "pool", rep.PoolSize, "degraded", rep.Degraded)
	a.Sandbox = rt
	a.runtime = metrics.Runtime{Next: rt, M: a.Metrics}
	return a.runtime, nil
}
