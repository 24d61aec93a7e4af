package main

import (
	"context"

	"fmt"
	"io"
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
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check what this host supports for sandboxing, with a verdict per mechanism",
		Long: `Check the host: privileges, user namespaces, seccomp, Landlock ABI, cgroup
version per controller (hybrid hosts are common), memfd, the host ids the
sandbox maps to, the Python interpreter, and a real sandbox run. Exits 1 if
any check fails: in production mode the gateway then refuses to offer
sandboxed tools unless sandbox.allow_degraded is set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			checks := native.Probe(cmd.Context(), cfg.Sandbox.ReadOnlyPaths)
			if in, err := python.Detect(context.Background(), cfg.Python.Interpreter); err != nil {
				checks = append(checks, native.Check{Name: "python", Verdict: native.VerdictWarn, Detail: err.Error() + " (execute_python will not be offered)"})
			} else {
				checks = append(checks, native.Check{Name: "python", Verdict: native.VerdictOK,
					Detail: fmt.Sprintf("%s %s (prefix %s)", in.Executable, in.Version, in.BasePrefix)})
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			failed := 0
			for _, c := range checks {
				fmt.Fprintf(w, "%s\t%s\t%s\n", strings.ToUpper(c.Verdict), c.Name, c.Detail)
				if c.Verdict == native.VerdictFail {
					failed++
				}
			}
			w.Flush()
			if failed > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "\n%d check(s) failed: sandboxed tools are not available on this host.\n", failed)
				return exitError{code: 1}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\nAll required mechanisms are available.")
			return nil
		},
	}
}
