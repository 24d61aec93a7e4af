// Package forward ships committed audit records to a SIEM.
//
// One Forwarder per configured sink (config.AuditSinkConfig) reads the
// store after commit, starting after the sink's stored cursor, sends the
// records in ascending sequence order in batches of at most BatchSize, and
// only then advances the cursor. Delivery is at-least-once: a batch is sent
// again after a failure, or after a stop between send and cursor update, so
// collectors should deduplicate on the event id (the Elasticsearch format
// does so by using it as the document _id).
//
// A failing sink never costs a local record and never blocks or fails a
// tool call: the store is the audit log of record, forwarding only reads
// it, and a Forwarder retries the same batch with capped exponential
// backoff, forever, until its context ends. How far it is behind shows in
// Stats.
//
// Wire formats: syslog (RFC 5424 over UDP, over TCP with RFC 6587 octet
// counting, or over a Unix socket such as /dev/log) and HTTP POST of JSON
// lines, a Loki push request or an Elasticsearch bulk request.
package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/store"
)

// Error categories, wrapped with %w.
var (
	// ErrConfig is a sink configuration or dependency that cannot work
	// (bad network, unreadable token file, nil source); the gateway must
	// refuse to start rather than run without the sink.
	ErrConfig = errors.New("forward: invalid sink")
	// ErrDelivery is a batch the collector did not acknowledge.
	ErrDelivery = errors.New("forward: delivery failed")
)

// Defaults and limits.
const (
	// DefaultPollInterval is how often a Forwarder looks for new records
	// when nothing calls Notify.
	DefaultPollInterval = time.Second
	// InitialBackoff is the first wait after a failure; each further
	// failure doubles it up to the sink's MaxBackoff. The actual wait is
	// drawn uniformly from [d/2, d] ("equal jitter") so that many gateways
	// do not retry in step.
	InitialBackoff = 500 * time.Millisecond
)

// Source is what a Forwarder reads: committed records and per-sink
// cursors. store.Store implements it.
type Source interface {
	// QueryAudit returns records matching q; a Forwarder asks for
	// Seq > AfterSeq in ascending order, at most Limit of them.
	QueryAudit(ctx context.Context, q audit.Query) ([]audit.Event, error)
	// AuditCursor is the last sequence sink name acknowledged (0: none).
	AuditCursor(ctx context.Context, name string) (int64, error)
	// SetAuditCursor records that sink name acknowledged everything up to seq.
	SetAuditCursor(ctx context.Context, name string, seq int64) error
}

var _ Source = store.Store(nil)

// sender delivers one batch to a collector. send returns nil only when the
// collector took every record; it is called from one goroutine at a time.
// close releases connections; a later send reconnects.
type sender interface {
	send(ctx context.Context, events []audit.Event) error
	close() error
}

// Options are the optional dependencies of a Forwarder. The zero value
// selects the defaults.
type Options struct {
	// PollInterval is how often the store is polled for new records.
	// Default DefaultPollInterval; negative is invalid.
	PollInterval time.Duration
	// Now is the clock (Stats.LastErrorTime). Default time.Now.
	Now func() time.Time
	// Sleep waits d between retries and returns ctx.Err() early if ctx
	// ends. Default a timer; tests inject one that does not wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// Hostname is the syslog HOSTNAME field. Default os.Hostname, "-" if
	// that fails.
	Hostname string
}

func (o Options) withDefaults() (Options, error) {
	if o.PollInterval < 0 {
		return o, fmt.Errorf("%w: negative poll interval %s", ErrConfig, o.PollInterval)
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	return o, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Stats is a snapshot of one Forwarder's progress.
type Stats struct {
	// Sink is the sink's configured name.
	Sink string
	// Sent counts records the collector acknowledged since Run started.
	Sent int64
	// Failures counts failed attempts of any stage (store read, send,
	// cursor save) since Run started.
	Failures int64
	// LastErrorTime is when the last attempt failed; zero if none did.
	LastErrorTime time.Time
	// LastError is that failure, short and free of secrets and record
	// contents.
	LastError string
	// Cursor is the last sequence acknowledged; Head the newest sequence
	// in the store as of the last read; Lag is Head - Cursor, the number
	// of sequence numbers not yet delivered.
	Cursor, Head, Lag int64
}

// Forwarder delivers one sink's records. Create it with New, run it with
// Run; Notify and Stats are safe for concurrent use.
type Forwarder struct {
	cfg  config.AuditSinkConfig
	src  Source
	log  *slog.Logger
	out  sender
	opts Options
	wake chan struct{}

	mu    sync.Mutex
	stats Stats
}

// New builds the forwarder of sink cfg (already checked by
// config.Validate: BatchSize 1-10000, positive Timeout and MaxBackoff). It
// opens no connection: the first one is made by Run, so an unreachable
// collector delays forwarding but not the gateway. Errors wrap ErrConfig:
// an unknown type, network or format, a bad address or URL, an unreadable
// or empty token file (the error names the file, never its contents).
func New(cfg config.AuditSinkConfig, src Source, log *slog.Logger, opts Options) (*Forwarder, error) {
	switch {
	case src == nil || log == nil:
		return nil, fmt.Errorf("%w: sink %q: nil source or logger", ErrConfig, cfg.Name)
	case cfg.Name == "":
		return nil, fmt.Errorf("%w: empty sink name", ErrConfig)
	case cfg.BatchSize < 1 || cfg.BatchSize > audit.MaxQueryLimit:
		return nil, fmt.Errorf("%w: sink %q: batch size %d not in 1-%d", ErrConfig, cfg.Name, cfg.BatchSize, audit.MaxQueryLimit)
	case cfg.Timeout <= 0 || cfg.MaxBackoff <= 0:
		return nil, fmt.Errorf("%w: sink %q: timeout and max backoff must be positive", ErrConfig, cfg.Name)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var out sender
	switch cfg.Type {
	case "syslog":
		out, err = newSyslog(cfg, opts.Hostname)
	case "http":
		out, err = newHTTP(cfg)
	default:
		err = fmt.Errorf("%w: sink %q: unknown type %q", ErrConfig, cfg.Name, cfg.Type)
	}
	if err != nil {
		return nil, err
	}
	return &Forwarder{
		cfg: cfg, src: src, log: log, out: out, opts: opts,
		wake:  make(chan struct{}, 1),
		stats: Stats{Sink: cfg.Name},
	}, nil
}

// Notify wakes the forwarder to look for new records now rather than at
// the next poll. It never blocks.
func (f *Forwarder) Notify() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the forwarder's counters.
func (f *Forwarder) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.Lag = max(s.Head-s.Cursor, 0)
	return s
}

// Run delivers records until ctx ends, then closes its connections. It
// never gives up: every failure is logged at warn and retried with
// backoff. Call it once.
func (f *Forwarder) Run(ctx context.Context) {
	defer f.out.close()
	var cursor int64
	err := f.retry(ctx, "read cursor", func() (err error) {
		cursor, err = f.src.AuditCursor(ctx, f.cfg.Name)
		return err
	})
	if err != nil {
		return
	}
	f.update(func(s *Stats) { s.Cursor = cursor })
	for ctx.Err() == nil {
		var batch []audit.Event
		err := f.retry(ctx, "read records", func() (err error) {
			batch, err = f.src.QueryAudit(ctx, audit.Query{AfterSeq: cursor, Ascending: true, Limit: f.cfg.BatchSize})
			return err
		})
		if err != nil {
			return
		}
		f.refreshHead(ctx)
		if len(batch) > 0 && cursor > 0 && batch[0].Seq > cursor+1 { // sequences are contiguous
			f.log.Warn("audit records were pruned before this sink received them", "sink", f.cfg.Name,
				"first_seq", cursor+1, "last_seq", batch[0].Seq-1)
		}
		if len(batch) == 0 {
			if !f.idle(ctx) {
				return
			}
			continue
		}
		err = f.retry(ctx, "send", func() error {
			ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
			defer cancel()
			return f.out.send(ctx, batch)
		})
		if err != nil {
			return
		}
		cursor = batch[len(batch)-1].Seq
		f.update(func(s *Stats) { s.Sent += int64(len(batch)) })
		// The batch is delivered: save the cursor even if ctx has just
		// ended, so that a clean stop does not send it again.
		err = f.retry(ctx, "save cursor", func() error {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.Timeout)
			defer cancel()
			return f.src.SetAuditCursor(ctx, f.cfg.Name, cursor)
		})
		if err != nil {
			return
		}
		f.update(func(s *Stats) { s.Cursor = cursor })
	}
}

// retry calls fn until it succeeds, waiting with backoff between attempts.
// It returns nil on success and ctx.Err() once ctx ends; a failure caused
// by ctx ending is not logged.
func (f *Forwarder) retry(ctx context.Context, stage string, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			if attempt > 1 {
				f.log.Info("audit sink recovered", "sink", f.cfg.Name, "stage", stage, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := backoff(attempt, f.cfg.MaxBackoff)
		msg := shortError(stage, err)
		f.update(func(s *Stats) {
			s.Failures++
			s.LastErrorTime, s.LastError = f.opts.Now(), msg
		})
		if stage == "send" {
			f.refreshHead(ctx)
		}
		f.log.Warn("audit forwarding failed", "sink", f.cfg.Name, "err", msg, "attempt", attempt, "retry_in", wait)
		if err := f.opts.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// refreshHead reads the newest sequence for Stats.Head (one indexed row);
// a failure leaves the previous value.
func (f *Forwarder) refreshHead(ctx context.Context) {
	if ev, err := f.src.QueryAudit(ctx, audit.Query{Limit: 1}); err == nil && len(ev) == 1 {
		f.update(func(s *Stats) { s.Head = max(s.Head, ev[0].Seq) })
	}
}

// idle waits for the poll interval or a Notify; false once ctx ends.
func (f *Forwarder) idle(ctx context.Context) bool {
	t := time.NewTimer(f.opts.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-f.wake:
	case <-t.C:
	}
	return true
}

func (f *Forwarder) update(fn func(*Stats)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.stats)
}

// backoff is the wait after failed attempt n (1-based): InitialBackoff
// doubled n-1 times, capped at maxWait, with equal jitter.
func backoff(n int, maxWait time.Duration) time.Duration {
	d := min(InitialBackoff, maxWait)
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return d/2 + rand.N(d/2+1)
}

// shortError is "stage: err" cut to 200 bytes. Errors of this package
// never carry a token or record contents; the cut bounds what a
// collector's or the network's messages can add to a log line.
func shortError(stage string, err error) string {
	s := stage + ": " + err.Error()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Set runs the forwarders of every configured sink.
type Set struct {
	fwds   []*Forwarder
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start builds a Forwarder for every sink (see New) and runs each in its
// own goroutine until ctx ends or Close is called. If any sink cannot be
// built it starts none and returns that error (wrapping ErrConfig), so the
// gateway refuses to start with a broken sink. No sinks: an idle Set.
func Start(ctx context.Context, sinks []config.AuditSinkConfig, src Source, log *slog.Logger, opts Options) (*Set, error) {
	s := &Set{}
	for _, sk := range sinks {
		f, err := New(sk, src, log, opts)
		if err != nil {
			for _, f := range s.fwds {
				f.out.close()
			}
			return nil, err
		}
		s.fwds = append(s.fwds, f)
	}
	ctx, s.cancel = context.WithCancel(ctx)
	for _, f := range s.fwds {
		s.wg.Go(func() { f.Run(ctx) })
	}
	return s, nil
}

// Notify wakes every forwarder (see Forwarder.Notify); call it after
// records commit to forward them without waiting for the poll. It never
// blocks.
func (s *Set) Notify() {
	for _, f := range s.fwds {
		f.Notify()
	}
}

// Stats returns a snapshot per sink, in configuration order.
func (s *Set) Stats() []Stats {
	out := make([]Stats, len(s.fwds))
	for i, f := range s.fwds {
		out[i] = f.Stats()
	}
	return out
}

// Close stops every forwarder and waits until they have returned. Records
// not yet delivered stay in the store and are sent after the next start.
func (s *Set) Close() {
	s.cancel()
	s.wg.Wait()
}

// encodeEvent is the public JSON form of e (audit.Event's field names),
// compact, on one line. Args that are not valid JSON are sent as a JSON
// string of their bytes rather than failing the batch forever.
func encodeEvent(e audit.Event) []byte {
	b, err := json.Marshal(e)
	if err != nil {
		q, _ := json.Marshal(string(e.Args))
		e.Args = q
		b, _ = json.Marshal(e)
	}
	return b
}
