package main

import "fmt"

// evaluate states each DESIGN §6 target as met or missed with the
// measured value; a section that did not run yields no target.
func evaluate(res *Result) []Target {
	var ts []Target
	add := func(name, goal, measured string, met bool) {
		ts = append(ts, Target{Name: name, Goal: goal, Measured: measured, Met: met})
	}
	ts = append(ts, sandboxTargets(res.Sandbox)...)
	for _, row := range res.Gateway.Rows {
		if row.Clients != 32 || row.Protocol != protoSessions || row.Direct == nil || row.Gateway == nil {
			continue
		}
		name := "32 clients, " + row.load()
		add("Gateway overhead p50, "+name, "≤ 0.5 ms",
			fmt.Sprintf("%.2f ms (%.2f → %.2f ms, ×%.2f)%s", row.OverheadP50US/1e3, row.Direct.P50US/1e3, row.Gateway.P50US/1e3, row.RatioP50, noise(row.OverheadP50US)),
			overheadMet(row.OverheadP50US, targetOverheadP50US))
		add("Gateway overhead p99, "+name, "≤ 2 ms",
			fmt.Sprintf("%.2f ms (%.2f → %.2f ms, ×%.2f)%s", row.OverheadP99US/1e3, row.Direct.P99US/1e3, row.Gateway.P99US/1e3, row.RatioP99, noise(row.OverheadP99US)),
			overheadMet(row.OverheadP99US, targetOverheadP99US))
	}
	for _, p := range res.Policy {
		if p.Policies == 200 {
			add("Policy decision p99, 200 policies", "≤ 20 µs", fmt.Sprintf("%.1f µs (p50 %.1f µs)", p.P99NS/1e3, p.P50NS/1e3),
				p.P99NS <= targetPolicyP99NS)
		}
	}
	if len(res.Audit) > 0 {
		best := bestAudit(res)
		add("Durable audit records/s", "≥ 20,000", fmt.Sprintf("%s at %d writers", thousands(best.RecordsPerS), best.Writers),
			best.RecordsPerS >= targetAuditPerS)
	}
	if b := res.Builtin; b != nil {
		add("Trivial built-in calls/s (file_info, 32 clients)", "≥ 5,000", fmt.Sprintf("%s calls/s", thousands(b.CallsPerS)),
			b.CallsPerS >= targetBuiltinPerS)
	}
	return ts
}

// sandboxTargets judges python3 -c pass from the warm pool (the path
// execute_python takes) against bare python3 and bwrap.
func sandboxTargets(s *SandboxSection) []Target {
	warm, bw, cold := s.row("python3 -c pass", "portcullis warm"), s.row("python3 -c pass", "bwrap"), s.row("python3 -c pass", "portcullis cold")
	if warm == nil || warm.OverheadP50MS == nil || warm.OverheadP99MS == nil {
		return nil
	}
	coldNote := func(v *float64) string {
		if cold == nil || v == nil {
			return ""
		}
		return fmt.Sprintf("; cold %.2f ms", *v)
	}
	var coldP50, coldP99 *float64
	if cold != nil {
		coldP50, coldP99 = cold.OverheadP50MS, cold.OverheadP99MS
	}
	ts := []Target{
		{Name: "Sandbox overhead p50 (python3, warm pool)", Goal: "≤ 3 ms",
			Measured: fmt.Sprintf("%.2f ms%s", *warm.OverheadP50MS, coldNote(coldP50)), Met: *warm.OverheadP50MS <= targetSandboxP50MS},
		{Name: "Sandbox overhead p99 (python3, warm pool)", Goal: "≤ 10 ms",
			Measured: fmt.Sprintf("%.2f ms%s", *warm.OverheadP99MS, coldNote(coldP99)), Met: *warm.OverheadP99MS <= targetSandboxP99MS},
	}
	if bw != nil {
		ts = append(ts, Target{Name: "Sandbox no slower than bwrap (python3 p50)", Goal: "≤ bwrap",
			Measured: fmt.Sprintf("warm %.2f ms vs bwrap %.2f ms (×%.2f)", warm.P50MS, bw.P50MS, warm.P50MS/bw.P50MS),
			Met:      warm.P50MS <= bw.P50MS})
	}
	return ts
}

// thousands formats v rounded with thousands separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%d", int64(v+0.5))
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// overheadMet: an overhead within the target. A negative one (the direct
// run's percentile above the gateway's, which happens in the tail of a
// saturated closed loop on a noisy machine) measures nothing and is not
// counted as met.
func overheadMet(overheadUS, targetUS float64) bool {
	return overheadUS >= 0 && overheadUS <= targetUS
}

// noise notes a negative overhead in the measured text.
func noise(overheadUS float64) string {
	if overheadUS < 0 {
		return "; negative: the direct run's tail was slower, noise, not a measurement"
	}
	return ""
}
