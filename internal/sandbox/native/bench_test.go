//go:build linux

package native

import (
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// benchLatency runs fn b.N times and reports, besides ns/op, the median
// and 99th percentile of the individual runs (DESIGN §6 sets its sandbox
// targets as p50/p99 overhead over a bare run).
func benchLatency(b *testing.B, fn func()) {
	b.Helper()
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		fn()
		d = append(d, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[min(len(d)-1, len(d)*99/100)].Nanoseconds()), "p99-ns")
}

// benchSandbox measures whole runs of argv at maximum: cold (PoolSize
// -1: every run starts its init and builds its namespaces and mounts)
// and warm (the default pool: the run takes a prepared init, which is
// replaced in the background).
func benchSandbox(b *testing.B, argv []string) {
	for _, tc := range []struct {
		name string
		pool int
	}{{"cold", -1}, {"warm", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			rt := newRuntimeWith(b, Config{PoolSize: tc.pool})
			spec := &sandbox.Spec{Argv: argv, Env: []string{"PATH=/usr/bin:/bin"}, Limits: sandbox.Limits{WallTime: testWall}}
			if _, err := rt.Run(b.Context(), spec); err != nil { // fills the pool
				b.Fatal(err)
			}
			benchLatency(b, func() {
				res, err := rt.Run(b.Context(), spec)
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("run %q: %+v, %v", argv, res, err)
				}
			})
		})
	}
}

func benchBare(b *testing.B, argv []string) {
	benchLatency(b, func() {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		if err := cmd.Run(); err != nil {
			b.Fatalf("run %q: %v", argv, err)
		}
	})
}

// BenchmarkRunTrue measures a whole sandboxed run of /bin/true.
func BenchmarkRunTrue(b *testing.B) { benchSandbox(b, []string{"/bin/true"}) }

// BenchmarkRunPythonPass measures a sandboxed `python3 -I -c pass`.
func BenchmarkRunPythonPass(b *testing.B) {
	benchSandbox(b, []string{python, "-I", "-c", "pass"})
}

// BenchmarkBareExecTrue is the baseline for BenchmarkRunTrue: the same
// program started with os/exec and no isolation.
func BenchmarkBareExecTrue(b *testing.B) { benchBare(b, []string{"/bin/true"}) }

// BenchmarkBareExecPythonPass is the baseline for BenchmarkRunPythonPass.
func BenchmarkBareExecPythonPass(b *testing.B) {
	benchBare(b, []string{python, "-I", "-c", "pass"})
}
