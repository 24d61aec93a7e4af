package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// level is one row of the gateway-overhead table.
type level struct {
	clients  int
	protocol string
	// rate paces the clients to this many calls/s in total; 0 is a closed
	// loop (each client calls again as soon as it has its answer).
	rate float64
}

func (lv level) String() string {
	s := fmt.Sprintf("%s, %s", clientsN(lv.clients), lv.protocol)
	if lv.rate > 0 {
		s += fmt.Sprintf(", paced at %.0f calls/s", lv.rate)
	}
	return s
}

// levels: 1, 8 and 32 clients in a closed loop with 2025-11-25 sessions
// (the rows the targets are judged on); then 32 clients paced below
// saturation (latency without queueing) and 32 on stateless 2026-07-28.
func (o *options) levels() []level {
	ls := []level{{1, protoSessions, 0}, {8, protoSessions, 0}, {32, protoSessions, 0}}
	if o.pacedRate > 0 {
		ls = append(ls, level{32, protoSessions, o.pacedRate})
	}
	return append(ls, level{32, protoStateless, 0})
}

// optional reports whether a level may fail without failing the run (the
// extra rows are informational).
func optional(lv level) bool { return lv.protocol != protoSessions || lv.rate > 0 }

// Gateway targets (DESIGN §6), judged at 32 clients with sessions.
const (
	targetOverheadP50US = 500
	targetOverheadP99US = 2000
	targetBuiltinPerS   = 5000
	targetPolicyP99NS   = 20000
	targetAuditPerS     = 20000
	targetSandboxP50MS  = 3
	targetSandboxP99MS  = 10
)

// runAll runs every section in turn, never two at once.
func runAll(ctx context.Context, o *options) (*Result, error) {
	res := newResult()
	root, err := os.MkdirTemp("", "portcullis-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	l, err := newLayout(root, o.fixture)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return nil, err
	}
	res.Gateway = GatewaySection{Transport: "Streamable HTTP on loopback, official go-sdk client, one MCP session and one HTTP connection pool per client",
		Upstream: "test/fixtures/mcpfixture `echo`; direct: the fixture serving Streamable HTTP; gateway: the fixture as a stdio plugin in the native sandbox at level strict"}
	for _, lv := range o.levels() {
		res.Gateway.Rows = append(res.Gateway.Rows, OverheadRow{Clients: lv.clients, Protocol: lv.protocol, RatePerS: lv.rate})
	}
	if err := benchGateway(ctx, o, l, res); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if !o.skipGoBench {
		if err := benchPolicy(ctx, o, res); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if err := benchAudit(ctx, o, res); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if err := benchAuditPostgres(ctx, o, res); err != nil {
			return nil, fmt.Errorf("audit on postgres: %w", err)
		}
	}
	if !o.skipSandbox {
		if err := benchSandbox(ctx, o, res); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	res.Targets = evaluate(res)
	return res, nil
}

func (o *options) loadConfig(pid int, rate float64, metricsURL string) loadConfig {
	return loadConfig{warmup: o.warmup, calls: o.calls, maxTime: o.maxTime, serverPID: pid, rate: rate, metricsURL: metricsURL}
}

// measureLevel opens the clients, measures, and closes them.
func measureLevel(ctx context.Context, ep endpoint, n int, w workload, lc loadConfig) (LoadResult, error) {
	c, err := openClients(ctx, ep, n)
	if err != nil {
		return LoadResult{}, err
	}
	defer c.close()
	return measure(ctx, c, w, lc)
}

// benchGateway starts the fixture (direct) and the gateway, measures each
// level direct and then through the gateway (interleaved, so that drift
// on a shared machine hits both sides alike), then the built-in tool and
// the memory figures; it profiles a missed gateway target.
func benchGateway(ctx context.Context, o *options, l *layout, res *Result) error {
	fx, url, err := startFixture(filepath.Join(l.fixtureDir, "mcpfixture"), l)
	if err != nil {
		return fmt.Errorf("direct fixture: %w", err)
	}
	defer fx.stop()
	progress("gateway: starting portcullis serve with the fixture as a strict stdio plugin")
	g, err := startGateway(ctx, o.portcullis, l)
	if err != nil {
		return err
	}
	defer g.stop()
	mem := &Memory{Sessions: o.sessions}
	mem.StartRSSKB, _ = memKB(g.pid())
	for i, lv := range o.levels() {
		row := &res.Gateway.Rows[i]
		direct := side{"direct", endpoint{url: url, protocol: lv.protocol}, echoLoad, fx.pid(), ""}
		if err := direct.run(ctx, o, lv, &row.Direct, &row.Note); err != nil {
			return err
		}
		peak := lv == level{32, protoSessions, 0}
		if peak {
			mem.PeakReset = resetPeak(g.pid())
		}
		gw := side{"gateway", g.endpoint(lv.protocol), echoLoad.withTool("fx__echo"), g.pid(), g.base + "/metrics"}
		if err := gw.run(ctx, o, lv, &row.Gateway, &row.Note); err != nil {
			return fmt.Errorf("%w; gateway log:\n%s", err, tail(g.log))
		}
		if peak {
			_, mem.Load32HWMKB = memKB(g.pid())
		}
		row.compare()
		if row.Direct != nil && row.Gateway != nil {
			progress("  overhead p50 %+.0fµs p99 %+.0fµs, ×%.2f throughput", row.OverheadP50US, row.OverheadP99US, row.RatioThroughput)
		}
	}
	fx.stop()
	if err := benchBuiltin(ctx, o, g, res); err != nil {
		return err
	}
	if err := idleSessions(ctx, g, mem); err != nil {
		return err
	}
	res.Memory = mem
	return profileGateway(ctx, o, g, res)
}

// side is one path of the overhead comparison.
type side struct {
	name    string
	ep      endpoint
	w       workload
	pid     int
	metrics string // /metrics URL of a gateway
}

// run measures one level on this side into *out; an optional level that
// fails leaves *out nil and says why in *note.
func (s side) run(ctx context.Context, o *options, lv level, out **LoadResult, note *string) error {
	progress("%s: %s, %d calls", s.name, lv, o.calls)
	lr, err := measureLevel(ctx, s.ep, lv.clients, s.w, o.loadConfig(s.pid, lv.rate, s.metrics))
	if err != nil && optional(lv) && ctx.Err() == nil {
		*note += s.name + ": " + err.Error() + " "
		progress("  skipped: %v", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s, %s: %w", s.name, lv, err)
	}
	*out = &lr
	progress("  p50 %.0fµs p90 %.0fµs p99 %.0fµs, %.0f calls/s", lr.P50US, lr.P90US, lr.P99US, lr.CallsPerS)
	return nil
}

// builtinConfig is the built-in run: 32 clients for a fixed time.
func (o *options) builtinConfig(g *gatewayProc) loadConfig {
	return loadConfig{warmup: o.warmup, calls: 1 << 30, maxTime: o.builtinTime, serverPID: g.pid(), metricsURL: g.base + "/metrics"}
}

// benchBuiltin measures file_info throughput at 32 clients.
func benchBuiltin(ctx context.Context, o *options, g *gatewayProc, res *Result) error {
	progress("built-in: file_info, 32 clients, %s", o.builtinTime)
	lr, err := measureLevel(ctx, g.endpoint(protoSessions), 32, fileInfoLoad, o.builtinConfig(g))
	if err != nil {
		return fmt.Errorf("file_info: %w", err)
	}
	res.Builtin = &lr
	progress("  %.0f calls/s, p50 %.0fµs p99 %.0fµs", lr.CallsPerS, lr.P50US, lr.P99US)
	return nil
}

// idleSessions opens mem.Sessions 2025-11-25 sessions (each with its
// standalone SSE stream, as the go-sdk client opens by default), lets them
// sit, and records the gateway's resident set.
func idleSessions(ctx context.Context, g *gatewayProc, mem *Memory) error {
	progress("memory: opening %d idle sessions", mem.Sessions)
	before, _ := memKB(g.pid())
	resetPeak(g.pid())
	tr := newTransport(2 * mem.Sessions)
	defer tr.CloseIdleConnections()
	sessions := make([]*mcp.ClientSession, mem.Sessions)
	var failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(sessions)); i = next.Add(1) - 1 {
				cs, err := connect(ctx, g.endpoint(protoSessions), tr)
				if err != nil {
					failed.Add(1)
					continue
				}
				sessions[i] = cs
			}
		})
	}
	wg.Wait()
	defer closeAll(sessions)
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d idle sessions failed to open", n, mem.Sessions)
	}
	time.Sleep(3 * time.Second) // let the SSE streams settle
	mem.SessionsRSSKB, mem.SessionsHWMKB = memKB(g.pid())
	mem.PerSessionKB = round(float64(mem.SessionsRSSKB-before)/float64(mem.Sessions), 1)
	progress("  RSS %d KiB with %d sessions (%.1f KiB per session)", mem.SessionsRSSKB, mem.Sessions, mem.PerSessionKB)
	return nil
}

func closeAll(sessions []*mcp.ClientSession) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, cs := range sessions {
		if cs == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_ = cs.Close()
		})
	}
	wg.Wait()
}
