package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// benchPolicies generates n Cedar policies in the shape operators write:
// most scoped to one tool with conditions on its arguments, a tenth
// global (any tool) with conditions on the principal and the time.
func benchPolicies(n int) map[string][]byte {
	var b strings.Builder
	for i := range n {
		if i%10 == 9 {
			fmt.Fprintf(&b, "@id(\"global-%d\")\nforbid (principal, action == Action::\"call\", resource) when { principal.name == \"blocked-%d\" || context.denials > %d };\n", i, i, 1000+i)
			continue
		}
		fmt.Fprintf(&b, "@id(\"tool-%d\")\nforbid (principal, action == Action::\"call\", resource == Tool::\"tool_%d\") when { context.args has path && context.args.path like \"*.secret%d\" };\n", i, i%40, i)
	}
	return map[string][]byte{"bench.cedar": []byte(b.String())}
}

// BenchmarkDecideCedar measures full decisions (role grants + Cedar with
// arguments, no cache: every policy set here has conditions) at 10 and 200
// policies, reporting p50 and p99 per decision (DESIGN §6: p99 ≤ 20 µs at 200).
func BenchmarkDecideCedar(b *testing.B) {
	for _, n := range []int{10, 200} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			e, err := New([]store.Grant{{Role: "developer", Action: "call", Pattern: "*", Effect: "allow"}})
			if err != nil {
				b.Fatal(err)
			}
			if err := e.LoadCedar(benchPolicies(n)); err != nil {
				b.Fatal(err)
			}
			p := &principal.Principal{Name: "dev", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
			reqs := make([]*Request, 64)
			for i := range reqs {
				reqs[i] = &Request{Principal: p, Action: ActionCall, Resource: fmt.Sprintf("tool_%d", i%40),
					Args: map[string]any{"path": fmt.Sprintf("dir/file%d.txt", i), "content": "x"},
					Tool: &ToolAttrs{Sensitivity: "MEDIUM"}, Time: monday10}
			}
			for _, r := range reqs { // warm the per-tool subsets
				e.Evaluate(r)
			}
			durs := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				d := e.Evaluate(reqs[i%len(reqs)])
				durs = append(durs, time.Since(start))
				if !d.Allow {
					b.Fatalf("unexpected deny: %+v", d)
				}
			}
			b.StopTimer()
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}

// BenchmarkDecideCached measures a name-level decision answered from the
// decision cache (tools/list and the authorize stage), with 200 policies
// loaded.
func BenchmarkDecideCached(b *testing.B) {
	e, err := New([]store.Grant{{Role: "developer", Action: "call", Pattern: "*", Effect: "allow"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.LoadCedar(benchPolicies(200)); err != nil {
		b.Fatal(err)
	}
	p := &principal.Principal{Name: "dev", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
	r := &Request{Principal: p, Action: ActionCall, Resource: "tool_7", Tool: &ToolAttrs{Sensitivity: "MEDIUM"}}
	e.DecideRequest(r)
	b.ReportAllocs()
	for b.Loop() {
		if !e.DecideRequest(r).Allow {
			b.Fatal("deny")
		}
	}
}
