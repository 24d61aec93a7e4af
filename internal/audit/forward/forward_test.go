package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource is an in-memory Source, safe for concurrent use. readErrs
// and saveErrs fail that many calls before succeeding.
type fakeSource struct {
	mu       sync.Mutex
	events   []audit.Event
	cursors  map[string]int64
	queries  int
	readErrs int
	saveErrs int
	saves    []int64
}

func newSource() *fakeSource { return &fakeSource{cursors: map[string]int64{}} }

var baseTime = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// add appends n records, alternating tool.call.start and policy.deny.
func (s *fakeSource) add(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		seq := int64(len(s.events) + 1)
		typ := audit.ToolCallStart
		if seq%2 == 0 {
			typ = audit.PolicyDeny
		}
		s.events = append(s.events, audit.Event{
			Seq: seq, ID: fmt.Sprintf("ev-%d", seq), Time: baseTime.Add(time.Duration(seq) * time.Millisecond),
			Type: typ, Principal: "alice", Roles: []string{"dev"}, Tool: "echo",
			Args: json.RawMessage(`{"msg":"hi"}`), Status: audit.StatusStarted, Hash: fmt.Sprintf("h%d", seq),
		})
	}
}

func (s *fakeSource) all() []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

func (s *fakeSource) QueryAudit(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	if q.Limit != 1 && s.readErrs > 0 { // head reads (Limit 1) never fail
		s.readErrs--
		return nil, errors.New("store: disk I/O error")
	}
	var out []audit.Event
	for _, e := range s.events {
		if e.Seq > q.AfterSeq {
			out = append(out, e)
		}
	}
	if !q.Ascending {
		slices.Reverse(out)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = audit.DefaultQueryLimit
	}
	return out[:min(len(out), limit, audit.MaxQueryLimit)], nil
}

func (s *fakeSource) AuditCursor(ctx context.Context, name string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursors[name], ctx.Err()
}

func (s *fakeSource) SetAuditCursor(ctx context.Context, name string, seq int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.saveErrs > 0 {
		s.saveErrs--
		return errors.New("store: database is locked")
	}
	s.cursors[name] = seq
	s.saves = append(s.saves, seq)
	return nil
}

func (s *fakeSource) cursor(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursors[name]
}

func (s *fakeSource) queryCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var discard = slog.New(slog.DiscardHandler)

// noSleep skips backoff waits.
func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// fastOpts polls often and does not wait between retries.
var fastOpts = Options{PollInterval: 5 * time.Millisecond, Sleep: noSleep, Hostname: "gw1"}

func sinkConfig(name string) config.AuditSinkConfig {
	return config.AuditSinkConfig{Name: name, BatchSize: 500, Timeout: 5 * time.Second, MaxBackoff: time.Minute}
}

func httpSink(name, url, format string) config.AuditSinkConfig {
	c := sinkConfig(name)
	c.Type, c.URL, c.Format = "http", url, format
	return c
}

func syslogSink(name, network, addr string) config.AuditSinkConfig {
	c := sinkConfig(name)
	c.Type, c.Network, c.Address = "syslog", network, addr
	return c
}

// run starts f.Run and registers a cleanup that stops it; the returned
// function stops it now (idempotent) and fails if it does not return.
func run(t *testing.T, f *Forwarder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func mustNew(t *testing.T, cfg config.AuditSinkConfig, src Source, log *slog.Logger, opts Options) *Forwarder {
	t.Helper()
	f, err := New(cfg, src, log, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// waitFor polls cond until it holds, failing after a safety timeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func seqs(events []audit.Event) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.Seq
	}
	return out
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		max  time.Duration
		want []time.Duration // upper bounds per attempt; lower bound is half
	}{
		{time.Minute, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}},
		{3 * time.Second, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}},
		{100 * time.Millisecond, []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}},
	} {
		t.Run(tc.max.String(), func(t *testing.T) {
			for i, hi := range tc.want {
				for range 50 {
					if d := backoff(i+1, tc.max); d < hi/2 || d > hi {
						t.Fatalf("backoff(%d, %s) = %s, want in [%s, %s]", i+1, tc.max, d, hi/2, hi)
					}
				}
			}
			if d := backoff(1000, tc.max); d > tc.max {
				t.Errorf("backoff(1000) = %s beyond cap %s", d, tc.max)
			}
		})
	}
}

// TestRetryWaitsWithBackoff checks the forwarder sleeps between failed
// attempts with growing waits, and logs each failure at warn.
func TestRetryWaitsWithBackoff(t *testing.T) {
	src := newSource()
	src.add(2)
	src.readErrs = 4
	var mu sync.Mutex
	var waits []time.Duration
	opts := fastOpts
	opts.Sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return ctx.Err()
	}
	var logs syncBuffer
	c := newCollector(t, src, "s")
	f := mustNew(t, httpSink("s", c.srv.URL, "jsonl"), src, slog.New(slog.NewTextHandler(&logs, nil)), opts)
	run(t, f)
	waitFor(t, "delivery", func() bool { return f.Stats().Cursor == 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 4 {
		t.Fatalf("waits = %v, want 4", waits)
	}
	for i, d := range waits {
		hi := InitialBackoff << i
		if d < hi/2 || d > hi {
			t.Errorf("wait %d = %s, want in [%s, %s]", i+1, d, hi/2, hi)
		}
	}
	if got := strings.Count(logs.String(), "level=WARN"); got != 4 {
		t.Errorf("%d warn lines, want 4:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "sink=s") || !strings.Contains(logs.String(), "read records: store: disk I/O error") {
		t.Errorf("warn lines lack sink or error:\n%s", logs.String())
	}
	if st := f.Stats(); st.Failures != 4 || st.Sent != 2 {
		t.Errorf("stats = %+v, want 4 failures, 2 sent", st)
	}
}

// TestCursorSaveFailureDoesNotResend: a batch that was delivered is not
// sent again while the cursor save is retried.
func TestCursorSaveFailureDoesNotResend(t *testing.T) {
	src := newSource()
	src.add(5)
	src.saveErrs = 3
	c := newCollector(t, src, "s")
	cfg := httpSink("s", c.srv.URL, "jsonl")
	cfg.BatchSize = 2
	run(t, mustNew(t, cfg, src, discard, fastOpts))
	waitFor(t, "delivery", func() bool { return src.cursor("s") == 5 })
	if diff := cmp.Diff([]int64{1, 2, 3, 4, 5}, seqs(c.delivered())); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{2, 4, 5}, src.saves); diff != "" {
		t.Errorf("saved cursors (-want +got):\n%s", diff)
	}
}

// TestPrunedGapLogged: records removed (retention) before a sink got
// them are reported, and forwarding goes on after the gap.
func TestPrunedGapLogged(t *testing.T) {
	src := newSource()
	src.add(6)
	src.events = slices.Delete(src.events, 1, 4) // seq 2-4 pruned
	src.cursors["s"] = 1
	c := newCollector(t, src, "s")
	var logs syncBuffer
	f := mustNew(t, httpSink("s", c.srv.URL, "jsonl"), src, slog.New(slog.NewTextHandler(&logs, nil)), fastOpts)
	run(t, f)
	waitFor(t, "delivery", func() bool { return f.Stats().Cursor == 6 })
	if diff := cmp.Diff([]int64{5, 6}, seqs(c.delivered())); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"audit records were pruned before this sink received them\" sink=s first_seq=2 last_seq=4") {
		t.Errorf("gap not logged:\n%s", logs.String())
	}
}

func TestNotifyWakesEarly(t *testing.T) {
	src := newSource()
	c := newCollector(t, src, "s")
	opts := fastOpts
	opts.PollInterval = time.Hour
	f := mustNew(t, httpSink("s", c.srv.URL, "jsonl"), src, discard, opts)
	run(t, f)
	waitFor(t, "first poll", func() bool { return src.queryCount() >= 1 })
	src.add(3)
	f.Notify()
	f.Notify() // never blocks
	waitFor(t, "delivery after Notify", func() bool { return src.cursor("s") == 3 })
}

// TestCancelStopsBackoff: a forwarder waiting out a long backoff returns
// as soon as its context ends, with the undelivered records still counted
// as lag.
func TestCancelStopsBackoff(t *testing.T) {
	src := newSource()
	src.add(4)
	c := newCollector(t, src, "s")
	c.failAll("500")
	entered := make(chan time.Duration, 1)
	opts := fastOpts
	opts.Sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case entered <- d:
		default:
		}
		return sleep(ctx, time.Hour)
	}
	f := mustNew(t, httpSink("s", c.srv.URL, "jsonl"), src, discard, opts)
	stop := run(t, f)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("forwarder never backed off")
	}
	if st := f.Stats(); st.Lag != 4 || st.Cursor != 0 || st.Failures != 1 {
		t.Errorf("stats in backoff = %+v, want lag 4, cursor 0, 1 failure", st)
	}
	start := time.Now()
	stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %s to return after cancel", d)
	}
	if got := src.cursor("s"); got != 0 {
		t.Errorf("cursor = %d after failures only, want 0", got)
	}
}

func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	open := writeFile(t, dir, "open", "sekrit-1", 0o644)
	empty := writeFile(t, dir, "empty", "\n", 0o600)
	spaced := writeFile(t, dir, "spaced", "two sekrit-2", 0o600)
	mod := func(c config.AuditSinkConfig, f func(*config.AuditSinkConfig)) config.AuditSinkConfig {
		f(&c)
		return c
	}
	ok := httpSink("s", "https://siem.example/in", "jsonl")
	for _, tc := range []struct {
		name string
		cfg  config.AuditSinkConfig
		src  Source
		log  *slog.Logger
		opts Options
	}{
		{"unknown type", mod(ok, func(c *config.AuditSinkConfig) { c.Type = "kafka" }), newSource(), discard, Options{}},
		{"bad network", syslogSink("s", "sctp", "127.0.0.1:514"), newSource(), discard, Options{}},
		{"udp without port", syslogSink("s", "udp", "127.0.0.1"), newSource(), discard, Options{}},
		{"unix without path", syslogSink("s", "unix", ""), newSource(), discard, Options{}},
		{"bad format", mod(ok, func(c *config.AuditSinkConfig) { c.Format = "splunk" }), newSource(), discard, Options{}},
		{"ftp url", mod(ok, func(c *config.AuditSinkConfig) { c.URL = "ftp://siem/x" }), newSource(), discard, Options{}},
		{"url with credentials", mod(ok, func(c *config.AuditSinkConfig) { c.URL = "https://u:p@siem/x" }), newSource(), discard, Options{}},
		{"missing token file", mod(ok, func(c *config.AuditSinkConfig) { c.TokenFile = dir + "/none" }), newSource(), discard, Options{}},
		{"token file readable by others", mod(ok, func(c *config.AuditSinkConfig) { c.TokenFile = open }), newSource(), discard, Options{}},
		{"empty token file", mod(ok, func(c *config.AuditSinkConfig) { c.TokenFile = empty }), newSource(), discard, Options{}},
		{"token with space", mod(ok, func(c *config.AuditSinkConfig) { c.TokenFile = spaced }), newSource(), discard, Options{}},
		{"zero batch", mod(ok, func(c *config.AuditSinkConfig) { c.BatchSize = 0 }), newSource(), discard, Options{}},
		{"zero timeout", mod(ok, func(c *config.AuditSinkConfig) { c.Timeout = 0 }), newSource(), discard, Options{}},
		{"no name", mod(ok, func(c *config.AuditSinkConfig) { c.Name = "" }), newSource(), discard, Options{}},
		{"nil source", ok, nil, discard, Options{}},
		{"nil logger", ok, newSource(), nil, Options{}},
		{"negative poll", ok, newSource(), discard, Options{PollInterval: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, tc.src, tc.log, tc.opts)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
			for _, secret := range []string{"sekrit", "u:p@"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q reveals %q", err, secret)
				}
			}
		})
	}
}

func TestStart(t *testing.T) {
	src := newSource()
	c := newCollector(t, src, "web")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	opts := fastOpts
	opts.PollInterval = time.Hour
	set, err := Start(context.Background(), []config.AuditSinkConfig{
		httpSink("web", c.srv.URL, "jsonl"),
		syslogSink("sys", "udp", pc.LocalAddr().String()),
	}, src, discard, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	waitFor(t, "first polls", func() bool { return src.queryCount() >= 2 })
	src.add(3)
	set.Notify()
	got := readDatagrams(t, pc, 3)
	waitFor(t, "both cursors", func() bool {
		st := set.Stats()
		return st[0].Cursor == 3 && st[1].Cursor == 3
	})
	if len(got) != 3 || len(c.delivered()) != 3 {
		t.Errorf("syslog got %d, http got %d records, want 3 each", len(got), len(c.delivered()))
	}
	var names []string
	for _, st := range set.Stats() {
		names = append(names, st.Sink)
		if st.Sent != 3 || st.Lag != 0 {
			t.Errorf("stats %+v, want 3 sent, lag 0", st)
		}
	}
	if diff := cmp.Diff([]string{"web", "sys"}, names); diff != "" {
		t.Errorf("stats order (-want +got):\n%s", diff)
	}
	set.Close()
	set.Close() // idempotent
}

func TestStartRefusesBrokenSink(t *testing.T) {
	set, err := Start(context.Background(), []config.AuditSinkConfig{
		httpSink("ok", "http://127.0.0.1:1/x", "jsonl"),
		syslogSink("bad", "udp", "no-port"),
	}, newSource(), discard, Options{})
	if !errors.Is(err, ErrConfig) || set != nil {
		t.Fatalf("Start = %v, %v; want nil, ErrConfig", set, err)
	}
	set, err = Start(context.Background(), nil, newSource(), discard, Options{})
	if err != nil {
		t.Fatal(err)
	}
	set.Notify()
	if st := set.Stats(); len(st) != 0 {
		t.Errorf("Stats = %v, want none", st)
	}
	set.Close()
}

func TestEncodeEventInvalidArgs(t *testing.T) {
	e := audit.Event{Seq: 1, ID: "a", Type: audit.ToolCallStart, Args: json.RawMessage(`{"broken`)}
	b := encodeEvent(e)
	var back audit.Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("not JSON: %s: %v", b, err)
	}
	if string(back.Args) != `"{\"broken"` || back.Seq != 1 {
		t.Errorf("decoded %+v, want args as a JSON string", back)
	}
}

// httptestServer starts an httptest server that is closed at cleanup.
func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
