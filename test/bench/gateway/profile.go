package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// profileTime is how long a missed gateway target is profiled.
const profileTime = 8 * time.Second

// profileGateway records the gateway process with perf (it exposes no
// pprof endpoint) under the load of each missed gateway target: the
// 32-client echo load for the overhead targets, file_info for the
// throughput target. Without perf it notes why there is no profile.
func profileGateway(ctx context.Context, o *options, g *gatewayProc, res *Result) error {
	type job struct {
		what, file string
		w          workload
	}
	var jobs []job
	if row := res.Gateway.row(32, protoSessions, 0); row != nil && (row.OverheadP50US > targetOverheadP50US || row.OverheadP99US > targetOverheadP99US) {
		jobs = append(jobs, job{"gateway overhead at 32 clients (fx__echo)", "gateway-echo", echoLoad.withTool("fx__echo")})
	}
	if res.Builtin != nil && res.Builtin.CallsPerS < targetBuiltinPerS {
		jobs = append(jobs, job{"built-in throughput (file_info, 32 clients)", "gateway-file_info", fileInfoLoad})
	}
	if len(jobs) == 0 {
		return nil
	}
	perf, err := exec.LookPath("perf")
	if err != nil {
		res.Notes = append(res.Notes, "perf is not installed: the missed gateway targets were not profiled")
		return nil
	}
	for _, j := range jobs {
		progress("profile: perf record of the gateway under %s, %s", j.what, profileTime)
		out := filepath.Join(o.profileDir, j.file+".perf.data")
		p, err := perfRecord(ctx, perf, g, j.w, out)
		if err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("profiling %s failed: %v", j.what, err))
			continue
		}
		p.For = j.what
		res.Profiles = append(res.Profiles, *p)
	}
	return nil
}

// perfRecord samples the gateway process (call graphs, 999 Hz) while 32
// clients drive w, then summarises the samples by symbol and by package.
func perfRecord(ctx context.Context, perf string, g *gatewayProc, w workload, out string) (*Profile, error) {
	c, err := openClients(ctx, g.endpoint(protoSessions), 32)
	if err != nil {
		return nil, err
	}
	defer c.close()
	rec := exec.CommandContext(ctx, perf, "record", "-F", "999", "-g", "-p", strconv.Itoa(g.pid()), "-o", out,
		"--", "sleep", strconv.Itoa(int(profileTime/time.Second)))
	recLog, err := os.Create(out + ".log")
	if err != nil {
		return nil, err
	}
	defer recLog.Close()
	rec.Stdout, rec.Stderr = recLog, recLog
	if err := rec.Start(); err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond) // let perf attach
	_, _, loadErr := drive(ctx, c, w, 1<<30, profileTime, 0)
	if err := rec.Wait(); err != nil {
		return nil, fmt.Errorf("perf record: %w (%s)", err, strings.TrimSpace(tail(out+".log")))
	}
	if loadErr != nil {
		return nil, loadErr
	}
	report, err := exec.CommandContext(ctx, perf, "report", "-i", out, "--stdio", "--no-children",
		"--sort", "dso,sym", "-g", "none").Output()
	if err != nil {
		return nil, fmt.Errorf("perf report: %w", err)
	}
	inclusive, err := exec.CommandContext(ctx, perf, "report", "-i", out, "--stdio", "--children",
		"--sort", "sym", "-g", "none").Output()
	if err != nil {
		return nil, fmt.Errorf("perf report --children: %w", err)
	}
	if err := os.WriteFile(out+".txt", append(report, inclusive...), 0o644); err != nil {
		return nil, err
	}
	p := parsePerf(string(report))
	p.Components = parseComponents(string(inclusive))
	p.File, p.Tool = out, "perf record -F 999 -g -p <gateway pid>; perf report"
	return p, nil
}

// components are the parts of the gateway a profile is summarised by:
// a label and the symbol prefix whose largest inclusive share counts.
// Rows nest (the MCP session handling includes the pipeline).
var components = []struct{ label, prefix string }{
	{"HTTP request handling (net/http conn: middleware, authentication, MCP transport)", "net/http.(*conn).serve"},
	{"API-key authentication (cached; SQLite on a miss)", "github.com/portcullis/portcullis/internal/authn.(*Authenticator).Authenticate"},
	{"MCP session handling (go-sdk: JSON-RPC decode, dispatch, encode)", "github.com/modelcontextprotocol/go-sdk/mcp.(*ServerSession).handle"},
	{"Pipeline (gateway.Call: policy, validation, limits, audit emits, execute)", "github.com/portcullis/portcullis/internal/gateway.(*Gateway).Call"},
	{"Policy decision", "github.com/portcullis/portcullis/internal/gateway.(*Gateway).policy"},
	{"Argument validation", "github.com/portcullis/portcullis/internal/gateway.(*Gateway).validate"},
	{"Plugin call (stdio MCP client to the sandboxed fixture)", "github.com/portcullis/portcullis/internal/plugins.(*pluginTool).Call"},
	{"Built-in file tools", "github.com/portcullis/portcullis/internal/tools/files."},
	{"Audit writer goroutine (group commit into SQLite)", "github.com/portcullis/portcullis/internal/audit.(*Writer).run"},
	{"SQL statement preparation (parsing; all callers)", "modernc.org/sqlite/lib._sqlite3Prepare"},
	{"Garbage collector (background marking)", "runtime.gcBgMarkWorker"},
	{"Allocation (mallocgc, all callers)", "runtime.mallocgc"},
}

var inclusiveLine = regexp.MustCompile(`^\s*([\d.]+)%\s+[\d.]+%\s+\[(.)\]\s+(.+?)\s*$`)

// parseComponents reads perf report --children lines ("inclusive% self%
// [.] symbol") into the share of each component.
func parseComponents(report string) []Frame {
	best := make([]float64, len(components))
	for _, line := range strings.Split(report, "\n") {
		m := inclusiveLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pc, _ := strconv.ParseFloat(m[1], 64)
		for i, c := range components {
			if strings.HasPrefix(m[3], c.prefix) && pc > best[i] {
				best[i] = pc
			}
		}
	}
	var out []Frame
	for i, c := range components {
		if best[i] > 0 {
			out = append(out, Frame{Name: c.label, Percent: best[i]})
		}
	}
	return out
}

var perfLine = regexp.MustCompile(`^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$`)

// parsePerf reads perf report lines "12.3%  dso  [.] symbol" into the top
// symbols and the self time per Go package (kernel frames as "kernel").
func parsePerf(report string) *Profile {
	p := &Profile{}
	pkgs := map[string]float64{}
	for _, line := range strings.Split(report, "\n") {
		m := perfLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pc, _ := strconv.ParseFloat(m[1], 64)
		name := m[4]
		pkg := goPackage(name)
		if m[3] == "k" {
			name, pkg = "[kernel] "+name, "kernel"
		}
		if len(p.Top) < 20 {
			p.Top = append(p.Top, Frame{Name: name, Percent: pc})
		}
		pkgs[pkg] += pc
	}
	p.ByPackage = topFrames(pkgs, 12)
	return p
}

// goPackage returns the import path of a Go symbol such as
// "github.com/x/y/mcp.(*S).m" or "runtime.mallocgc".
func goPackage(sym string) string {
	if i := strings.IndexAny(sym, "[("); i >= 0 {
		sym = sym[:i]
	}
	slash := strings.LastIndexByte(sym, '/')
	if dot := strings.IndexByte(sym[slash+1:], '.'); dot >= 0 {
		return sym[:slash+1+dot]
	}
	return sym
}

func topFrames(m map[string]float64, n int) []Frame {
	var fs []Frame
	for k, v := range m {
		fs = append(fs, Frame{Name: k, Percent: round(v, 1)})
	}
	slices.SortFunc(fs, func(a, b Frame) int {
		if a.Percent != b.Percent {
			if a.Percent > b.Percent {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return fs[:min(n, len(fs))]
}

// profileGoBench reruns one in-process benchmark with -cpuprofile and
// summarises the profile with go tool pprof -top.
func profileGoBench(ctx context.Context, o *options, res *Result, what, pkg, pattern, benchtime, name string) error {
	out := filepath.Join(o.profileDir, name+".cpu.pprof")
	progress("profile: go test -cpuprofile %s (%s)", out, what)
	if _, err := goBench(ctx, o, pkg, pattern, benchtime, out); err != nil {
		return err
	}
	bin := filepath.Join(o.profileDir, filepath.Base(pkg)+".test")
	top, err := exec.CommandContext(ctx, o.goCmd, "tool", "pprof", "-top", "-nodecount=25", bin, out).Output()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w", err)
	}
	if err := os.WriteFile(out+".txt", top, 0o644); err != nil {
		return err
	}
	p := parsePprofTop(string(top))
	p.For, p.File, p.Tool = what, out, "go test -cpuprofile; go tool pprof -top"
	res.Profiles = append(res.Profiles, *p)
	return nil
}

// parsePprofTop reads "flat flat% sum% cum cum% name" rows.
func parsePprofTop(top string) *Profile {
	p := &Profile{}
	pkgs := map[string]float64{}
	for _, line := range strings.Split(top, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") || !strings.HasSuffix(f[4], "%") {
			continue
		}
		pc, err := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		if err != nil {
			continue
		}
		name := strings.Join(f[5:], " ")
		if len(p.Top) < 15 {
			p.Top = append(p.Top, Frame{Name: name, Percent: pc})
		}
		pkgs[goPackage(name)] += pc
	}
	p.ByPackage = topFrames(pkgs, 10)
	return p
}
