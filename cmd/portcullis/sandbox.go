package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/doctor"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/sandbox/native"
	"github.com/portcullis/portcullis/internal/tools/python"
)

func newSandboxCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "sandbox", Short: "Run programs in the native sandbox (operator and debugging use)"}
	var level, memory string
	var timeout, cpu time.Duration
	var pids int
	var mounts []string
	var workdir string
	run := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "Run one command in a fresh sandbox and report its limits and violations",
		Long: `Run one command in a fresh sandbox, as execute_python's code runs: new
user, PID, network, mount, IPC, UTS and cgroup namespaces; a read-only view
of sandbox.read_only_paths; private /tmp and work dir; cgroup limits; Landlock;
the level's seccomp filter. Standard input is passed through (up to 16 MiB);
the command's output, exit status, resource use and violations are printed.
The exit status is the command's (or 125 if the sandbox could not start).

Levels: maximum (default; no new processes, only the command itself may be
executed), strict, standard, minimal. Example:

  portcullis sandbox run --level strict --memory 256MiB --timeout 10s -- /bin/sh -c 'id; ls /'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			lvl, err := sandbox.ParseLevel(level)
			if err != nil {
				return err
			}
			limits := sandbox.Limits{WallTime: timeout, CPUTime: cpu, Pids: pids}
			if memory != "" {
				n, err := humanize.ParseBytes(memory)
				if err != nil {
					return fmt.Errorf("--memory: %w (examples: 256MiB, 1GiB)", err)
				}
				limits.MemoryBytes = int64(n)
			}
			spec := &sandbox.Spec{Argv: args, Level: lvl, Limits: limits, Dir: workdir,
				Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"}}
			if !filepath.IsAbs(args[0]) {
				return fmt.Errorf("the command must be an absolute path inside the sandbox, got %q", args[0])
			}
			for _, m := range mounts {
				parts := strings.Split(m, ":")
				if len(parts) > 3 || parts[0] == "" {
					return fmt.Errorf("--mount %q: want SRC[:DST[:rw]]", m)
				}
				mt := sandbox.Mount{Source: parts[0]}
				if len(parts) > 1 {
					mt.Target = parts[1]
				}
				if len(parts) > 2 {
					if parts[2] != "rw" && parts[2] != "ro" {
						return fmt.Errorf("--mount %q: mode must be ro or rw", m)
					}
					mt.Writable = parts[2] == "rw"
				}
				spec.Mounts = append(spec.Mounts, mt)
			}
			// Detect the Python interpreter so that python3 works inside,
			// wherever it lives (pyenv, /opt ...).
			if in, err := python.Detect(cmd.Context(), cfg.Python.Interpreter); err == nil {
				for _, p := range in.Mounts() {
					spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: p})
				}
			}
			if stat, _ := os.Stdin.Stat(); stat != nil && stat.Mode()&os.ModeCharDevice == 0 {
				if spec.Stdin, err = io.ReadAll(io.LimitReader(os.Stdin, 16<<20)); err != nil {
					return err
				}
			}
			cfg.Sandbox.PoolSize = 0
			rt, err := app.NewSandbox(cfg, newLogger(cfg, os.Stderr))
			if err != nil {
				return err
			}
			defer rt.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := rt.Run(ctx, spec)
			if err != nil {
				return err
			}
			os.Stdout.Write(res.Stdout)
			os.Stderr.Write(res.Stderr)
			w := tabwriter.NewWriter(os.Stderr, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "--\nlevel\t%s\n", lvl)
			fmt.Fprintf(w, "exit\t%d %s\n", res.ExitCode, res.Signal)
			fmt.Fprintf(w, "wall\t%s\ncpu\t%s\npeak memory\t%s\n", res.WallTime.Round(time.Microsecond), res.CPUTime, humanize.IBytes(uint64(res.PeakMemoryBytes)))
			for _, v := range res.Violations {
				fmt.Fprintf(w, "violation\t%s: %s\n", v.Code, v.Detail)
			}
			w.Flush()
			if res.ExitCode != 0 {
				code := res.ExitCode
				if code < 0 {
					code = 128 + 9
				}
				return exitError{code: code}
			}
			return nil
		},
	}
	run.Flags().StringVar(&level, "level", "maximum", "security level: maximum, strict, standard or minimal")
	run.Flags().StringVar(&memory, "memory", "", "memory limit, e.g. 256MiB (default: the level's)")
	run.Flags().DurationVar(&timeout, "timeout", 0, "wall-clock limit (default: the level's, 30s at maximum)")
	run.Flags().DurationVar(&cpu, "cpu", 0, "CPU-time limit (default: the level's)")
	run.Flags().IntVar(&pids, "pids", 0, "processes and threads limit (default: the level's)")
	run.Flags().StringArrayVar(&mounts, "mount", nil, "extra mount SRC[:DST[:ro|rw]] (read-only by default; repeatable)")
	run.Flags().StringVar(&workdir, "workdir", "", "working directory inside (a private tmpfs; default /work)")
	cmd.AddCommand(run)
	return cmd
}

func newDoctorCmd(g *globalFlags) *cobra.Command {
	var jsonOut, configOnly bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the host's sandbox support and lint the configuration for security",
		Long: `Check the host: privileges, user namespaces, seccomp, Landlock ABI, cgroup
version per controller (hybrid hosts are common), memfd, the host ids the
sandbox maps to, the Python interpreter, and a real sandbox run. When a
check fails, sandboxed tools are not offered, and a production gateway does
not start (sandbox.allow_degraded runs them with weaker isolation: an explicit
opt-in, reported as a warning).

Then lint the configuration (--config, PORTCULLIS_* variables, --data-dir)
for security: each finding has a severity, a stable check ID, the key at
fault and a fix. "portcullis serve" runs the same lint at start: in
production mode it refuses to start on a critical finding.

Exit status: the worse of
  0  all host checks pass; no configuration finding, or info only
  1  a host check failed, or a configuration warning
  2  a critical configuration finding

--config-only skips the host checks (for CI on a build machine); --json
prints one JSON object {"host": [...], "findings": [...], "exit_code": N}.

Checks:
` + doctorChecksHelp(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			var checks []native.Check
			if !configOnly {
				checks = hostChecks(cmd.Context(), cfg)
			}
			findings := doctor.Lint(cfg, doctor.OSFS{})
			failed := 0
			for _, c := range checks {
				if c.Verdict == native.VerdictFail {
					failed++
				}
			}
			code := doctor.ExitCode(findings)
			if failed > 0 {
				code = max(code, 1)
			}
			if jsonOut {
				if err := writeDoctorJSON(cmd.OutOrStdout(), checks, findings, code); err != nil {
					return err
				}
			} else {
				if !configOnly {
					writeHostChecks(cmd.OutOrStdout(), cmd.ErrOrStderr(), checks, failed)
				}
				writeFindings(cmd.OutOrStdout(), configSource(g), cfg, findings)
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&configOnly, "config-only", false, "lint the configuration only; skip the host checks")
	return cmd
}

// hostChecks probes the host's sandbox mechanisms and the Python interpreter.
func hostChecks(ctx context.Context, cfg *config.Config) []native.Check {
	checks := native.Probe(ctx, cfg.Sandbox.ReadOnlyPaths)
	if in, err := python.Detect(ctx, cfg.Python.Interpreter); err != nil {
		checks = append(checks, native.Check{Name: "python", Verdict: native.VerdictWarn, Detail: err.Error() + " (execute_python will not be offered)"})
	} else {
		checks = append(checks, native.Check{Name: "python", Verdict: native.VerdictOK,
			Detail: fmt.Sprintf("%s %s (prefix %s)", in.Executable, in.Version, in.BasePrefix)})
	}
	return checks
}

func writeHostChecks(out, errOut io.Writer, checks []native.Check, failed int) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, c := range checks {
		fmt.Fprintf(w, "%s\t%s\t%s\n", strings.ToUpper(c.Verdict), c.Name, c.Detail)
	}
	w.Flush()
	if failed > 0 {
		fmt.Fprintf(errOut, "\n%d check(s) failed: sandboxed tools are not available on this host.\n", failed)
		return
	}
	fmt.Fprintln(out, "\nAll required mechanisms are available.")
}

// configSource names where the configuration came from, as loadConfig
// resolves it.
func configSource(g *globalFlags) string {
	if g.config != "" {
		return g.config
	}
	if p := os.Getenv("PORTCULLIS_CONFIG"); p != "" {
		return p
	}
	return "embedded defaults"
}

func writeFindings(out io.Writer, source string, cfg *config.Config, findings []doctor.Finding) {
	fmt.Fprintf(out, "\nConfiguration (%s, mode %s, data dir %s):\n", source, cfg.Mode, cfg.DataDir)
	if len(findings) == 0 {
		fmt.Fprintln(out, "No configuration findings.")
		return
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SEVERITY\tID\tKEY\tMESSAGE")
	n := map[doctor.Severity]int{}
	for _, f := range findings {
		n[f.Severity]++
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", strings.ToUpper(f.Severity.String()), f.ID, f.Key, f.Message)
		fmt.Fprintf(w, "\t\t\tfix: %s\n", f.Fix)
	}
	w.Flush()
	fmt.Fprintf(out, "\n%d critical, %d warning(s), %d info.\n", n[doctor.Critical], n[doctor.Warning], n[doctor.Info])
	if n[doctor.Critical] > 0 {
		fmt.Fprintln(out, "In production mode `portcullis serve` refuses to start on a critical finding.")
	}
}

// doctorJSON is the output of `doctor --json`.
type doctorJSON struct {
	Host     []hostCheckJSON  `json:"host"`
	Findings []doctor.Finding `json:"findings"`
	ExitCode int              `json:"exit_code"`
}

type hostCheckJSON struct {
	Name    string `json:"name"`
	Verdict string `json:"verdict"`
	Detail  string `json:"detail"`
}

func writeDoctorJSON(out io.Writer, checks []native.Check, findings []doctor.Finding, code int) error {
	r := doctorJSON{Host: []hostCheckJSON{}, Findings: findings, ExitCode: code}
	if r.Findings == nil {
		r.Findings = []doctor.Finding{}
	}
	for _, c := range checks {
		r.Host = append(r.Host, hostCheckJSON{Name: c.Name, Verdict: c.Verdict, Detail: c.Detail})
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// doctorChecksHelp lists the lint's checks for --help.
func doctorChecksHelp() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, c := range doctor.Checks() {
		fmt.Fprintf(w, "  %s\t%s\t%s\n", c.ID, c.Worst, c.Doc)
	}
	w.Flush()
	return b.String()
}

// lintAtStart runs the configuration lint as `serve` starts, before the
// data directory is opened: warnings (and, in development mode, critical
// findings) are logged; in production mode a critical finding refuses the
// start (seed 001: fail fast rather than run insecurely).
func lintAtStart(cfg *config.Config, log *slog.Logger) error {
	findings := doctor.Lint(cfg, doctor.OSFS{})
	prod := cfg.Mode == config.ModeProduction
	for _, f := range findings {
		if f.Severity == doctor.Info || prod && f.Severity == doctor.Critical {
			continue
		}
		log.Warn("insecure configuration: "+f.Message, "check", f.ID, "severity", f.Severity.String(), "key", f.Key, "fix", f.Fix)
	}
	if !prod {
		return nil
	}
	if err := doctor.Gate(findings); err != nil {
		return fmt.Errorf("production mode refuses to start: %w", err)
	}
	return nil
}
