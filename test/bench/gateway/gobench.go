package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

const module = "github.com/portcullis/portcullis"

// benchLine is one result line of `go test -bench`.
type benchLine struct {
	name    string // without the -GOMAXPROCS suffix
	metrics map[string]float64
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// goBench runs the benchmarks matching pattern in pkg (relative to the
// module) and parses their result lines. With profile set it also writes
// a CPU profile there (go test leaves the test binary next to it).
func goBench(ctx context.Context, o *options, pkg, pattern, benchtime, profile string) ([]benchLine, error) {
	args := []string{"test", "-run", "^$", "-bench", pattern, "-benchtime", benchtime, "-count", "1"}
	dir := ""
	if profile != "" {
		abs, err := filepath.Abs(profile)
		if err != nil {
			return nil, err
		}
		args = append(args, "-cpuprofile", abs)
		dir = filepath.Dir(abs) // where go test leaves pkg.test
	}
	cmd := exec.CommandContext(ctx, o.goCmd, append(args, module+"/"+pkg)...)
	cmd.Dir = dir
	cmd.Env = benchEnv(os.Environ())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench %s %s: %w\n%s", pattern, pkg, err, out.String())
	}
	return parseBench(out.String()), nil
}

// benchGOGC is the collector setting the in-process benchmarks run with:
// the one `portcullis serve` uses by default (cmd/portcullis/serve.go), so
// that policy decisions and audit appends are measured as the gateway
// runs them. An explicit GOGC in the environment wins.
const benchGOGC = "400"

func benchEnv(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "GOGC=") {
			return env
		}
	}
	return append(env, "GOGC="+benchGOGC)
}

// parseBench reads "BenchmarkX/sub-2  N  v unit  v unit ..." lines.
func parseBench(out string) []benchLine {
	var lines []benchLine
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		bl := benchLine{name: procsSuffix.ReplaceAllString(f[0], ""), metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				bl.metrics[f[i+1]] = v
			}
		}
		lines = append(lines, bl)
	}
	return lines
}

// subValue returns the number after "key=" in a sub-benchmark name.
func subValue(name, key string) int {
	_, after, ok := strings.Cut(name, key+"=")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(strings.SplitN(after, "/", 2)[0])
	return n
}

// Benchmarks reused from the packages (they already have the sizes the
// targets need).
const (
	policyPkg   = "internal/policy"
	policyBench = "^BenchmarkDecideCedar$"
	auditPkg    = "internal/store/sqlite"
	auditBench  = "^BenchmarkWriterGroupCommit$"
	policyNs    = "200000x"
	// policyDecisions is policyNs as a number, for the report.
	policyDecisions = 200000
	auditBenchNs    = "2s"
)

// benchPolicy runs BenchmarkDecideCedar (10 and 200 policies, p50/p99 per
// decision); a missed p99 target is profiled.
func benchPolicy(ctx context.Context, o *options, res *Result) error {
	progress("policy: go test -bench %s ./%s (%s)", policyBench, policyPkg, policyNs)
	lines, err := goBench(ctx, o, policyPkg, policyBench, policyNs, "")
	if err != nil {
		return err
	}
	missed := false
	for _, bl := range lines {
		pr := PolicyResult{Policies: subValue(bl.name, "policies"), MeanNS: bl.metrics["ns/op"],
			P50NS: bl.metrics["p50-ns"], P99NS: bl.metrics["p99-ns"]}
		res.Policy = append(res.Policy, pr)
		progress("  %d policies: p50 %.0fns p99 %.0fns", pr.Policies, pr.P50NS, pr.P99NS)
		missed = missed || (pr.Policies == 200 && pr.P99NS > targetPolicyP99NS)
	}
	if len(res.Policy) == 0 {
		return fmt.Errorf("no result lines from %s", policyBench)
	}
	if missed {
		return profileGoBench(ctx, o, res, "policy p99 at 200 policies", policyPkg, policyBench+"/policies=200", policyNs, "policy")
	}
	return nil
}

// benchAudit runs BenchmarkWriterGroupCommit (1, 8, 64 writers, durable
// records/s into SQLite with synchronous=FULL); a missed target is
// profiled.
func benchAudit(ctx context.Context, o *options, res *Result) error {
	progress("audit: go test -bench %s ./%s (%s per size)", auditBench, auditPkg, auditBenchNs)
	lines, err := goBench(ctx, o, auditPkg, auditBench, auditBenchNs, "")
	if err != nil {
		return err
	}
	for _, bl := range lines {
		ar := AuditResult{Writers: subValue(bl.name, "writers"), RecordsPerS: round(bl.metrics["records/s"], 0)}
		res.Audit = append(res.Audit, ar)
		progress("  %d writers: %.0f records/s", ar.Writers, ar.RecordsPerS)
	}
	if len(res.Audit) == 0 {
		return fmt.Errorf("no result lines from %s", auditBench)
	}
	if bestAudit(res).RecordsPerS < targetAuditPerS {
		return profileGoBench(ctx, o, res, "audit records/s", auditPkg, auditBench+"/writers=64", auditBenchNs, "audit")
	}
	return nil
}

// auditPostgresPkg holds the same writer benchmark on PostgreSQL; its
// TestMain starts a throwaway cluster (internal/store/postgres/pgtest).
const auditPostgresPkg = "internal/store/postgres"

// benchAuditPostgres runs BenchmarkWriterGroupCommit on PostgreSQL (1, 8,
// 64 writers; fsync and synchronous_commit on). Without PostgreSQL
// binaries it records a note instead of failing the whole run.
func benchAuditPostgres(ctx context.Context, o *options, res *Result) error {
	progress("audit on PostgreSQL: go test -bench %s ./%s (%s per size)", auditBench, auditPostgresPkg, auditBenchNs)
	lines, err := goBench(ctx, o, auditPostgresPkg, auditBench, auditBenchNs, "")
	if err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("the PostgreSQL audit benchmark did not run: %v", err))
		progress("  skipped: %v", err)
		return nil
	}
	for _, bl := range lines {
		ar := AuditResult{Writers: subValue(bl.name, "writers"), RecordsPerS: round(bl.metrics["records/s"], 0)}
		res.AuditPostgres = append(res.AuditPostgres, ar)
		progress("  %d writers: %.0f records/s", ar.Writers, ar.RecordsPerS)
	}
	return nil
}

// bestAudit is the writer count with the most records/s.
func bestAudit(res *Result) AuditResult {
	var best AuditResult
	for _, a := range res.Audit {
		if a.RecordsPerS > best.RecordsPerS {
			best = a
		}
	}
	return best
}
