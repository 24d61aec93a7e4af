package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/mcpserver"
	"github.com/portcullis/portcullis/internal/principal"
)

func newStdioCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stdio",
		Short: "Serve MCP over stdin/stdout for a desktop client, as the configured local principal",
		Long: `Serve MCP over stdin/stdout (newline-delimited JSON-RPC), for desktop
clients that start their MCP servers as subprocesses. Every call runs as the
local principal named by stdio.user with the roles in stdio.roles (defaults:
user "local", role "developer"), through the same policy, sandbox and audit
log as "portcullis serve". Logs go to stderr; stdout carries only MCP.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			log := newLogger(cfg, os.Stderr)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := app.Open(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer func() {
				cctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
				defer cancel()
				_ = a.Gateway.Shutdown(cctx)
				_ = a.Close(cctx)
			}()
			a.StartBackground()
			roles, err := a.Store.Roles(ctx)
			if err != nil {
				return err
			}
			for _, r := range cfg.Stdio.Roles {
				if !slices.Contains(roles, r) {
					return fmt.Errorf("stdio.roles: unknown role %q (roles: %v)", r, roles)
				}
			}
			u, _, err := a.Store.EnsureUser(ctx, cfg.Stdio.User, cfg.Stdio.Roles)
			if err != nil {
				return err
			}
			p := &principal.Principal{UserID: u.ID, Name: u.Name, Roles: slices.Sorted(slices.Values(cfg.Stdio.Roles)), Method: principal.MethodLocal}
			log.Info("serving MCP on stdio", "user", p.Name, "roles", p.Roles)
			srv, err := a.MCPServer(mcpserver.FixedIdentity(p))
			if err != nil {
				return err
			}
			if err := srv.Run(ctx, &mcp.StdioTransport{}); err != nil && ctx.Err() == nil {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&g.workspace, "workspace", "", "workspace directory the file tools are confined to (default ./workspace)")
	return cmd
}
