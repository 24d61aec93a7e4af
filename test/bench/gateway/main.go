// Command gateway is Portcullis' benchmark harness (issue 11; targets in
// DESIGN §6). In one run on one machine it measures every layer side by
// side with what a user would use instead, and writes BENCHMARKS.md plus a
// JSON file holding the same numbers:
//
//  1. gateway overhead: the fixture MCP server's echo tool called directly
//     (the fixture serving Streamable HTTP on loopback) and through a
//     running `portcullis serve` (the fixture as a stdio plugin in the
//     sandbox at level strict; API-key authentication, RBAC and Cedar
//     policy, rate and concurrency limits and durable audit all on), at 1,
//     8 and 32 concurrent clients, each with its own MCP session;
//  2. built-in tool throughput: file_info at 32 clients;
//  3. policy decision latency at 10 and 200 policies (go test -bench);
//  4. durable audit records/s with group commit at 1, 8 and 64 writers
//     (go test -bench);
//  5. sandbox overhead (scripts/bench-sandbox.sh);
//  6. memory: the gateway's peak RSS under the 32-client load and its RSS
//     with 1,000 idle 2025-11-25 sessions.
//
// Where a target is missed it keeps a CPU profile under the profile
// directory (perf for the gateway process, go test -cpuprofile for the
// in-process parts) and summarises the top frames in the report.
//
// It binds loopback only, prints a progress line per step, and removes
// what it started (processes, temporary directories) on exit or on
// SIGINT/SIGTERM. Normally run through make (which builds the binaries):
//
//	make bench         # gateway run -json bench/baseline.json -md BENCHMARKS.md
//	make bench-check   # gateway run -json bench/latest.json, then gateway check
//
// Subcommands:
//
//	gateway run   -portcullis BIN -fixture BIN [-json FILE] [-md FILE] [flags]
//	gateway check [-baseline FILE] -result FILE [-tolerance 0.25] [-strict]
//	gateway report -json FILE -md FILE   (re-render the Markdown from a result)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "run":
		err = runCommand(ctx, os.Args[2:])
	case "check":
		err = checkCommand(os.Args[2:])
	case "report":
		err = reportCommand(os.Args[2:])
	default:
		usage()
	}
	var ec exitCode
	if errors.As(err, &ec) {
		os.Exit(int(ec))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: gateway run|check|report [flags] (see -h of each)")
	os.Exit(2)
}

// exitCode is an error that only sets the process status (bench-check
// --strict with regressions).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// options are the flags of `run`.
type options struct {
	portcullis  string
	fixture     string
	goCmd       string
	jsonOut     string
	mdOut       string
	profileDir  string
	calls       int
	warmup      int
	maxTime     time.Duration
	builtinTime time.Duration
	sessions    int
	pacedRate   float64
	sandboxRuns int
	skipSandbox bool
	skipGoBench bool
}

func runCommand(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&o.portcullis, "portcullis", "bin/portcullis", "the portcullis binary (CGO_ENABLED=0 build)")
	fs.StringVar(&o.fixture, "fixture", "bin/mcpfixture", "the mcpfixture binary (CGO_ENABLED=0 build)")
	fs.StringVar(&o.goCmd, "go", envOr("GO", "go"), "the go command (for the in-process benchmarks)")
	fs.StringVar(&o.jsonOut, "json", "bench/baseline.json", "where to write the JSON result")
	fs.StringVar(&o.mdOut, "md", "BENCHMARKS.md", "where to write the Markdown report (empty: none)")
	fs.StringVar(&o.profileDir, "profiles", "bench", "directory for CPU profiles of missed targets")
	fs.IntVar(&o.calls, "calls", 2000, "measured calls per load level (after the warm-up)")
	fs.IntVar(&o.warmup, "warmup", 300, "warm-up calls per load level")
	fs.DurationVar(&o.maxTime, "max-time", 10*time.Second, "cap on one load level's measurement")
	fs.DurationVar(&o.builtinTime, "builtin-time", 8*time.Second, "duration of the built-in tool throughput run")
	fs.Float64Var(&o.pacedRate, "paced-rate", 200, "total calls/s of the paced 32-client row (0: no such row)")
	fs.IntVar(&o.sessions, "sessions", 1000, "idle 2025-11-25 sessions for the memory measurement")
	fs.IntVar(&o.sandboxRuns, "sandbox-runs", 200, "runs per row of scripts/bench-sandbox.sh")
	fs.BoolVar(&o.skipSandbox, "skip-sandbox", false, "skip the sandbox section")
	fs.BoolVar(&o.skipGoBench, "skip-gobench", false, "skip the policy and audit sections")
	_ = fs.Parse(args)
	res, err := runAll(ctx, &o)
	if err != nil {
		return err
	}
	return writeOutputs(res, &o)
}

// reportCommand renders the Markdown report of an existing result.
func reportCommand(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("json", "bench/baseline.json", "the result to render")
	out := fs.String("md", "BENCHMARKS.md", "where to write the report")
	_ = fs.Parse(args)
	res, err := loadResult(*in)
	if err != nil {
		return err
	}
	res.Targets = evaluate(res) // judged by the current rules
	return os.WriteFile(*out, []byte(markdown(res, *in)), 0o644)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var started = time.Now()

// progress prints one line of progress with the time since start.
func progress(format string, args ...any) {
	fmt.Printf("[bench %5.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
}
