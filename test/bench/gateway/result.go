package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// schemaVersion is bumped when Result changes incompatibly.
const schemaVersion = 1

// Result is everything one run measured; it is the JSON file, and
// BENCHMARKS.md is rendered from it.
type Result struct {
	Schema  int            `json:"schema"`
	Date    string         `json:"date"`
	Commit  string         `json:"commit"`
	Dirty   bool           `json:"dirty"`
	Machine Machine        `json:"machine"`
	Gateway GatewaySection `json:"gateway"`
	Builtin *LoadResult    `json:"builtin_file_info,omitempty"`
	Policy  []PolicyResult `json:"policy,omitempty"`
	Audit   []AuditResult  `json:"audit,omitempty"`
	// AuditPostgres is the same benchmark on PostgreSQL (issue 12), on a
	// throwaway local cluster; informational, no target of its own.
	AuditPostgres []AuditResult   `json:"audit_postgres,omitempty"`
	Sandbox       *SandboxSection `json:"sandbox,omitempty"`
	Memory        *Memory         `json:"memory,omitempty"`
	Targets       []Target        `json:"targets"`
	Profiles      []Profile       `json:"profiles,omitempty"`
	Notes         []string        `json:"notes,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	MemTotalMB int64  `json:"mem_total_mb"`
}

// GatewaySection is section 1: the same calls direct and through the gateway.
type GatewaySection struct {
	Transport string        `json:"transport"`
	Upstream  string        `json:"upstream"`
	Rows      []OverheadRow `json:"rows"`
}

// OverheadRow compares one load level direct and through the gateway.
type OverheadRow struct {
	Clients  int    `json:"clients"`
	Protocol string `json:"protocol"`
	// RatePerS is the total pace of a paced row (0: closed loop).
	RatePerS float64     `json:"paced_rate_per_s,omitempty"`
	Direct   *LoadResult `json:"direct,omitempty"`
	Gateway  *LoadResult `json:"gateway,omitempty"`
	// Ratios are gateway/direct; overheads are gateway minus direct.
	RatioP50        float64 `json:"ratio_p50,omitempty"`
	RatioP90        float64 `json:"ratio_p90,omitempty"`
	RatioP99        float64 `json:"ratio_p99,omitempty"`
	RatioThroughput float64 `json:"ratio_throughput,omitempty"`
	OverheadP50US   float64 `json:"overhead_p50_us,omitempty"`
	OverheadP99US   float64 `json:"overhead_p99_us,omitempty"`
	Note            string  `json:"note,omitempty"`
}

// load names how the clients were driven.
func (r *OverheadRow) load() string {
	if r.RatePerS > 0 {
		return fmt.Sprintf("paced, %.0f calls/s", r.RatePerS)
	}
	return "closed loop"
}

// compare fills the ratios and overheads once both sides are measured.
func (r *OverheadRow) compare() {
	if r.Direct == nil || r.Gateway == nil {
		return
	}
	d, g := r.Direct, r.Gateway
	r.RatioP50, r.RatioP90, r.RatioP99 = round(g.P50US/d.P50US, 2), round(g.P90US/d.P90US, 2), round(g.P99US/d.P99US, 2)
	r.RatioThroughput = round(g.CallsPerS/d.CallsPerS, 2)
	r.OverheadP50US, r.OverheadP99US = round(g.P50US-d.P50US, 1), round(g.P99US-d.P99US, 1)
}

// PolicyResult is one policy-set size (section 3).
type PolicyResult struct {
	Policies int     `json:"policies"`
	MeanNS   float64 `json:"mean_ns"`
	P50NS    float64 `json:"p50_ns"`
	P99NS    float64 `json:"p99_ns"`
}

// AuditResult is one writer count (section 4).
type AuditResult struct {
	Writers     int     `json:"writers"`
	RecordsPerS float64 `json:"records_per_s"`
}

// SandboxSection is scripts/bench-sandbox.sh's table (section 5).
type SandboxSection struct {
	Runs  int          `json:"runs"`
	Rows  []SandboxRow `json:"rows"`
	Title string       `json:"title"`
}

// SandboxRow is one program × mode; overheads are over the bare run and
// absent for it; VsBwrap is p50 / bwrap's p50.
type SandboxRow struct {
	Program       string   `json:"program"`
	Mode          string   `json:"mode"`
	P50MS         float64  `json:"p50_ms"`
	P99MS         float64  `json:"p99_ms"`
	OverheadP50MS *float64 `json:"overhead_p50_ms,omitempty"`
	OverheadP99MS *float64 `json:"overhead_p99_ms,omitempty"`
	VsBwrap       *float64 `json:"vs_bwrap_p50,omitempty"`
}

// Memory is section 6: the gateway's resident set.
type Memory struct {
	StartRSSKB    int64   `json:"start_rss_kb"`
	Load32HWMKB   int64   `json:"load32_peak_rss_kb"`
	PeakReset     bool    `json:"peak_reset"`
	Sessions      int     `json:"idle_sessions"`
	SessionsRSSKB int64   `json:"idle_sessions_rss_kb"`
	SessionsHWMKB int64   `json:"idle_sessions_peak_rss_kb"`
	PerSessionKB  float64 `json:"per_session_kb"`
}

// Target is one DESIGN §6 target, met or not.
type Target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// Profile summarises a CPU profile kept for a missed target.
type Profile struct {
	For       string  `json:"for"`
	File      string  `json:"file"`
	Tool      string  `json:"tool"`
	Top       []Frame `json:"top"`
	ByPackage []Frame `json:"by_package,omitempty"`
	// Components are inclusive shares of the gateway's parts (perf only).
	Components []Frame `json:"components,omitempty"`
}

// Frame is a function or package with its share of samples (self time).
type Frame struct {
	Name    string  `json:"name"`
	Percent float64 `json:"percent"`
}

func newResult() *Result {
	r := &Result{Schema: schemaVersion, Date: time.Now().UTC().Format(time.RFC3339), Machine: machine()}
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		r.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		r.Dirty = len(strings.TrimSpace(string(out))) > 0
	}
	return r
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	m.CPU = procField("/proc/cpuinfo", "model name")
	var kb int64
	if _, err := fmt.Sscanf(procField("/proc/meminfo", "MemTotal"), "%d", &kb); err == nil {
		m.MemTotalMB = kb / 1024
	}
	return m
}

// procField returns the first "name : value" value in a /proc file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// row returns the row of a load level, or nil.
func (g *GatewaySection) row(clients int, protocol string, rate float64) *OverheadRow {
	for i := range g.Rows {
		if r := g.Rows[i]; r.Clients == clients && r.Protocol == protocol && r.RatePerS == rate {
			return &g.Rows[i]
		}
	}
	return nil
}
