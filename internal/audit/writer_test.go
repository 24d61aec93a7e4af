package audit

// Writer tests live in package audit (not audit_test) so that they can wait
// for "every goroutine has enqueued" by looking at len(w.queue): that makes
// the batching assertions deterministic without sleeping.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Every test must leave no writer goroutine (or Emit waiter) behind.
	goleak.VerifyTestMain(m)
}

// safetyTimeout only turns a hang (a bug) into a readable failure; it is
// never used to assert how fast something is.
const safetyTimeout = 20 * time.Second

// generous is a CommitTimeout for tests whose subject is not the timeout:
// large enough never to fire on a loaded CI machine under -race.
const generous = time.Minute

var errBoom = errors.New("boom: disk on fire")

// fakeBackend records every AppendAudit batch. hook, if set, runs before the
// batch is recorded and may block or fail it; call counts from 1.
type fakeBackend struct {
	hook func(ctx context.Context, call int, events []*Event) error

	mu      sync.Mutex
	calls   int
	seq     int64
	head    string
	batches [][]string

	probeErr error // returned by ProbeWrite
	probes   int   // event IDs of every committed batch
}

var _ Backend = (*fakeBackend)(nil)

func (f *fakeBackend) ProbeWrite(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	return f.probeErr
}

func (f *fakeBackend) AppendAudit(ctx context.Context, chain *Chain, events []*Event) error {
	if chain == nil {
		return errors.New("fake: nil chain")
	}
	f.mu.Lock()
	f.calls++
	call := f.calls
	f.mu.Unlock()
	if f.hook != nil {
		if err := f.hook(ctx, call, events); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, len(events))
	for i, e := range events {
		if err := chain.Seal(e, f.seq, f.head); err != nil {
			return err
		}
		f.seq, f.head = e.Seq, e.Hash
		ids[i] = e.ID
	}
	f.batches = append(f.batches, ids)
	return nil
}

func (f *fakeBackend) committed() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

func (f *fakeBackend) committedIDs() map[string]bool {
	out := map[string]bool{}
	for _, b := range f.committed() {
		for _, id := range b {
			out[id] = true
		}
	}
	return out
}

func (f *fakeBackend) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// gate makes the first AppendAudit call block until release is closed,
// announcing on started that it has been entered.
type gate struct {
	started chan []*Event
	release chan struct{}
	err     error // returned by the gated call after release
}

func newGate() *gate {
	return &gate{started: make(chan []*Event, 1), release: make(chan struct{})}
}

func (g *gate) hook(_ context.Context, call int, events []*Event) error {
	if call != 1 {
		return nil
	}
	g.started <- events
	<-g.release
	return g.err
}

// testChain is a chain with a fixed key and a fresh signing key.
func testChain(t testing.TB) *Chain {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewChain([]byte(strings.Repeat("k", 32)), priv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestWriter(t *testing.T, cfg Config, b Backend, now func() time.Time) *Writer {
	t.Helper()
	if cfg.Chain == nil {
		cfg.Chain = testChain(t)
	}
	w, err := NewWriter(cfg, b, now, discardLogger())
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), safetyTimeout)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// waitQueued waits until n events sit in the writer's queue.
func waitQueued(t *testing.T, w *Writer, n int) {
	t.Helper()
	deadline := time.Now().Add(safetyTimeout)
	for len(w.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events were enqueued", len(w.queue), n)
		}
		runtime.Gosched()
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(safetyTimeout):
		t.Fatalf("hang: %s never happened", what)
		panic("unreachable")
	}
}

// emitAsync runs Emit in a goroutine and returns the channel of its result.
func emitAsync(ctx context.Context, w *Writer, e *Event) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- w.Emit(ctx, e) }()
	return ch
}

func TestNewWriterRejectsBadInput(t *testing.T) {
	ok := Config{CommitTimeout: time.Second, QueueSize: 1, MaxBatch: 1, Chain: testChain(t)}
	tests := []struct {
		name    string
		cfg     Config
		backend Backend
		log     *slog.Logger
	}{
		{"nil backend", ok, nil, discardLogger()},
		{"nil logger", ok, &fakeBackend{}, nil},
		{"zero config", Config{}, &fakeBackend{}, discardLogger()},
		{"nil chain", Config{CommitTimeout: time.Second, QueueSize: 1, MaxBatch: 1}, &fakeBackend{}, discardLogger()},
		{"zero commit timeout", Config{QueueSize: 1, MaxBatch: 1}, &fakeBackend{}, discardLogger()},
		{"negative commit timeout", Config{CommitTimeout: -time.Second, QueueSize: 1, MaxBatch: 1}, &fakeBackend{}, discardLogger()},
		{"zero queue", Config{CommitTimeout: time.Second, MaxBatch: 1}, &fakeBackend{}, discardLogger()},
		{"negative queue", Config{CommitTimeout: time.Second, QueueSize: -1, MaxBatch: 1}, &fakeBackend{}, discardLogger()},
		{"zero batch", Config{CommitTimeout: time.Second, QueueSize: 1}, &fakeBackend{}, discardLogger()},
		{"negative batch", Config{CommitTimeout: time.Second, QueueSize: 1, MaxBatch: -5}, &fakeBackend{}, discardLogger()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWriter(tt.cfg, tt.backend, nil, tt.log)
			if err == nil {
				w.Close(context.Background())
				t.Fatal("NewWriter accepted invalid input")
			}
			if w != nil {
				t.Errorf("NewWriter returned a writer with error %v", err)
			}
		})
	}
}

// TestWriterGroupCommit pins group commit: while the backend is busy with
// the first transaction, every other event queues up, and the writer then
// commits them in as few transactions as MaxBatch allows.
func TestWriterGroupCommit(t *testing.T) {
	const n = 200
	tests := []struct {
		maxBatch int
		want     []int // batch sizes
	}{
		{maxBatch: 64, want: []int{1, 64, 64, 64, 7}},
		{maxBatch: 512, want: []int{1, 199}},
		{maxBatch: 1, want: slices.Repeat([]int{1}, n)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("max_batch=%d", tt.maxBatch), func(t *testing.T) {
			g := newGate()
			fb := &fakeBackend{hook: g.hook}
			clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
			w := newTestWriter(t, Config{CommitTimeout: generous, QueueSize: 256, MaxBatch: tt.maxBatch}, fb,
				func() time.Time { return clock })

			events := make([]*Event, n)
			errs := make([]<-chan error, n)
			for i := range events {
				events[i] = &Event{Type: ToolCallStart, Principal: fmt.Sprintf("p%d", i)}
			}
			errs[0] = emitAsync(t.Context(), w, events[0])
			first := recv(t, g.started, "first AppendAudit")
			if len(first) != 1 {
				t.Fatalf("first batch has %d events, want 1", len(first))
			}
			for i := 1; i < n; i++ {
				errs[i] = emitAsync(t.Context(), w, events[i])
			}
			waitQueued(t, w, n-1)
			close(g.release)

			for i, ch := range errs {
				if err := recv(t, ch, "Emit return"); err != nil {
					t.Errorf("Emit(event %d) = %v, want nil", i, err)
				}
			}
			var sizes []int
			for _, b := range fb.committed() {
				sizes = append(sizes, len(b))
			}
			if diff := cmp.Diff(tt.want, sizes); diff != "" {
				t.Errorf("batch sizes (-want +got):\n%s", diff)
			}
			if calls := fb.callCount(); calls >= n && tt.maxBatch > 1 {
				t.Errorf("backend saw %d transactions for %d events: no batching", calls, n)
			}
			ids := map[string]bool{}
			seqs := map[int64]bool{}
			for i, e := range events {
				if !strings.HasPrefix(e.ID, "evt_") || len(e.ID) != len("evt_")+26 {
					t.Errorf("event %d: ID %q, want evt_<26 chars>", i, e.ID)
				}
				if ids[e.ID] {
					t.Errorf("event %d: duplicate ID %q", i, e.ID)
				}
				ids[e.ID] = true
				if !e.Time.Equal(clock) || e.Time.Location() != time.UTC {
					t.Errorf("event %d: Time = %v, want %v in UTC", i, e.Time, clock.UTC())
				}
				if e.Seq <= 0 || seqs[e.Seq] {
					t.Errorf("event %d: Seq = %d, want a unique positive sequence", i, e.Seq)
				}
				seqs[e.Seq] = true
			}
			if got := fb.committedIDs(); !cmp.Equal(got, ids) {
				t.Errorf("backend committed %d distinct events, want the %d emitted", len(got), len(ids))
			}
		})
	}
}

// TestWriterKeepsCallerIDAndTime: Emit fills ID and Time only when empty.
func TestWriterKeepsCallerIDAndTime(t *testing.T) {
	fb := &fakeBackend{}
	w := newTestWriter(t, Config{CommitTimeout: generous, QueueSize: 4, MaxBatch: 4, Chain: testChain(t)}, fb,
		func() time.Time { return time.Unix(99, 0) })
	at := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	e := &Event{ID: "evt_mine", Time: at, Type: ServerStart}
	if err := w.Emit(t.Context(), e); err != nil {
		t.Fatalf("Emit: %v", err)
	}
	if e.ID != "evt_mine" || !e.Time.Equal(at) || e.Seq != 1 {
		t.Errorf("event = {ID:%q Time:%v Seq:%d}, want {evt_mine %v 1}", e.ID, e.Time, e.Seq, at)
	}
}

// TestWriterNilClockUsesTimeNow: a nil clock defaults to time.Now.
func TestWriterNilClockUsesTimeNow(t *testing.T) {
	w := newTestWriter(t, Config{CommitTimeout: generous, QueueSize: 1, MaxBatch: 1}, &fakeBackend{}, nil)
	before := time.Now()
	e := &Event{Type: ServerStart}
	if err := w.Emit(t.Context(), e); err != nil {
		t.Fatalf("Emit: %v", err)
	}
	if e.Time.Before(before.Add(-time.Second)) || e.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want about now in UTC", e.Time)
	}
}

// TestWriterBackendErrorFailsWholeBatch: a failed transaction is reported to
// every event in it, as ErrUnavailable wrapping the cause, and flips
// Healthy until the next successful commit.
func TestWriterBackendErrorFailsWholeBatch(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	g := newGate()
	g.err = errBoom
	fb := &fakeBackend{hook: func(ctx context.Context, call int, events []*Event) error {
		if err := g.hook(ctx, call, events); err != nil {
			return err
		}
		if failing.Load() {
			return errBoom
		}
		return nil
	}}
	w := newTestWriter(t, Config{CommitTimeout: generous, QueueSize: 16, MaxBatch: 16}, fb, nil)
	if !w.Healthy() {
		t.Fatal("new writer not healthy")
	}

	const n = 8
	errs := []<-chan error{emitAsync(t.Context(), w, &Event{Type: ToolCallStart})}
	recv(t, g.started, "first AppendAudit")
	for i := 1; i < n; i++ {
		errs = append(errs, emitAsync(t.Context(), w, &Event{Type: ToolCallStart}))
	}
	waitQueued(t, w, n-1)
	close(g.release)
	for i, ch := range errs {
		err := recv(t, ch, "Emit return")
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errBoom) {
			t.Errorf("Emit %d = %v, want ErrUnavailable wrapping the backend error", i, err)
		}
	}
	if calls := fb.callCount(); calls != 2 {
		t.Errorf("backend calls = %d, want 2 (one failed batch of 1, one of %d)", calls, n-1)
	}
	if len(fb.committed()) != 0 {
		t.Errorf("failed batches recorded as committed: %v", fb.committed())
	}
	if w.Healthy() {
		t.Error("Healthy() = true after a failed commit")
	}

	failing.Store(false)
	if err := w.Emit(t.Context(), &Event{Type: ToolCallEnd}); err != nil {
		t.Fatalf("Emit after recovery: %v", err)
	}
	if !w.Healthy() {
		t.Error("Healthy() = false after a successful commit")
	}
}

// TestWriterSlowBackend: a commit slower than CommitTimeout makes Emit fail
// closed with ErrUnavailable, whether or not the backend honours its ctx.
// The 50ms bound is the behaviour under test, not a performance claim.
func TestWriterSlowBackend(t *testing.T) {
	tests := []struct {
		name       string
		honoursCtx bool
	}{
		{"backend ignores ctx", false},
		{"backend honours ctx", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			var sawDeadline atomic.Bool
			fb := &fakeBackend{hook: func(ctx context.Context, call int, _ []*Event) error {
				if _, ok := ctx.Deadline(); ok {
					sawDeadline.Store(true)
				}
				if call != 1 {
					return nil
				}
				if tt.honoursCtx {
					<-ctx.Done()
					return ctx.Err()
				}
				<-release
				return nil
			}}
			w := newTestWriter(t, Config{CommitTimeout: 50 * time.Millisecond, QueueSize: 4, MaxBatch: 4}, fb, nil)
			err := w.Emit(t.Context(), &Event{Type: ToolCallStart})
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Emit = %v, want ErrUnavailable", err)
			}
			if w.Healthy() {
				t.Error("Healthy() = true after a commit timed out")
			}
			close(release)
			if !sawDeadline.Load() {
				t.Error("backend ctx had no deadline: a stuck commit would never be abandoned")
			}
			// The writer recovers once the backend does.
			if err := w.Emit(t.Context(), &Event{Type: ToolCallEnd}); err != nil {
				t.Fatalf("Emit after the backend recovered: %v", err)
			}
			if !w.Healthy() {
				t.Error("Healthy() = false after a successful commit")
			}
		})
	}
}

// TestWriterQueueFull: with the backend stuck and the queue full, Emit waits
// (backpressure) and then fails with ErrUnavailable; nothing is dropped
// silently.
func TestWriterQueueFull(t *testing.T) {
	g := newGate()
	fb := &fakeBackend{hook: g.hook}
	w := newTestWriter(t, Config{CommitTimeout: 50 * time.Millisecond, QueueSize: 1, MaxBatch: 1}, fb, nil)

	a, b, c := &Event{Type: ToolCallStart}, &Event{Type: ToolCallStart}, &Event{Type: ToolCallStart}
	errA := emitAsync(t.Context(), w, a)
	recv(t, g.started, "first AppendAudit")
	errB := emitAsync(t.Context(), w, b)
	waitQueued(t, w, 1)
	errC := w.Emit(t.Context(), c) // queue full: must wait, then fail

	if !errors.Is(errC, ErrUnavailable) || !strings.Contains(errC.Error(), "queue full") {
		t.Errorf("Emit with a full queue = %v, want ErrUnavailable (queue full)", errC)
	}
	for name, ch := range map[string]<-chan error{"a (in the stuck commit)": errA, "b (queued)": errB} {
		if err := recv(t, ch, "Emit return"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Emit %s = %v, want ErrUnavailable", name, err)
		}
	}
	if w.Healthy() {
		t.Error("Healthy() = true with a full queue")
	}
	close(g.release)
	ctx, cancel := context.WithTimeout(context.Background(), safetyTimeout)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The refused event never reached the backend: its caller was told.
	if fb.committedIDs()[c.ID] {
		t.Error("an event refused with ErrUnavailable (queue full) was committed anyway")
	}
}

// TestWriterCancelledContextDoesNotDropRecord: a client that hangs up must
// not be able to cancel its own audit record (STYLE §6).
func TestWriterCancelledContextDoesNotDropRecord(t *testing.T) {
	t.Run("cancelled before Emit", func(t *testing.T) {
		fb := &fakeBackend{}
		w := newTestWriter(t, Config{CommitTimeout: generous, QueueSize: 4, MaxBatch: 4, Chain: testChain(t)}, fb, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		e := &Event{Type: ToolCallStart}
		if err := w.Emit(ctx, e); err != nil {
			t.Fatalf("Emit with a cancelled ctx = %v, want nil", err)
		}
		if !fb.committedIDs()[e.ID] || e.Seq == 0 {
			t.Error("record with a cancelled ctx was not committed")
		}
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		g := newGate()
		fb := &fakeBackend{hook: g.hook}
		w := newTestWriter(t, Config{CommitTimeout: generous, QueueSize: 4, MaxBatch: 4, Chain: testChain(t)}, fb, nil)
		ctx, cancel := context.WithCancel(t.Context())
		e := &Event{Type: ToolCallStart}
		errc := emitAsync(ctx, w, e)
		recv(t, g.started, "first AppendAudit")
		cancel()
		close(g.release)
		if err := recv(t, errc, "Emit return"); err != nil {
			t.Fatalf("Emit whose ctx was cancelled mid-commit = %v, want nil", err)
		}
		if !fb.committedIDs()[e.ID] {
			t.Error("record whose ctx was cancelled was not committed")
		}
	})
}

// TestWriterCloseDrains: Close commits everything already queued, then the
// writer refuses new events and its goroutine is gone.
func TestWriterCloseDrains(t *testing.T) {
	g := newGate()
	fb := &fakeBackend{hook: g.hook}
	w, err := NewWriter(Config{CommitTimeout: generous, QueueSize: 64, MaxBatch: 4, Chain: testChain(t)}, fb, nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	events := make([]*Event, n)
	var errs []<-chan error
	for i := range events {
		events[i] = &Event{Type: ToolCallStart}
		errs = append(errs, emitAsync(t.Context(), w, events[i]))
		if i == 0 {
			recv(t, g.started, "first AppendAudit")
		}
	}
	waitQueued(t, w, n-1)

	closed := make(chan error, 1)
	go func() { closed <- w.Close(context.Background()) }()
	// Close must not finish while queued events are uncommitted.
	for !w.closing.Load() {
		runtime.Gosched()
	}
	if err := w.Emit(t.Context(), &Event{Type: ToolCallStart}); !errors.Is(err, ErrClosed) {
		t.Errorf("Emit while closing = %v, want ErrClosed", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v before the queue was drained", err)
	default:
	}
	close(g.release)
	if err := recv(t, closed, "Close return"); err != nil {
		t.Fatalf("Close = %v", err)
	}
	for i, ch := range errs {
		if err := recv(t, ch, "Emit return"); err != nil {
			t.Errorf("queued Emit %d = %v, want nil (drained)", i, err)
		}
	}
	got := fb.committedIDs()
	for i, e := range events {
		if !got[e.ID] {
			t.Errorf("queued event %d not committed by Close", i)
		}
	}
	for _, b := range fb.committed() {
		if len(b) > 4 {
			t.Errorf("drain committed a batch of %d > MaxBatch 4", len(b))
		}
	}
	if err := w.Emit(t.Context(), &Event{Type: ToolCallStart}); !errors.Is(err, ErrClosed) {
		t.Errorf("Emit after Close = %v, want ErrClosed", err)
	}
	if w.Healthy() {
		t.Error("Healthy() = true after Close")
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	goleak.VerifyNone(t)
}

// TestWriterCloseHonoursContext: Close gives up when ctx ends while the
// backend is stuck — also on a second call.
func TestWriterCloseHonoursContext(t *testing.T) {
	g := newGate()
	fb := &fakeBackend{hook: g.hook}
	w, err := NewWriter(Config{CommitTimeout: generous, QueueSize: 4, MaxBatch: 4, Chain: testChain(t)}, fb, nil, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	errc := emitAsync(t.Context(), w, &Event{Type: ToolCallStart})
	recv(t, g.started, "first AppendAudit")

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 2 {
		done := make(chan error, 1)
		go func() { done <- w.Close(cancelled) }()
		if err := recv(t, done, fmt.Sprintf("Close #%d with a cancelled ctx to return", i+1)); !errors.Is(err, context.Canceled) {
			t.Errorf("Close #%d = %v, want context.Canceled", i+1, err)
		}
	}
	close(g.release)
	if err := recv(t, errc, "Emit return"); err != nil {
		t.Errorf("Emit = %v, want nil", err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("final Close = %v", err)
	}
}

// TestWriterAckMeansDurable races Emit against Close: whatever interleaving
// happens, an Emit that returned nil must have its event committed, and
// every other Emit must have returned an error.
func TestWriterAckMeansDurable(t *testing.T) {
	for round := range 20 {
		fb := &fakeBackend{}
		w, err := NewWriter(Config{CommitTimeout: generous, QueueSize: 8, MaxBatch: 3, Chain: testChain(t)}, fb, nil, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		const n = 50
		events := make([]*Event, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range events {
			events[i] = &Event{Type: ToolCallStart}
			wg.Go(func() { errs[i] = w.Emit(context.Background(), events[i]) })
		}
		if err := w.Close(context.Background()); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
		wg.Wait()
		got := fb.committedIDs()
		for i, e := range events {
			switch {
			case errs[i] == nil && !got[e.ID]:
				t.Fatalf("round %d: Emit %d acknowledged but not committed", round, i)
			case errs[i] != nil && !errors.Is(errs[i], ErrClosed):
				t.Fatalf("round %d: Emit %d = %v, want nil or ErrClosed", round, i, errs[i])
			}
		}
	}
}

// TestWriterCommitsEachEventOnce: under concurrency the backend sees each
// event exactly once, in batches of at most MaxBatch.
func TestWriterCommitsEachEventOnce(t *testing.T) {
	fb := &fakeBackend{}
	w := newTestWriter(t, Config{CommitTimeout: generous, QueueSize: 32, MaxBatch: 8}, fb, nil)
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if err := w.Emit(context.Background(), &Event{Type: ToolCallEnd}); err != nil {
				t.Errorf("Emit: %v", err)
			}
		})
	}
	wg.Wait()
	total := 0
	for _, b := range fb.committed() {
		total += len(b)
		if len(b) > 8 {
			t.Errorf("batch of %d > MaxBatch 8", len(b))
		}
	}
	if total != 100 || len(fb.committedIDs()) != 100 {
		t.Errorf("committed %d events (%d distinct), want 100", total, len(fb.committedIDs()))
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if !strings.HasPrefix(id, "evt_") || len(id) != 30 {
			t.Fatalf("NewID() = %q, want evt_<26 chars>", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

// TestWriterLinger: a batch smaller than the previous one waits (up to
// Linger) until it is as large again, so emitters released by one commit
// join the next instead of splitting into alternating half batches; a
// batch at least as large as the previous one commits at once.
func TestWriterLinger(t *testing.T) {
	g := newGate()
	fb := &fakeBackend{hook: g.hook}
	w := newTestWriter(t, Config{CommitTimeout: generous, QueueSize: 16, MaxBatch: 16, Linger: generous / 2}, fb, nil)

	first := emitAsync(t.Context(), w, &Event{ID: "e1", Type: ToolCallStart})
	recv(t, g.started, "first AppendAudit")
	var rest []<-chan error
	for _, id := range []string{"e2", "e3", "e4"} {
		rest = append(rest, emitAsync(t.Context(), w, &Event{ID: id, Type: ToolCallStart}))
	}
	waitQueued(t, w, 3)
	close(g.release)
	for _, ch := range append(rest, first) {
		if err := recv(t, ch, "Emit"); err != nil {
			t.Fatal(err)
		}
	}
	// Previous batch: 3. One event alone waits for two more.
	lone := emitAsync(t.Context(), w, &Event{ID: "e5", Type: ToolCallStart})
	// Give the writer time to take e5 alone (ordering, not an assertion:
	// if it has not yet, e5-e7 form one batch anyway and the test still
	// holds; without Linger, e5 would commit alone).
	time.Sleep(20 * time.Millisecond)
	waitQueued(t, w, 0)
	late := []<-chan error{
		emitAsync(t.Context(), w, &Event{ID: "e6", Type: ToolCallStart}),
		emitAsync(t.Context(), w, &Event{ID: "e7", Type: ToolCallStart}),
	}
	for _, ch := range append(late, lone) {
		if err := recv(t, ch, "Emit"); err != nil {
			t.Fatal(err)
		}
	}
	want := [][]string{{"e1"}, {"e2", "e3", "e4"}, {"e5", "e6", "e7"}}
	got := fb.committed()
	for i := range got {
		slices.Sort(got[i])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

// TestSortableID: ids sort by their time (to the millisecond), keep the
// evt_ + 26 base32 form, and differ within one millisecond.
func TestSortableID(t *testing.T) {
	base := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	prev := SortableID(base)
	seen := map[string]bool{prev: true}
	for i := 1; i < 2000; i++ {
		at := base.Add(time.Duration(i) * 7 * time.Millisecond)
		id := SortableID(at)
		if id <= prev {
			t.Fatalf("id %q for %v does not sort after %q", id, at, prev)
		}
		same := SortableID(at)
		if same == id || seen[same] {
			t.Fatalf("two ids in one millisecond collide: %q", id)
		}
		if len(id) != 26 || strings.Trim(id, sortable32) != "" {
			t.Fatalf("id %q is not 26 characters of %s", id, sortable32)
		}
		seen[id], seen[same] = true, true
		prev = same
		if same < id { // either order within the millisecond; keep the larger
			prev = id
		}
	}
	if id := NewID(); !strings.HasPrefix(id, "evt_") || len(id) != 30 {
		t.Errorf("NewID() = %q", id)
	}
}

// TestWriterStats: QueueDepth counts events waiting for the writer, and
// OnCommit hears of every successful commit (records and backend time),
// never of a failed one.
func TestWriterStats(t *testing.T) {
	type commit struct {
		records int
		d       time.Duration
	}
	commits := make(chan commit, 8)
	g := newGate()
	g.err = errBoom // the first batch fails
	fb := &fakeBackend{hook: g.hook}
	w := newTestWriter(t, Config{CommitTimeout: generous, QueueSize: 16, MaxBatch: 16,
		OnCommit: func(records int, d time.Duration) { commits <- commit{records, d} }}, fb, nil)

	if got := w.QueueDepth(); got != 0 {
		t.Fatalf("QueueDepth() of an idle writer = %d, want 0", got)
	}
	first := emitAsync(t.Context(), w, &Event{Type: ToolCallStart})
	recv(t, g.started, "first AppendAudit")
	const n = 3
	var errs []<-chan error
	for range n {
		errs = append(errs, emitAsync(t.Context(), w, &Event{Type: ToolCallStart}))
	}
	waitQueued(t, w, n)
	if got := w.QueueDepth(); got != n {
		t.Errorf("QueueDepth() with %d events waiting = %d", n, got)
	}
	close(g.release)
	if err := recv(t, first, "first Emit"); !errors.Is(err, errBoom) {
		t.Fatalf("first Emit = %v, want the backend error", err)
	}
	for _, ch := range errs {
		if err := recv(t, ch, "Emit return"); err != nil {
			t.Fatalf("Emit = %v", err)
		}
	}
	c := recv(t, commits, "OnCommit")
	if c.records != n || c.d < 0 {
		t.Errorf("OnCommit(%d, %v), want (%d, >= 0)", c.records, c.d, n)
	}
	select {
	case extra := <-commits:
		t.Errorf("OnCommit(%d, %v) for a failed batch", extra.records, extra.d)
	default:
	}
	if got := w.QueueDepth(); got != 0 {
		t.Errorf("QueueDepth() after the commits = %d, want 0", got)
	}
}
