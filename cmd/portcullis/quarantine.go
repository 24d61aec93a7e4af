package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/store"
)

func newQuarantineCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "quarantine",
		Short: "List, add and release quarantines (through the admin API)",
		Long: `A principal, MCP session or plugin that crosses its violation threshold is
quarantined automatically (default for principals: 10 HIGH-or-worse
violations in 10 minutes): every request it makes is refused with a
generic "access denied" until an administrator releases it. Quarantines
survive restarts; every change is audited (quarantine.create,
quarantine.release) and alerted.`,
	}
	af.register(cmd)
	var all, asJSON bool
	list := &cobra.Command{
		Use:   "list [--all]",
		Short: "List active quarantines (--all: released ones too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			qs, err := c.ListQuarantines(cmd.Context(), all)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(qs)
			}
			return printQuarantines(cmd.OutOrStdout(), qs)
		},
	}
	list.Flags().BoolVar(&all, "all", false, "include released quarantines")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var why, kind string
	var offline bool
	release := &cobra.Command{
		Use:   "release <principal-or-id> --reason TEXT [--offline]",
		Short: "Release a quarantine by its id (qua_...) or its subject",
		Long: `Release ends a quarantine through the admin API. If no administrator can
reach the API (the only admin was quarantined), --offline releases it
directly in --data-dir (works while the gateway runs; audited as
quarantine.release by local:<user>).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(why) == "" {
				return errors.New("--reason is required: say why the quarantine can end")
			}
			if offline {
				cfg, err := loadConfig(g)
				if err != nil {
					return err
				}
				by := "local:" + os.Getenv("USER")
				if by == "local:" {
					by = "local:operator"
				}
				q, err := app.ReleaseOffline(cmd.Context(), cfg, args[0], by, why,
					slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "released %s (%s %s) offline\n", q.ID, q.Kind, q.Subject)
				return nil
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			q, err := c.ReleaseQuarantine(cmd.Context(), adminapi.ReleaseRequest{Target: args[0], Reason: why})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "released %s (%s %s)\n", q.ID, q.Kind, q.Subject)
			return nil
		},
	}
	release.Flags().StringVar(&why, "reason", "", "why the quarantine ends (audited)")
	release.Flags().BoolVar(&offline, "offline", false, "release directly in --data-dir, without the admin API")

	add := &cobra.Command{
		Use:   "add <subject> --kind principal|session|plugin --reason TEXT",
		Short: "Quarantine a principal, session or plugin now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(why) == "" {
				return errors.New("--reason is required")
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			q, err := c.Quarantine(cmd.Context(), adminapi.QuarantineRequest{Kind: kind, Subject: args[0], Reason: why})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "quarantined %s %s as %s\n", q.Kind, q.Subject, q.ID)
			return nil
		},
	}
	add.Flags().StringVar(&why, "reason", "", "why (audited)")
	add.Flags().StringVar(&kind, "kind", store.QuarantinePrincipal, "principal, session or plugin")
	cmd.AddCommand(list, release, add)
	return cmd
}

func printQuarantines(w io.Writer, qs []store.Quarantine) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSUBJECT\tSINCE\tBY\tSTATUS\tREASON")
	for _, q := range qs {
		status := "active"
		if q.ReleasedAt != nil {
			status = "released " + q.ReleasedAt.Format(time.RFC3339) + " by " + q.ReleasedBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", q.ID, q.Kind, q.Subject, q.CreatedAt.Format(time.RFC3339),
			q.CreatedBy, status, q.Reason)
	}
	return tw.Flush()
}

func newViolationsCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	var user, typ, since string
	var limit int
	cmd := &cobra.Command{
		Use:   "violations [--user U] [--type T] [--since 24h] [--limit N]",
		Short: "List recorded violations, newest first (through the admin API)",
		Long: `Violation types: policy_denial, path_escape, sandbox_violation, auth_failure,
rate_limit, suspicious_argument, egress_refused, definition_changed (the last two
by upstream servers); severities LOW, MEDIUM, HIGH, CRITICAL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			v := url.Values{}
			for k, s := range map[string]string{"user": user, "type": typ, "since": since} {
				if s != "" {
					v.Set(k, s)
				}
			}
			if limit > 0 {
				v.Set("limit", fmt.Sprint(limit))
			}
			vs, err := c.ListViolations(cmd.Context(), v)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tSEVERITY\tTYPE\tPRINCIPAL\tTOOL\tDETAIL")
			for _, x := range vs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.Time.Format(time.RFC3339), x.Severity, x.Type, x.Principal,
					x.Tool, x.Detail)
			}
			return tw.Flush()
		},
	}
	af.register(cmd)
	cmd.Flags().StringVar(&user, "user", "", "principal")
	cmd.Flags().StringVar(&typ, "type", "", "violation type")
	cmd.Flags().StringVar(&since, "since", "", "RFC 3339 time or a duration ago (24h)")
	cmd.Flags().IntVar(&limit, "limit", 0, "maximum (default 100)")
	return cmd
}

func newUsageCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	var day string
	cmd := &cobra.Command{
		Use:   "usage [--day YYYY-MM-DD]",
		Short: "Show daily quota usage per principal (calls, sandbox CPU-seconds)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			us, err := c.Usage(cmd.Context(), day)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PRINCIPAL\tDAY\tCALLS\tCPU_SECONDS")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\n", u.Principal, u.Day, u.Calls, float64(u.CPUMillis)/1000)
			}
			return tw.Flush()
		},
	}
	af.register(cmd)
	cmd.Flags().StringVar(&day, "day", "", "UTC day (default today)")
	return cmd
}
