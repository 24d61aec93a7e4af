package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/datadir"
)

// auditFilters are the query flags shared by query, export and tail.
type auditFilters map[string]*string

func (f auditFilters) register(cmd *cobra.Command, paging bool) {
	flags := []struct{ name, param, help string }{
		{"user", "user", "principal (user name)"},
		{"role", "role", "a role the principal held"},
		{"tool", "tool", "tool name (plugin tools: <server>__<tool>)"},
		{"plugin", "server", "upstream MCP server (plugin) name"},
		{"status", "status", "status: started, ok, error, refused"},
		{"decision", "decision", "decision: allow or deny"},
		{"type", "type", "event type, e.g. tool.call.end (docs/audit-events.md)"},
		{"session", "session", "MCP session id"},
		{"request-id", "request_id", "request id (X-Request-Id)"},
		{"chain", "chain", "audit chain id: the replica that wrote the record (PostgreSQL)"},
		{"since", "since", "RFC 3339 time, or a duration meaning that long ago (24h)"},
		{"until", "until", "RFC 3339 time, or a duration meaning that long ago"},
	}
	if paging {
		flags = append(flags,
			struct{ name, param, help string }{"limit", "limit", "maximum events (default 100, at most 10000)"},
			struct{ name, param, help string }{"before", "before", "only events with a sequence number below this (paging back)"},
			struct{ name, param, help string }{"after", "after", "only events with a sequence number above this (paging forward)"},
			struct{ name, param, help string }{"order", "order", "desc (newest first, default) or asc"})
	}
	for _, fl := range flags {
		f[fl.param] = cmd.Flags().String(fl.name, "", fl.help)
	}
}

func (f auditFilters) values() url.Values {
	v := url.Values{}
	for k, p := range f {
		if *p != "" {
			v.Set(k, *p)
		}
	}
	return v
}

func newAuditCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Query, export, tail, checkpoint and verify the audit log",
		Long: `The audit log records every tool call (before it runs), refusal, sign-in
failure and administrative change, chained with HMAC-SHA256 so that any
alteration, deletion, insertion, reordering or truncation shows.

Through the running server's admin API (--server, PORTCULLIS_ADMIN_KEY or
<data-dir>/admin.key): query, export, tail, checkpoint.
Offline, reading --data-dir (safe while the server runs): verify, hash.

Event types and fields: docs/audit-events.md.`,
	}
	af.register(cmd)
	cmd.AddCommand(newAuditQueryCmd(g, af), newAuditExportCmd(g, af), newAuditTailCmd(g, af),
		newAuditCheckpointCmd(g, af), newAuditVerifyCmd(g), newAuditHashCmd(g))
	return cmd
}

func newAuditQueryCmd(g *globalFlags, af *adminFlags) *cobra.Command {
	f := auditFilters{}
	cmd := &cobra.Command{
		Use:   "query [filters]",
		Short: "Print matching audit events as JSON lines (newest first by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			events, err := c.QueryAudit(cmd.Context(), f.values())
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, e := range events {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f.register(cmd, true)
	return cmd
}

func newAuditExportCmd(g *globalFlags, af *adminFlags) *cobra.Command {
	f := auditFilters{}
	var format, output string
	cmd := &cobra.Command{
		Use:   "export [--format jsonl|csv] [--output FILE] [filters]",
		Short: "Export every matching event, oldest first, as JSON lines or CSV",
		Long: `Export streams every event matching the filters, oldest first, from the
running server (recorded there as audit.export). CSV cells that a
spreadsheet would run as a formula (=, +, -, @) are prefixed with '.
With --output the file is created 0600 and must not exist; an interrupted
export is an error and leaves the partial file named FILE.partial.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != audit.FormatJSONL && format != audit.FormatCSV {
				return fmt.Errorf("--format must be jsonl or csv, got %q", format)
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			v := f.values()
			v.Set("format", format)
			if output == "" || output == "-" {
				return c.ExportAudit(cmd.Context(), v, cmd.OutOrStdout())
			}
			partial := output + ".partial"
			if _, err := os.Lstat(output); err == nil {
				return fmt.Errorf("%s exists; refusing to overwrite it", output)
			}
			out, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if err := c.ExportAudit(cmd.Context(), v, out); err != nil {
				out.Close()
				return err
			}
			if err := out.Sync(); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
			return os.Rename(partial, output)
		},
	}
	cmd.Flags().StringVar(&format, "format", audit.FormatJSONL, "jsonl or csv")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of standard output")
	f.register(cmd, false)
	return cmd
}

func newAuditTailCmd(g *globalFlags, af *adminFlags) *cobra.Command {
	f := auditFilters{}
	var follow bool
	var lines int
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "tail [-f] [-n N] [filters]",
		Short: "Print the newest events; with -f keep printing new ones as they are committed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if lines < 0 || lines > audit.MaxQueryLimit {
				return fmt.Errorf("-n must be 0..%d", audit.MaxQueryLimit)
			}
			if interval <= 0 {
				return errors.New("--interval must be positive")
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			enc := json.NewEncoder(cmd.OutOrStdout())
			v := f.values()
			var last int64
			if lines > 0 {
				v.Set("limit", strconv.Itoa(lines))
				events, err := c.QueryAudit(ctx, v)
				if err != nil {
					return err
				}
				for i := len(events) - 1; i >= 0; i-- { // oldest first
					if err := enc.Encode(events[i]); err != nil {
						return err
					}
				}
				if len(events) > 0 {
					last = events[0].Seq
				}
			}
			if !follow {
				return nil
			}
			if last == 0 { // start at the head, not at the beginning of time
				v2 := f.values()
				v2.Set("limit", "1")
				if head, err := c.QueryAudit(ctx, v2); err == nil && len(head) > 0 {
					last = head[0].Seq
				}
			}
			v.Set("order", "asc")
			v.Set("limit", strconv.Itoa(audit.MaxQueryLimit))
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				v.Set("after", strconv.FormatInt(last, 10))
				events, err := c.QueryAudit(ctx, v)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					fmt.Fprintln(cmd.ErrOrStderr(), "portcullis: audit tail:", err)
				}
				for _, e := range events {
					if err := enc.Encode(e); err != nil {
						return err
					}
					last = e.Seq
				}
				if len(events) == audit.MaxQueryLimit {
					continue // more waiting
				}
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	cmd.Flags().IntVarP(&lines, "lines", "n", 10, "print the newest N events first")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often -f polls the server")
	f.register(cmd, false)
	return cmd
}

func newAuditCheckpointCmd(g *globalFlags, af *adminFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "checkpoint [--output FILE]",
		Short: "Write a signed checkpoint of the chain head now and export it",
		Long: `Checkpoint asks the running server to append a signed audit.checkpoint
record and prints the checkpoint (the server's chain and the sequence and
hash of its record before the checkpoint; with several replicas also the
log's record before it, log_seq and log_hash; time, Ed25519 public key and
signature) as JSON. Keep it outside the gateway's machine: later,
"portcullis audit verify --checkpoint FILE" proves that no record up to it
was altered and that the log was not truncated behind it. The server also
writes one every audit.checkpoint_interval to <data-dir>/audit-checkpoint.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			cp, err := c.Checkpoint(cmd.Context())
			if err != nil {
				return err
			}
			if output != "" {
				if err := app.WriteCheckpointFile(output, cp); err != nil {
					return err
				}
				seq, _ := cp.LogPosition()
				fmt.Fprintf(cmd.OutOrStdout(), "checkpoint at seq %d written to %s\n", seq, output)
				return nil
			}
			b, _ := json.MarshalIndent(cp, "", "  ")
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the checkpoint to FILE (created 0600; replaced atomically)")
	return cmd
}

func newAuditVerifyCmd(g *globalFlags) *cobra.Command {
	var checkpoints []string
	var publicKey string
	var asJSON, acceptUnsealed bool
	cmd := &cobra.Command{
		Use:   "verify [--data-dir DIR] [--checkpoint FILE]...",
		Short: "Verify the audit hash chain offline; exit 1 and name the first bad record if broken",
		Long: `Verify reads the database in --data-dir read-only (safe while the server
runs), runs SQLite's integrity check, and walks every audit record in
order, checking its HMAC, its link to the record before it on its chain,
the sequence numbers and every signed checkpoint. With storage.driver
postgres it reads the shared database and verifies every replica's chain
together (each replica seals into its own chain, named by its replica id;
sequence numbers are global). It detects altered, deleted, inserted,
reordered and moved records; truncation of the newest records shows against a
checkpoint exported earlier (--checkpoint, repeatable; the data dir's
audit-checkpoint.json is always used when present).

Keys: the chain key from $PORTCULLIS_AUDIT_CHAIN_KEY, audit.chain_key_file
or <data-dir>/audit-chain.key; the checkpoint public key from the signing
key, or --public-key (base64) to verify without it.

Exit status: 0 intact, 1 broken (the first bad sequence number is printed),
2 could not verify (missing key, unreadable database).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			opts := app.VerifyOptions{Checkpoints: checkpoints, AcceptUnsealedPrefix: acceptUnsealed, Progress: func(n, seq int64) {
				fmt.Fprintf(cmd.ErrOrStderr(), "verified %d records (seq %d)\n", n, seq)
			}}
			if publicKey != "" {
				k, err := base64.StdEncoding.DecodeString(publicKey)
				if err != nil || len(k) != ed25519.PublicKeySize {
					return errors.New("--public-key must be a base64 Ed25519 public key (32 bytes)")
				}
				opts.PublicKey = k
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			rep, err := app.VerifyAudit(cmd.Context(), cfg, opts, log)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "portcullis: audit verify:", err)
				return exitError{code: 2}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.MarshalIndent(rep, "", "  ")
				fmt.Fprintln(out, string(b))
			} else {
				printVerify(out, rep)
			}
			if !rep.OK() {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&checkpoints, "checkpoint", nil, "an exported checkpoint file to check against (repeatable)")
	cmd.Flags().StringVar(&publicKey, "public-key", "", "checkpoint public key (base64), instead of the data dir's signing key")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&acceptUnsealed, "accept-unsealed-prefix", false,
		"accept records written before the hash chain existed (an older version) at the start of the log; they are counted, not verified")
	return cmd
}

func printVerify(w io.Writer, rep audit.VerifyReport) {
	if !rep.OK() {
		fmt.Fprintf(w, "BROKEN at seq %d: %s\n", rep.BadSeq, rep.Problem)
		fmt.Fprintf(w, "records before the break verified: %d (seq %d..%d)\n", rep.Records, rep.FirstSeq, rep.LastSeq)
		return
	}
	fmt.Fprintf(w, "OK: %d records, seq %d..%d, %d signed checkpoints, %d exported checkpoints matched\n",
		rep.Records, rep.FirstSeq, rep.LastSeq, rep.Checkpoints, rep.Anchors)
	if rep.Unsealed > 0 {
		fmt.Fprintf(w, "WARNING: the first %d records predate the hash chain and are NOT verified\n", rep.Unsealed)
	}
	if rep.PrunedBefore > 0 {
		fmt.Fprintf(w, "records before seq %d were pruned by retention at a signed checkpoint\n", rep.PrunedBefore)
	}
	if rep.HeadHash != "" {
		fmt.Fprintf(w, "head hash: %s\n", rep.HeadHash)
	}
	if len(rep.Chains) > 1 || len(rep.Chains) == 1 && rep.Chains[0].Chain != "" {
		fmt.Fprintf(w, "%d chains (one per replica):\n", len(rep.Chains))
		for _, c := range rep.Chains {
			name := c.Chain
			if name == "" {
				name = `""`
			}
			from := "genesis"
			if c.Continued {
				from = "pruned records"
			}
			fmt.Fprintf(w, "  %-24s %d records, seq %d..%d, from %s, head %s\n", name, c.Records, c.FirstSeq, c.LastSeq, from, c.HeadHash)
		}
	}
}

func newAuditHashCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "hash VALUE|-",
		Short: "Print the keyed digest under which a known value would appear in the audit log",
		Long: `Sensitive argument values (passwords, tokens, keys, secret-looking strings)
are never stored in clear: the audit log keeps hmac-sha256:<hex> under the
data dir's audit.key. To find where a known value was used, compute its
digest and search for it (audit query / export). Pass - to read the value
from standard input (keeps it out of shell history; one trailing newline
is removed).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			key, err := datadir.ReadPrivate(filepath.Join(cfg.DataDir, datadir.AuditKey))
			if err != nil {
				return fmt.Errorf("redaction key: %w", err)
			}
			r, err := audit.NewRedactor(key)
			if err != nil {
				return err
			}
			value := args[0]
			if value == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return err
				}
				value = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), r.Digest([]byte(value)))
			return err
		},
	}
}
