package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/adminapi"
)

func newRoleCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Create and list roles and grant them permissions (through the admin API)",
		Long: `Manage roles and their permissions through the running gateway's admin API
(--server URL; the admin key comes from PORTCULLIS_ADMIN_KEY or
<data-dir>/admin.key).

A permission allows or denies an action on names matching a pattern:

  call     call a tool            pattern: tool name or glob ("read_file", "git_*", "notes__*")
  approve  approve a held call    pattern: tool name or glob
  admin    use the admin API      pattern: area ("keys", "users", "roles", "policies", "audit") or "*"

A deny wins over every allow; with no matching allow the answer is deny.
Changes are in force for the next request.`,
	}
	af.register(cmd)

	var description string
	create := &cobra.Command{
		Use:   "create NAME [--description TEXT]",
		Short: "Create a role without permissions",
		Long: `Create a role without permissions; grant them with "portcullis role grant".
Names are 1-32 characters: lower-case letters, digits, _ and -, starting
with a letter.`,
		Example: `  portcullis role create reviewer --description "reads files and git history"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			r, err := c.CreateRole(cmd.Context(), adminapi.CreateRoleRequest{Name: args[0], Description: description})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created role %s\n", r.Name)
			return nil
		},
	}
	create.Flags().StringVar(&description, "description", "", "what the role is for")

	var listJSON bool
	list := &cobra.Command{
		Use:     "list",
		Short:   "List roles with their permissions",
		Long:    `List every role with its description and permissions (effect, action, pattern).`,
		Example: "  portcullis role list\n  portcullis role list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			roles, err := c.ListRoles(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				if roles == nil {
					roles = []adminapi.RoleView{}
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(roles)
			}
			return printRoles(cmd.OutOrStdout(), roles)
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	var showJSON bool
	show := &cobra.Command{
		Use:     "show NAME",
		Short:   "Show one role with its permissions",
		Long:    `Show one role's description and permissions.`,
		Example: "  portcullis role show developer",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			r, err := c.GetRole(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if showJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
			}
			return printRoles(cmd.OutOrStdout(), []adminapi.RoleView{r})
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")

	var gAction, gPattern string
	var gDeny bool
	grant := &cobra.Command{
		Use:   "grant ROLE --action ACTION --pattern PATTERN [--deny]",
		Short: "Allow (or with --deny, deny) a role an action on names matching a pattern",
		Long: `Give a role a permission: allow, or with --deny deny, ACTION (call, approve
or admin) on names matching PATTERN (path.Match syntax; quote it for the
shell). Granting an existing permission with the other effect changes its
effect. The gateway refuses grants that would lock every administrator out.`,
		Example: `  portcullis role grant reviewer --action call --pattern 'git_*'
  portcullis role grant developer --action call --pattern http_fetch --deny`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if gAction == "" || gPattern == "" {
				return errors.New("--action and --pattern are required")
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			effect := "allow"
			if gDeny {
				effect = "deny"
			}
			r, err := c.GrantPermission(cmd.Context(), args[0], adminapi.GrantPermissionRequest{Action: gAction, Pattern: gPattern, Effect: effect})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "role %s: %s %s %s\n", r.Name, effect, gAction, gPattern)
			return nil
		},
	}
	grant.Flags().StringVar(&gAction, "action", "", "call, approve or admin")
	grant.Flags().StringVar(&gPattern, "pattern", "", "tool name, admin area or glob such as 'git_*'")
	grant.Flags().BoolVar(&gDeny, "deny", false, "deny instead of allow (a deny wins over every allow)")

	var rAction, rPattern string
	revoke := &cobra.Command{
		Use:   "revoke ROLE --action ACTION --pattern PATTERN",
		Short: "Remove a permission (allow or deny) from a role",
		Long: `Remove a role's permission for ACTION on PATTERN, whatever its effect. The
admin role keeps its admin '*' permission, and the gateway refuses removals
that would lock every administrator out.`,
		Example: `  portcullis role revoke reviewer --action call --pattern 'git_*'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rAction == "" || rPattern == "" {
				return errors.New("--action and --pattern are required")
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			r, err := c.RevokePermission(cmd.Context(), args[0], adminapi.RevokePermissionRequest{Action: rAction, Pattern: rPattern})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "role %s: removed %s %s\n", r.Name, rAction, rPattern)
			return nil
		},
	}
	revoke.Flags().StringVar(&rAction, "action", "", "call, approve or admin")
	revoke.Flags().StringVar(&rPattern, "pattern", "", "the pattern exactly as granted")

	cmd.AddCommand(create, list, show, grant, revoke)
	return cmd
}

// printRoles prints one line per permission, roles without permissions
// on a line of their own.
func printRoles(w io.Writer, roles []adminapi.RoleView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tEFFECT\tACTION\tPATTERN\tDESCRIPTION")
	for _, r := range roles {
		desc := r.Description
		if len(r.Permissions) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\n", r.Name, desc)
			continue
		}
		for _, p := range r.Permissions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, p.Effect, p.Action, p.Pattern, desc)
			desc = ""
		}
	}
	return tw.Flush()
}
