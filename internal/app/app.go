// Package app assembles a gateway from a validated Config: data directory,
// store, secrets, audit writer, policy, tools and the MCP server. The
// commands (serve, stdio) only add a transport.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/approval"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/forward"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/datadir"
	"github.com/portcullis/portcullis/internal/flow"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/mcpserver"
	"github.com/portcullis/portcullis/internal/metrics"
	"github.com/portcullis/portcullis/internal/plugins"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/sandbox/native"
	"github.com/portcullis/portcullis/internal/tools/command"
	"github.com/portcullis/portcullis/internal/tools/files"
	gittools "github.com/portcullis/portcullis/internal/tools/git"
	"github.com/portcullis/portcullis/internal/tools/httpfetch"
	"github.com/portcullis/portcullis/internal/tools/python"
	"github.com/portcullis/portcullis/internal/tools/sqlquery"
	"github.com/portcullis/portcullis/internal/violation"
)

// Version is the gateway version reported to MCP clients.
var Version = "0.1.0-dev"

// App is an assembled gateway.
type App struct {
	Config *config.Config
	Log    *slog.Logger
	Store  Storage
	Audit  *audit.Writer
	// Events is Audit decorated with metrics (metrics.Emitter): the
	// emitter to give every component whose events are counted.
	Events gateway.Emitter
	// Metrics are the Prometheus metrics, served at /metrics.
	Metrics *metrics.Metrics
	// Forward ships committed audit records to the configured SIEM sinks.
	Forward  *forward.Set
	Redactor *audit.Redactor
	Authn    *authn.Authenticator
	// Bearer authenticates requests: API keys and, when configured, OIDC tokens.
	Bearer  *authn.Bearer
	Lockout *authn.Lockout
	Alerts  alert.Sink
	// Violations records violations and enforces quarantine.
	Violations *violation.Engine
	// Approvals holds dangerous calls for a human's approval.
	Approvals *approval.Service
	// Quotas counts daily usage per principal.
	Quotas     *abuse.Quotas
	dispatcher *alert.Dispatcher
	Policy     *policy.Engine
	Gateway    *gateway.Gateway
	// Sandbox is the native runtime, nil when sandboxed tools are not offered.
	Sandbox *native.Runtime
	// runtime is Sandbox decorated with metrics, the one the tools use.
	runtime sandbox.Runtime
	// Plugins runs the upstream MCP servers (nil without servers:); Pins
	// keeps their pinned tool definitions.
	Plugins   *plugins.Manager
	Pins      *pin.Pinner
	flows     *flow.Tracker
	workspace *files.Workspace
	lock      *os.File // the data dir lock, held while open
	git       *gittools.Tools
	sql       *sqlquery.Tool
	backgroundState
}

// Open builds the gateway. cfg must be validated. On error everything
// opened so far is closed.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *App, err error) {
	// a is not the named result: `return nil, err` must not nil it before
	// the cleanup below runs.
	a := &App{Config: cfg, Log: log, Alerts: alert.LogSink{Logger: log.With("component", "alert")},
		Metrics: metrics.New()}
	defer func() {
		if err != nil {
			a.Close(context.Background())
		}
	}()
	if err := datadir.Ensure(cfg.DataDir); err != nil {
		return nil, err
	}
	if a.lock, err = datadir.Lock(cfg.DataDir); err != nil {
		return nil, err
	}
	if err := a.openAlerts(); err != nil {
		return nil, err
	}
	// The store first: no key file is made before it answers and says
	// whether it is new (checkKeyFiles).
	db, err := OpenStorage(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.Store = db
	head, err := checkKeyFiles(ctx, cfg, db)
	if err != nil {
		return nil, err
	}
	serverSecret, _, err := datadir.LoadOrCreateSecret(cfg.DataDir, datadir.ServerSecret, authn.SecretSize)
	if err != nil {
		return nil, err
	}
	auditKey, _, err := datadir.LoadOrCreateSecret(cfg.DataDir, datadir.AuditKey, 32)
	if err != nil {
		return nil, err
	}
	if a.Redactor, err = audit.NewRedactor(auditKey); err != nil {
		return nil, err
	}
	chain, err := AuditChain(cfg, os.Getenv, true)
	if err != nil {
		return nil, err
	}
	if err := keysMatchStore(ctx, db, chain, head); err != nil {
		return nil, err
	}
	if a.Audit, err = audit.NewWriter(audit.Config{
		CommitTimeout: cfg.Audit.CommitTimeout, QueueSize: cfg.Audit.QueueSize, MaxBatch: cfg.Audit.MaxBatch,
		Chain: chain, Linger: cfg.Audit.Linger,
		OnCommit: a.Metrics.ObserveAuditCommit, // metrics
	}, db, nil, log.With("component", "audit")); err != nil {
		return nil, err
	}
	if err := a.instrumentAudit(); err != nil { // metrics: sets a.Events
		return nil, err
	}
	// Sinks read committed records from the store; a broken sink config
	// (unreadable token file) refuses the start.
	if a.Forward, err = forward.Start(context.Background(), cfg.Audit.Sinks, db,
		log.With("component", "audit-forward"), forward.Options{}); err != nil {
		return nil, err
	}
	if err := a.openAuthn(ctx, serverSecret); err != nil {
		return nil, err
	}
	if err := a.openPolicy(ctx); err != nil {
		return nil, err
	}
	guard, err := a.openAbuse(ctx)
	if err != nil {
		return nil, err
	}
	if err := a.openApprovals(); err != nil {
		return nil, err
	}
	if a.flows, err = flowTracker(cfg.Flows); err != nil {
		return nil, err
	}
	if a.Gateway, err = gateway.New(gateway.Config{CallTimeout: cfg.MCP.CallTimeout}, gateway.Deps{
		// metrics: decision latency and event counts, at the seams
		Policy: metrics.Authorizer{Next: a.Policy, M: a.Metrics}, Audit: a.Events,
		Redactor: a.Redactor, Logger: log.With("component", "gateway"),
		Guard: guard, Approvals: approvalGate{s: a.Approvals, key: auditKey}, Flows: a.flows,
	}); err != nil {
		return nil, err
	}
	if err := a.registerTools(ctx); err != nil {
		return nil, err
	}
	if err := a.openPlugins(ctx); err != nil {
		return nil, err
	}
	if err := a.instrumentPlugins(); err != nil { // metrics
		return nil, err
	}
	return a, nil
}

func (a *App) registerTools(ctx context.Context) error {
	cfg := a.Config
	// 0755 like any checkout: sandboxed tools (git) run as an unprivileged
	// user that must be able to read it.
	if err := os.MkdirAll(cfg.Workspace, 0o755); err != nil {
		return fmt.Errorf("workspace: %w", err)
	}
	ws, err := files.New(files.Config{
		Root: cfg.Workspace, ReadOnly: cfg.Files.ReadOnly,
		MaxReadBytes: cfg.Files.MaxReadBytes, MaxWriteBytes: cfg.Files.MaxWriteBytes,
		Deny: cfg.Files.DenyNames,
	})
	if err != nil {
		return err
	}
	a.workspace = ws
	for _, t := range ws.Tools() {
		if err := a.Gateway.Register(t); err != nil {
			return err
		}
	}
	if err := a.registerHTTPFetch(); err != nil {
		return err
	}
	if err := a.registerSQL(); err != nil {
		return err
	}
	py, err := a.pythonTool(ctx)
	if err != nil {
		// Fail closed: without the sandbox the tool is not offered at all.
		if cfg.Mode == config.ModeProduction {
			return fmt.Errorf("production mode: execute_python needs the sandbox: %w (see `portcullis doctor`; sandbox.allow_degraded tolerates missing mechanisms)", err)
		}
		a.Log.Warn("execute_python is NOT available: "+err.Error(), "hint", "run as root on Linux with python3 installed; see `portcullis doctor`")
		return nil
	}
	if err := a.Gateway.Register(py); err != nil {
		return err
	}
	if err := a.registerGit(); err != nil {
		return err
	}
	return a.registerCommand(ctx)
}

// registerCommand offers run_command in the sandbox for the allow-listed
// programs (none in production unless configured). A listed program that
// is missing refuses the start in production and drops the tool, loudly,
// in development.
func (a *App) registerCommand(ctx context.Context) error {
	ct, err := command.New(ctx, command.Config{Workspace: a.Config.Workspace, Allow: a.Config.Command.Allow,
		SearchPath: filepath.SplitList(os.Getenv("PATH"))}, a.runtime)
	if err != nil {
		if a.Config.Mode == config.ModeProduction {
			return fmt.Errorf("run_command: %w", err)
		}
		a.Log.Warn("run_command is NOT available: " + err.Error())
		return nil
	}
	return a.Gateway.Register(ct)
}

// registerSQL offers sql_query on SQLite files in the workspace.
func (a *App) registerSQL() error {
	st, err := sqlquery.New(sqlquery.Config{Workspace: a.Config.Workspace, MaxRows: a.Config.SQL.MaxRows,
		Timeout: a.Config.SQL.Timeout})
	if err != nil {
		return fmt.Errorf("sql_query: %w", err)
	}
	a.sql = st
	return a.Gateway.Register(st)
}

// registerHTTPFetch offers http_fetch; with an empty allow-list it can
// reach nothing (fail closed), which the log says.
func (a *App) registerHTTPFetch() error {
	c := a.Config.HTTPFetch
	t, err := httpfetch.New(httpfetch.Config{Allow: c.Allow, RoleAllow: c.RoleAllow, AllowPrivate: c.AllowPrivate,
		MaxBytes: c.MaxBytes, Timeout: c.Timeout})
	if err != nil {
		return fmt.Errorf("http_fetch: %w", err)
	}
	if len(c.Allow) == 0 && len(c.RoleAllow) == 0 {
		a.Log.Info("http_fetch can reach no host until http_fetch.allow lists some")
	}
	return a.Gateway.Register(t)
}

// registerGit offers the git tools, run in the same sandbox runtime; a
// machine without git only loses them (logged).
func (a *App) registerGit() error {
	gt, err := gittools.New(gittools.Config{Workspace: a.Config.Workspace, Timeout: a.Config.MCP.CallTimeout}, a.runtime)
	if errors.Is(err, gittools.ErrNoGit) {
		a.Log.Warn("git tools are NOT available: " + err.Error())
		return nil
	}
	if err != nil {
		return err
	}
	a.git = gt
	for _, t := range gt.Tools() {
		if err := a.Gateway.Register(t); err != nil {
			return err
		}
	}
	return nil
}

// NewSandbox returns the native runtime configured by cfg.
func NewSandbox(cfg *config.Config, log *slog.Logger) (*native.Runtime, error) {
	pool := cfg.Sandbox.PoolSize
	if pool == 0 {
		pool = -1 // native: negative disables
	}
	return native.New(native.Config{
		ReadOnlyPaths:  cfg.Sandbox.ReadOnlyPaths,
		DefaultTmpSize: cfg.Sandbox.TmpSizeBytes,
		PoolSize:       pool,
		AllowDegraded:  cfg.Sandbox.AllowDegraded,
	}, log)
}

func (a *App) pythonTool(ctx context.Context) (*python.Tool, error) {
	cfg := a.Config
	in, err := python.Detect(ctx, cfg.Python.Interpreter)
	if err != nil {
		return nil, err
	}
	level, err := sandbox.ParseLevel(cfg.Python.Level)
	if err != nil {
		return nil, err
	}
	rt, err := a.sandboxRuntime()
	if err != nil {
		return nil, err
	}
	t, err := python.New(python.Config{
		Interpreter:    in,
		Timeout:        cfg.Python.Timeout,
		MaxTimeout:     cfg.Python.MaxTimeout,
		MaxOutputBytes: cfg.Python.MaxOutputBytes,
		MaxCodeBytes:   cfg.Python.MaxCodeBytes,
		Level:          level,
		CodePolicy:     python.CodePolicy(cfg.Python.CodePolicy),
		Limits: sandbox.Limits{MemoryBytes: cfg.Python.MemoryBytes, CPUTime: cfg.Python.CPUTime,
			Pids: cfg.Python.Pids},
	}, rt)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// MCPServer returns an MCP server for this gateway with the given way of
// identifying callers.
func (a *App) MCPServer(identify func(mcp.Request) (mcpserver.Identity, bool)) (*mcp.Server, error) {
	return mcpserver.New(mcpserver.Options{
		Gateway: a.Gateway, Identify: identify, Audit: a.Audit, Sessions: a.Store,
		Logger: a.Log.With("component", "mcp"), Version: Version,
	})
}

// Ready reports whether the gateway can serve: the store answers and the
// audit writer is healthy (no call may run unaudited). An unhealthy writer
// is probed with one durable write, so readiness comes back by itself once
// the store takes writes again.
func (a *App) Ready(ctx context.Context) error {
	if err := a.Audit.Probe(ctx); err != nil {
		return fmt.Errorf("audit writer unhealthy: %w", err)
	}
	return a.Store.Ping(ctx)
}

// Close stops background work, drains the audit writer and closes the store.
func (a *App) Close(ctx context.Context) error {
	if a.stopBackground != nil {
		a.stopBackground()
		a.background.Wait()
		// A served gateway leaves a checkpoint of its final head, so that
		// truncation after a clean stop shows in `audit verify`.
		if a.Audit != nil && a.Audit.Healthy() {
			a.checkpointIfNew(ctx)
		}
	}
	var errs []error
	if a.Plugins != nil {
		errs = append(errs, a.Plugins.Close())
	}
	if a.Quotas != nil {
		errs = append(errs, a.Quotas.Flush(ctx))
	}
	if a.Violations != nil {
		errs = append(errs, a.Violations.Close(ctx))
	}
	if a.dispatcher != nil {
		errs = append(errs, a.dispatcher.Close(ctx))
	}
	if a.Forward != nil {
		a.Forward.Close()
	}
	if a.Audit != nil {
		errs = append(errs, a.Audit.Close(ctx))
	}
	if a.workspace != nil {
		errs = append(errs, a.workspace.Close())
	}
	if a.git != nil {
		errs = append(errs, a.git.Close())
	}
	if a.sql != nil {
		errs = append(errs, a.sql.Close())
	}
	if a.Sandbox != nil {
		errs = append(errs, a.Sandbox.Close())
	}
	if a.Store != nil {
		errs = append(errs, a.Store.Close())
	}
	if a.lock != nil {
		errs = append(errs, a.lock.Close())
	}
	return errors.Join(errs...)
}
