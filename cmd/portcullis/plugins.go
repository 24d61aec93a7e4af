package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/plugins/pin"
)

func newPluginsCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List upstream MCP servers and inspect, diff and accept their tool definitions (through the admin API)",
		Long: `Upstream MCP servers ("plugins", the servers: section of the config) offer
their tools through the gateway as SERVER__TOOL. Each tool definition (name,
title, description, input and output schema, annotations) is fingerprinted
and pinned the first time it is seen. A server that later changes a
definition it already got accepted (a "rug pull") does not get the change:
the new definition is held as pending and the tool is withheld.

Every definition is also scanned for tool poisoning: hidden instructions to
the model, requests for secrets files, instructions about other tools,
whitespace padding, invisible or bidirectional Unicode. A flagged definition
is never trusted on first use; it is pending too.

Withheld tools are not listed to clients and calls to them are refused
until an administrator inspects the pending definition and accepts exactly
that one:

  portcullis plugins list
  portcullis plugins diff SERVER/TOOL
  portcullis plugins accept SERVER/TOOL

Accepting is audited (plugin.tool.accept) and needs the "plugins" admin
area (admins have it). TOOL is the server's own name for the tool.`,
	}
	af.register(cmd)

	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List upstream servers and pinned tools",
		Long: `List the upstream servers (state, restarts, tools offered and withheld), then
every pinned tool. HASH (shortened) and FINDINGS describe the pending
definition of a pending tool, else the accepted one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			v, err := c.ListPlugins(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(v)
			}
			return printPlugins(cmd.OutOrStdout(), v)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	inspect := &cobra.Command{
		Use:   "inspect SERVER/TOOL [--json]",
		Short: "Show a tool's pin: hashes, who accepted it, scan findings and the pending definition",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, v, err := inspectArg(cmd, af, g, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(v)
			}
			return printPluginTool(cmd.OutOrStdout(), v)
		},
	}
	inspect.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	diff := &cobra.Command{
		Use:   "diff SERVER/TOOL",
		Short: "Show what the pending definition changes ('- ' accepted only, '+ ' pending only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, v, err := inspectArg(cmd, af, g, args[0])
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), pluginDiff(v))
			return err
		},
	}

	var hash string
	accept := &cobra.Command{
		Use:   "accept SERVER/TOOL [--hash sha256:...]",
		Short: "Accept the pending definition of a tool and offer the tool again",
		Long: `Accept makes the pending definition of a tool the pinned one and offers the
tool again. Without --hash it accepts the definition pending right now (the
one "plugins diff" shows); with --hash only the definition with that
fingerprint, so that a server that changed it again since you inspected it
gets a conflict instead of your acceptance. The scan findings you accept
are printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server, tool, err := splitServerTool(args[0])
			if err != nil {
				return err
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			h := hash
			if h == "" {
				v, err := c.InspectPluginTool(cmd.Context(), server, tool)
				if err != nil {
					return err
				}
				if v.Status != pin.Pending || v.PendingHash == "" {
					return fmt.Errorf("%s/%s has nothing pending to accept", server, tool)
				}
				h = v.PendingHash
			}
			rec, err := c.AcceptPluginTool(cmd.Context(), server, tool, h)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "accepted %s/%s %s\n", server, tool, rec.Hash)
			if len(rec.Findings) > 0 {
				fmt.Fprintf(w, "with %d scan finding(s):\n", len(rec.Findings))
				printFindings(w, rec.Findings)
			}
			return nil
		},
	}
	accept.Flags().StringVar(&hash, "hash", "", "the pending fingerprint you inspected (default: whatever is pending now)")

	cmd.AddCommand(list, inspect, diff, accept)
	return cmd
}

// inspectArg parses a SERVER/TOOL argument and fetches that tool's pin
// through the admin API.
func inspectArg(cmd *cobra.Command, af *adminFlags, g *globalFlags, arg string) (*adminapi.Client, adminapi.PluginToolView, error) {
	server, tool, err := splitServerTool(arg)
	if err != nil {
		return nil, adminapi.PluginToolView{}, err
	}
	c, err := af.client(g)
	if err != nil {
		return nil, adminapi.PluginToolView{}, err
	}
	v, err := c.InspectPluginTool(cmd.Context(), server, tool)
	return c, v, err
}

// splitServerTool parses a SERVER/TOOL argument.
func splitServerTool(arg string) (server, tool string, err error) {
	server, tool, ok := strings.Cut(arg, "/")
	if !ok || server == "" || tool == "" || strings.Contains(tool, "/") {
		return "", "", fmt.Errorf("%q: want SERVER/TOOL", arg)
	}
	return server, tool, nil
}

// pluginDiff is what "plugins diff" prints: the change a pending
// definition makes to the accepted one, the whole pending definition as
// additions when none was accepted, or "no pending change".
func pluginDiff(v adminapi.PluginToolView) string {
	switch {
	case v.Diff != "":
		return v.Diff
	case v.Status == pin.Pending && len(v.PendingDefinition) > 0:
		return pin.Diff(nil, v.PendingDefinition)
	}
	return "no pending change\n"
}

// safe returns s, or s quoted when it holds characters that are not
// printable (control, invisible or bidirectional ones): names and texts
// come from upstream servers and must not drive the terminal.
func safe(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func shortHash(h string) string {
	if h == "" {
		return "-"
	}
	if len(h) > 19 {
		return h[:19]
	}
	return h
}

func printPlugins(w io.Writer, v adminapi.PluginsView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tLEVEL\tSTATE\tRESTARTS\tTOOLS\tWITHHELD")
	for _, s := range v.Servers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", safe(s.Name), s.Kind, s.SecurityLevel, s.State, s.Restarts,
			len(s.Tools), len(s.Withheld))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tTOOL\tSTATUS\tHASH\tFINDINGS")
	for _, r := range v.Tools {
		hash, findings := r.Hash, r.Findings
		if r.Status == pin.Pending {
			hash, findings = r.PendingHash, r.PendingFindings
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", safe(r.Server), safe(r.Tool), r.Status, shortHash(hash), len(findings))
	}
	return tw.Flush()
}

func printFindings(w io.Writer, fs []pin.Finding) {
	for _, f := range fs {
		fmt.Fprintf(w, "  %s at %s: %s\n", safe(f.Rule), safe(f.Field), safe(f.Excerpt))
	}
}

func printPluginTool(w io.Writer, v adminapi.PluginToolView) error {
	fmt.Fprintf(w, "tool:       %s/%s\n", safe(v.Server), safe(v.Tool))
	fmt.Fprintf(w, "status:     %s\n", v.Status)
	switch {
	case v.Hash == "":
		fmt.Fprintln(w, "accepted:   none")
	case v.AcceptedBy == "":
		fmt.Fprintf(w, "accepted:   %s (trusted on first use %s)\n", v.Hash, v.AcceptedAt.Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "accepted:   %s by %s at %s\n", v.Hash, safe(v.AcceptedBy), v.AcceptedAt.Format(time.RFC3339))
	}
	if v.PendingHash != "" {
		fmt.Fprintf(w, "pending:    %s\n", v.PendingHash)
	}
	fmt.Fprintf(w, "first seen: %s\n", v.FirstSeen.Format(time.RFC3339))
	fmt.Fprintf(w, "updated:    %s\n", v.UpdatedAt.Format(time.RFC3339))
	if len(v.Findings) > 0 {
		fmt.Fprintf(w, "findings of the accepted definition (%d):\n", len(v.Findings))
		printFindings(w, v.Findings)
	}
	if v.Status == pin.Pending {
		fmt.Fprintf(w, "findings of the pending definition (%d):\n", len(v.PendingFindings))
		printFindings(w, v.PendingFindings)
		if len(v.PendingDefinition) > 0 {
			fmt.Fprintln(w, "pending definition:")
			// Diff of a definition with itself is the definition
			// pretty-printed, hidden characters escaped, every line
			// indented by two spaces.
			if _, err := io.WriteString(w, pin.Diff(v.PendingDefinition, v.PendingDefinition)); err != nil {
				return err
			}
		}
		if v.Diff != "" {
			fmt.Fprintf(w, "changes since accepted: portcullis plugins diff %s/%s\n", safe(v.Server), safe(v.Tool))
		}
	}
	return nil
}
