package main

import (
	"bytes"
	"fmt"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sandboxOutput renders rows the way test/bench/sandbox prints them.
func sandboxOutput(rows [][]string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Sandbox overhead, 50 runs each, Linux 6.1, 2 CPUs, 2026-01-01T00:00:00Z\n\n")
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "program\tmode\tp50\tp99\toverhead p50\toverhead p99\tvs bwrap p50\t")
	for _, r := range rows {
		for _, c := range r {
			fmt.Fprintf(w, "%s\t", c)
		}
		fmt.Fprintln(w)
	}
	w.Flush()
	return b.String()
}

func ptr(v float64) *float64 { return &v }

func TestParseSandbox(t *testing.T) {
	out := sandboxOutput([][]string{
		{"/bin/true", "bare", "0.50ms", "0.90ms", "", "", ""},
		{"/bin/true", "portcullis cold", "3.10ms", "5.00ms", "2.60ms", "4.10ms", "1.20x"},
		{"python3 -c pass", "portcullis warm", "12.00ms", "15.00ms", "1.00ms", "2.00ms", "0.90x"},
		{"python3 -c pass", "bwrap", "(bwrap not installed)", "", "", "", ""},
	})
	s, err := parseSandbox(out)
	if err != nil {
		t.Fatal(err)
	}
	want := &SandboxSection{Runs: 50, Title: "Sandbox overhead, 50 runs each, Linux 6.1, 2 CPUs, 2026-01-01T00:00:00Z", Rows: []SandboxRow{
		{Program: "/bin/true", Mode: "bare", P50MS: 0.5, P99MS: 0.9},
		{Program: "/bin/true", Mode: "portcullis cold", P50MS: 3.1, P99MS: 5, OverheadP50MS: ptr(2.6), OverheadP99MS: ptr(4.1), VsBwrap: ptr(1.2)},
		{Program: "python3 -c pass", Mode: "portcullis warm", P50MS: 12, P99MS: 15, OverheadP50MS: ptr(1), OverheadP99MS: ptr(2), VsBwrap: ptr(0.9)},
	}}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("parseSandbox (-want +got):\n%s", diff)
	}
}

func TestParseBench(t *testing.T) {
	out := "goos: linux\nBenchmarkDecideCedar/policies=10-2   \t  200000\t      2345 ns/op\t      1800 p50-ns\t      5000 p99-ns\n" +
		"BenchmarkWriterGroupCommit/writers=64-2 \t 50000\t 40000 ns/op\t 25000 records/s\t 1234 B/op\t 20 allocs/op\nPASS\n"
	got := parseBench(out)
	want := []benchLine{
		{name: "BenchmarkDecideCedar/policies=10", metrics: map[string]float64{"ns/op": 2345, "p50-ns": 1800, "p99-ns": 5000}},
		{name: "BenchmarkWriterGroupCommit/writers=64", metrics: map[string]float64{"ns/op": 40000, "records/s": 25000, "B/op": 1234, "allocs/op": 20}},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(benchLine{})); diff != "" {
		t.Errorf("parseBench (-want +got):\n%s", diff)
	}
	if n := subValue(got[1].name, "writers"); n != 64 {
		t.Errorf("subValue = %d, want 64", n)
	}
}

func TestGoPackage(t *testing.T) {
	for _, tc := range []struct{ sym, want string }{
		{"runtime.mallocgc", "runtime"},
		{"github.com/modelcontextprotocol/go-sdk/mcp.(*ServerSession).handle", "github.com/modelcontextprotocol/go-sdk/mcp"},
		{"encoding/json.(*decodeState).object", "encoding/json"},
		{"slices.SortFunc[go.shape.[]string]", "slices"},
		{"modernc.org/libc.Xmemcpy", "modernc.org/libc"},
	} {
		if got := goPackage(tc.sym); got != tc.want {
			t.Errorf("goPackage(%q) = %q, want %q", tc.sym, got, tc.want)
		}
	}
}

func TestParsePerf(t *testing.T) {
	report := "# Overhead  Shared Object  Symbol\n" +
		"    10.50%  portcullis         [.] runtime.mallocgc\n" +
		"     5.25%  [kernel.kallsyms]  [k] _raw_spin_unlock_irqrestore\n" +
		"     4.00%  portcullis         [.] runtime.scanobject\n"
	p := parsePerf(report)
	want := []Frame{{"runtime", 14.5}, {"kernel", 5.3}}
	if diff := cmp.Diff(want, p.ByPackage); diff != "" {
		t.Errorf("by package (-want +got):\n%s", diff)
	}
	if len(p.Top) != 3 || p.Top[1].Name != "[kernel] _raw_spin_unlock_irqrestore" {
		t.Errorf("top = %+v", p.Top)
	}
}

func TestPct(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50}, {0.9, 90}, {0.99, 99}, {1, 100}} {
		if got := pct(s, tc.p); got != tc.want {
			t.Errorf("pct(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestCompare(t *testing.T) {
	base := []metric{{"a.calls_per_s", 1000, "calls/s", true}, {"a.p99", 100, "µs", false}, {"b.p50", 10, "µs", false}}
	cur := []metric{{"a.calls_per_s", 700, "calls/s", true}, {"a.p99", 60, "µs", false}, {"b.p50", 11, "µs", false}}
	if got := compare(base, cur, 0.25); got != 1 {
		t.Errorf("compare: %d regressions, want 1 (throughput -30%%)", got)
	}
}

func TestParseComponents(t *testing.T) {
	report := "# Children  Self  Symbol\n" +
		"    29.03%     0.07%  [.] net/http.(*conn).serve\n" +
		"    17.86%     0.06%  [.] github.com/portcullis/portcullis/internal/authn.(*Authenticator).Authenticate\n" +
		"     5.00%     0.06%  [.] github.com/portcullis/portcullis/internal/tools/files.(*fileInfo).Call\n" +
		"     2.00%     0.06%  [.] github.com/portcullis/portcullis/internal/tools/files.stat\n"
	got := parseComponents(report)
	want := []Frame{
		{components[0].label, 29.03},
		{components[1].label, 17.86},
		{"Built-in file tools", 5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseComponents (-want +got):\n%s", diff)
	}
}

// TestOverheadMet: a negative overhead (noise in a saturated tail) is
// never reported as a met target.
func TestOverheadMet(t *testing.T) {
	for _, tc := range []struct {
		overhead, target float64
		met              bool
		note             bool
	}{{400, 500, true, false}, {500, 500, true, false}, {501, 500, false, false}, {0, 500, true, false}, {-4160, 2000, false, true}} {
		if got := overheadMet(tc.overhead, tc.target); got != tc.met {
			t.Errorf("overheadMet(%v, %v) = %v, want %v", tc.overhead, tc.target, got, tc.met)
		}
		if got := noise(tc.overhead) != ""; got != tc.note {
			t.Errorf("noise(%v) noted %v, want %v", tc.overhead, got, tc.note)
		}
	}
}
