package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Protocol versions: 2025-11-25 has sessions (Mcp-Session-Id), 2026-07-28
// is stateless (the gateway serves it from a separate handler).
const (
	protoSessions  = "2025-11-25"
	protoStateless = "2026-07-28"
)

// bearer adds an Authorization header to every request.
type bearer struct {
	key  string
	base http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.base.RoundTrip(r)
}

// newTransport is an HTTP transport of one client: its own connections,
// no proxy (loopback only).
func newTransport(maxConns int) *http.Transport {
	return &http.Transport{Proxy: nil, MaxIdleConns: maxConns, MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true, ForceAttemptHTTP2: false}
}

// endpoint is where and how clients connect.
type endpoint struct {
	url      string // http://127.0.0.1:port/mcp
	key      string // API key; empty for the direct fixture
	protocol string
}

// connect opens one MCP client session over Streamable HTTP.
func connect(ctx context.Context, ep endpoint, rt http.RoundTripper) (*mcp.ClientSession, error) {
	if ep.key != "" {
		rt = bearer{key: ep.key, base: rt}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "portcullis-bench", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: ep.url, HTTPClient: &http.Client{Transport: rt}, MaxRetries: -1}
	return client.Connect(ctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: ep.protocol})
}

// clients is a set of open sessions, one per simulated client, each with
// its own HTTP transport (its own connections, as separate processes
// would have).
type clients struct {
	sessions   []*mcp.ClientSession
	transports []*http.Transport
}

func openClients(ctx context.Context, ep endpoint, n int) (*clients, error) {
	c := &clients{}
	for range n {
		tr := newTransport(4)
		cs, err := connect(ctx, ep, tr)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("connect %s (%s): %w", ep.url, ep.protocol, err)
		}
		c.sessions = append(c.sessions, cs)
		c.transports = append(c.transports, tr)
	}
	return c, nil
}

func (c *clients) close() {
	var wg sync.WaitGroup
	for _, cs := range c.sessions {
		wg.Go(func() { _ = cs.Close() })
	}
	wg.Wait()
	for _, tr := range c.transports {
		tr.CloseIdleConnections()
	}
}

// workload is one kind of call: the tool and, per client and sequence
// number, distinct arguments and the expected text ("" = any success).
type workload struct {
	tool string
	args func(client int, seq int64) (map[string]any, string)
}

var echoLoad = workload{tool: "echo", args: func(c int, i int64) (map[string]any, string) {
	s := fmt.Sprintf("bench client %d call %d", c, i)
	return map[string]any{"text": s}, s
}}

// withTool returns w calling another name (fx__echo through the gateway).
func (w workload) withTool(name string) workload { w.tool = name; return w }

// fileInfoLoad spreads calls over the small files setupWorkspace made.
var fileInfoLoad = workload{tool: "file_info", args: func(_ int, i int64) (map[string]any, string) {
	return map[string]any{"path": fmt.Sprintf("small/f%02d.txt", i%smallFiles)}, ""
}}

// LoadResult is one measured load level.
type LoadResult struct {
	Clients   int     `json:"clients"`
	Calls     int     `json:"calls"`
	Errors    int     `json:"errors"`
	Seconds   float64 `json:"seconds"`
	CallsPerS float64 `json:"calls_per_s"`
	P50US     float64 `json:"p50_us"`
	P90US     float64 `json:"p90_us"`
	P99US     float64 `json:"p99_us"`
	MaxUS     float64 `json:"max_us"`
	// ServerCPUUS is CPU time per call of the server's process tree (the
	// fixture; or the gateway, its sandbox init and the plugin).
	ServerCPUUS float64 `json:"server_cpu_us_per_call"`
	// ClientCPUUS is CPU time per call of the load generator (this
	// process), which shares the machine's cores with the server.
	ClientCPUUS float64 `json:"client_cpu_us_per_call"`
	// Internals are the gateway's own metrics for the level (gateway only).
	Internals *Internals `json:"internals,omitempty"`
}

// loadConfig bounds one level: warm-up calls, then calls measured calls or
// maxTime, whichever comes first.
type loadConfig struct {
	warmup, calls int
	maxTime       time.Duration
	serverPID     int
	rate          float64 // total calls/s when paced; 0 = closed loop
	metricsURL    string  // the gateway's /metrics; empty for the fixture
}

// measure warms up, then drives the measured calls and summarises them.
func measure(ctx context.Context, c *clients, w workload, lc loadConfig) (LoadResult, error) {
	if _, _, err := drive(ctx, c, w, lc.warmup, lc.maxTime, 0); err != nil {
		return LoadResult{}, fmt.Errorf("warm-up: %w", err)
	}
	var snap0 metricsSnapshot
	if lc.metricsURL != "" {
		var err error
		if snap0, err = scrape(ctx, lc.metricsURL); err != nil {
			return LoadResult{}, err
		}
	}
	server0, self0 := treeCPU(lc.serverPID), selfCPU()
	start := time.Now()
	lat, errs, err := drive(ctx, c, w, lc.calls, lc.maxTime, lc.rate)
	elapsed := time.Since(start)
	server, self := treeCPU(lc.serverPID)-server0, selfCPU()-self0
	if err != nil {
		return LoadResult{}, err
	}
	var in *Internals
	if lc.metricsURL != "" {
		snap1, err := scrape(ctx, lc.metricsURL)
		if err != nil {
			return LoadResult{}, err
		}
		in = internals(snap0, snap1)
	}
	slices.Sort(lat)
	n := float64(len(lat))
	return LoadResult{
		Clients: len(c.sessions), Calls: len(lat), Errors: errs, Seconds: round(elapsed.Seconds(), 3),
		CallsPerS: round(n/elapsed.Seconds(), 1),
		P50US:     us(pct(lat, 0.50)), P90US: us(pct(lat, 0.90)), P99US: us(pct(lat, 0.99)), MaxUS: us(lat[len(lat)-1]),
		ServerCPUUS: round(float64(server.Microseconds())/n, 1), ClientCPUUS: round(float64(self.Microseconds())/n, 1),
		Internals: in,
	}, nil
}

// drive runs total calls spread over all clients (each client one call at
// a time) and returns the latencies of the successful ones and the number
// of failures. With rate > 0 each client waits for its next slot of a
// schedule that adds up to rate calls/s (slots staggered across clients).
// More than 1% failures, or none succeeding, is an error.
func drive(ctx context.Context, c *clients, w workload, total int, maxTime time.Duration, rate float64) ([]time.Duration, int, error) {
	var next, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	deadline := start.Add(maxTime)
	per := make([][]time.Duration, len(c.sessions))
	var wg sync.WaitGroup
	for ci, cs := range c.sessions {
		wg.Go(func() {
			slot := pacer(start, ci, len(c.sessions), rate)
			for i := next.Add(1); i <= int64(total) && ctx.Err() == nil && time.Now().Before(deadline); i = next.Add(1) {
				due := slot()
				d, err := callOnce(ctx, cs, w, ci, i)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				if !due.IsZero() {
					// From the scheduled slot, not the actual send: a call
					// that had to wait for the previous one counts its wait
					// (no coordinated omission).
					d = time.Since(due)
				}
				per[ci] = append(per[ci], d)
			}
		})
	}
	wg.Wait()
	lat := slices.Concat(per...)
	nf := int(failed.Load())
	if ctx.Err() != nil {
		return nil, nf, ctx.Err()
	}
	if len(lat) == 0 || nf*100 > len(lat)+nf {
		err := errors.New("no call succeeded")
		if p := firstErr.Load(); p != nil {
			err = *p
		}
		return nil, nf, fmt.Errorf("%d of %d calls to %s failed; first: %w", nf, len(lat)+nf, w.tool, err)
	}
	return lat, nf, nil
}

// pacer returns a function that sleeps until client's next slot (every
// clients/rate seconds, offset by client/rate) and returns that slot's
// time, the moment the call was due. With rate 0 it returns the zero time
// at once (closed loop: latency is measured from the send).
func pacer(start time.Time, client, clients int, rate float64) func() time.Time {
	if rate <= 0 {
		return func() time.Time { return time.Time{} }
	}
	interval := time.Duration(float64(clients) / rate * float64(time.Second))
	next := start.Add(time.Duration(float64(client) / rate * float64(time.Second)))
	return func() time.Time {
		due := next
		time.Sleep(time.Until(due))
		next = next.Add(interval)
		return due
	}
}

// callOnce makes one call and checks its result.
func callOnce(ctx context.Context, cs *mcp.ClientSession, w workload, client int, seq int64) (time.Duration, error) {
	args, want := w.args(client, seq)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	res, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: w.tool, Arguments: args})
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if got := resultText(res); res.IsError || (want != "" && got != want) {
		return 0, fmt.Errorf("%s: isError=%v text=%q", w.tool, res.IsError, got)
	}
	return d, nil
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// pct is the nearest-rank percentile of sorted s.
func pct(s []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func us(d time.Duration) float64 { return round(float64(d.Nanoseconds())/1e3, 1) }

func round(v float64, places int) float64 {
	m := 1.0
	for range places {
		m *= 10
	}
	if v < 0 {
		return -float64(int64(-v*m+0.5)) / m
	}
	return float64(int64(v*m+0.5)) / m
}
