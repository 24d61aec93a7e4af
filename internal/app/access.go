package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/authn/oidc"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// openPolicy builds the policy engine: role grants from the store, Cedar
// policies from policy.dir, mode and time zone. A broken policy file at
// start is an error: there is no previous set to keep in force.
func (a *App) openPolicy(ctx context.Context) error {
	cfg := a.Config.Policy
	grants, err := a.Store.Grants(ctx)
	if err != nil {
		return err
	}
	if a.Policy, err = policy.New(grants); err != nil {
		return err
	}
	if err := a.Policy.SetMode(policy.Mode(cfg.Mode)); err != nil {
		return err
	}
	loc, err := time.LoadLocation(cfg.Timezone)
	if err != nil {
		return fmt.Errorf("policy.timezone: %w", err)
	}
	a.Policy.SetLocation(loc)
	if a.accessVersion, err = a.Store.AccessVersion(ctx); err != nil {
		return err
	}
	if cfg.Dir != "" {
		files, fp, err := policy.ReadDir(cfg.Dir)
		if err != nil {
			return fmt.Errorf("policy.dir: %w", err)
		}
		if err := a.Policy.LoadCedar(files); err != nil {
			return fmt.Errorf("policy.dir %s: %w", cfg.Dir, err)
		}
		a.policyFingerprint = fp
		a.Log.Info("policies loaded", "dir", cfg.Dir, "files", len(files), "policies", len(a.Policy.Policies()))
	}
	if a.Policy.Mode() == policy.ModeReport {
		a.Log.Warn("policy.mode is report: calls that Cedar policies would refuse RUN and are audited as policy.would_deny")
	}
	return nil
}

// reloadGrants re-reads the role grants and drops cached decisions.
func (a *App) reloadGrants(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return a.reloadGrantsLocked(ctx)
}

func (a *App) reloadGrantsLocked(ctx context.Context) error {
	// Cached keys go first: a revocation must take effect even if reading
	// the grants below fails.
	a.Authn.Invalidate()
	v, err := a.Store.AccessVersion(ctx)
	if err != nil {
		return err
	}
	grants, err := a.Store.Grants(ctx)
	if err != nil {
		return err
	}
	if err := a.Policy.Replace(grants); err != nil {
		return err
	}
	a.Policy.Invalidate()
	a.accessVersion = v
	if a.Violations != nil { // quarantines changed by another process
		if err := a.Violations.Reload(ctx); err != nil {
			return err
		}
	}
	return nil
}

// ReloadPolicies re-reads policy.dir (if set) and the role grants and
// swaps them in. force reloads the files even if unchanged. It returns
// the number of Cedar policies in force. A broken file is rejected, the
// previous policies stay in force, and the failure is audited
// (policy.reload_failed), logged and alerted. Safe for concurrent use.
func (a *App) ReloadPolicies(ctx context.Context, force bool) (int, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	dir := a.Config.Policy.Dir
	if dir != "" {
		files, fp, err := policy.ReadDir(dir)
		if err == nil && (force || fp != a.policyFingerprint) {
			if err = a.Policy.LoadCedar(files); err == nil {
				a.policyFingerprint = fp
				a.emitSystem(ctx, &audit.Event{Type: audit.PolicyReload, Status: audit.StatusOK,
					Detail: fmt.Sprintf("%s: %d files, %d policies, sha256 %s", dir, len(files), len(a.Policy.Policies()), fp[:16])})
				a.Log.Info("policies reloaded", "dir", dir, "policies", len(a.Policy.Policies()))
			}
		}
		if err != nil {
			a.policyReloadFailed(ctx, err)
			return len(a.Policy.Policies()), err
		}
	}
	if err := a.reloadGrantsLocked(ctx); err != nil {
		a.policyReloadFailed(ctx, err)
		return len(a.Policy.Policies()), err
	}
	return len(a.Policy.Policies()), nil
}

func (a *App) policyReloadFailed(ctx context.Context, err error) {
	a.Log.Error("policy reload rejected; the previous policies stay in force", "err", err)
	a.emitSystem(ctx, &audit.Event{Type: audit.PolicyReloadFailed, Status: audit.StatusError,
		Error: "policy reload rejected", Detail: err.Error()})
	a.Alerts.Alert(ctx, alert.Alert{Kind: alert.KindPolicyReloadFailed, Severity: alert.High,
		Subject: a.Config.Policy.Dir, Detail: err.Error(), Time: time.Now()})
}

// emitSystem records an event of the gateway itself; failures are logged.
func (a *App) emitSystem(ctx context.Context, e *audit.Event) {
	e.Principal = "system"
	if err := a.Audit.Emit(context.WithoutCancel(ctx), e); err != nil {
		a.Log.Error("audit failed", "type", e.Type, "err", err)
	}
}

// watchPolicies polls policy.dir and the store's access version every
// policy.reload_interval until ctx ends: a changed file is reloaded (a
// broken one rejected), and a change of users, roles, grants or keys made
// by any process sharing the store drops cached decisions.
func (a *App) watchPolicies(ctx context.Context) {
	t := time.NewTicker(a.Config.Policy.ReloadInterval)
	defer t.Stop()
	var lastBad string
	importFailing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if dir := a.Config.Policy.Dir; dir != "" {
			_, fp, err := policy.ReadDir(dir)
			a.reloadMu.Lock()
			changed := err == nil && fp != a.policyFingerprint && fp != lastBad
			a.reloadMu.Unlock()
			if changed {
				if _, err := a.ReloadPolicies(ctx, false); err != nil {
					lastBad = fp // report a broken version once, not every tick
				} else {
					lastBad = ""
				}
				continue
			}
		}
		v, err := a.Store.AccessVersion(ctx)
		a.reloadMu.Lock()
		changed := err == nil && v != a.accessVersion
		a.reloadMu.Unlock()
		if changed {
			if err := a.reloadGrants(ctx); err != nil && ctx.Err() == nil {
				a.Log.Error("reloading role grants failed; the previous grants stay in force", "err", err)
			}
		}
		// After the access version (revocations and quarantines first):
		// violations other replicas recorded count toward this one's
		// quarantine thresholds (a no-op on a store of its own). A failure
		// is logged once until an import succeeds again.
		if err := a.Violations.Import(ctx); err != nil && ctx.Err() == nil {
			if !importFailing {
				a.Log.Warn("importing other replicas' violations failed; will retry", "err", err)
			}
			importFailing = true
		} else if err == nil {
			importFailing = false
		}
	}
}

// StartBackground starts the policy watcher; Close stops it.
func (a *App) StartBackground() {
	ctx, cancel := context.WithCancel(context.Background())
	a.stopBackground = cancel
	a.background.Add(4)
	go func() {
		defer a.background.Done()
		a.watchPolicies(ctx)
	}()
	go func() {
		defer a.background.Done()
		a.auditMaintenance(ctx)
	}()
	go func() {
		defer a.background.Done()
		a.flushQuotas(ctx)
	}()
	go func() {
		defer a.background.Done()
		a.expireApprovals(ctx)
	}()
	if a.Plugins != nil {
		a.Plugins.Start(ctx)
	}
}

// keyCacheMaxAge bounds how long a verified API key is trusted without
// reading the store again, should the access-version watcher fail.
const keyCacheMaxAge = 30 * time.Second

// openAuthn builds API key authentication, OIDC (when oidc.issuer is
// set: discovery and the JWK Set are fetched now, so a wrong issuer fails
// the start) and the lockout.
func (a *App) openAuthn(ctx context.Context, serverSecret []byte) error {
	var err error
	if a.Authn, err = authn.New(serverSecret, a.Store, nil); err != nil {
		return err
	}
	// Verified keys are cached; every access change made through this
	// process drops them at once (AccessChanged), one made by another
	// process within policy.reload_interval (watchPolicies), and an entry
	// is never used for longer than keyCacheMaxAge.
	a.Authn.CacheKeys(keyCacheMaxAge)
	a.Bearer = &authn.Bearer{Keys: a.Authn, Users: a.Store,
		OnUserCreated: func(ctx context.Context, name string) {
			a.emitSystem(ctx, &audit.Event{Type: audit.AdminUserCreate, Status: audit.StatusOK,
				Detail: "just-in-time: first OIDC login of " + name + " (no stored roles)"})
		}}
	if o := a.Config.OIDC; o.Enabled() {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		v, err := oidc.New(dctx, oidc.Config{Issuer: o.Issuer, Audience: o.Audience, Algorithms: o.Algorithms,
			Skew: o.Skew, MaxAge: o.MaxAge, UsernameClaim: o.UsernameClaim, RolesClaim: o.RolesClaim,
			ScopesClaim: o.ScopesClaim, RoleMap: o.RoleMap, RequiredScopes: o.RequiredScopes})
		if err != nil {
			return fmt.Errorf("oidc: %w", err)
		}
		a.Bearer.OIDC, a.Bearer.RequiredScopes = v, o.RequiredScopes
		md := v.ResourceMetadata()
		if a.resourceMetadata, err = json.Marshal(md); err != nil {
			return err
		}
		a.Log.Info("OIDC bearer tokens accepted", "issuer", o.Issuer, "audience", o.Audience)
	}
	l := a.Config.Auth.Lockout
	a.Lockout, err = authn.NewLockout(authn.LockoutConfig{Threshold: l.Threshold, Window: l.Window,
		BaseDelay: l.BaseDelay, MaxDelay: l.MaxDelay}, nil)
	return err
}

// ResourceMetadata returns the RFC 9728 document, the URL advertised in
// 401 challenges and the paths to serve it at; nil when OIDC is off. For
// resource https://host/mcp the URL is
// https://host/.well-known/oauth-protected-resource/mcp (RFC 9728 §3.1);
// the bare well-known path is served too.
func (a *App) ResourceMetadata() (doc []byte, metadataURL string, paths []string) {
	if a.resourceMetadata == nil {
		return nil, "", nil
	}
	u, err := url.Parse(a.Config.OIDC.Audience)
	if err != nil {
		return nil, "", nil
	}
	const wk = "/.well-known/oauth-protected-resource"
	suffix := strings.TrimSuffix(u.EscapedPath(), "/")
	paths = []string{wk}
	if suffix != "" {
		paths = append(paths, wk+suffix)
	}
	mu := url.URL{Scheme: u.Scheme, Host: u.Host, Path: wk + u.Path}
	return a.resourceMetadata, mu.String(), paths
}

// PolicyAdmin is the admin API's view of the policy engine.
func (a *App) PolicyAdmin() *PolicyAdmin { return &PolicyAdmin{a: a} }

// PolicyAdmin implements adminapi.PolicyAdmin.
type PolicyAdmin struct{ a *App }

// Policies lists the Cedar policies in force.
func (p *PolicyAdmin) Policies() []policy.PolicyInfo { return p.a.Policy.Policies() }

// Mode is the enforcement mode.
func (p *PolicyAdmin) Mode() policy.Mode { return p.a.Policy.Mode() }

// Reload forces a reload of policy files and grants.
func (p *PolicyAdmin) Reload(ctx context.Context) (int, error) { return p.a.ReloadPolicies(ctx, true) }

// Explain decides a call as the pipeline would.
func (p *PolicyAdmin) Explain(_ context.Context, pr *principal.Principal, tool string, args json.RawMessage) (policy.Decision, error) {
	d, err := p.a.Gateway.Explain(pr, tool, args)
	if errors.Is(err, gateway.ErrInvalidArguments) {
		return d, fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	return d, err
}

// AccessChanged reloads grants after an admin change.
func (a *App) AccessChanged(ctx context.Context) error { return a.reloadGrants(ctx) }

// backgroundState is embedded in App.
type backgroundState struct {
	reloadMu          sync.Mutex
	policyFingerprint string
	accessVersion     int64
	resourceMetadata  []byte
	stopBackground    context.CancelFunc
	background        sync.WaitGroup
}
