package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/adminapi"
)

func newUserCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Add, list, disable and enable users and grant them roles (through the admin API)",
		Long: `Manage users through the running gateway's admin API (--server URL; the
admin key comes from PORTCULLIS_ADMIN_KEY or <data-dir>/admin.key).

A user holds roles; its API keys carry one of them each. Disabling a user
stops all its keys and tokens at once. The gateway refuses to disable, or
take the admin role from, the last enabled administrator.`,
	}
	af.register(cmd)

	var roles []string
	add := &cobra.Command{
		Use:   "add NAME --role ROLE [--role ROLE2]",
		Short: "Create a user with one or more roles",
		Long: `Create a user with one or more roles. Names are 1-64 characters: letters,
digits and . _ @ -, starting with a letter or digit. The user has no key
yet: create one with "portcullis key create".`,
		Example: `  portcullis user add alice --role developer
  portcullis user add ops@example.com --role developer --role admin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(roles) == 0 {
				return errors.New("--role is required")
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			u, err := c.CreateUser(cmd.Context(), adminapi.CreateUserRequest{Name: args[0], Roles: roles})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created user %s (roles %s)\n", u.Name, strings.Join(u.Roles, ","))
			return nil
		},
	}
	add.Flags().StringArrayVar(&roles, "role", nil, "role to give the user (repeatable)")

	var listJSON bool
	list := &cobra.Command{
		Use:     "list",
		Short:   "List users with their roles and status",
		Long:    `List every user with its roles, status (enabled or disabled) and creation time.`,
		Example: "  portcullis user list\n  portcullis user list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			users, err := c.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				if users == nil {
					users = []adminapi.UserView{}
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(users)
			}
			return printUsers(cmd.OutOrStdout(), users)
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	var showJSON bool
	show := &cobra.Command{
		Use:     "show NAME",
		Short:   "Show one user",
		Long:    `Show one user's roles, status and creation time.`,
		Example: "  portcullis user show alice",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			u, err := c.GetUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if showJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(u)
			}
			return printUsers(cmd.OutOrStdout(), []adminapi.UserView{u})
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")

	disable := &cobra.Command{
		Use:   "disable NAME",
		Short: "Disable a user: its keys and tokens stop working at once",
		Long: `Disable a user. Its API keys and tokens stop authenticating at once; they
work again after "portcullis user enable". The last enabled administrator
cannot be disabled.`,
		Example: "  portcullis user disable alice",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			u, err := c.DisableUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "disabled user %s\n", u.Name)
			return nil
		},
	}

	enable := &cobra.Command{
		Use:     "enable NAME",
		Short:   "Enable a disabled user again",
		Long:    `Enable a disabled user again; its unexpired, unrevoked keys work again.`,
		Example: "  portcullis user enable alice",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			u, err := c.EnableUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enabled user %s\n", u.Name)
			return nil
		},
	}

	grant := &cobra.Command{
		Use:   "grant NAME ROLE",
		Short: "Give a user a role",
		Long: `Give a user a role. Keys carry their own role: create a key with the new
role ("portcullis key create --user NAME --role ROLE") to use it.`,
		Example: "  portcullis user grant alice admin",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			u, err := c.GrantRole(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s now has roles %s\n", u.Name, strings.Join(u.Roles, ","))
			return nil
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke NAME ROLE",
		Short: "Take a role from a user",
		Long: `Take a role from a user. Keys carrying that role stop working for it at
once. The admin role cannot be taken from the last enabled administrator.`,
		Example: "  portcullis user revoke alice admin",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			u, err := c.RevokeRole(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			rs := strings.Join(u.Roles, ",")
			if rs == "" {
				rs = "none"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s now has roles %s\n", u.Name, rs)
			return nil
		},
	}
	cmd.AddCommand(add, list, show, disable, enable, grant, revoke)
	return cmd
}

func printUsers(w io.Writer, users []adminapi.UserView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLES\tSTATUS\tCREATED")
	for _, u := range users {
		status := "enabled"
		if u.Disabled {
			status = "disabled"
		}
		roles := strings.Join(u.Roles, ",")
		if roles == "" {
			roles = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, roles, status, u.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}
