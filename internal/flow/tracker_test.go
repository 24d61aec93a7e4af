package flow_test

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/clocktest"
	"github.com/portcullis/portcullis/internal/flow"
)

func newClock() *clocktest.Clock { return clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

func newTracker(t testing.TB, cfg flow.Config) *flow.Tracker {
	t.Helper()
	tr, err := flow.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tr
}

// Labels of the example tools.
var (
	readInbox = []string{"private-data", "read"}     // notes__read_inbox
	httpFetch = []string{"network", "external-sink"} // http_fetch
	listFiles = []string{"filesystem", "read"}
)

var (
	deniedExfil = flow.Decision{Action: flow.ActionDeny, Rule: "flow-0", Label: "private-data"}
	allowed     = flow.Decision{}
)

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  flow.Config
		want string
	}{
		{"negative ttl", flow.Config{TTL: -time.Second}, "flow: invalid configuration: ttl: negative duration -1s"},
		{"negative max keys", flow.Config{MaxKeys: -1}, "flow: invalid configuration: max keys: negative -1"},
		{"invalid rule", flow.Config{Rules: []flow.Rule{withAction("allow", deny("a", "b"))}},
			`flow: invalid configuration: flows[0].then.action: unknown action "allow" (want deny or require_approval)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := flow.New(tt.cfg)
			if tr != nil || !errors.Is(err, flow.ErrInvalid) || err.Error() != tt.want {
				t.Errorf("New = %v, %v; want nil, %q", tr, err, tt.want)
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	tr := newTracker(t, flow.Config{})
	if tr.Enabled() {
		t.Error("Enabled() = true with no rules")
	}
	tr.Record("s:a", []string{"private-data"})
	if d := tr.Check("s:a", httpFetch); d != allowed {
		t.Errorf("Check = %+v, want allowed", d)
	}
	if got := tr.Taints("s:a"); got != nil {
		t.Errorf("Taints = %v, want nil", got)
	}
	if n := tr.Len(); n != 0 {
		t.Errorf("Len = %d, want 0", n)
	}
}

func TestDenyAfterTaint(t *testing.T) {
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{deny("private-data", "external-sink")}})
	if !tr.Enabled() {
		t.Fatal("Enabled() = false with a rule")
	}
	key := flow.Key("sess-1", "alice")
	if d := tr.Check(key, httpFetch); d != allowed {
		t.Fatalf("fetch before taint: Check = %+v, want allowed", d)
	}
	tr.Record(key, httpFetch) // a sink call taints nothing
	if d := tr.Check(key, readInbox); d != allowed {
		t.Fatalf("read inbox: Check = %+v, want allowed", d)
	}
	tr.Record(key, readInbox)
	if d := tr.Check(key, httpFetch); d != deniedExfil {
		t.Errorf("fetch after taint: Check = %+v, want %+v", d, deniedExfil)
	}
	// Tools without the Then label stay allowed, and so does the taint
	// source itself.
	for _, labels := range [][]string{listFiles, readInbox, nil} {
		if d := tr.Check(key, labels); d != allowed {
			t.Errorf("Check(%v) = %+v, want allowed", labels, d)
		}
	}
	if diff := cmp.Diff([]string{"private-data"}, tr.Taints(key)); diff != "" {
		t.Errorf("Taints (-want +got):\n%s", diff)
	}
}

func TestRequireApproval(t *testing.T) {
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{
		named("exfil-review", withAction(flow.ActionRequireApproval, deny("private-data", "external-sink"))),
	}})
	tr.Record("s:a", readInbox)
	want := flow.Decision{Action: flow.ActionRequireApproval, Rule: "exfil-review", Label: "private-data"}
	if d := tr.Check("s:a", httpFetch); d != want {
		t.Errorf("Check = %+v, want %+v", d, want)
	}
}

func TestStrictestWins(t *testing.T) {
	approve := flow.ActionRequireApproval
	tests := []struct {
		name   string
		rules  []flow.Rule
		taint  []string
		labels []string
		want   flow.Decision
	}{
		{
			name:   "deny over earlier require_approval",
			rules:  []flow.Rule{withAction(approve, deny("private-data", "external-sink")), deny("secrets", "external-sink")},
			taint:  []string{"private-data", "secrets"},
			labels: []string{"external-sink"},
			want:   flow.Decision{Action: flow.ActionDeny, Rule: "flow-1", Label: "secrets"},
		},
		{
			name:   "deny over later require_approval",
			rules:  []flow.Rule{deny("private-data", "external-sink"), withAction(approve, deny("private-data", "external-sink"))},
			taint:  []string{"private-data"},
			labels: []string{"external-sink"},
			want:   flow.Decision{Action: flow.ActionDeny, Rule: "flow-0", Label: "private-data"},
		},
		{
			name:   "deny through a second label of the tool",
			rules:  []flow.Rule{withAction(approve, deny("private-data", "network")), deny("private-data", "external-sink")},
			taint:  []string{"private-data"},
			labels: []string{"network", "external-sink"},
			want:   flow.Decision{Action: flow.ActionDeny, Rule: "flow-1", Label: "private-data"},
		},
		{
			name:   "equal actions: first rule",
			rules:  []flow.Rule{named("b-rule", deny("secrets", "external-sink")), named("a-rule", deny("private-data", "external-sink"))},
			taint:  []string{"private-data", "secrets"},
			labels: []string{"external-sink"},
			want:   flow.Decision{Action: flow.ActionDeny, Rule: "b-rule", Label: "secrets"},
		},
		{
			name:   "only tainted rules match",
			rules:  []flow.Rule{deny("secrets", "external-sink"), withAction(approve, deny("private-data", "external-sink"))},
			taint:  []string{"private-data"},
			labels: []string{"external-sink"},
			want:   flow.Decision{Action: approve, Rule: "flow-1", Label: "private-data"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(t, flow.Config{Rules: tt.rules})
			tr.Record("s:a", tt.taint)
			if d := tr.Check("s:a", tt.labels); d != tt.want {
				t.Errorf("Check = %+v, want %+v", d, tt.want)
			}
		})
	}
}

// TestNoTaintWithoutRecord: the gateway records only successful calls, so
// a taint source that was checked (and then failed or was refused) taints
// nothing.
func TestNoTaintWithoutRecord(t *testing.T) {
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{deny("private-data", "external-sink")}})
	if d := tr.Check("s:a", readInbox); d != allowed {
		t.Fatalf("Check(read inbox) = %+v", d)
	}
	// The call failed: no Record.
	if d := tr.Check("s:a", httpFetch); d != allowed {
		t.Errorf("fetch after a failed read: Check = %+v, want allowed", d)
	}
	if got, n := tr.Taints("s:a"), tr.Len(); got != nil || n != 0 {
		t.Errorf("Taints = %v, Len = %d; Check stored state", got, n)
	}
}

// TestIsolation: keys are apart; a caller is tied to its principal by
// checking all of its Keys (TestCheckKeys), not by the keys themselves.
func TestIsolation(t *testing.T) {
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{deny("private-data", "external-sink")}})
	tainted := []string{flow.Key("s1", "alice"), flow.Key("", "bob")}
	for _, k := range tainted {
		tr.Record(k, readInbox)
	}
	clean := []string{
		flow.Key("s2", "alice"), // another session of the same principal
		flow.Key("", "alice"),   // the principal's stateless calls
		flow.Key("s1x", "alice"),
		flow.Key("", "s1"),    // a principal named like the session id
		flow.Key("", "s:s1"),  // ... or like its key
		flow.Key("bob", ""),   // a session named like the principal
		flow.Key("p:bob", ""), // ... or like its key
		flow.Key("", "bobby"),
	}
	for _, k := range tainted {
		if d := tr.Check(k, httpFetch); d != deniedExfil {
			t.Errorf("Check(%q) = %+v, want deny", k, d)
		}
	}
	for _, k := range clean {
		if d := tr.Check(k, httpFetch); d != allowed {
			t.Errorf("Check(%q) = %+v, want allowed", k, d)
		}
	}
}

func TestAfterEqualsThen(t *testing.T) {
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{deny("one-shot", "one-shot")}})
	labels := []string{"one-shot"}
	if d := tr.Check("s:a", labels); d != allowed {
		t.Fatalf("first call: Check = %+v, want allowed", d)
	}
	tr.Record("s:a", labels)
	want := flow.Decision{Action: flow.ActionDeny, Rule: "flow-0", Label: "one-shot"}
	if d := tr.Check("s:a", labels); d != want {
		t.Errorf("second call: Check = %+v, want %+v", d, want)
	}
}

// TestToolWithBothLabels: a tool that is both a source and a sink runs
// once, then taints its session against itself.
func TestToolWithBothLabels(t *testing.T) {
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{deny("private-data", "external-sink")}})
	both := []string{"private-data", "external-sink"}
	if d := tr.Check("s:a", both); d != allowed {
		t.Fatalf("first call: Check = %+v, want allowed", d)
	}
	tr.Record("s:a", both)
	if d := tr.Check("s:a", both); d != deniedExfil {
		t.Errorf("second call: Check = %+v, want deny", d)
	}
}

func TestOnlyRuleLabelsStored(t *testing.T) {
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{
		deny("private-data", "external-sink"),
		deny("secrets", "external-sink"),
	}})
	tr.Record("s:a", listFiles)
	if got, n := tr.Taints("s:a"), tr.Len(); got != nil || n != 0 {
		t.Errorf("after unrelated labels: Taints = %v, Len = %d; want nil, 0", got, n)
	}
	tr.Record("s:a", []string{"read", "secrets", "external-sink", "network", "private-data", "secrets"})
	if diff := cmp.Diff([]string{"private-data", "secrets"}, tr.Taints("s:a")); diff != "" {
		t.Errorf("Taints (-want +got):\n%s", diff)
	}
	if n := tr.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
}

// TestManyLabels covers taint sets wider than one word, and sorted Taints.
func TestManyLabels(t *testing.T) {
	var rules []flow.Rule
	for i := range 70 {
		rules = append(rules, deny(fmt.Sprintf("l%02d", 69-i), "sink"))
	}
	tr := newTracker(t, flow.Config{Rules: rules})
	tr.Record("s:a", []string{"l68", "l03", "l64", "l40"})
	if diff := cmp.Diff([]string{"l03", "l40", "l64", "l68"}, tr.Taints("s:a")); diff != "" {
		t.Errorf("Taints (-want +got):\n%s", diff)
	}
	// l68 is rule 1 (rules run from l69 down), the first tainted in order.
	want := flow.Decision{Action: flow.ActionDeny, Rule: "flow-1", Label: "l68"}
	if d := tr.Check("s:a", []string{"sink"}); d != want {
		t.Errorf("Check = %+v, want %+v", d, want)
	}
	tr.Record("s:b", []string{"l69"})
	want = flow.Decision{Action: flow.ActionDeny, Rule: "flow-0", Label: "l69"}
	if d := tr.Check("s:b", []string{"sink"}); d != want {
		t.Errorf("Check = %+v, want %+v", d, want)
	}
}

func TestTTL(t *testing.T) {
	const ttl = time.Hour
	rules := []flow.Rule{deny("private-data", "external-sink"), deny("secrets", "external-sink")}

	t.Run("default is 24h", func(t *testing.T) {
		c := newClock()
		tr := newTracker(t, flow.Config{Rules: rules, Now: c.Now})
		tr.Record("s:a", readInbox)
		c.Advance(flow.DefaultTTL - time.Nanosecond)
		if d := tr.Check("s:a", httpFetch); d != deniedExfil {
			t.Errorf("just before 24h: Check = %+v, want deny", d)
		}
		c.Advance(time.Nanosecond)
		if d := tr.Check("s:a", httpFetch); d != allowed {
			t.Errorf("at 24h: Check = %+v, want allowed", d)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		c := newClock()
		tr := newTracker(t, flow.Config{Rules: rules, TTL: ttl, Now: c.Now})
		tr.Record("s:a", readInbox)
		c.Advance(ttl - time.Nanosecond)
		if d := tr.Check("s:a", httpFetch); d != deniedExfil {
			t.Errorf("before TTL: Check = %+v, want deny", d)
		}
		c.Advance(time.Nanosecond)
		if d := tr.Check("s:a", httpFetch); d != allowed {
			t.Errorf("at TTL: Check = %+v, want allowed", d)
		}
		if got := tr.Taints("s:a"); got != nil {
			t.Errorf("at TTL: Taints = %v, want nil", got)
		}
	})

	t.Run("any Record refreshes, Check does not", func(t *testing.T) {
		c := newClock()
		tr := newTracker(t, flow.Config{Rules: rules, TTL: ttl, Now: c.Now})
		tr.Record("s:a", readInbox)
		c.Advance(ttl / 2)
		tr.Record("s:a", listFiles) // a successful call without taint labels
		c.Advance(ttl/2 + time.Minute)
		if d := tr.Check("s:a", httpFetch); d != deniedExfil {
			t.Errorf("after refresh: Check = %+v, want deny", d)
		}
		c.Advance(ttl/2 - 2*time.Minute)
		if d := tr.Check("s:a", httpFetch); d != deniedExfil {
			t.Errorf("just before refreshed TTL: Check = %+v, want deny", d)
		}
		c.Advance(time.Minute)
		if d := tr.Check("s:a", httpFetch); d != allowed {
			t.Errorf("Check refreshed the TTL: Check = %+v, want allowed", d)
		}
	})

	t.Run("expired taint does not come back", func(t *testing.T) {
		c := newClock()
		tr := newTracker(t, flow.Config{Rules: rules, TTL: ttl, Now: c.Now})
		tr.Record("s:a", readInbox)
		c.Advance(ttl)
		tr.Record("s:a", listFiles)
		if got, n := tr.Taints("s:a"), tr.Len(); got != nil || n != 0 {
			t.Errorf("Record of an expired key without taint: Taints = %v, Len = %d; want nil, 0", got, n)
		}
		tr.Record("s:a", readInbox)
		c.Advance(ttl)
		tr.Record("s:a", []string{"secrets"})
		if diff := cmp.Diff([]string{"secrets"}, tr.Taints("s:a")); diff != "" {
			t.Errorf("Taints (-want +got):\n%s", diff)
		}
	})

	t.Run("expired keys are dropped", func(t *testing.T) {
		// Dropped from the shard a new key goes to; one shard here.
		c := newClock()
		tr := newTracker(t, flow.Config{Rules: rules, TTL: ttl, MaxKeys: 1000, Now: c.Now})
		for i := range 100 {
			tr.Record("s:"+strconv.Itoa(i), readInbox)
		}
		c.Advance(ttl)
		tr.Record("s:new", readInbox)
		if n := tr.Len(); n != 1 {
			t.Errorf("Len = %d, want 1 (expired keys kept)", n)
		}
	})
}

func TestMaxKeysLRU(t *testing.T) {
	c := newClock()
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{deny("private-data", "external-sink")}, MaxKeys: 3, Now: c.Now})
	for _, k := range []string{"s:a", "s:b", "s:c"} {
		tr.Record(k, readInbox)
		c.Advance(time.Second)
	}
	tr.Record("s:a", listFiles) // a is now the most recent; b the least
	tr.Check("s:b", httpFetch)  // a Check does not make b recent
	tr.Record("s:d", readInbox)
	if n := tr.Len(); n != 3 {
		t.Errorf("Len = %d, want 3", n)
	}
	for k, want := range map[string]flow.Decision{"s:a": deniedExfil, "s:b": allowed, "s:c": deniedExfil, "s:d": deniedExfil} {
		if d := tr.Check(k, httpFetch); d != want {
			t.Errorf("Check(%q) = %+v, want %+v", k, d, want)
		}
	}
	tr.Record("s:e", readInbox) // evicts c
	if d := tr.Check("s:c", httpFetch); d != allowed {
		t.Errorf("Check(s:c) = %+v, want evicted", d)
	}
}

func TestMaxKeysBound(t *testing.T) {
	tests := []struct {
		maxKeys, shards int
	}{
		{1, 1},
		{2047, 1},
		{2048, 2},
		{4096, 4},
		{flow.DefaultMaxKeys, 64},
		{1 << 30, 64},
	}
	for _, tt := range tests {
		tr := newTracker(t, flow.Config{Rules: []flow.Rule{deny("x", "y")}, MaxKeys: tt.maxKeys})
		b := tr.ShardBounds()
		sum := 0
		for _, n := range b {
			sum += n
		}
		if len(b) != tt.shards || sum != tt.maxKeys {
			t.Errorf("MaxKeys %d: %d shards summing to %d, want %d summing to %d", tt.maxKeys, len(b), sum, tt.shards, tt.maxKeys)
		}
	}
	if b := newTracker(t, flow.Config{Rules: []flow.Rule{deny("x", "y")}}).ShardBounds(); len(b) != 64 {
		t.Errorf("default MaxKeys: %d shards, want 64", len(b))
	}

	// Many sessions cannot grow the state past MaxKeys.
	const maxKeys = 4096
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{deny("private-data", "external-sink")}, MaxKeys: maxKeys})
	for i := range 10 * maxKeys {
		k := flow.Key("sess-"+strconv.Itoa(i), "")
		tr.Record(k, readInbox)
		if d := tr.Check(k, httpFetch); d != deniedExfil {
			t.Fatalf("just recorded %q: Check = %+v, want deny", k, d)
		}
	}
	if n := tr.Len(); n > maxKeys || n < maxKeys*9/10 {
		t.Errorf("Len = %d, want at most %d (and near it)", n, maxKeys)
	}
}

// TestConcurrent runs every method from many goroutines; run with -race.
// Each goroutine's own session must stay tainted throughout.
func TestConcurrent(t *testing.T) {
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{
		deny("private-data", "external-sink"),
		withAction(flow.ActionRequireApproval, deny("secrets", "network")),
	}})
	const goroutines, iters = 16, 500
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			own := flow.Key("own-"+strconv.Itoa(g), "")
			tr.Record(own, readInbox)
			for i := range iters {
				shared := flow.Key("shared-"+strconv.Itoa(i%7), "")
				switch i % 4 {
				case 0:
					tr.Record(shared, []string{"secrets"})
				case 1:
					tr.Check(shared, []string{"network", "external-sink"})
				case 2:
					tr.Taints(shared)
				case 3:
					tr.CheckKeys([]string{own, shared}, httpFetch)
				}
				tr.Record(own, listFiles)
				if d := tr.Check(own, httpFetch); d != deniedExfil {
					errs <- fmt.Errorf("%s: Check = %+v, want deny", own, d)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkCheck(b *testing.B) {
	for _, n := range []int{1, 10} {
		var rules []flow.Rule
		for i := range n {
			rules = append(rules, deny("private-"+strconv.Itoa(i), "external-sink"))
		}
		tr := newTracker(b, flow.Config{Rules: rules})
		for i := range 1000 {
			tr.Record(flow.Key("s"+strconv.Itoa(i), ""), []string{"private-" + strconv.Itoa(i%n)})
		}
		key := flow.Key("s1", "")
		b.Run(fmt.Sprintf("rules=%d/deny", n), func(b *testing.B) {
			for b.Loop() {
				if tr.Check(key, httpFetch).Allowed() {
					b.Fatal("allowed")
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/no-sink-label", n), func(b *testing.B) {
			for b.Loop() {
				if !tr.Check(key, listFiles).Allowed() {
					b.Fatal("refused")
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/parallel", n), func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tr.Check(key, httpFetch)
				}
			})
		})
	}
}

// TestCheckKeys: taint recorded under a caller's Keys reaches the
// principal's other sessions and its stateless calls, not another
// principal's; the strictest decision over the keys wins; and the
// principal's key expires after TTL like any other.
func TestCheckKeys(t *testing.T) {
	c := newClock()
	const ttl = time.Hour
	tr := newTracker(t, flow.Config{Rules: []flow.Rule{
		withAction(flow.ActionRequireApproval, deny("secrets", "external-sink")),
		deny("private-data", "external-sink"),
	}, TTL: ttl, Now: c.Now})
	denied := flow.Decision{Action: flow.ActionDeny, Rule: "flow-1", Label: "private-data"}
	held := flow.Decision{Action: flow.ActionRequireApproval, Rule: "flow-0", Label: "secrets"}

	for _, k := range flow.Keys("a", "alice") {
		tr.Record(k, readInbox)
	}
	for _, k := range flow.Keys("", "bob") {
		tr.Record(k, []string{"secrets"})
	}
	tests := []struct {
		session, principal string
		want               flow.Decision
	}{
		{"a", "alice", denied},
		{"b", "alice", denied}, // a new session
		{"", "alice", denied},  // the stateless transport
		{"b", "bob", held},     // bob's stateless taint in a session
		{"c", "carol", allowed},
		{"", "carol", allowed},
		{"", "alicex", allowed},
	}
	for _, tt := range tests {
		if d := tr.CheckKeys(flow.Keys(tt.session, tt.principal), httpFetch); d != tt.want {
			t.Errorf("CheckKeys(%q, %q) = %+v, want %+v", tt.session, tt.principal, d, tt.want)
		}
	}
	// Strictest over keys: the session holds "secrets", the principal
	// "private-data"; deny wins whichever key carries it.
	tr.Record("s:d", []string{"secrets"})
	if d := tr.CheckKeys([]string{"s:d", "p:alice"}, httpFetch); d != denied {
		t.Errorf("CheckKeys(s:d, p:alice) = %+v, want %+v", d, denied)
	}
	if d := tr.CheckKeys([]string{"p:alice", "s:d"}, httpFetch); d != denied {
		t.Errorf("CheckKeys(p:alice, s:d) = %+v, want %+v", d, denied)
	}
	if d := tr.CheckKeys(flow.Keys("a", "alice"), listFiles); d != allowed {
		t.Errorf("CheckKeys on a tool no rule guards = %+v, want allowed", d)
	}
	// TTL: the principal's key is refreshed by each Record and expires
	// like a session's.
	c.Advance(ttl - time.Second)
	if d := tr.CheckKeys(flow.Keys("", "alice"), httpFetch); d != denied {
		t.Errorf("before TTL: CheckKeys = %+v, want %+v", d, denied)
	}
	c.Advance(time.Second)
	if d := tr.CheckKeys(flow.Keys("z", "alice"), httpFetch); d != allowed {
		t.Errorf("after TTL: CheckKeys = %+v, want allowed", d)
	}
}
