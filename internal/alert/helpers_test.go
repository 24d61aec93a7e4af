package alert_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// safety bounds waits on channels; reaching it is a failure, never the
// thing asserted.
const safety = 10 * time.Second

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// sleeper records the waits asked for and returns at once.
type sleeper struct {
	mu     sync.Mutex
	sleeps []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.sleeps = append(s.sleeps, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.sleeps...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

type env struct {
	clock *fakeClock
	sleep *sleeper
	logs  *syncBuffer
	log   *slog.Logger
	opts  alert.Options
}

func newEnv() *env {
	e := &env{clock: &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, sleep: &sleeper{}, logs: &syncBuffer{}}
	e.log = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.opts = alert.Options{Now: e.clock.Now, Sleep: e.sleep.Sleep}
	return e
}

// start creates a Dispatcher closed at cleanup (before the servers the
// test started earlier, as cleanups run last-in first-out).
func (e *env) start(t *testing.T, cfg config.AlertsConfig) *alert.Dispatcher {
	t.Helper()
	d, err := alert.NewDispatcher(cfg, e.log, e.opts)
	if err != nil {
		t.Fatalf("NewDispatcher: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), safety)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// closeNow drains d (within the safety bound) so its Stats are final.
func closeNow(t *testing.T, d *alert.Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func webhookCfg(url, format string) config.WebhookConfig {
	return config.WebhookConfig{Name: "ops", URL: url, Format: format, Timeout: 5 * time.Second, MaxAttempts: 5}
}

func cfgWith(hooks ...config.WebhookConfig) config.AlertsConfig {
	return config.AlertsConfig{Webhooks: hooks, QueueSize: 16}
}

type hookReq struct {
	path   string
	header http.Header
	body   []byte
}

// hookServer records every request (1-based n) on the returned channel,
// then lets respond answer it (nil: 200).
func hookServer(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan hookReq) {
	t.Helper()
	ch := make(chan hookReq, 1000)
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		ch <- hookReq{path: r.URL.Path, header: r.Header.Clone(), body: body}
		if respond != nil {
			respond(i, w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(safety):
		t.Fatal("timed out waiting")
		panic("unreachable")
	}
}

// drain returns what is buffered in ch without waiting.
func drain[T any](ch <-chan T) []T {
	var out []T
	for {
		select {
		case v := <-ch:
			out = append(out, v)
		default:
			return out
		}
	}
}

func writeSecret(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func stats(t *testing.T, d *alert.Dispatcher, name string) alert.ReceiverStats {
	t.Helper()
	for _, s := range d.Stats() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no receiver %q in %+v", name, d.Stats())
	return alert.ReceiverStats{}
}
