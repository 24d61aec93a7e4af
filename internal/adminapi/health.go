package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/portcullis/portcullis/internal/plugins"
	"github.com/portcullis/portcullis/internal/principal"
)

// Health statuses of HealthView.
const (
	HealthOK       = "ok"
	HealthDegraded = "degraded"
)

// Results of one probe in HealthView.Checks.
const (
	CheckOK      = "ok"
	CheckFailing = "failing"
)

// HealthView is the answer of GET /admin/v1/health. Status is HealthOK
// or HealthDegraded (some check failing); Checks holds each check's
// result by name (never null). The answer is 200 either way: the request
// worked, the gateway is what is degraded. Load balancers use /readyz.
type HealthView struct {
	Status string         `json:"status"`
	Checks map[string]any `json:"checks"`
}

// PluginHealth is the state of one upstream server in the "plugins"
// check. Its last error is shown by GET /admin/v1/plugins only, to
// holders of the "plugins" area.
type PluginHealth struct {
	Name     string    `json:"name"`
	State    string    `json:"state"` // "starting", "running", "restarting", "stopped"
	Since    time.Time `json:"since"`
	Restarts int       `json:"restarts"`
}

// HealthChecks builds a Deps.Health from named probes, each reported as
// CheckOK or CheckFailing (e.g. "store": the store's Ping, "audit": the
// audit writer's Probe), and servers, the upstream servers' states,
// reported under "plugins" (an empty list when servers is nil); a server
// restarting or stopped counts as failing. The error joins the failures,
// by check name, for the log only.
func HealthChecks(probes map[string]func(ctx context.Context) error, servers func() []plugins.Status) func(ctx context.Context) (map[string]any, error) {
	names := make([]string, 0, len(probes))
	for name := range probes {
		names = append(names, name)
	}
	slices.Sort(names)
	return func(ctx context.Context) (map[string]any, error) {
		checks := make(map[string]any, len(names)+1)
		var errs []error
		for _, name := range names {
			if err := probes[name](ctx); err != nil {
				checks[name] = CheckFailing
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
			checks[name] = CheckOK
		}
		ps := []PluginHealth{}
		if servers != nil {
			for _, s := range servers() {
				ps = append(ps, PluginHealth{Name: s.Name, State: s.State, Since: s.Since, Restarts: s.Restarts})
				if s.State == "restarting" || s.State == "stopped" {
					errs = append(errs, fmt.Errorf("plugins: server %s is %s", s.Name, s.State))
				}
			}
		}
		checks["plugins"] = ps
		return checks, errors.Join(errs...)
	}
}

// health answers the gateway's health checks; a failing one is logged.
func (a *API) health(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	if a.d.Health == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "health checks are not available")
		return nil
	}
	checks, err := a.d.Health(r.Context())
	v := HealthView{Status: HealthOK, Checks: checks}
	if err != nil {
		v.Status = HealthDegraded
		a.d.Logger.Warn("admin api: health check failing", "err", err)
	}
	if v.Checks == nil {
		v.Checks = map[string]any{}
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
