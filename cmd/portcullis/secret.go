package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/secrets"
)

func newSecretCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Store credentials for upstream MCP servers, encrypted at rest (offline, --data-dir)",
		Long: `Secrets are referenced from server configuration as ${secret:NAME}. They are
encrypted with AES-256-GCM under <data-dir>/secrets.key, never printed,
logged or audited in clear; every change is audited (admin.secret.set,
admin.secret.delete). These commands work on --data-dir directly, also
while the gateway runs. A --user value overrides the shared one for that
user.`,
	}
	var user string
	var asJSON bool
	open := func(cmd *cobra.Command) (*app.SecretsAdmin, error) {
		cfg, err := loadConfig(g)
		if err != nil {
			return nil, err
		}
		by := "local:" + os.Getenv("USER")
		if by == "local:" {
			by = "local:operator"
		}
		return app.OpenSecretsAdmin(cmd.Context(), cfg, by, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	set := &cobra.Command{
		Use:   "set NAME [--user U] < value",
		Short: "Store a secret read from standard input (one trailing newline is removed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), secrets.MaxValueBytes+2))
			if err != nil {
				return err
			}
			value = bytes.TrimSuffix(bytes.TrimSuffix(value, []byte("\n")), []byte("\r"))
			if len(value) == 0 {
				return errors.New("no value on standard input (pipe it in: printf %s \"$TOKEN\" | portcullis secret set NAME)")
			}
			a, err := open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			if err := a.Set(cmd.Context(), args[0], user, value); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stored secret %s (%d bytes)\n", args[0], len(value))
			return nil
		},
	}
	set.Flags().StringVar(&user, "user", "", "store the value for this user only")
	list := &cobra.Command{
		Use:   "list",
		Short: "List secret names (never values)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			infos, err := a.List(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(infos)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tUSER\tUPDATED")
			for _, i := range infos {
				u := i.User
				if u == "" {
					u = "(shared)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", i.Name, u, i.UpdatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	del := &cobra.Command{
		Use:   "delete NAME [--user U]",
		Short: "Delete a secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := open(cmd)
			if err != nil {
				return err
			}
			defer a.Close()
			if err := a.Delete(cmd.Context(), args[0], user); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted secret %s\n", args[0])
			return nil
		},
	}
	del.Flags().StringVar(&user, "user", "", "delete this user's value")
	cmd.AddCommand(set, list, del)
	return cmd
}
