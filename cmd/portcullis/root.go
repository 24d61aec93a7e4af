package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/config"
)

// globalFlags are shared by every command.
type globalFlags struct {
	config    string
	dataDir   string
	workspace string
	listen    string
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "portcullis",
		Short: "A secure gateway for MCP tools",
		Long: `Portcullis sits between AI clients and the tools they call. Every tool call
is authenticated, checked against role-based policy, run in an OS sandbox
where it executes code, and written to a durable audit log before it runs.

Start the gateway on embedded defaults (loopback 127.0.0.1:8420, data in
./portcullis-data, workspace ./workspace):

  portcullis serve

Configuration: a strict YAML file (--config or PORTCULLIS_CONFIG; unknown
keys are errors) and PORTCULLIS_* environment variables for every key
(run "portcullis serve --help" for the list). Flags override both.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       app.Version,
	}
	root.PersistentFlags().StringVar(&g.config, "config", "", "YAML config file (default: $PORTCULLIS_CONFIG, else embedded defaults)")
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", "", "data directory (database, keys); default ./portcullis-data")
	root.AddCommand(newServeCmd(g), newStdioCmd(g), newKeyCmd(g), newAuditCmd(g), newSandboxCmd(g), newDoctorCmd(g),
		newUserCmd(g), newRoleCmd(g), newPolicyCmd(g), newBackupCmd(g), newRestoreCmd(g),
		newQuarantineCmd(g), newViolationsCmd(g), newUsageCmd(g), newApprovalsCmd(g), newSecretCmd(g),
		newPluginsCmd(g))
	return root
}

// loadConfig returns the validated configuration: defaults, then the
// config file, then PORTCULLIS_* variables, then flags that were set.
func loadConfig(g *globalFlags) (*config.Config, error) {
	path := g.config
	if path == "" {
		path = os.Getenv("PORTCULLIS_CONFIG")
	}
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return nil, err
	}
	if g.dataDir != "" {
		cfg.DataDir = g.dataDir
	}
	if g.workspace != "" {
		cfg.Workspace = g.workspace
	}
	if g.listen != "" {
		cfg.Listen = g.listen
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// envHelp lists the supported environment variables for --help.
func envHelp() string {
	keys := config.EnvKeys()
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "  %-42s %s\n", n, keys[n])
	}
	return b.String()
}
