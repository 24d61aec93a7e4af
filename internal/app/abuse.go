package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/limits"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/violation"
)

// quotaFlushInterval is how often quota usage goes to the store (and
// other replicas' usage comes back).
const quotaFlushInterval = 2 * time.Second

// openAlerts adds the configured webhook and e-mail receivers to the log.
func (a *App) openAlerts() error {
	cfg := a.Config.Alerts
	if len(cfg.Webhooks) == 0 && cfg.SMTP.Addr == "" {
		return nil
	}
	d, err := alert.NewDispatcher(cfg, a.Log.With("component", "alert"), alert.Options{})
	if err != nil {
		return err
	}
	a.dispatcher = d
	a.Alerts = alert.Multi{a.Alerts, d}
	return nil
}

// openAbuse builds the abuse controls: limits, quotas, violations and
// quarantine, joined into the gateway's guard.
func (a *App) openAbuse(ctx context.Context) (*abuse.Guard, error) {
	cfg := a.Config
	lim, err := limits.New(cfg.Limits, nil)
	if err != nil {
		return nil, err
	}
	if a.Quotas, err = abuse.NewQuotas(ctx, cfg.Limits.Quota, a.Store, nil, a.Log.With("component", "quota")); err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(cfg.Policy.Timezone)
	if err != nil {
		return nil, fmt.Errorf("policy.timezone: %w", err)
	}
	if a.Violations, err = violation.New(ctx, cfg.Violations, violation.Deps{Store: a.Store, Audit: a.Events,
		Alerts: a.Alerts, Logger: a.Log.With("component", "violation"), Location: loc,
		PluginThreshold: a.pluginThreshold, Shared: cfg.Storage.Driver == config.DriverPostgres}); err != nil {
		return nil, err
	}
	return abuse.New(lim, a.Quotas, a.Violations, a.Log.With("component", "abuse"))
}

// flushQuotas writes quota usage to the store every quotaFlushInterval.
func (a *App) flushQuotas(ctx context.Context) {
	t := time.NewTicker(quotaFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.Quotas.Flush(ctx); err != nil && ctx.Err() == nil {
				a.Log.Error("quota usage not stored (kept for the next flush)", "err", err)
			}
		}
	}
}

// AbuseAdmin is the admin API's view of quarantine and quotas.
func (a *App) AbuseAdmin() abuseAdmin { return abuseAdmin{a} }

type abuseAdmin struct{ a *App }

func (x abuseAdmin) Quarantine(ctx context.Context, kind, subject, why, by string) (store.Quarantine, error) {
	return x.a.Violations.Quarantine(ctx, kind, subject, why, by)
}

func (x abuseAdmin) Release(ctx context.Context, idOrSubject, by, why string) (store.Quarantine, error) {
	return x.a.Violations.Release(ctx, idOrSubject, by, why)
}

func (x abuseAdmin) UsageToday() []store.Usage { return x.a.Quotas.Today() }

// AuthViolation records an authentication failure as a violation (the
// server calls it for every 401).
func (a *App) AuthViolation(ctx context.Context, principal, cause string) {
	a.Violations.Record(ctx, store.Violation{Principal: principal, Type: violation.AuthFailure,
		Severity: store.SeverityMedium, Detail: cause})
}

// ReleaseOffline releases a quarantine directly in the data dir's store,
// for when nobody can reach the admin API (the only administrator was
// quarantined). It needs the data dir (its keys seal the audit record) and
// works while a gateway serves: the gateway picks the change up with its
// next access-version poll. Audited as quarantine.release by by.
func ReleaseOffline(ctx context.Context, cfg *config.Config, target, by, why string, log *slog.Logger) (store.Quarantine, error) {
	if strings.TrimSpace(why) == "" {
		return store.Quarantine{}, fmt.Errorf("%w: a release needs a reason", store.ErrInvalid)
	}
	chain, err := AuditChain(cfg, os.Getenv, false)
	if err != nil {
		return store.Quarantine{}, err
	}
	db, err := OpenStorage(ctx, cfg, log)
	if err != nil {
		return store.Quarantine{}, err
	}
	defer db.Close()
	w, err := audit.NewWriter(audit.Config{CommitTimeout: cfg.Audit.CommitTimeout, QueueSize: 4, MaxBatch: 4,
		Chain: chain}, db, nil, log)
	if err != nil {
		return store.Quarantine{}, err
	}
	defer w.Close(context.Background())
	q, err := db.ReleaseQuarantine(ctx, target, by, why, time.Now().UTC())
	if err != nil {
		return q, err
	}
	err = w.Emit(ctx, &audit.Event{Type: audit.QuarantineRelease, Principal: by, Status: audit.StatusOK,
		Detail: fmt.Sprintf("%s %s %s: %s (offline, --data-dir)", q.ID, q.Kind, q.Subject, why)})
	return q, err
}
