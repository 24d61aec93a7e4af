package approval_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/approval"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlite"
	"github.com/portcullis/portcullis/internal/tool"
)

// TestMain fails the package if a test leaves goroutines running (a Gate
// still waiting, a store not closed).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ---- fakes ----------------------------------------------------------------

// fakeClock is an injected, manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recEmitter keeps a copy of every audit event it accepted; failOn makes
// events of some types fail instead.
type recEmitter struct {
	mu     sync.Mutex
	events []audit.Event
	fail   map[audit.Type]bool
}

var errAuditDown = errors.New("audit backend down")

func (r *recEmitter) Emit(_ context.Context, e *audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail[e.Type] {
		return fmt.Errorf("%w: %w", audit.ErrUnavailable, errAuditDown)
	}
	c := *e
	c.Args = bytes.Clone(e.Args)
	c.Roles = slices.Clone(e.Roles)
	r.events = append(r.events, c)
	return nil
}

func (r *recEmitter) failOn(types ...audit.Type) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = map[audit.Type]bool{}
	for _, t := range types {
		r.fail[t] = true
	}
}

func (r *recEmitter) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recEmitter) types() []audit.Type {
	var out []audit.Type
	for _, e := range r.all() {
		out = append(out, e.Type)
	}
	return out
}

func (r *recEmitter) ofType(t audit.Type) []audit.Event {
	var out []audit.Event
	for _, e := range r.all() {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

// recAlerts keeps every alert; created, if set, receives each one too
// (a test waits on it to know a request exists).
type recAlerts struct {
	mu      sync.Mutex
	alerts  []alert.Alert
	created chan alert.Alert
}

func (r *recAlerts) Alert(_ context.Context, a alert.Alert) {
	r.mu.Lock()
	r.alerts = append(r.alerts, a)
	ch := r.created
	r.mu.Unlock()
	if ch != nil {
		ch <- a
	}
}

func (r *recAlerts) all() []alert.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.alerts)
}

// ---- harness --------------------------------------------------------------

var (
	t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

	alice  = &principal.Principal{UserID: 1, Name: "alice", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
	bob    = &principal.Principal{UserID: 2, Name: "bob", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
	root   = &principal.Principal{UserID: 3, Name: "root", Roles: []string{"admin"}, Method: principal.MethodAPIKey}
	root2  = &principal.Principal{UserID: 4, Name: "root2", Roles: []string{"admin"}, Method: principal.MethodAPIKey}
	rita   = &principal.Principal{UserID: 5, Name: "rita", Roles: []string{"reviewer"}, Method: principal.MethodAPIKey}
	gina   = &principal.Principal{UserID: 6, Name: "gina", Roles: []string{"guest"}, Method: principal.MethodAPIKey}
	redKey = bytes.Repeat([]byte{0x42}, 32)
)

// mayApprove: admins approve everything, reviewers only "deploy".
func mayApprove(p *principal.Principal, toolName string) bool {
	if slices.Contains(p.Roles, "admin") {
		return true
	}
	return slices.Contains(p.Roles, "reviewer") && toolName == "deploy"
}

type harness struct {
	t      *testing.T
	path   string
	db     *sqlite.DB
	svc    *approval.Service
	clock  *fakeClock
	audit  *recEmitter
	alerts *recAlerts
	red    *audit.Redactor
	cfg    config.ApprovalConfig
}

func defaultCfg() config.ApprovalConfig {
	return config.ApprovalConfig{Wait: 0, TTL: 15 * time.Minute, ExemptRoles: []string{"admin"}}
}

func newHarness(t *testing.T, cfg config.ApprovalConfig) *harness {
	t.Helper()
	red, err := audit.NewRedactor(redKey)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "p.db"), clock: &fakeClock{t: t0},
		audit: &recEmitter{}, alerts: &recAlerts{}, red: red, cfg: cfg}
	h.open()
	return h
}

// open opens the store at h.path and a service over it.
func (h *harness) open() {
	h.t.Helper()
	db, err := sqlite.Open(context.Background(), h.path, sqlite.Options{Logger: slog.New(slog.DiscardHandler), Now: h.clock.Now})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { db.Close() })
	svc, err := approval.New(h.cfg, approval.Deps{Store: db, Audit: h.audit, Alerts: h.alerts, MayApprove: mayApprove,
		Logger: slog.New(slog.DiscardHandler), Now: h.clock.Now})
	if err != nil {
		h.t.Fatal(err)
	}
	h.db, h.svc = db, svc
}

// restart closes the store and opens it again with a new service, as a
// process restart would.
func (h *harness) restart() {
	h.t.Helper()
	if err := h.db.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.open()
}

// call builds the Call of p to toolName with raw JSON args as the gateway
// would: the digest over the decoded arguments, the redacted copy for
// approvers.
func (h *harness) call(p *principal.Principal, toolName, raw, rid string) approval.Call {
	h.t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		h.t.Fatalf("args %s: %v", raw, err)
	}
	d, err := approval.Digest(redKey, m)
	if err != nil {
		h.t.Fatal(err)
	}
	redacted, _ := h.red.Redact(json.RawMessage(raw))
	return approval.Call{Principal: p, Tool: toolName, Digest: d, Args: redacted, RequestID: rid, Session: "sess_" + p.Name}
}

func (h *harness) gate(c approval.Call) approval.Outcome {
	h.t.Helper()
	out, err := h.svc.Gate(context.Background(), c)
	if err != nil {
		h.t.Fatalf("Gate(%s %s): %v", c.Principal.Name, c.Tool, err)
	}
	return out
}

// pending gates c, which must not run, and returns its pending request.
func (h *harness) pending(c approval.Call) store.Approval {
	h.t.Helper()
	out := h.gate(c)
	if out.Run || out.Approval.State != store.ApprovalPending || !strings.HasPrefix(out.Approval.ID, "apr_") {
		h.t.Fatalf("Gate(%s %s) = %+v; want a pending apr_ request, not Run", c.Principal.Name, c.Tool, out)
	}
	return out.Approval
}

func (h *harness) decide(p *principal.Principal, id string, approve bool) store.Approval {
	h.t.Helper()
	a, err := h.svc.Decide(context.Background(), p, id, approve, "ok by "+p.Name)
	if err != nil {
		h.t.Fatalf("Decide(%s, %s, %v): %v", p.Name, id, approve, err)
	}
	return a
}

func (h *harness) get(id string) store.Approval {
	h.t.Helper()
	a, err := h.db.GetApproval(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

func (h *harness) count(state string) int {
	h.t.Helper()
	as, err := h.db.ListApprovals(context.Background(), state, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return len(as)
}

const deployArgs = `{"target":"prod","version":"1.2.3"}`

// ---- tests ----------------------------------------------------------------

func TestNewRejectsMissingDependencies(t *testing.T) {
	h := newHarness(t, defaultCfg())
	log := slog.New(slog.DiscardHandler)
	full := approval.Deps{Store: h.db, Audit: h.audit, Alerts: h.alerts, MayApprove: mayApprove, Logger: log}
	if _, err := approval.New(defaultCfg(), full); err != nil {
		t.Fatalf("valid deps: %v", err)
	}
	for name, mut := range map[string]func(*approval.Deps){
		"store":       func(d *approval.Deps) { d.Store = nil },
		"audit":       func(d *approval.Deps) { d.Audit = nil },
		"alerts":      func(d *approval.Deps) { d.Alerts = nil },
		"may approve": func(d *approval.Deps) { d.MayApprove = nil },
		"logger":      func(d *approval.Deps) { d.Logger = nil },
	} {
		d := full
		mut(&d)
		if _, err := approval.New(defaultCfg(), d); err == nil {
			t.Errorf("New accepted Deps without %s", name)
		}
	}
}

func TestRequired(t *testing.T) {
	cfg := defaultCfg()
	cfg.Tools = map[string][]string{"execute_python": {"developer"}, "http_fetch": {"*"}}
	h := newHarness(t, cfg)
	def := func(name string, s tool.Sensitivity) *tool.Definition {
		return &tool.Definition{Name: name, Sensitivity: s}
	}
	for _, tc := range []struct {
		name string
		p    *principal.Principal
		def  *tool.Definition
		want bool
	}{
		{"critical for a developer", alice, def("git_commit", tool.Critical), true},
		{"critical for a guest", gina, def("git_commit", tool.Critical), true},
		{"critical for an admin (exempt)", root, def("git_commit", tool.Critical), false},
		{"critical for a principal without roles", &principal.Principal{Name: "x"}, def("git_commit", tool.Critical), true},
		{"high is not held by default", alice, def("run_command", tool.High), false},
		{"listed for the caller's role", alice, def("execute_python", tool.High), true},
		{"listed for another role", gina, def("execute_python", tool.High), false},
		{"listed for everyone", gina, def("http_fetch", tool.Medium), true},
		{"listed for everyone, admin exempt", root, def("http_fetch", tool.Medium), false},
		{"exempt role among others", &principal.Principal{Name: "y", Roles: []string{"developer", "admin"}}, def("git_commit", tool.Critical), false},
		{"role names are exact", &principal.Principal{Name: "z", Roles: []string{"Admin"}}, def("git_commit", tool.Critical), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.svc.Required(tc.p, tc.def); got != tc.want {
				t.Errorf("Required(%v, %s) = %v, want %v", tc.p.Roles, tc.def.Name, got, tc.want)
			}
		})
	}
}

// TestDigestCanonical: the digest ignores key order and whitespace at any
// depth, changes with any value, and is keyed (an HMAC-SHA256 of the
// canonical JSON under the redaction key).
func TestDigestCanonical(t *testing.T) {
	decode := func(raw string) map[string]any {
		t.Helper()
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		return m
	}
	dig := func(raw string) string {
		t.Helper()
		d, err := approval.Digest(redKey, decode(raw))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	base := `{"a":1,"b":{"x":"1","y":[1,2]},"c":null}`
	if c, err := approval.Canonical(decode(base)); err != nil || string(c) != base {
		t.Errorf("Canonical(%s) = %s, %v", base, c, err)
	}
	mac := hmac.New(sha256.New, redKey)
	mac.Write([]byte(base))
	if got := dig(base); got != hex.EncodeToString(mac.Sum(nil)) {
		t.Errorf("Digest(%s) = %s; want the hex HMAC-SHA256 of its canonical form", base, got)
	}
	if other, _ := approval.Digest(bytes.Repeat([]byte{0x43}, 32), decode(base)); other == dig(base) {
		t.Error("the digest does not depend on the key")
	}
	for _, same := range []string{
		`{"c":null,"b":{"y":[1,2],"x":"1"},"a":1}`,
		"{\n  \"b\" : { \"x\" : \"1\" , \"y\" : [ 1 , 2 ] } ,\t\"a\":1, \"c\" : null }",
		`{"a":1,"b":{"x":"\u0031","y":[1,2]},"c":null}`, // an escape is the same string
	} {
		if dig(same) != dig(base) {
			t.Errorf("Digest(%s) differs from Digest(%s)", same, base)
		}
	}
	for _, diff := range []string{
		`{"a":2,"b":{"x":"1","y":[1,2]},"c":null}`,
		`{"a":"1","b":{"x":"1","y":[1,2]},"c":null}`,
		`{"a":1,"b":{"x":"1","y":[2,1]},"c":null}`,
		`{"a":1,"b":{"x":"1 ","y":[1,2]},"c":null}`,
		`{"a":1,"b":{"x":"1","y":[1,2]}}`,
		`{"a":1,"b":{"x":"1","y":[1,2]},"c":null,"d":false}`,
		`{"a":1,"b":{"X":"1","y":[1,2]},"c":null}`,
		`{"a":1.0,"b":{"x":"1","y":[1,2]},"c":null}`, // numbers as written
		`{"a":9007199254740993,"b":{"x":"1","y":[1,2]},"c":null}`,
	} {
		if dig(diff) == dig(base) {
			t.Errorf("Digest(%s) equals Digest(%s)", diff, base)
		}
	}
	// Integers beyond float64 precision stay distinct when decoded as
	// written (json.Number).
	if dig(`{"n":9007199254740993}`) == dig(`{"n":9007199254740992}`) {
		t.Error("Digest merges 2^53+1 and 2^53")
	}
	empty, err := approval.Digest(redKey, nil)
	if err != nil || empty != dig(`{}`) {
		t.Errorf("Digest(nil) = %s, %v; want the digest of {}", empty, err)
	}
	if _, err := approval.Digest(redKey, map[string]any{"f": func() {}}); err == nil {
		t.Error("Digest of an unencodable value: no error")
	}
}

// TestFullFlow: request → approval by another principal → the identical
// call runs once → the next identical call needs a new approval.
func TestFullFlow(t *testing.T) {
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", deployArgs, "req_1")

	a := h.pending(c)
	want := store.Approval{ID: a.ID, Principal: "alice", Tool: "deploy", ArgsSHA256: c.Digest, Args: c.Args,
		State: store.ApprovalPending, CreatedAt: t0, ExpiresAt: t0.Add(15 * time.Minute), RequestID: "req_1", Session: "sess_alice"}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, h.get(a.ID)); diff != "" {
		t.Errorf("stored request (-want +got):\n%s", diff)
	}
	al := h.alerts.all()
	if len(al) != 1 || al[0].Kind != approval.KindRequest || al[0].Subject != a.ID || al[0].Severity != alert.Medium ||
		!strings.Contains(al[0].Detail, "alice") || !strings.Contains(al[0].Detail, "deploy") || !al[0].Time.Equal(t0) {
		t.Errorf("alerts = %+v; want one approval.request for %s", al, a.ID)
	}

	// The same call again while pending reuses the request.
	if again := h.pending(c); again.ID != a.ID {
		t.Errorf("second Gate while pending created %s; want %s reused", again.ID, a.ID)
	}
	if n := len(h.alerts.all()); n != 1 {
		t.Errorf("%d alerts; a reused request must not alert again", n)
	}

	h.clock.Advance(time.Minute)
	got := h.decide(root, a.ID, true)
	if got.State != store.ApprovalApproved || got.DecidedBy != "root" || got.Comment != "ok by root" ||
		got.DecidedAt == nil || !got.DecidedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("decided = %+v", got)
	}

	h.clock.Advance(time.Minute)
	out := h.gate(h.call(alice, "deploy", deployArgs, "req_2"))
	if !out.Run || out.Approval.ID != a.ID || out.Approval.State != store.ApprovalConsumed ||
		out.Approval.ConsumedAt == nil || !out.Approval.ConsumedAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("Gate after approval = %+v; want Run with %s consumed", out, a.ID)
	}

	// Single use: the identical call again is a new pending request.
	next := h.pending(h.call(alice, "deploy", deployArgs, "req_3"))
	if next.ID == a.ID {
		t.Fatal("the consumed approval was offered again")
	}
	if s := h.get(a.ID).State; s != store.ApprovalConsumed {
		t.Errorf("first request is %s, want consumed", s)
	}

	wantTypes := []audit.Type{audit.ApprovalRequest, audit.ApprovalGrant, audit.ApprovalConsume, audit.ApprovalRequest}
	if diff := cmp.Diff(wantTypes, h.audit.types()); diff != "" {
		t.Errorf("audit types (-want +got):\n%s", diff)
	}
	evs := h.audit.all()
	if len(evs) == 4 {
		if e := evs[0]; e.Principal != "alice" || e.RequestID != "req_1" || e.Tool != "deploy" || !strings.Contains(e.Detail, a.ID) {
			t.Errorf("approval.request = %+v", e)
		}
		if e := evs[1]; e.Principal != "root" || !slices.Equal(e.Roles, []string{"admin"}) || !strings.Contains(e.Detail, a.ID) ||
			!strings.Contains(e.Detail, "ok by root") {
			t.Errorf("approval.grant = %+v; want root's, naming %s and the comment", e, a.ID)
		}
		// The consume record carries the request id of the call that runs
		// (so it joins that call's tool.call.start/end) and names the
		// original one (linking it to approval.request).
		if e := evs[2]; e.Principal != "alice" || e.RequestID != "req_2" || !strings.Contains(e.Detail, a.ID) ||
			!strings.Contains(e.Detail, "requested by req_1") {
			t.Errorf("approval.consume = %+v; want alice's, naming %s and req_2", e, a.ID)
		}
	}
	for _, e := range evs {
		if !e.Type.Known() || e.Status != audit.StatusOK || e.ArgsDigest != audit.DigestPrefix+c.Digest {
			t.Errorf("event %s: status %q, digest %q", e.Type, e.Status, e.ArgsDigest)
		}
	}
}

// TestApprovalBindsExactCall: an approval is usable only by the same
// principal calling the same tool with the same arguments; every other
// call gets its own pending request and leaves the approval unused.
func TestApprovalBindsExactCall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p       *principal.Principal
		tool    string
		args    string
		samePID bool
	}{
		{"another principal", bob, "deploy", deployArgs, false},
		{"an admin (exempt from Required, not from the binding)", root2, "deploy", deployArgs, false},
		{"changed argument value", alice, "deploy", `{"target":"prod","version":"1.2.4"}`, true},
		{"extra argument", alice, "deploy", `{"target":"prod","version":"1.2.3","force":true}`, true},
		{"missing argument", alice, "deploy", `{"target":"prod"}`, true},
		{"number instead of string", alice, "deploy", `{"target":"prod","version":123}`, true},
		{"another tool", alice, "destroy", deployArgs, true},
		{"tool name case", alice, "Deploy", deployArgs, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, defaultCfg())
			a := h.pending(h.call(alice, "deploy", deployArgs, "req_1"))
			h.decide(root, a.ID, true)

			other := h.pending(h.call(tc.p, tc.tool, tc.args, "req_x"))
			if other.ID == a.ID || other.Principal != tc.p.Name || other.Tool != tc.tool {
				t.Errorf("attack got %+v; want its own pending request", other)
			}
			if s := h.get(a.ID).State; s != store.ApprovalApproved {
				t.Errorf("alice's approval is %s after the attack; want approved (unused)", s)
			}
			if n := len(h.audit.ofType(audit.ApprovalConsume)); n != 0 {
				t.Errorf("%d approval.consume events; the attack consumed something", n)
			}
			// The legitimate call still runs, once.
			if out := h.gate(h.call(alice, "deploy", deployArgs, "req_2")); !out.Run || out.Approval.ID != a.ID {
				t.Errorf("legitimate call after the attack: %+v; want Run with %s", out, a.ID)
			}
		})
	}
}

// TestReplayAfterConsumption: however often the consumed call is replayed,
// it never runs again, and the consumed approval cannot be re-decided.
func TestReplayAfterConsumption(t *testing.T) {
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", deployArgs, "req_1")
	a := h.pending(c)
	h.decide(root, a.ID, true)
	if out := h.gate(c); !out.Run {
		t.Fatalf("first run: %+v", out)
	}
	var replay store.Approval
	for i := range 3 {
		out := h.gate(c)
		if out.Run {
			t.Fatalf("replay %d ran", i)
		}
		if i > 0 && out.Approval.ID != replay.ID {
			t.Errorf("replay %d created %s; want pending %s reused", i, out.Approval.ID, replay.ID)
		}
		replay = out.Approval
	}
	if _, err := h.svc.Decide(context.Background(), root2, a.ID, true, ""); !errors.Is(err, store.ErrConflict) {
		t.Errorf("re-approving a consumed request: %v; want ErrConflict", err)
	}
	if n := len(h.audit.ofType(audit.ApprovalConsume)); n != 1 {
		t.Errorf("%d approval.consume events, want 1", n)
	}
}

// TestExpiry: an approval past its TTL does not run the call; Expire
// marks requests expired and audits each one.
func TestExpiry(t *testing.T) {
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", deployArgs, "req_1")
	approved := h.pending(c)
	h.decide(root, approved.ID, true)
	stale := h.pending(h.call(bob, "deploy", deployArgs, "req_b"))

	// At exactly the expiry the approval is no longer usable.
	h.clock.Advance(15 * time.Minute)
	n, err := h.svc.Expire(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("Expire = %d, %v; want 2 (one approved, one pending)", n, err)
	}
	for _, id := range []string{approved.ID, stale.ID} {
		if s := h.get(id).State; s != store.ApprovalExpired {
			t.Errorf("%s is %s, want expired", id, s)
		}
	}
	exp := h.audit.ofType(audit.ApprovalExpire)
	if len(exp) != 2 {
		t.Fatalf("approval.expire events = %+v; want 2", exp)
	}
	for _, e := range exp {
		if e.Principal != audit.SystemPrincipal || e.Tool != "deploy" || !strings.Contains(e.Detail, "expired") {
			t.Errorf("approval.expire = %+v", e)
		}
	}
	if ids := []string{exp[0].Detail, exp[1].Detail}; !slices.ContainsFunc(ids, func(d string) bool { return strings.Contains(d, approved.ID) }) ||
		!slices.ContainsFunc(ids, func(d string) bool { return strings.Contains(d, stale.ID) }) {
		t.Errorf("approval.expire details %q do not name both requests", ids)
	}

	out := h.gate(c)
	if out.Run || out.Approval.ID == approved.ID || out.Approval.State != store.ApprovalPending {
		t.Errorf("Gate after expiry = %+v; want a new pending request, not Run", out)
	}
	if _, err := h.svc.Decide(context.Background(), root, stale.ID, true, ""); !errors.Is(err, store.ErrConflict) {
		t.Errorf("approving an expired request: %v; want ErrConflict", err)
	}
	if n, err := h.svc.Expire(context.Background()); err != nil || n != 0 {
		t.Errorf("second Expire = %d, %v; want 0", n, err)
	}
}

// TestExpiredBeforeSweep: between the expiry and the next Expire sweep an
// approved request is still "approved" in the store, yet it neither runs
// the call nor can a pending one be approved.
func TestExpiredBeforeSweep(t *testing.T) {
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", deployArgs, "req_1")
	approved := h.pending(c)
	h.decide(root, approved.ID, true)
	pend := h.pending(h.call(alice, "deploy", `{"target":"staging"}`, "req_2"))

	h.clock.Advance(15*time.Minute + time.Nanosecond)
	if out := h.gate(c); out.Run {
		t.Fatalf("an expired approval ran the call: %+v", out)
	}
	if s := h.get(approved.ID).State; s != store.ApprovalApproved {
		t.Errorf("state %s; the gate must not consume an expired approval", s)
	}
	if _, err := h.svc.Decide(context.Background(), root, pend.ID, true, ""); !errors.Is(err, store.ErrConflict) {
		t.Errorf("approving after expiry, before the sweep: %v; want ErrConflict", err)
	}
	if n := len(h.audit.ofType(audit.ApprovalConsume)); n != 0 {
		t.Errorf("%d approval.consume events", n)
	}
	if n := len(h.audit.ofType(audit.ApprovalGrant)); n != 1 {
		t.Errorf("%d approval.grant events; a refused decision was recorded as a grant", n)
	}
}

// TestDecideRefusals: nobody decides their own request, only approvers of
// the tool decide, a request is decided once, and refused decisions leave
// no trace but their error.
func TestDecideRefusals(t *testing.T) {
	h := newHarness(t, defaultCfg())
	ctx := context.Background()
	a := h.pending(h.call(alice, "deploy", deployArgs, "req_1"))
	rootReq := h.pending(h.call(root, "deploy", deployArgs, "req_r"))
	other := h.pending(h.call(alice, "destroy", deployArgs, "req_2"))

	for _, tc := range []struct {
		name    string
		p       *principal.Principal
		id      string
		approve bool
		want    error
	}{
		{"self approval", alice, a.ID, true, approval.ErrSelfApproval},
		{"self denial", alice, a.ID, false, approval.ErrSelfApproval},
		{"admin approving own request", root, rootReq.ID, true, approval.ErrSelfApproval},
		{"same name, other roles", &principal.Principal{Name: "alice", Roles: []string{"admin"}}, a.ID, true, approval.ErrSelfApproval},
		{"guest", gina, a.ID, true, approval.ErrNotApprover},
		{"requester's peer", bob, a.ID, true, approval.ErrNotApprover},
		{"reviewer of another tool", rita, other.ID, true, approval.ErrNotApprover},
		{"unknown id", root, "apr_nosuch", true, store.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.svc.Decide(ctx, tc.p, tc.id, tc.approve, "")
			if !errors.Is(err, tc.want) {
				t.Errorf("Decide = %v; want %v", err, tc.want)
			}
		})
	}
	for _, id := range []string{a.ID, rootReq.ID, other.ID} {
		if s := h.get(id).State; s != store.ApprovalPending {
			t.Errorf("%s is %s after refused decisions; want pending", id, s)
		}
	}
	if n := len(h.audit.ofType(audit.ApprovalGrant)) + len(h.audit.ofType(audit.ApprovalDeny)); n != 0 {
		t.Errorf("%d decision events for refused decisions", n)
	}

	// A reviewer may decide the tool it reviews; the second decision,
	// either way, conflicts and the first stands.
	if got := h.decide(rita, a.ID, true); got.State != store.ApprovalApproved || got.DecidedBy != "rita" {
		t.Errorf("reviewer's approval = %+v", got)
	}
	for _, approve := range []bool{true, false} {
		cur, err := h.svc.Decide(ctx, root, a.ID, approve, "")
		if !errors.Is(err, store.ErrConflict) || cur.State != store.ApprovalApproved {
			t.Errorf("second decision (approve=%v) = %+v, %v; want ErrConflict with state approved", approve, cur, err)
		}
	}
	if got := h.get(a.ID); got.DecidedBy != "rita" || got.State != store.ApprovalApproved {
		t.Errorf("after a second decision: %+v; want rita's approval to stand", got)
	}
	if n := len(h.audit.ofType(audit.ApprovalGrant)); n != 1 {
		t.Errorf("%d approval.grant events, want 1", n)
	}
}

// TestDenyThenApproveConflicts: a denied request cannot be approved later.
func TestDenyThenApproveConflicts(t *testing.T) {
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", deployArgs, "req_1")
	a := h.pending(c)
	if got := h.decide(root, a.ID, false); got.State != store.ApprovalDenied || got.DecidedBy != "root" {
		t.Fatalf("denial = %+v", got)
	}
	if _, err := h.svc.Decide(context.Background(), root2, a.ID, true, ""); !errors.Is(err, store.ErrConflict) {
		t.Errorf("approve after deny: %v; want ErrConflict", err)
	}
	if s := h.get(a.ID).State; s != store.ApprovalDenied {
		t.Errorf("state %s, want denied", s)
	}
	if diff := cmp.Diff([]audit.Type{audit.ApprovalRequest, audit.ApprovalDeny}, h.audit.types()); diff != "" {
		t.Errorf("audit types (-want +got):\n%s", diff)
	}
}

// TestDeniedCallStaysDenied: after a denial the identical call does not
// run and is answered "denied" (APPROVAL_DENIED at the gateway) for the
// life of the request — retrying must not simply open a new request and
// alert the approvers again until one of them gives in.
func TestDeniedCallStaysDenied(t *testing.T) {
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", deployArgs, "req_1")
	a := h.pending(c)
	h.decide(root, a.ID, false)

	out := h.gate(h.call(alice, "deploy", deployArgs, "req_2"))
	if out.Run {
		t.Fatal("a denied call ran")
	}
	if out.Approval.ID != a.ID || out.Approval.State != store.ApprovalDenied {
		t.Errorf("Gate after a denial = %s %s; want %s denied", out.Approval.ID, out.Approval.State, a.ID)
	}
	if n := len(h.audit.ofType(audit.ApprovalRequest)); n != 1 {
		t.Errorf("%d approval.request events; a retry after a denial opened a new request", n)
	}
	if n := len(h.alerts.all()); n != 1 {
		t.Errorf("%d alerts; approvers were asked again about a denied call", n)
	}
	// Other arguments are another call: not covered by the denial.
	h.pending(h.call(alice, "deploy", `{"target":"staging"}`, "req_3"))
	// Once the denied request expired, the call may be asked for again.
	h.clock.Advance(15 * time.Minute)
	if again := h.pending(c); again.ID == a.ID {
		t.Error("an expired denial was reused")
	}
}

// TestConcurrentGatesRunOnce: 20 identical calls racing for one approval:
// exactly one runs.
func TestConcurrentGatesRunOnce(t *testing.T) {
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", deployArgs, "req_1")
	a := h.pending(c)
	h.decide(root, a.ID, true)

	var runs atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			<-start
			cc := c
			cc.RequestID = fmt.Sprintf("req_race_%d", i)
			out, err := h.svc.Gate(context.Background(), cc)
			if err != nil {
				errs <- err
				return
			}
			if out.Run {
				runs.Add(1)
				if out.Approval.ID != a.ID {
					errs <- fmt.Errorf("ran with %s, want %s", out.Approval.ID, a.ID)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d of 20 identical calls ran on one approval; want exactly 1", n)
	}
	if s := h.get(a.ID).State; s != store.ApprovalConsumed {
		t.Errorf("approval is %s, want consumed", s)
	}
	if n := len(h.audit.ofType(audit.ApprovalConsume)); n != 1 {
		t.Errorf("%d approval.consume events, want 1", n)
	}
	if n := h.count(store.ApprovalPending); n > 1 {
		t.Logf("note: the 19 losers opened %d pending requests for one identical call", n)
	}
}

// TestGateWaitsForDecision: a call held with approval.wait runs as soon as
// the request is approved during the wait.
func TestGateWaitsForDecision(t *testing.T) {
	cfg := defaultCfg()
	cfg.Wait = 5 * time.Second
	for _, tc := range []struct {
		name    string
		approve bool
		run     bool
		state   string
	}{
		{"approved while waiting", true, true, store.ApprovalConsumed},
		{"denied while waiting", false, false, store.ApprovalDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cfg)
			h.alerts.created = make(chan alert.Alert, 1)
			type result struct {
				out approval.Outcome
				err error
			}
			done := make(chan result, 1)
			go func() {
				out, err := h.svc.Gate(context.Background(), h.call(alice, "deploy", deployArgs, "req_1"))
				done <- result{out, err}
			}()
			al := <-h.alerts.created // the request exists; the call waits
			h.decide(root, al.Subject, tc.approve)
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.out.Run != tc.run || r.out.Approval.ID != al.Subject || r.out.Approval.State != tc.state {
				t.Errorf("Gate = Run %v, %s %s; want Run %v, %s %s", r.out.Run, r.out.Approval.ID, r.out.Approval.State,
					tc.run, al.Subject, tc.state)
			}
		})
	}
}

// TestGateWaitEnds: without a decision the call comes back pending after
// approval.wait, or as soon as its context ends.
func TestGateWaitEnds(t *testing.T) {
	cfg := defaultCfg()
	cfg.Wait = 100 * time.Millisecond
	h := newHarness(t, cfg)
	out := h.gate(h.call(alice, "deploy", deployArgs, "req_1"))
	if out.Run || out.Approval.State != store.ApprovalPending {
		t.Errorf("after the wait: %+v; want pending", out)
	}

	cfg.Wait = 10 * time.Minute
	h2 := newHarness(t, cfg)
	h2.alerts.created = make(chan alert.Alert, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan approval.Outcome, 1)
	go func() {
		out, err := h2.svc.Gate(ctx, h2.call(alice, "deploy", deployArgs, "req_1"))
		if err != nil {
			t.Error(err)
		}
		done <- out
	}()
	<-h2.alerts.created
	cancel()
	if out := <-done; out.Run || out.Approval.State != store.ApprovalPending {
		t.Errorf("after cancellation: %+v; want pending", out)
	}
}

// TestPendingSurvivesRestart: requests live in the store: after a restart
// the identical call reuses its pending request, an approver decides it,
// and the call runs once.
func TestPendingSurvivesRestart(t *testing.T) {
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", deployArgs, "req_1")
	a := h.pending(c)
	h.restart()

	if got := h.get(a.ID); got.State != store.ApprovalPending || got.ArgsSHA256 != c.Digest || !bytes.Equal(got.Args, c.Args) {
		t.Fatalf("after restart: %+v", got)
	}
	if again := h.pending(c); again.ID != a.ID {
		t.Errorf("after restart the call opened %s; want %s reused", again.ID, a.ID)
	}
	h.decide(root, a.ID, true)
	h.restart()
	if out := h.gate(c); !out.Run || out.Approval.ID != a.ID {
		t.Errorf("Gate after approval and restart = %+v; want Run", out)
	}
	h.restart()
	if out := h.gate(c); out.Run {
		t.Error("the consumed approval ran again after a restart")
	}
}

// TestAuditNeverCarriesRawArguments: approval events and the stored
// request hold only the redacted arguments the caller of Gate passed.
func TestAuditNeverCarriesRawArguments(t *testing.T) {
	secret := "hunter2-" + strings.Join([]string{"correct", "horse", "battery"}, "-") // fake, built at run time
	raw := `{"target":"prod","password":"` + secret + `"}`
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", raw, "req_1")
	if bytes.Contains(c.Args, []byte(secret)) || !bytes.Contains(c.Args, []byte("hmac-sha256:")) {
		t.Fatalf("redactor did not hide the password: %s", c.Args)
	}
	a := h.pending(c)
	h.decide(root, a.ID, true)
	h.gate(c)
	h.pending(h.call(alice, "deploy", `{"target":"staging","password":"`+secret+`"}`, "req_2"))
	h.clock.Advance(time.Hour)
	if _, err := h.svc.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}

	seen := map[audit.Type]bool{}
	for _, e := range h.audit.all() {
		seen[e.Type] = true
		b, _ := json.Marshal(e)
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s event carries the raw password: %s", e.Type, b)
		}
		if !json.Valid(e.Args) || !bytes.Contains(e.Args, []byte("hmac-sha256:")) {
			t.Errorf("%s event args %s; want the redacted copy", e.Type, e.Args)
		}
	}
	for _, typ := range []audit.Type{audit.ApprovalRequest, audit.ApprovalGrant, audit.ApprovalConsume, audit.ApprovalExpire} {
		if !seen[typ] {
			t.Errorf("no %s event", typ)
		}
	}
	if got := h.audit.ofType(audit.ApprovalRequest)[0].Args; !bytes.Equal(got, c.Args) {
		t.Errorf("approval.request args %s; want exactly what was passed: %s", got, c.Args)
	}
	if got := h.get(a.ID).Args; !bytes.Equal(got, c.Args) {
		t.Errorf("stored args %s; want exactly what was passed: %s", got, c.Args)
	}
	for _, al := range h.alerts.all() {
		if strings.Contains(al.Detail, secret) || strings.Contains(al.Subject, secret) {
			t.Errorf("alert carries the password: %+v", al)
		}
	}
}

// TestArgsDigestResistsGuessing: the digest that binds the approval is
// written to the audit log, the store, the admin API and (a prefix) the
// alert webhooks. Without the key, a reader of those cannot confirm a
// guessed secret offline: an unkeyed SHA-256 of the canonical arguments
// with the right guess matches none of them (STYLE §5).
func TestArgsDigestResistsGuessing(t *testing.T) {
	const secret = "hunter2"
	h := newHarness(t, defaultCfg())
	a := h.pending(h.call(alice, "deploy", `{"target":"prod","password":"`+secret+`"}`, "req_1"))
	e := h.audit.ofType(audit.ApprovalRequest)[0]
	al := h.alerts.all()
	if len(al) != 1 {
		t.Fatalf("alerts %+v", al)
	}
	for _, guess := range []string{"letmein", "hunter2", "password1"} {
		canon, err := approval.Canonical(map[string]any{"target": "prod", "password": guess})
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(canon)
		d := hex.EncodeToString(sum[:])
		for where, published := range map[string]string{"audit args_digest": e.ArgsDigest, "stored args_sha256": a.ArgsSHA256,
			"audit detail": e.Detail, "alert detail": al[0].Detail} {
			if strings.Contains(published, d[:12]) {
				t.Errorf("%s confirms the guess %q: the redacted password is recoverable offline", where, guess)
			}
		}
	}
}

// TestDecisionIsAuditedFirst: a decision that cannot be audited does not
// take effect (fail closed, STYLE §1): no unrecorded approval runs a call.
func TestDecisionIsAuditedFirst(t *testing.T) {
	h := newHarness(t, defaultCfg())
	c := h.call(alice, "deploy", deployArgs, "req_1")
	a := h.pending(c)
	h.audit.failOn(audit.ApprovalGrant)
	_, err := h.svc.Decide(context.Background(), root, a.ID, true, "")
	if !errors.Is(err, audit.ErrUnavailable) {
		t.Errorf("Decide = %v; want the audit failure (approval.grant could not be recorded)", err)
	}
	if s := h.get(a.ID).State; s != store.ApprovalPending {
		t.Errorf("state %s after an unrecorded grant; want pending", s)
	}
	h.audit.failOn()
	if out := h.gate(c); out.Run {
		t.Errorf("a call ran on an approval whose grant was never audited (state %s)", out.Approval.State)
	}
}

// TestRequestIsAuditedFirst: without its approval.request record no
// request exists and nobody is alerted.
func TestRequestIsAuditedFirst(t *testing.T) {
	h := newHarness(t, defaultCfg())
	h.audit.failOn(audit.ApprovalRequest)
	out, err := h.svc.Gate(context.Background(), h.call(alice, "deploy", deployArgs, "req_1"))
	if !errors.Is(err, audit.ErrUnavailable) || out.Run {
		t.Errorf("Gate = %+v, %v; want the audit error and no run", out, err)
	}
	if n := h.count(""); n != 0 {
		t.Errorf("%d requests stored without their audit record", n)
	}
	if n := len(h.alerts.all()); n != 0 {
		t.Errorf("%d alerts for an unrecorded request", n)
	}
}
