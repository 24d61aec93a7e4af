package main

import (
	"fmt"
	"strings"
)

// gapsSection states, for every missed target, the remaining gap and
// what the run's own measurements say about its cause (queueing, CPU per
// call, the gateway's metrics, the profiles). It only restates figures
// of this run, so it stays true when the numbers change.
func gapsSection(m *md, res *Result) {
	var missed []string
	for _, t := range res.Targets {
		if !t.Met {
			missed = append(missed, t.Name)
		}
	}
	if len(missed) == 0 {
		return
	}
	m.p("## Missed targets: gap and cause\n")
	gatewayGap(m, res)
	builtinGap(m, res)
	policyGap(m, res)
	auditGap(m, res)
	sandboxGap(m, res)
}

func gatewayGap(m *md, res *Result) {
	closed := res.Gateway.row(32, protoSessions, 0)
	if closed == nil || closed.Direct == nil || closed.Gateway == nil ||
		closed.OverheadP50US <= targetOverheadP50US && closed.OverheadP99US <= targetOverheadP99US {
		return
	}
	m.p("**Gateway overhead.** At 32 clients in a closed loop the overhead is %s at p50 and %s at p99 (targets 0.5 ms",
		msUS(closed.OverheadP50US), msUS(closed.OverheadP99US))
	m.p("and 2 ms). The cores are saturated, so this is queueing: each call adds %.0f µs of gateway CPU (server CPU per",
		closed.Gateway.ServerCPUUS-closed.Direct.ServerCPUUS)
	m.p("call %.0f µs through the gateway vs %.0f µs for the fixture alone) and waits behind 31 others' work.",
		closed.Gateway.ServerCPUUS, closed.Direct.ServerCPUUS)
	if paced := pacedRow(res); paced != nil {
		m.p("Below saturation (paced row) the overhead is %s at p50 and %s at p99.", msUS(paced.OverheadP50US), msUS(paced.OverheadP99US))
		if in := paced.Gateway.Internals; in != nil {
			m.p("There a call waits for two audit commits in series, %s each on average (p99 ≤ %s), so the durable",
				msUS(in.CommitMeanUS), msUS(in.CommitP99LeUS))
			m.p("audit alone accounts for about %s of the p50 overhead; the rest is authentication, the MCP", msUS(2*in.CommitMeanUS))
			m.p("session handling on both legs and the stdio hop to the sandboxed plugin.")
		}
	}
	if p := profileFor(res, "gateway overhead"); p != nil && len(p.Components) > 0 {
		var parts []string
		for _, c := range p.Components {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", strings.SplitN(c.Name, " (", 2)[0], c.Percent))
		}
		m.p("The perf profile of the gateway under that load splits its CPU as: %s (inclusive, nested).", strings.Join(parts, "; "))
	}
	m.p("")
}

func pacedRow(res *Result) *OverheadRow {
	for i := range res.Gateway.Rows {
		r := &res.Gateway.Rows[i]
		if r.RatePerS > 0 && r.Direct != nil && r.Gateway != nil {
			return r
		}
	}
	return nil
}

func profileFor(res *Result, prefix string) *Profile {
	for i := range res.Profiles {
		if strings.HasPrefix(res.Profiles[i].For, prefix) {
			return &res.Profiles[i]
		}
	}
	return nil
}

func builtinGap(m *md, res *Result) {
	b := res.Builtin
	if b == nil || b.CallsPerS >= targetBuiltinPerS {
		return
	}
	best := 0.0
	for _, r := range res.Gateway.Rows {
		if r.Direct != nil && r.RatePerS == 0 {
			best = max(best, r.Direct.CallsPerS)
		}
	}
	m.p("**Built-in throughput.** %s calls/s, %s short of 5,000. The load generator runs on the same %d cores and",
		thousands(b.CallsPerS), thousands(targetBuiltinPerS-b.CallsPerS), res.Machine.Cores)
	m.p("spends %.0f µs of CPU per call itself; the fixture called directly, with no gateway at all, peaks at %s",
		b.ClientCPUUS, thousands(best))
	m.p("calls/s with this client on this machine, so 5,000 calls/s is out of reach of any MCP server measured this way")
	m.p("here. The gateway spends %.0f µs of CPU per file_info call (at most ≈ %s calls/s on %d cores with the client",
		b.ServerCPUUS, thousands(float64(res.Machine.Cores)*1e6/b.ServerCPUUS), res.Machine.Cores)
	m.p("elsewhere); where it goes is in the file_info profile above.")
	m.p("")
}

func policyGap(m *md, res *Result) {
	for _, p := range res.Policy {
		if p.Policies != 200 || p.P99NS <= targetPolicyP99NS {
			continue
		}
		m.p("**Policy decision.** p99 %s at 200 policies, %s over the target; p50 is %s, the tail ×%.1f the median.",
			nsUS(p.P99NS), nsUS(p.P99NS-targetPolicyP99NS), nsUS(p.P50NS), p.P99NS/p.P50NS)
		m.p("Every decision allocates (the Cedar request and its context record are built per call), so garbage")
		m.p("collection, and preemption on the shared cores, most likely make the tail.")
		if pr := profileFor(res, "policy"); pr != nil && len(pr.ByPackage) > 0 {
			m.p("Profile (self time of the top functions, by package): %s.", framesText(pr.ByPackage, 5))
		}
		m.p("")
	}
}

func auditGap(m *md, res *Result) {
	if len(res.Audit) == 0 || bestAudit(res).RecordsPerS >= targetAuditPerS {
		return
	}
	best := bestAudit(res)
	m.p("**Audit append.** %s durable records/s at %d writers, %s short of 20,000: ≈ %.0f µs of wall time per record",
		thousands(best.RecordsPerS), best.Writers, thousands(targetAuditPerS-best.RecordsPerS), 1e6/best.RecordsPerS)
	m.p("on one writer connection.")
	if pr := profileFor(res, "audit"); pr != nil && len(pr.ByPackage) > 0 {
		m.p("Profile (self time of the top functions, by package): %s.", framesText(pr.ByPackage, 5))
	}
	m.p("")
}

func sandboxGap(m *md, res *Result) {
	warm := res.Sandbox.row("python3 -c pass", "portcullis warm")
	bw := res.Sandbox.row("python3 -c pass", "bwrap")
	if warm == nil || warm.OverheadP50MS == nil || warm.OverheadP99MS == nil ||
		*warm.OverheadP50MS <= targetSandboxP50MS && *warm.OverheadP99MS <= targetSandboxP99MS {
		return
	}
	m.p("**Sandbox overhead.** python3 from the warm pool costs %.2f ms at p50 and %.2f ms at p99 over a bare run",
		*warm.OverheadP50MS, *warm.OverheadP99MS)
	m.p("(targets 3 ms and 10 ms).")
	if bw != nil && bw.OverheadP50MS != nil {
		m.p("bubblewrap with the same isolation costs %.2f ms at p50 on this kernel, so namespace and mount setup alone",
			*bw.OverheadP50MS)
		m.p("exceed the 3 ms budget here; Portcullis' warm pool takes ×%.2f of bwrap's time. The sandbox runtime has its own",
			warm.P50MS/bw.P50MS)
		m.p("benchmark (`make bench-sandbox`); this harness does not profile it.")
	}
	m.p("")
}

func framesText(fs []Frame, n int) string {
	var parts []string
	for _, f := range fs[:min(n, len(fs))] {
		parts = append(parts, fmt.Sprintf("`%s` %.0f%%", f.Name, f.Percent))
	}
	return strings.Join(parts, ", ")
}
