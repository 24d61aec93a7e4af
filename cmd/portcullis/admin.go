package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/datadir"
)

// adminFlags locate the running server and the admin key.
type adminFlags struct {
	server string
}

func (af *adminFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&af.server, "server", "",
		"gateway base URL (default $PORTCULLIS_SERVER, else http://<listen> from the config)")
}

// client returns an admin API client: server from --server,
// PORTCULLIS_SERVER or the configured listen address; key from
// PORTCULLIS_ADMIN_KEY or <data-dir>/admin.key.
func (af *adminFlags) client(g *globalFlags) (*adminapi.Client, error) {
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, err
	}
	base := af.server
	if base == "" {
		base = os.Getenv("PORTCULLIS_SERVER")
	}
	if base == "" {
		if strings.HasSuffix(cfg.Listen, ":0") {
			return nil, errors.New("the configured listen port is 0; pass --server URL")
		}
		base = "http://" + cfg.Listen
	}
	key := strings.TrimSpace(os.Getenv("PORTCULLIS_ADMIN_KEY"))
	if key == "" {
		path := filepath.Join(cfg.DataDir, datadir.AdminKeyFile)
		b, err := datadir.ReadPrivate(path)
		if err != nil {
			return nil, fmt.Errorf("no admin key: set PORTCULLIS_ADMIN_KEY or create %s by starting `portcullis serve` once (%w)", path, err)
		}
		key = strings.TrimSpace(string(b))
	}
	return &adminapi.Client{BaseURL: base, Key: key}, nil
}

func newKeyCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Create, list, rotate and revoke API keys (through the admin API)",
		Long: `Manage API keys through the running gateway's admin API (--server URL; the
admin key comes from PORTCULLIS_ADMIN_KEY or <data-dir>/admin.key).

A key belongs to a user and carries one role; optional scopes narrow it to
tools matching patterns. The key itself is printed once, when it is created
or rotated; the server keeps only its HMAC.`,
	}
	af.register(cmd)

	var user, role, expires string
	var scopes []string
	var asJSON bool
	create := &cobra.Command{
		Use:   "create --user NAME --role ROLE",
		Short: "Create an API key and print it once (creates the user if needed)",
		Long: `Create an API key for a user with one role and print it once. The user is
created if it does not exist, or given the role if it lacks it.

--scope narrows the key to tools matching a pattern (path.Match syntax:
"read_file", "git_*"); repeat it for several. Without scopes the key may
do whatever its role allows. --expires sets a lifetime (a Go duration such
as 720h); without it the key does not expire.`,
		Example: `  portcullis key create --user alice --role developer
  portcullis key create --user ci --role developer --scope 'git_*' --scope read_file --expires 720h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" || role == "" {
				return errors.New("--user and --role are required")
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			k, err := c.CreateKey(cmd.Context(), adminapi.CreateKeyRequest{User: user, Role: role, ExpiresIn: expires, Scopes: scopes})
			if err != nil {
				return err
			}
			return printNewKey(cmd.OutOrStdout(), k, asJSON)
		},
	}
	create.Flags().StringVar(&user, "user", "", "user name (created if it does not exist)")
	create.Flags().StringVar(&role, "role", "", "role for the key: guest, developer or admin")
	create.Flags().StringVar(&expires, "expires", "", "lifetime such as 720h (default: no expiry)")
	create.Flags().StringArrayVar(&scopes, "scope", nil, "narrow the key to tools matching PATTERN (repeatable)")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var rotExpires string
	var rotJSON bool
	rotate := &cobra.Command{
		Use:   "rotate ID",
		Short: "Replace a key by a new one and revoke it; print the new key once",
		Long: `Replace an active key by a new key with the same user, role and scopes,
and revoke the old one at once. The new key is printed once.

If the old key had an expiry, the new key gets a lifetime of the same
length counted from now; --expires overrides it. A revoked or expired key
cannot be rotated: create a new key instead.`,
		Example: `  portcullis key rotate key_3f9a...
  portcullis key rotate key_3f9a... --expires 2160h --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			k, err := c.RotateKey(cmd.Context(), args[0], rotExpires)
			if err != nil {
				return err
			}
			return printNewKey(cmd.OutOrStdout(), k, rotJSON)
		},
	}
	rotate.Flags().StringVar(&rotExpires, "expires", "", "lifetime of the new key such as 720h (default: the old key's lifetime)")
	rotate.Flags().BoolVar(&rotJSON, "json", false, "print JSON")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List API keys (never their secret)",
		Long: `List every API key with its user, roles, display prefix, times, status
(active, expired, revoked) and scopes. Neither the key nor its hash is
ever shown.`,
		Example: `  portcullis key list
  portcullis key list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			keys, err := c.ListKeys(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(keys)
			}
			return printKeys(cmd.OutOrStdout(), keys)
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key by id (key_...)",
		Long: `Revoke an API key by its id (see "portcullis key list"). It stops
authenticating at once.`,
		Example: `  portcullis key revoke key_3f9a...`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			k, err := c.RevokeKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (user %s)\n", k.ID, k.User)
			return nil
		},
	}
	cmd.AddCommand(create, list, rotate, revoke)
	return cmd
}

// printNewKey prints a key that was just created or rotated, with its
// plaintext, which the server never shows again.
func printNewKey(out io.Writer, k adminapi.KeyView, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(out).Encode(k)
	}
	fmt.Fprintf(out, "API key for %s (role %s) — shown once, store it now:\n\n  %s\n\nid: %s\n", k.User, strings.Join(k.Roles, ","), k.Key, k.ID)
	if k.RotatedFrom != "" {
		fmt.Fprintf(out, "replaces: %s (revoked)\n", k.RotatedFrom)
	}
	if len(k.Scopes) > 0 {
		fmt.Fprintf(out, "scopes: %s\n", strings.Join(k.Scopes, " "))
	}
	if k.ExpiresAt != nil {
		fmt.Fprintf(out, "expires: %s\n", k.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

func printKeys(w io.Writer, keys []adminapi.KeyView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tROLES\tPREFIX\tCREATED\tEXPIRES\tSTATUS\tSCOPES")
	for _, k := range keys {
		exp, status := "-", "active"
		if k.ExpiresAt != nil {
			exp = k.ExpiresAt.Format(time.RFC3339)
			if time.Now().After(*k.ExpiresAt) {
				status = "expired"
			}
		}
		if k.RevokedAt != nil {
			status = "revoked"
		}
		scopes := "-"
		if len(k.Scopes) > 0 {
			scopes = strings.Join(k.Scopes, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s…\t%s\t%s\t%s\t%s\n", k.ID, k.User, strings.Join(k.Roles, ","), k.Prefix,
			k.CreatedAt.Format(time.RFC3339), exp, status, scopes)
	}
	return tw.Flush()
}
