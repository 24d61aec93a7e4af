package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/mcpserver"
	"github.com/portcullis/portcullis/internal/server"
)

func newServeCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway (MCP over Streamable HTTP at /mcp, admin API at /admin/v1)",
		Long: `Run the gateway. With no flags and no config it uses embedded defaults:
listen 127.0.0.1:8420, data dir ./portcullis-data (created with mode 0700),
workspace ./workspace. On first start it creates an admin API key, writes it
to <data-dir>/admin.key (mode 0600) and prints it once.

SIGINT or SIGTERM shuts down gracefully: in-flight calls finish or are
cancelled after http.shutdown_timeout, the audit log is flushed, exit 0.

The Go garbage collector runs with GOGC=400 unless GOGC is set (fewer
collections under load, more memory: see BENCHMARKS.md).

Environment variables (each overrides the config key shown):
` + envHelp(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&g.listen, "listen", "", "listen address host:port (default 127.0.0.1:8420; port 0 picks a free port)")
	cmd.Flags().StringVar(&g.workspace, "workspace", "", "workspace directory the file tools are confined to (default ./workspace)")
	return cmd
}

// DefaultGCPercent is the gateway process's GOGC unless GOGC is set in the
// environment. Under load the collector took about a third of the
// gateway's CPU at Go's default of 100 (its live heap is small, so it ran
// many times a second; BENCHMARKS.md profiles); 400 lets the heap grow to
// five times the live data between collections. No memory limit is set:
// GOMEMLIMIT, if the operator sets one, is the runtime's own.
const DefaultGCPercent = 400

// tuneGC applies DefaultGCPercent unless the environment sets GOGC.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
}

func serve(parent context.Context, cfg *config.Config) error {
	tuneGC(os.Getenv)
	log := newLogger(cfg, os.Stderr)
	// Configuration lint (`portcullis doctor`), before the data dir is
	// touched: production mode refuses to start on a critical finding.
	if err := lintAtStart(cfg, log); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	closeApp := func() {
		cctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
		defer cancel()
		if err := a.Close(cctx); err != nil {
			log.Error("close", "err", err)
		}
	}
	key, keyPath, created, err := a.EnsureAdminKey(ctx)
	if err != nil {
		closeApp()
		return err
	}
	mcpSrv, err := a.MCPServer(mcpserver.HTTPIdentity)
	if err != nil {
		closeApp()
		return err
	}
	adeps := adminapi.Deps{Store: a.Store, Authn: a.Authn, Policy: a.Policy, Audit: a.Audit,
		Policies: a.PolicyAdmin(), AccessChanged: a.AccessChanged, Checkpoint: a.Checkpoint, Abuse: a.AbuseAdmin(),
		Approvals: a.Approvals, Secrets: adminapi.SecretListerFunc(a.SecretNames), Version: app.Version,
		Logger: log.With("component", "admin"), RequestMeta: server.RequestMeta}
	// The health checks are Ready's two probes, reported apart.
	probes := map[string]func(context.Context) error{"store": a.Store.Ping, "audit": a.Audit.Probe}
	if a.Plugins != nil { // a nil *plugins.Manager in the interface would not be nil
		adeps.Plugins = a.Plugins
		adeps.Health = adminapi.HealthChecks(probes, a.Plugins.Status)
	} else {
		adeps.Health = adminapi.HealthChecks(probes, nil)
	}
	admin, err := adminapi.New(adeps)
	if err != nil {
		closeApp()
		return err
	}
	scfg := server.Config{
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes, SessionTimeout: cfg.MCP.SessionTimeout, ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		AllowedHosts: cfg.Auth.AllowedHosts,
	}
	for _, p := range cfg.Auth.TrustedProxies {
		pfx, err := config.ParsePrefix(p)
		if err != nil { // Validate checked it
			closeApp()
			return fmt.Errorf("auth.trusted_proxies: %w", err)
		}
		scfg.TrustedProxies = append(scfg.TrustedProxies, pfx)
	}
	scfg.ResourceMetadata, scfg.ResourceMetadataURL, scfg.ResourceMetadataPaths = a.ResourceMetadata()
	srv, err := server.New(scfg, server.Deps{Authn: a.Bearer, MCP: mcpSrv, Admin: admin, Audit: a.Events, Ready: a.Ready,
		Metrics: a.Metrics.Handler(),
		Logger:  log, Lockout: a.Lockout, Alerts: a.Alerts,
		Quarantined:    func(name string) bool { _, q := a.Violations.Quarantined(name, "", ""); return q },
		OnAuthFailure:  a.AuthViolation,
		ConsoleAllowed: server.ConsoleAccess(a.Policy, admin.Routes())})
	if err != nil {
		closeApp()
		return err
	}
	ln, scheme, err := listen(cfg)
	if err != nil {
		closeApp()
		return err
	}
	if !isLoopback(ln.Addr()) && scheme == "http" {
		log.Warn("LISTENING ON A NON-LOOPBACK ADDRESS WITHOUT TLS: API keys and tokens cross the network in clear; set tls.cert_file and tls.key_file",
			"addr", ln.Addr().String())
	}
	a.StartBackground()
	if err := a.Audit.Emit(ctx, &audit.Event{Type: audit.ServerStart, Principal: "system", Status: audit.StatusOK,
		Detail: "listening on " + ln.Addr().String() + "; storage " + cfg.Storage.Driver + ", replica " + a.ReplicaID()}); err != nil {
		ln.Close()
		closeApp()
		return fmt.Errorf("audit log unavailable at start: %w", err)
	}

	out := os.Stdout
	fmt.Fprintf(out, "Portcullis %s listening on %s://%s/mcp\n", app.Version, scheme, ln.Addr())
	fmt.Fprintf(out, "  data dir:  %s\n  workspace: %s\n  storage:   %s (replica %s)\n", cfg.DataDir, cfg.Workspace, cfg.Storage.Driver, a.ReplicaID())
	if created {
		fmt.Fprintf(out, "\nAdmin API key (shown once; also saved to %s, mode 0600):\n\n  %s\n\n", keyPath, key)
	} else {
		fmt.Fprintf(out, "  admin key: %s\n", keyPath)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err = <-serveErr:
		log.Error("server stopped", "err", err)
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.HTTP.ShutdownTimeout)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if gerr := a.Gateway.Shutdown(sctx); gerr != nil {
		log.Warn("in-flight calls cancelled at shutdown deadline")
	}
	if herr := srv.Shutdown(sctx); herr != nil && !errors.Is(herr, context.DeadlineExceeded) {
		log.Warn("http shutdown", "err", herr)
	}
	_ = a.Audit.Emit(context.Background(), &audit.Event{Type: audit.ServerStop, Principal: "system", Status: audit.StatusOK})
	closeApp()
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "Portcullis stopped.")
	return nil
}

// listen opens the configured listener: TLS (1.2 or later) when
// tls.cert_file and tls.key_file are set, else plain HTTP. It returns the
// URL scheme.
func listen(cfg *config.Config) (net.Listener, string, error) {
	var tlsCfg *tls.Config
	if cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("tls: loading %s and %s: %w", cfg.TLS.CertFile, cfg.TLS.KeyFile, err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
			NextProtos: []string{"h2", "http/1.1"}}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if tlsCfg == nil {
		return ln, "http", nil
	}
	return tls.NewListener(ln, tlsCfg), "https", nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
