package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/store"
)

func newApprovalsCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List, show, approve and deny held calls (through the admin API)",
		Long: `Dangerous calls wait for a human: by default CRITICAL tools (git_commit) for
everyone but admins, plus what approval.tools and Cedar policies
(forbid ... unless { context.approved }) add. A request is bound to the
exact call: principal, tool and the keyed SHA-256 (HMAC) of its canonical arguments.
Once approved, the identical call runs once when the client retries it;
any other arguments need their own approval. Nobody decides their own
request; deciding needs the "approve" permission for the tool and the
"approvals" admin area (admins have both).`,
	}
	af.register(cmd)
	var state string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--state pending|approved|denied|expired|consumed]",
		Short: "List approval requests, newest first (default: pending)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			if state == "all" {
				state = ""
			}
			as, err := c.ListApprovals(cmd.Context(), state)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(as)
			}
			return printApprovals(cmd.OutOrStdout(), as)
		},
	}
	list.Flags().StringVar(&state, "state", store.ApprovalPending, "pending, approved, denied, expired, consumed or all")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one request with its (redacted) arguments",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			a, err := c.GetApproval(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			b, _ := json.MarshalIndent(a, "", "  ")
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return err
		},
	}
	var comment string
	decide := func(approve bool) *cobra.Command {
		verb := "deny"
		if approve {
			verb = "approve"
		}
		c := &cobra.Command{
			Use:   verb + " ID [--comment TEXT]",
			Short: map[bool]string{true: "Approve a pending request", false: "Deny a pending request"}[approve],
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := af.client(g)
				if err != nil {
					return err
				}
				a, err := cl.DecideApproval(cmd.Context(), args[0], approve, comment)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s by %s, expires %s)\n", a.ID, a.State, a.Tool, a.Principal,
					a.ExpiresAt.Format(time.RFC3339))
				return nil
			},
		}
		c.Flags().StringVar(&comment, "comment", "", "a note for the audit log")
		return c
	}
	cmd.AddCommand(list, show, decide(true), decide(false))
	return cmd
}

func printApprovals(w io.Writer, as []store.Approval) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPRINCIPAL\tTOOL\tCREATED\tEXPIRES\tDECIDED BY\tARGS SHA256")
	for _, a := range as {
		by := "-"
		if a.DecidedBy != "" {
			by = a.DecidedBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s…\n", a.ID, a.State, a.Principal, a.Tool,
			a.CreatedAt.Format(time.RFC3339), a.ExpiresAt.Format(time.RFC3339), by, a.ArgsSHA256[:16])
	}
	return tw.Flush()
}
