package alert

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/config"
)

// ErrConfig means the alert configuration is unusable: a missing logger, a
// bad webhook URL or format, an unreadable secret or password file.
var ErrConfig = errors.New("alert: invalid configuration")

// errPermanent marks a delivery failure that retrying cannot fix (a 4xx
// response other than 429, an SMTP 5xx reply, a server without STARTTLS).
var errPermanent = errors.New("permanent failure")

const (
	baseBackoff   = time.Second     // first retry waits 0.5-1s, then doubles
	maxBackoff    = 5 * time.Minute // cap of a backoff and of a Retry-After
	dedupeMaxKeys = 4096            // bound of the dedupe memory per receiver
	dropLogEvery  = time.Minute     // at most one "queue full" warning per receiver
)

// Options are the Dispatcher's injectable dependencies; every field is
// optional.
type Options struct {
	// Now is the clock for dedupe windows, alert times and signature
	// timestamps (default time.Now).
	Now func() time.Time
	// Sleep waits d between attempts, returning early with ctx's error when
	// ctx is done (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Transport sends webhook requests (default: a clone of
	// http.DefaultTransport).
	Transport http.RoundTripper
	// TLSConfig is used for SMTP STARTTLS (default: system roots; the
	// ServerName defaults to the host of SMTPConfig.Addr).
	TLSConfig *tls.Config
}

// ReceiverStats are one receiver's counters since NewDispatcher.
type ReceiverStats struct {
	// Name is "webhook:<name>" or "smtp".
	Name string
	// Queued is the number of alerts waiting now (not counting one being
	// delivered).
	Queued int
	// Sent and Failed count alerts delivered and given up on; Attempts
	// counts delivery attempts (retries included).
	Sent, Failed, Attempts uint64
	// Dropped counts alerts pushed out of a full queue or left queued when
	// Close gave up; Suppressed counts repeats hidden by the dedupe window.
	Dropped, Suppressed uint64
}

// item is one alert queued for one receiver.
type item struct {
	Alert
	id         string // shared by every receiver and attempt, so receivers can dedupe
	suppressed int    // repeats hidden since the previous delivery of this kind+subject
}

type dedupeKey struct{ kind, subject string }

type dedupeState struct {
	at         time.Time // last delivery
	suppressed int
}

// sendFunc makes one delivery attempt. retryAfter > 0 is the wait the
// receiver asked for; an error wrapping errPermanent is not retried.
// Errors must not hold secrets, URL query strings or response bodies.
type sendFunc func(ctx context.Context, it item) (retryAfter time.Duration, err error)

// worker is one receiver: its queue, dedupe memory and counters, drained
// by one goroutine.
type worker struct {
	name        string
	send        sendFunc
	maxAttempts int
	log         *slog.Logger
	wake        chan struct{} // capacity 1: "the queue or closed changed"

	mu          sync.Mutex
	queue       []item
	closed      bool
	seen        map[dedupeKey]*dedupeState
	stats       ReceiverStats
	lastDropLog time.Time
}

// Dispatcher is a Sink that delivers alerts to webhooks and SMTP in the
// background. Each receiver has its own bounded queue (QueueSize; when full
// the oldest alert is dropped) and dedupe memory (a repeat of the same Kind
// and Subject within DedupeWindow of its last delivery is suppressed and
// counted; the next delivery carries the count), and its own goroutine that
// retries with exponential backoff and jitter. Alert never blocks.
type Dispatcher struct {
	log       *slog.Logger
	now       func() time.Time
	sleep     func(context.Context, time.Duration) error
	window    time.Duration
	queueSize int
	workers   []*worker
	transport http.RoundTripper

	ctx       context.Context // cancelled when Close gives up: aborts deliveries
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup
	done      chan struct{} // closed when every worker has returned
}

var _ Sink = (*Dispatcher)(nil)

// NewDispatcher starts a Dispatcher for cfg, which config.Validate has
// filled in (webhook Format, Timeout and MaxAttempts are required here).
// It reads webhook secrets and the SMTP password with datadir.ReadPrivate
// (trailing whitespace trimmed); an unreadable, insecure or empty file is an
// error wrapping ErrConfig that names the file but never its contents. With
// no receivers configured, alerts are discarded. Call Close to stop it.
func NewDispatcher(cfg config.AlertsConfig, log *slog.Logger, opts Options) (*Dispatcher, error) {
	if log == nil {
		return nil, fmt.Errorf("%w: nil logger", ErrConfig)
	}
	if cfg.QueueSize < 1 || cfg.DedupeWindow < 0 {
		return nil, fmt.Errorf("%w: queue_size must be >= 1 and dedupe_window >= 0", ErrConfig)
	}
	d := &Dispatcher{log: log, now: opts.Now, sleep: opts.Sleep, window: cfg.DedupeWindow,
		queueSize: cfg.QueueSize, transport: opts.Transport, done: make(chan struct{})}
	if d.now == nil {
		d.now = time.Now
	}
	if d.sleep == nil {
		d.sleep = sleepCtx
	}
	if d.transport == nil {
		d.transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	client := &http.Client{Transport: d.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, wc := range cfg.Webhooks {
		h, err := newWebhook(wc, client, d.now)
		if err != nil {
			return nil, err
		}
		d.add("webhook:"+wc.Name, wc.MaxAttempts, h.send)
	}
	if cfg.SMTP.Addr != "" {
		s, err := newSMTP(cfg.SMTP, opts.TLSConfig, d.now)
		if err != nil {
			return nil, err
		}
		d.add("smtp", smtpMaxAttempts, s.send)
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for _, w := range d.workers {
		d.wg.Add(1)
		go d.run(w)
	}
	go func() { d.wg.Wait(); close(d.done) }()
	return d, nil
}

func (d *Dispatcher) add(name string, maxAttempts int, send sendFunc) {
	d.workers = append(d.workers, &worker{name: name, send: send, maxAttempts: maxAttempts,
		log: d.log.With("receiver", name), wake: make(chan struct{}, 1), seen: map[dedupeKey]*dedupeState{}})
}

// Alert implements Sink: it queues a for every receiver and returns at
// once. ctx is not used: delivery outlives the request that raised a.
func (d *Dispatcher) Alert(_ context.Context, a Alert) {
	if len(d.workers) == 0 {
		return
	}
	now := d.now()
	if a.Time.IsZero() {
		a.Time = now
	}
	it := item{Alert: a, id: rand.Text()}
	for _, w := range d.workers {
		d.enqueue(w, it, now)
	}
}

func (d *Dispatcher) enqueue(w *worker, it item, now time.Time) {
	w.mu.Lock()
	if w.closed {
		w.stats.Dropped++
		w.mu.Unlock()
		return
	}
	if d.window > 0 && !d.dedupeLocked(w, &it, now) {
		w.mu.Unlock()
		return
	}
	var warnDropped uint64
	if len(w.queue) >= d.queueSize {
		w.queue[0] = item{}
		w.queue = w.queue[1:]
		w.stats.Dropped++
		if w.lastDropLog.IsZero() || now.Sub(w.lastDropLog) >= dropLogEvery {
			w.lastDropLog, warnDropped = now, w.stats.Dropped
		}
	}
	w.queue = append(w.queue, it)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	if warnDropped > 0 {
		w.log.Warn("alert queue full: dropped the oldest alert", "dropped_total", warnDropped)
	}
}

// dedupeLocked reports whether it should be delivered, setting its
// suppressed count. The memory is pruned of expired keys only when full
// (so a pending count survives quiet periods); past dedupeMaxKeys live
// keys, new keys are delivered without dedupe.
func (d *Dispatcher) dedupeLocked(w *worker, it *item, now time.Time) bool {
	k := dedupeKey{it.Kind, it.Subject}
	if s, ok := w.seen[k]; ok {
		if now.Sub(s.at) < d.window {
			s.suppressed++
			w.stats.Suppressed++
			return false
		}
		it.suppressed, s.at, s.suppressed = s.suppressed, now, 0
		return true
	}
	if len(w.seen) >= dedupeMaxKeys {
		for k, s := range w.seen {
			if now.Sub(s.at) >= d.window {
				delete(w.seen, k)
			}
		}
	}
	if len(w.seen) < dedupeMaxKeys {
		w.seen[k] = &dedupeState{at: now}
	}
	return true
}

func (d *Dispatcher) run(w *worker) {
	defer d.wg.Done()
	for {
		it, ok := d.next(w)
		if !ok {
			return
		}
		d.deliver(w, it)
	}
}

// next returns the oldest queued item, waiting for one; false once the
// dispatcher is closed and the queue drained, or Close gave up.
func (d *Dispatcher) next(w *worker) (item, bool) {
	for {
		if d.ctx.Err() != nil {
			return item{}, false
		}
		w.mu.Lock()
		if len(w.queue) > 0 {
			it := w.queue[0]
			w.queue[0] = item{}
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return it, true
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return item{}, false
		}
		select {
		case <-w.wake:
		case <-d.ctx.Done():
		}
	}
}

func (d *Dispatcher) deliver(w *worker, it item) {
	for attempt := 1; ; attempt++ {
		w.count(func(s *ReceiverStats) { s.Attempts++ })
		retryAfter, err := w.send(d.ctx, it)
		if err == nil {
			w.count(func(s *ReceiverStats) { s.Sent++ })
			return
		}
		if errors.Is(err, errPermanent) || attempt >= w.maxAttempts || d.ctx.Err() != nil {
			w.count(func(s *ReceiverStats) { s.Failed++ })
			w.log.Warn("alert delivery failed", "kind", it.Kind, "alert_id", it.id, "attempts", attempt, "err", err)
			return
		}
		wait := retryAfter
		if wait <= 0 {
			wait = backoff(attempt)
		}
		wait = min(wait, maxBackoff)
		if w.log.Enabled(d.ctx, slog.LevelDebug) {
			w.log.Debug("alert delivery retry", "kind", it.Kind, "alert_id", it.id, "attempt", attempt, "wait", wait, "err", err)
		}
		if err := d.sleep(d.ctx, wait); err != nil {
			w.count(func(s *ReceiverStats) { s.Failed++ })
			w.log.Warn("alert delivery abandoned at shutdown", "kind", it.Kind, "alert_id", it.id, "attempts", attempt)
			return
		}
	}
}

func (w *worker) count(f func(*ReceiverStats)) {
	w.mu.Lock()
	f(&w.stats)
	w.mu.Unlock()
}

// backoff is the wait after failed attempt n (1-based): 2^(n-1) seconds,
// capped at maxBackoff, with "equal jitter" (a uniform half of it).
func backoff(n int) time.Duration {
	d := maxBackoff
	if n <= 20 {
		d = min(baseBackoff<<(n-1), maxBackoff)
	}
	return d/2 + mrand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns each receiver's counters, webhooks in configuration order
// then SMTP.
func (d *Dispatcher) Stats() []ReceiverStats {
	out := make([]ReceiverStats, 0, len(d.workers))
	for _, w := range d.workers {
		w.mu.Lock()
		s := w.stats
		s.Name, s.Queued = w.name, len(w.queue)
		w.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// Close stops accepting alerts (later ones count as dropped) and delivers
// what is queued, retries included, until ctx is done. It then aborts
// in-flight deliveries, counts what is left as dropped and returns ctx's
// error. Close may be called more than once.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.closeOnce.Do(func() {
		for _, w := range d.workers {
			w.mu.Lock()
			w.closed = true
			w.mu.Unlock()
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	})
	var err error
	select {
	case <-d.done:
	default:
		select {
		case <-d.done:
		case <-ctx.Done():
			err = ctx.Err()
			d.cancel()
			<-d.done
			for _, w := range d.workers {
				w.mu.Lock()
				w.stats.Dropped += uint64(len(w.queue))
				w.queue = nil
				w.mu.Unlock()
			}
		}
	}
	d.cancel()
	if t, ok := d.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return err
}
