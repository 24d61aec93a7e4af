package metrics

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/store"
)

// Store gauge caching: a scrape reads the store at most once per
// storeTTL per gauge, each read bounded by storeTimeout.
const (
	storeTTL     = 5 * time.Second
	storeTimeout = 2 * time.Second
	// maxPending caps the pending approvals counted (one list query).
	maxPending = 10000
)

// WatchAuditQueue adds portcullis_audit_queue_depth, read from depth at
// scrape time (audit.Writer.QueueDepth). It fails on a nil depth or when
// called twice.
func (m *Metrics) WatchAuditQueue(depth func() int) error {
	if depth == nil {
		return errors.New("metrics: nil audit queue depth")
	}
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace,
		Name: "audit_queue_depth", Help: "Audit events waiting for the writer (near the queue size: commits cannot keep up)."},
		func() float64 { return float64(depth()) }))
}

// StoreReader is the part of the store the gauges read.
type StoreReader interface {
	ListApprovals(ctx context.Context, state string, limit int) ([]store.Approval, error)
	ListQuarantines(ctx context.Context, all bool) ([]store.Quarantine, error)
}

// WatchStore adds portcullis_approvals_pending and
// portcullis_quarantines_active, read from s at scrape time and cached for
// 5 s so that scrapes cannot load the database. A failed read keeps the
// last value (0 before the first success) and is logged once until a read
// succeeds again. now is the clock (time.Now if nil). It fails on a nil s
// or log, or when called twice.
func (m *Metrics) WatchStore(s StoreReader, log *slog.Logger, now func() time.Time) error {
	if s == nil || log == nil {
		return errors.New("metrics: WatchStore needs a store and a logger")
	}
	if now == nil {
		now = time.Now
	}
	pending := &cachedCount{what: "pending approvals", log: log, now: now, read: func(ctx context.Context) (int, error) {
		l, err := s.ListApprovals(ctx, store.ApprovalPending, maxPending)
		return len(l), err
	}}
	active := &cachedCount{what: "active quarantines", log: log, now: now, read: func(ctx context.Context) (int, error) {
		l, err := s.ListQuarantines(ctx, false)
		return len(l), err
	}}
	return errors.Join(
		m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace,
			Name: "approvals_pending", Help: "Approval requests waiting for an approver (at most 10000 counted)."}, pending.value)),
		m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace,
			Name: "quarantines_active", Help: "Quarantines in force (principals, sessions and upstream servers)."}, active.value)),
	)
}

// cachedCount is a store count read at most once per storeTTL.
type cachedCount struct {
	what string
	log  *slog.Logger
	now  func() time.Time
	read func(ctx context.Context) (int, error)

	mu      sync.Mutex
	val     float64
	at      time.Time // of the last read, successful or not; zero: never
	failing bool
}

func (c *cachedCount) value() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.at.IsZero() && now.Sub(c.at) < storeTTL {
		return c.val
	}
	c.at = now // a failing store is not retried before the TTL either
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	n, err := c.read(ctx)
	cancel()
	if err != nil {
		if !c.failing {
			c.failing = true
			c.log.Warn("metrics: reading "+c.what+" failed; reporting the last value", "err", err)
		}
		return c.val
	}
	if c.failing {
		c.failing = false
		c.log.Info("metrics: reading " + c.what + " works again")
	}
	c.val = float64(n)
	return c.val
}

// PluginState is one upstream server's state for portcullis_plugin_up.
type PluginState struct {
	Name string // the configured server name
	Up   bool   // running
}

// WatchPlugins adds portcullis_plugin_up{server}, 1 for each upstream
// server that runs and 0 for the others, read from states at scrape time
// (plugins.Manager.Status). It fails on a nil states or when called twice.
func (m *Metrics) WatchPlugins(states func() []PluginState) error {
	if states == nil {
		return errors.New("metrics: nil plugin states")
	}
	c := m.pluginCollector
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.states != nil {
		return errors.New("metrics: plugins already watched")
	}
	if err := m.reg.Register(c); err != nil {
		return err
	}
	c.states = states
	return nil
}

type pluginCollector struct {
	desc   *prometheus.Desc
	mu     sync.Mutex
	states func() []PluginState
}

func newPluginCollector() *pluginCollector {
	return &pluginCollector{desc: prometheus.NewDesc(Namespace+"_plugin_up",
		"1 while the upstream MCP server runs, 0 while it starts, restarts or is stopped.", []string{"server"}, nil)}
}

func (c *pluginCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *pluginCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	states := c.states
	c.mu.Unlock()
	if states == nil {
		return
	}
	seen := map[string]bool{}
	for _, s := range states() {
		// Configured names are valid and unique; anything else is skipped
		// rather than reported twice under one label (a scrape error).
		if !validServerName(s.Name) || seen[s.Name] || len(seen) >= maxServers {
			continue
		}
		seen[s.Name] = true
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, up, s.Name)
	}
}
