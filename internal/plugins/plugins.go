// Package plugins fronts upstream MCP servers ("plugins", issue 9; DESIGN
// §5): a stdio server runs inside the native sandbox at its security level
// with only its declared mounts and, where its configuration allows hosts,
// an allow-listing egress proxy as its only network; an HTTP upstream is
// reached with a credential from the secrets store, never the client's own
// token. Each server keeps one long-lived MCP session (DESIGN §4), is
// health-checked with MCP ping and restarted with backoff when it dies.
//
// Its tools are offered to the gateway as <server>__<tool>, so they pass
// the same pipeline as built-in tools (policy, validation against the
// server's inputSchema, limits, approval, audit). Before a tool is offered
// its definition is pinned (internal/plugins/pin): a changed or flagged
// definition is withheld until an administrator accepts it (rug-pull and
// tool-poisoning defence). Sandbox kills, egress refusals and definition
// changes are violations of the plugin, which the violation engine
// quarantines at the level's threshold.
package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/plugins/egress"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
)

// Errors.
var (
	// ErrUnknownServer: no configured server has that name.
	ErrUnknownServer = errors.New("plugins: unknown server")
	// ErrUnavailable: the server is not connected (starting, restarting).
	ErrUnavailable = errors.New("plugins: server unavailable")
)

// Registry receives each server's current tools (implemented by
// *gateway.Gateway).
type Registry interface {
	SetServerTools(server string, tools []tool.Tool) error
}

// Secrets resolves ${secret:NAME} references and upstream credentials
// (implemented by *secrets.Store). user "" is the shared value.
type Secrets interface {
	// Get falls back to the shared value ("" user) when user has none.
	Get(ctx context.Context, name, user string) ([]byte, error)
	// GetOwn never falls back: a per-user credential is the user's own.
	GetOwn(ctx context.Context, name, user string) ([]byte, error)
}

// Emitter records audit events (implemented by *audit.Writer).
type Emitter interface {
	Emit(ctx context.Context, e *audit.Event) error
}

// Config configures the Manager.
type Config struct {
	// Servers are the configured upstream servers (validated by config).
	Servers []config.ServerConfig
	// PingInterval is how often a connected server is pinged (default
	// 30s); a ping unanswered within PingTimeout (default 10s) fails, and
	// PingFailures consecutive failures restart it (default 3).
	PingInterval time.Duration
	PingTimeout  time.Duration
	PingFailures int
	// StartTimeout bounds start-up until initialize and tools/list have
	// answered (default 30s).
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before a restart (default
	// 500ms and 1m); the delay doubles after each short-lived run and
	// resets after a run that lasted StableAfter (default 1m).
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// StderrLines bounds how many stderr lines per server are logged per
	// minute (default 60); longer lines are cut at 1 KiB.
	StderrLines int
	// Version is reported to upstream servers in initialize.
	Version string
}

// Deps are the Manager's collaborators. Runtime is needed only when a
// stdio server is configured; Alerts and Violations are optional.
type Deps struct {
	Runtime    sandbox.Runtime
	Registry   Registry
	Pins       *pin.Pinner
	Secrets    Secrets
	Audit      Emitter
	Alerts     alert.Sink
	Violations func(ctx context.Context, v store.Violation)
	Logger     *slog.Logger
	Now        func() time.Time
}

// Manager runs the configured upstream servers. Safe for concurrent use.
type Manager struct {
	cfg     Config
	deps    Deps
	servers map[string]*server
	order   []string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New validates cfg and deps and returns a Manager; Start launches the
// servers.
func New(cfg Config, deps Deps) (*Manager, error) {
	if deps.Registry == nil || deps.Pins == nil || deps.Audit == nil || deps.Logger == nil {
		return nil, errors.New("plugins: registry, pins, audit and logger are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.PingInterval, 30*time.Second)
	def(&cfg.PingTimeout, 10*time.Second)
	def(&cfg.StartTimeout, 30*time.Second)
	def(&cfg.MinBackoff, 500*time.Millisecond)
	def(&cfg.MaxBackoff, time.Minute)
	def(&cfg.StableAfter, time.Minute)
	if cfg.PingFailures <= 0 {
		cfg.PingFailures = 3
	}
	if cfg.StderrLines <= 0 {
		cfg.StderrLines = 60
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	m := &Manager{cfg: cfg, deps: deps, servers: map[string]*server{}}
	for _, sc := range cfg.Servers {
		if _, dup := m.servers[sc.Name]; dup {
			return nil, fmt.Errorf("plugins: server %q configured twice", sc.Name)
		}
		level, err := sandbox.ParseLevel(sc.SecurityLevel)
		if err != nil {
			return nil, fmt.Errorf("plugins: server %s: %w", sc.Name, err)
		}
		if len(sc.Command) > 0 && deps.Runtime == nil {
			return nil, fmt.Errorf("plugins: server %s needs the sandbox runtime, which is unavailable", sc.Name)
		}
		if (len(sc.Command) == 0) == (sc.URL == "") {
			return nil, fmt.Errorf("plugins: server %s: set command or url", sc.Name)
		}
		srv := newServer(m, sc, level)
		// config.Validate runs the same parser with the same wildcard
		// permission; this refuses a Config that bypassed it at New,
		// not at the first connect (where egress.New parses again).
		if pc, ok := srv.proxyConfig(); ok {
			for _, a := range pc.Allow {
				if _, err := egress.ParseRule(a, pc.Wildcards); err != nil {
					return nil, fmt.Errorf("plugins: server %s: network.allow: %w", sc.Name, err)
				}
			}
		}
		m.servers[sc.Name] = srv
		m.order = append(m.order, sc.Name)
	}
	return m, nil
}

// Level returns the security level of the named server (for the violation
// engine's quarantine thresholds); ok is false for an unknown server.
func (m *Manager) Level(name string) (sandbox.Level, bool) {
	s, ok := m.servers[name]
	if !ok {
		return "", false
	}
	return s.level, true
}

// Start launches every server's supervisor and returns at once; servers
// come up in the background (their tools appear when they are ready).
func (m *Manager) Start(ctx context.Context) {
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, name := range m.order {
		s := m.servers[name]
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			s.supervise(m.ctx)
		}()
	}
}

// WaitReady waits until every server has connected at least once, or ctx
// ends (then it returns the names still not ready).
func (m *Manager) WaitReady(ctx context.Context) error {
	for _, name := range m.order {
		select {
		case <-m.servers[name].ready:
		case <-ctx.Done():
			var waiting []string
			for _, n := range m.order {
				select {
				case <-m.servers[n].ready:
				default:
					waiting = append(waiting, n)
				}
			}
			return fmt.Errorf("plugins: not ready: %v: %w", waiting, ctx.Err())
		}
	}
	return nil
}

// Close stops every server and waits for them.
func (m *Manager) Close() error {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	return nil
}

// Status is one server's state for the admin API.
type Status struct {
	Name          string    `json:"name"`
	Kind          string    `json:"kind"` // "stdio" or "http"
	SecurityLevel string    `json:"security_level"`
	State         string    `json:"state"` // "starting", "running", "restarting", "stopped"
	Since         time.Time `json:"since"`
	Restarts      int       `json:"restarts"`
	LastError     string    `json:"last_error,omitempty"`
	Tools         []string  `json:"tools"`    // offered, full names
	Withheld      []string  `json:"withheld"` // pending acceptance (upstream names)
}

// Status returns every server's state, sorted by name.
func (m *Manager) Status() []Status {
	out := make([]Status, 0, len(m.servers))
	for _, name := range m.order {
		out = append(out, m.servers[name].status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Pins returns the pinned definitions of server ("" for all servers).
func (m *Manager) Pins(ctx context.Context, server string) ([]pin.Record, error) {
	if server != "" {
		if _, ok := m.servers[server]; !ok {
			return nil, fmt.Errorf("%w: %q", ErrUnknownServer, server)
		}
	}
	return m.deps.Pins.List(ctx, server)
}

// Pin returns the pinned definition of one tool (upstream name).
func (m *Manager) Pin(ctx context.Context, server, toolName string) (pin.Record, error) {
	if _, ok := m.servers[server]; !ok {
		return pin.Record{}, fmt.Errorf("%w: %q", ErrUnknownServer, server)
	}
	return m.deps.Pins.Get(ctx, server, toolName)
}

// Accept makes the pending definition of server's tool the pinned one
// (hash must equal the pending fingerprint; "" accepts whatever is
// pending) and re-offers the server's tools. plugin.tool.accept is
// audited by the Pinner once every check has passed and before the pin is
// written: a refused acceptance (nothing pending, a stale hash,
// pin.ErrMalformed) leaves no record, and an unwritable audit log refuses
// the acceptance (fail closed). A pin write that fails after that record
// is audited again with StatusError, so the log does not claim an
// acceptance that did not happen.
func (m *Manager) Accept(ctx context.Context, server, toolName, hash, by string) (pin.Record, error) {
	s, ok := m.servers[server]
	if !ok {
		return pin.Record{}, fmt.Errorf("%w: %q", ErrUnknownServer, server)
	}
	audited := false
	rec, err := m.deps.Pins.Accept(ctx, server, toolName, hash, by, func(r pin.Record) error {
		if err := m.deps.Audit.Emit(context.WithoutCancel(ctx), &audit.Event{Type: audit.PluginToolAccept,
			Principal: by, Server: server, Tool: qualified(server, toolName), Status: audit.StatusOK,
			Decision: audit.DecisionAllow, Detail: "accepting " + r.Hash}); err != nil {
			return fmt.Errorf("plugins: audit of the acceptance failed; nothing accepted: %w", err)
		}
		audited = true
		return nil
	})
	if err != nil {
		if audited {
			m.emit(ctx, &audit.Event{Type: audit.PluginToolAccept, Principal: by, Server: server,
				Tool: qualified(server, toolName), Status: audit.StatusError, Decision: audit.DecisionDeny,
				Detail: "acceptance not stored; nothing accepted"})
		}
		return rec, err
	}
	s.resync()
	return rec, nil
}

// emit writes an audit event; a failure is logged (these records describe
// the gateway's own actions, which go on).
func (m *Manager) emit(ctx context.Context, e *audit.Event) {
	if e.Principal == "" {
		e.Principal = audit.SystemPrincipal
	}
	if err := m.deps.Audit.Emit(context.WithoutCancel(ctx), e); err != nil {
		m.deps.Logger.Error("audit of plugin event failed", "type", e.Type, "server", e.Server, "err", err)
	}
}

// violation records a violation by a plugin.
func (m *Manager) violation(ctx context.Context, server, toolName, typ string, sev store.Severity, detail string) {
	if m.deps.Violations == nil {
		return
	}
	m.deps.Violations(context.WithoutCancel(ctx), store.Violation{Plugin: server, Tool: toolName, Type: typ,
		Severity: sev, Detail: detail})
}

func (m *Manager) alert(ctx context.Context, kind, severity, subject, detail string) {
	if m.deps.Alerts == nil {
		return
	}
	m.deps.Alerts.Alert(context.WithoutCancel(ctx), alert.Alert{Kind: kind, Severity: severity, Subject: subject,
		Detail: detail, Time: m.deps.Now()})
}

// qualified is the gateway name of an upstream tool.
func qualified(server, toolName string) string { return server + "__" + toolName }

// matchAny reports whether name matches one of the glob patterns
// (path.Match syntax; '*' matches any run of characters, tool names
// contain no '/').
func matchAny(patterns []string, name string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return globMatch(p, name) })
}
