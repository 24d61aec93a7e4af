package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
)

// metric is one comparable number of a Result.
type metric struct {
	name   string
	value  float64
	unit   string
	higher bool // higher is better (throughput); else lower is better
}

// flatten lists the numbers bench-check compares.
func flatten(r *Result) []metric {
	var ms []metric
	lat := func(prefix string, lr *LoadResult) {
		if lr == nil {
			return
		}
		ms = append(ms, metric{prefix + ".calls_per_s", lr.CallsPerS, "calls/s", true},
			metric{prefix + ".p50", lr.P50US, "µs", false}, metric{prefix + ".p99", lr.P99US, "µs", false})
	}
	for _, row := range r.Gateway.Rows {
		base := fmt.Sprintf("gateway.c%d.%s", row.Clients, row.Protocol)
		if row.RatePerS > 0 {
			base += fmt.Sprintf(".paced%.0f", row.RatePerS)
		}
		lat(base+".direct", row.Direct)
		lat(base+".gateway", row.Gateway)
		if row.Direct != nil && row.Gateway != nil {
			ms = append(ms, metric{base + ".ratio_p50", row.RatioP50, "×", false}, metric{base + ".ratio_p99", row.RatioP99, "×", false})
		}
	}
	lat("builtin.file_info.c32", r.Builtin)
	for _, p := range r.Policy {
		ms = append(ms, metric{fmt.Sprintf("policy.n%d.p50", p.Policies), p.P50NS, "ns", false},
			metric{fmt.Sprintf("policy.n%d.p99", p.Policies), p.P99NS, "ns", false})
	}
	for _, a := range r.Audit {
		ms = append(ms, metric{fmt.Sprintf("audit.w%d.records_per_s", a.Writers), a.RecordsPerS, "records/s", true})
	}
	for _, a := range r.AuditPostgres {
		ms = append(ms, metric{fmt.Sprintf("audit_postgres.w%d.records_per_s", a.Writers), a.RecordsPerS, "records/s", true})
	}
	if r.Sandbox != nil {
		for _, s := range r.Sandbox.Rows {
			ms = append(ms, metric{fmt.Sprintf("sandbox.%s.%s.p50", s.Program, s.Mode), s.P50MS, "ms", false},
				metric{fmt.Sprintf("sandbox.%s.%s.p99", s.Program, s.Mode), s.P99MS, "ms", false})
		}
	}
	if m := r.Memory; m != nil {
		ms = append(ms, metric{"memory.load32_peak_rss", float64(m.Load32HWMKB), "KiB", false},
			metric{"memory.idle_sessions_rss", float64(m.SessionsRSSKB), "KiB", false})
	}
	return ms
}

// checkCommand compares a result with the baseline metric by metric and
// prints regressions and improvements beyond the tolerance. It is
// informational: the exit status is 0 unless -strict and something
// regressed.
func checkCommand(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	baseline := fs.String("baseline", "bench/baseline.json", "the committed baseline")
	result := fs.String("result", "bench/latest.json", "the result to check")
	tolerance := fs.Float64("tolerance", 0.25, "relative change tolerated before a metric counts as changed")
	strict := fs.Bool("strict", false, "exit 1 when any metric regressed")
	_ = fs.Parse(args)
	base, err := loadResult(*baseline)
	if err != nil {
		return err
	}
	cur, err := loadResult(*result)
	if err != nil {
		return err
	}
	fmt.Printf("bench-check: %s (%s, %s) against baseline %s (%s, %s), tolerance %.0f%%\n",
		*result, cur.Date, short(cur.Commit), *baseline, base.Date, short(base.Commit), *tolerance*100)
	if base.Machine.CPU != cur.Machine.CPU || base.Machine.Cores != cur.Machine.Cores {
		fmt.Printf("note: different machines (%s ×%d vs %s ×%d): differences may not be regressions\n",
			base.Machine.CPU, base.Machine.Cores, cur.Machine.CPU, cur.Machine.Cores)
	}
	regressions := compare(flatten(base), flatten(cur), *tolerance)
	if regressions > 0 && *strict {
		return exitCode(1)
	}
	return nil
}

// compare prints every metric with its change and returns how many
// regressed beyond tol (twice tol for p99 figures, which are noisier).
func compare(base, cur []metric, tol float64) int {
	old := map[string]metric{}
	for _, m := range base {
		old[m.name] = m
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "metric\tbaseline\tcurrent\tchange\tverdict")
	var regressed, improved int
	for _, m := range cur {
		b, ok := old[m.name]
		if !ok || b.value == 0 {
			fmt.Fprintf(w, "%s\t-\t%s %s\t\tnew\n", m.name, num(m.value), m.unit)
			continue
		}
		change := (m.value - b.value) / b.value
		tol := tol
		if strings.HasSuffix(m.name, ".p99") || strings.HasSuffix(m.name, "ratio_p99") {
			tol *= 2 // tails are noisier than medians and rates
		}
		better := change < 0
		if m.higher {
			better = change > 0
		}
		v := "ok"
		switch {
		case change > tol || change < -tol:
			if better {
				v = "improved"
				improved++
			} else {
				v = "REGRESSION"
				regressed++
			}
		}
		fmt.Fprintf(w, "%s\t%s %s\t%s %s\t%+.1f%%\t%s\n", m.name, num(b.value), b.unit, num(m.value), m.unit, change*100, v)
	}
	w.Flush()
	fmt.Printf("bench-check: %d regressions, %d improvements beyond ±%.0f%% (±%.0f%% for p99; informational)\n",
		regressed, improved, tol*100, tol*200)
	return regressed
}

func loadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Schema != schemaVersion {
		return nil, fmt.Errorf("%s: schema %d, this harness reads %d", path, r.Schema, schemaVersion)
	}
	return &r, nil
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// num formats a metric: whole numbers with separators from 1,000 up,
// else four significant digits.
func num(v float64) string {
	if v >= 1000 {
		return thousands(v)
	}
	return fmt.Sprintf("%.4g", v)
}
