package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
)

// ---- fakes ----------------------------------------------------------------

// secretRule is the rule name the fake authorizer reports on deny. It must
// reach the audit log and never the client.
const secretRule = "rule-17-deny-interns"

// fakeAuthz allows ActionCall on the tool names in allowed ("*" allows
// every name) for any non-nil principal, and counts its calls.
type fakeAuthz struct {
	allowed map[string]bool
	calls   atomic.Int32
	seen    sync.Map // resource -> true
}

func allow(names ...string) *fakeAuthz {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return &fakeAuthz{allowed: m}
}

func (f *fakeAuthz) Decide(p *principal.Principal, a policy.Action, res string) policy.Decision {
	f.calls.Add(1)
	f.seen.Store(res, true)
	if p != nil && a == policy.ActionCall && (f.allowed[res] || f.allowed["*"]) {
		return policy.Decision{Allow: true, Reason: reason.OK, Rule: "fake allow " + res}
	}
	return policy.Decision{Reason: reason.PermissionDenied, Rule: secretRule}
}

func (f *fakeAuthz) DecideRequest(r *policy.Request) policy.Decision {
	return f.Decide(r.Principal, r.Action, r.Resource)
}

func (f *fakeAuthz) Evaluate(r *policy.Request) policy.Decision {
	return f.Decide(r.Principal, r.Action, r.Resource)
}

func (f *fakeAuthz) Conditional(policy.Action, string) bool { return false }

func (f *fakeAuthz) Mode() policy.Mode { return policy.ModeEnforce }

var _ gateway.Authorizer = (*fakeAuthz)(nil)

// recorder is an Emitter that keeps a copy of every event it accepted.
// fail, if set, is consulted first with the 1-based number of the Emit
// call; a non-nil error makes that Emit fail and the event is not kept.
// honorCtx makes Emit fail when its ctx is done, as a remote sink would.
type recorder struct {
	mu       sync.Mutex
	n        int
	events   []audit.Event
	fail     func(n int, e *audit.Event) error
	honorCtx bool
	discard  bool // count only (benchmarks)
}

var _ gateway.Emitter = (*recorder)(nil)

var errDiskOnFire = errors.New("audit backend: disk on fire at /var/lib/portcullis")

func (r *recorder) Emit(ctx context.Context, e *audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.fail != nil {
		if err := r.fail(r.n, e); err != nil {
			return err
		}
	}
	if r.honorCtx && ctx.Err() != nil {
		return fmt.Errorf("emit: %w", ctx.Err())
	}
	if r.discard {
		return nil
	}
	c := *e
	c.Args = bytes.Clone(e.Args)
	r.events = append(r.events, c)
	return nil
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

func (r *recorder) types() []audit.Type {
	var out []audit.Type
	for _, e := range r.all() {
		out = append(out, e.Type)
	}
	return out
}

// failType makes every Emit of events of type t fail.
func failType(t audit.Type) func(int, *audit.Event) error {
	return func(_ int, e *audit.Event) error {
		if e.Type == t {
			return errDiskOnFire
		}
		return nil
	}
}

// failNth makes the nth Emit fail.
func failNth(n int) func(int, *audit.Event) error {
	return func(i int, _ *audit.Event) error {
		if i == n {
			return errDiskOnFire
		}
		return nil
	}
}

// clock is a fake clock that advances by step on every reading.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// probe is a test tool that records whether and how it ran.
type probe struct {
	tool.Func
	ran  atomic.Int32
	mu   sync.Mutex
	args []json.RawMessage
}

func (p *probe) Call(ctx context.Context, args json.RawMessage) (*tool.Result, error) {
	p.ran.Add(1)
	p.mu.Lock()
	p.args = append(p.args, bytes.Clone(args))
	p.mu.Unlock()
	return p.Func.Call(ctx, args)
}

func (p *probe) lastArgs() json.RawMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.args) == 0 {
		return nil
	}
	return p.args[len(p.args)-1]
}

func mustSchema(t testing.TB, s string) *jsonschema.Schema {
	t.Helper()
	var sc jsonschema.Schema
	if err := json.Unmarshal([]byte(s), &sc); err != nil {
		t.Fatalf("schema %s: %v", s, err)
	}
	return &sc
}

// echoSchema: path required; password (min 8 chars), n, nested, tags optional;
// nothing else.
const echoSchema = `{
	"type": "object",
	"properties": {
		"path": {"type": "string"},
		"password": {"type": "string", "minLength": 8},
		"n": {"type": "integer"},
		"nested": {"type": "object"},
		"tags": {"type": "array"}
	},
	"required": ["path"],
	"additionalProperties": false
}`

// newProbe returns a probe tool named name with schema and fn (echo of
// "path" when fn is nil).
func newProbe(t testing.TB, name, schema string, fn func(ctx context.Context, args json.RawMessage) (*tool.Result, error)) *probe {
	t.Helper()
	if fn == nil {
		fn = echo
	}
	return &probe{Func: tool.Func{
		Def: tool.Definition{Name: name, Description: "test tool", InputSchema: mustSchema(t, schema), Sensitivity: tool.Low},
		Fn:  fn,
	}}
}

func echo(_ context.Context, args json.RawMessage) (*tool.Result, error) {
	var a struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return nil, err
	}
	return &tool.Result{Text: "echo:" + a.Path, Structured: map[string]any{"path": a.Path}}, nil
}

var testKey = bytes.Repeat([]byte{0x42}, 32)

func newRedactor(t testing.TB) *audit.Redactor {
	t.Helper()
	r, err := audit.NewRedactor(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type env struct {
	gw    *gateway.Gateway
	rec   *recorder
	authz gateway.Authorizer
	red   *audit.Redactor
	clock *clock
}

type envOpt func(*gateway.Config, *gateway.Deps)

func newEnv(t testing.TB, authz gateway.Authorizer, rec *recorder, opts ...envOpt) *env {
	t.Helper()
	if rec == nil {
		rec = &recorder{}
	}
	ck := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), step: 5 * time.Millisecond}
	cfg := gateway.Config{CallTimeout: 10 * time.Second, MaxArgBytes: 1024}
	deps := gateway.Deps{
		Policy:   authz,
		Audit:    rec,
		Redactor: newRedactor(t),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:      ck.Now,
	}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	gw, err := gateway.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	return &env{gw: gw, rec: rec, authz: authz, red: deps.Redactor, clock: ck}
}

func (e *env) register(t testing.TB, tools ...tool.Tool) {
	t.Helper()
	for _, tl := range tools {
		if err := e.gw.Register(tl); err != nil {
			t.Fatalf("Register(%s): %v", tl.Definition().Name, err)
		}
	}
}

var alice = &principal.Principal{UserID: 1, Name: "alice", Roles: []string{"developer"}, Method: principal.MethodAPIKey}

func req(name, args string) gateway.CallRequest {
	r := gateway.CallRequest{Principal: alice, Tool: name, RequestID: "req_test", Session: "sess_1", RemoteAddr: "192.0.2.7:4000"}
	if args != "" {
		r.Args = json.RawMessage(args)
	}
	return r
}

func call(t testing.TB, e *env, r gateway.CallRequest) *tool.Result {
	t.Helper()
	res := e.gw.Call(context.Background(), r)
	if res == nil {
		t.Fatalf("Call(%q) returned nil", r.Tool)
	}
	return res
}

// refused is what a refusal looks like to the client.
func refused(code reason.Code) *tool.Result {
	return &tool.Result{Text: reason.Message(code), IsError: true, Code: code}
}

// ---- tests ----------------------------------------------------------------

func TestStageOrder(t *testing.T) {
	e := newEnv(t, allow(), nil)
	want := []string{"resolve", "quarantine", "authorize", "validate", "policy", "flow", "limits", "approval", "audit_start", "execute", "audit_end"}
	if diff := cmp.Diff(want, e.gw.StageNames()); diff != "" {
		t.Errorf("StageNames() mismatch (-want +got):\n%s", diff)
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	red := newRedactor(t)
	good := gateway.Deps{Policy: allow(), Audit: &recorder{}, Redactor: red, Logger: slog.New(slog.DiscardHandler)}
	tests := []struct {
		name string
		cfg  gateway.Config
		mod  func(*gateway.Deps)
	}{
		{"nil policy", gateway.Config{CallTimeout: time.Second}, func(d *gateway.Deps) { d.Policy = nil }},
		{"nil audit", gateway.Config{CallTimeout: time.Second}, func(d *gateway.Deps) { d.Audit = nil }},
		{"nil redactor", gateway.Config{CallTimeout: time.Second}, func(d *gateway.Deps) { d.Redactor = nil }},
		{"nil logger", gateway.Config{CallTimeout: time.Second}, func(d *gateway.Deps) { d.Logger = nil }},
		{"zero call timeout", gateway.Config{}, func(*gateway.Deps) {}},
		{"negative call timeout", gateway.Config{CallTimeout: -time.Second}, func(*gateway.Deps) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := good
			tt.mod(&d)
			gw, err := gateway.New(tt.cfg, d)
			if err == nil || gw != nil {
				t.Errorf("New() = %v, %v; want nil, error", gw, err)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		if _, err := gateway.New(gateway.Config{CallTimeout: time.Second}, good); err != nil {
			t.Errorf("New() with all dependencies: %v", err)
		}
	})
}

func TestRegisterRefusesBadTools(t *testing.T) {
	e := newEnv(t, allow("*"), nil)
	orig := newProbe(t, "read_file", echoSchema, nil)
	e.register(t, orig)

	def := func(mod func(*tool.Definition)) tool.Tool {
		d := tool.Definition{Name: "ok_tool", InputSchema: mustSchema(t, `{"type":"object"}`), Sensitivity: tool.Medium}
		mod(&d)
		return &tool.Func{Def: d, Fn: echo}
	}
	tests := []struct {
		name string
		tool tool.Tool
	}{
		{"duplicate name", def(func(d *tool.Definition) { d.Name = "read_file" })},
		{"empty name", def(func(d *tool.Definition) { d.Name = "" })},
		{"space in name", def(func(d *tool.Definition) { d.Name = "read file" })},
		{"slash in name", def(func(d *tool.Definition) { d.Name = "../x" })},
		{"star name", def(func(d *tool.Definition) { d.Name = "*" })},
		{"unicode name", def(func(d *tool.Definition) { d.Name = "ｒｅａｄ" })},
		{"129 chars", def(func(d *tool.Definition) { d.Name = strings.Repeat("a", 129) })},
		{"nil schema", def(func(d *tool.Definition) { d.InputSchema = nil })},
		{"zero sensitivity", def(func(d *tool.Definition) { d.Sensitivity = 0 })},
		{"sensitivity above critical", def(func(d *tool.Definition) { d.Sensitivity = tool.Critical + 1 })},
		{"unresolvable schema", def(func(d *tool.Definition) {
			d.InputSchema = mustSchema(t, `{"type":"object","properties":{"a":{"$ref":"#/$defs/missing"}}}`)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.gw.Register(tt.tool); err == nil {
				t.Errorf("Register(%q) = nil; want error", tt.tool.Definition().Name)
			}
		})
	}

	// The original registration is still the one that runs.
	if got := call(t, e, req("read_file", `{"path":"a"}`)); got.IsError || got.Text != "echo:a" {
		t.Errorf("read_file after refused duplicate = %+v; want echo:a", got)
	}
	if got := orig.ran.Load(); got != 1 {
		t.Errorf("original tool ran %d times; want 1", got)
	}
	// Names at the limit are fine.
	if err := e.gw.Register(def(func(d *tool.Definition) { d.Name = strings.Repeat("a", 128) })); err != nil {
		t.Errorf("Register(128-char name) = %v; want nil", err)
	}
	if err := e.gw.Register(def(func(d *tool.Definition) { d.Name = "srv__Tool.v2-x"; d.Sensitivity = tool.Critical })); err != nil {
		t.Errorf("Register(srv__Tool.v2-x) = %v; want nil", err)
	}
}

func TestCallRefusesMalformedNames(t *testing.T) {
	names := []struct{ name, tool string }{
		{"empty", ""},
		{"trailing space", "read_file "},
		{"leading space", " read_file"},
		{"tab", "read\tfile"},
		{"newline", "read_file\n"},
		{"NUL", "read_file\x00"},
		{"NUL prefix", "\x00read_file"},
		{"fullwidth letters", "ｒｅａｄ_ｆｉｌｅ"},
		{"zero-width space", "read\u200b_file"},
		{"cyrillic e", "r\u0435ad_file"},
		{"path traversal", "../x"},
		{"slash", "read/file"},
		{"star", "*"},
		{"glob", "read_*"},
		{"question mark", "read_fil?"},
		{"bracket", "[r]ead_file"},
		{"129 chars", strings.Repeat("r", 129)},
		{"invalid utf8", "read_file\xff"},
	}
	for _, tt := range names {
		t.Run(tt.name, func(t *testing.T) {
			authz := allow("*")
			e := newEnv(t, authz, nil)
			p := newProbe(t, "read_file", echoSchema, nil)
			e.register(t, p)
			p129 := newProbe(t, strings.Repeat("r", 128), echoSchema, nil)
			e.register(t, p129)

			got := call(t, e, req(tt.tool, `{"path":"a"}`))
			if diff := cmp.Diff(refused(reason.UnknownTool), got); diff != "" {
				t.Errorf("Call(%q) mismatch (-want +got):\n%s", tt.tool, diff)
			}
			if n := p.ran.Load() + p129.ran.Load(); n != 0 {
				t.Errorf("a tool ran %d times for name %q", n, tt.tool)
			}
			if n := authz.calls.Load(); n != 0 {
				t.Errorf("policy consulted %d times with malformed name %q; want 0", n, tt.tool)
			}
			evs := e.rec.all()
			if len(evs) != 1 || evs[0].Type != audit.ToolCallRefused || evs[0].Reason != reason.UnknownTool ||
				evs[0].Decision != audit.DecisionDeny || evs[0].Status != audit.StatusRefused {
				t.Errorf("events = %+v; want one tool.call.refused UNKNOWN_TOOL deny", evs)
			}
		})
	}
}

func TestCallPermissionDenied(t *testing.T) {
	tests := []struct {
		name      string
		principal *principal.Principal
		tool      string
		detail    string // substring the policy.deny event's Detail must hold
	}{
		{"forbidden registered tool", alice, "delete_file", secretRule},
		{"forbidden unregistered tool", alice, "launch_missiles", secretRule},
		{"nil principal", nil, "read_file", secretRule},
		{"case variant of allowed tool", alice, "READ_FILE", secretRule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, allow("read_file"), nil)
			rf := newProbe(t, "read_file", echoSchema, nil)
			del := newProbe(t, "delete_file", echoSchema, nil)
			e.register(t, rf, del)

			r := req(tt.tool, `{"path":"a"}`)
			r.Principal = tt.principal
			got := call(t, e, r)
			// Identical for registered and unregistered tools: no existence leak.
			if diff := cmp.Diff(refused(reason.PermissionDenied), got); diff != "" {
				t.Errorf("Call mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(got.Text, secretRule) || strings.Contains(got.Detail, secretRule) {
				t.Errorf("client result %+v names the policy rule", got)
			}
			if n := rf.ran.Load() + del.ran.Load(); n != 0 {
				t.Errorf("a tool ran %d times", n)
			}
			evs := e.rec.all()
			if len(evs) != 1 {
				t.Fatalf("events = %+v; want one policy.deny", evs)
			}
			ev := evs[0]
			if ev.Type != audit.PolicyDeny || ev.Reason != reason.PermissionDenied || ev.Decision != audit.DecisionDeny ||
				ev.Status != audit.StatusRefused || ev.Tool != tt.tool || !strings.Contains(ev.Detail, tt.detail) {
				t.Errorf("event = %+v; want policy.deny PERMISSION_DENIED for %q with detail %q", ev, tt.tool, tt.detail)
			}
		})
	}
}

func TestCallPermittedButUnregistered(t *testing.T) {
	e := newEnv(t, allow("*"), nil)
	p := newProbe(t, "read_file", echoSchema, nil)
	e.register(t, p)
	for _, name := range []string{"launch_missiles", "READ_FILE", "read_file.", "read_filE"} {
		t.Run(name, func(t *testing.T) {
			got := call(t, e, req(name, `{"path":"a"}`))
			if diff := cmp.Diff(refused(reason.UnknownTool), got); diff != "" {
				t.Errorf("Call(%q) mismatch (-want +got):\n%s", name, diff)
			}
			evs := e.rec.all()
			last := evs[len(evs)-1]
			if last.Type != audit.ToolCallRefused || last.Reason != reason.UnknownTool || last.Tool != name {
				t.Errorf("last event = %+v; want tool.call.refused UNKNOWN_TOOL", last)
			}
		})
	}
	if n := p.ran.Load(); n != 0 {
		t.Errorf("read_file ran %d times", n)
	}
}

// TestCallRealPolicyDenyVariants uses the real policy engine: "allow *"
// plus "deny delete_file" must not be bypassed by a look-alike of the
// denied name.
func TestCallRealPolicyDenyVariants(t *testing.T) {
	eng, err := policy.New([]store.Grant{
		{Role: "developer", Action: "call", Pattern: "*", Effect: "allow"},
		{Role: "developer", Action: "call", Pattern: "delete_file", Effect: "deny"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, eng, nil)
	del := newProbe(t, "delete_file", echoSchema, nil)
	rf := newProbe(t, "read_file", echoSchema, nil)
	e.register(t, del, rf)

	tests := []struct {
		tool string
		want reason.Code
	}{
		{"delete_file", reason.PermissionDenied},
		{"DELETE_FILE", reason.UnknownTool},
		{"Delete_file", reason.UnknownTool},
		{"delete_file ", reason.UnknownTool},
		{"delete_file\x00", reason.UnknownTool},
		{"delete\u200b_file", reason.UnknownTool},
		{"ｄelete_file", reason.UnknownTool},
		{"delete_fil*", reason.UnknownTool},
		{"delete_file.", reason.UnknownTool},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.tool), func(t *testing.T) {
			got := call(t, e, req(tt.tool, `{"path":"a"}`))
			if !got.IsError || got.Code != tt.want {
				t.Errorf("Call(%q) = %+v; want %s", tt.tool, got, tt.want)
			}
		})
	}
	if n := del.ran.Load(); n != 0 {
		t.Errorf("delete_file ran %d times", n)
	}
	if got := call(t, e, req("read_file", `{"path":"a"}`)); got.IsError {
		t.Errorf("read_file = %+v; want success", got)
	}
}

// deep returns a valid echo argument object whose total nesting depth is n
// (the outer object counts as 1).
func deep(n int) string {
	return `{"path":"a","nested":` + strings.Repeat(`{"a":`, n-2) + `{}` + strings.Repeat(`}`, n-2) + `}`
}

func TestCallInvalidArguments(t *testing.T) {
	tests := []struct {
		name string
		args string
		want reason.Code
	}{
		{"wrong type", `{"path":1}`, reason.InvalidArguments},
		{"wrong nested type", `{"path":"a","nested":[1]}`, reason.InvalidArguments},
		{"missing required", `{}`, reason.InvalidArguments},
		{"null means empty object, still missing required", `null`, reason.InvalidArguments},
		{"additional property", `{"path":"a","extra":1}`, reason.InvalidArguments},
		{"array", `[]`, reason.InvalidArguments},
		{"array of object", `[{"path":"a"}]`, reason.InvalidArguments},
		{"string", `"x"`, reason.InvalidArguments},
		{"number", `1`, reason.InvalidArguments},
		{"bool", `true`, reason.InvalidArguments},
		{"duplicate key top level", `{"path":"a","path":"b"}`, reason.InvalidArguments},
		{"duplicate key via escape", `{"path":"a","p\u0061th":"b"}`, reason.InvalidArguments},
		{"duplicate key nested", `{"path":"a","nested":{"k":1,"k":2}}`, reason.InvalidArguments},
		{"duplicate key in array element", `{"path":"a","tags":[{"k":1},{"k":1,"k":2}]}`, reason.InvalidArguments},
		{"trailing object", `{} {}`, reason.InvalidArguments},
		{"trailing valid object", `{"path":"a"} {"path":"b"}`, reason.InvalidArguments},
		{"trailing garbage", `{"path":"a"}x`, reason.InvalidArguments},
		{"trailing bracket", `{"path":"a"}}`, reason.InvalidArguments},
		{"truncated", `{"path":"a"`, reason.InvalidArguments},
		{"unquoted key", `{path:"a"}`, reason.InvalidArguments},
		{"leading zero", `{"path":"a","n":01}`, reason.InvalidArguments},
		{"NaN", `{"path":"a","n":NaN}`, reason.InvalidArguments},
		{"nesting 65", deep(65), reason.InvalidArguments},
		{"nesting 400 arrays", `{"path":"a","tags":` + strings.Repeat("[", 400) + strings.Repeat("]", 400) + `}`, reason.InvalidArguments},
		{"oversized", `{"path":"` + strings.Repeat("x", 1100) + `"}`, reason.TooLarge},
		{"oversized by one", `{"path":"` + strings.Repeat("x", 1025-len(`{"path":""}`)) + `"}`, reason.TooLarge},
		{"oversized invalid", strings.Repeat("[", 2000), reason.TooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, allow("*"), nil)
			p := newProbe(t, "echo", echoSchema, nil)
			e.register(t, p)
			got := call(t, e, req("echo", tt.args))
			if !got.IsError || got.Code != tt.want {
				t.Fatalf("Call(%.60s) = %+v; want %s", tt.args, got, tt.want)
			}
			if want := reason.Message(tt.want); tt.want == reason.InvalidArguments && !strings.HasPrefix(got.Text, want) {
				t.Errorf("Text = %q; want prefix %q", got.Text, want)
			}
			if n := p.ran.Load(); n != 0 {
				t.Errorf("tool ran %d times on invalid arguments", n)
			}
			evs := e.rec.all()
			if len(evs) != 1 || evs[0].Type != audit.ToolCallRefused || evs[0].Reason != tt.want || evs[0].Error != got.Text {
				t.Errorf("events = %+v; want one tool.call.refused %s with the client's message", evs, tt.want)
			}
		})
	}
}

func TestCallValidArgumentBoundaries(t *testing.T) {
	atLimit := `{"path":"` + strings.Repeat("x", 1024-len(`{"path":""}`)) + `"}`
	if len(atLimit) != 1024 {
		t.Fatalf("bad fixture: %d bytes", len(atLimit))
	}
	tests := []struct {
		name, args string
	}{
		{"exactly MaxArgBytes", atLimit},
		{"MaxArgBytes after trimming whitespace", "  \n" + atLimit + "\t\n "},
		{"nesting 64", deep(64)},
		{"all optional fields", `{"path":"a","password":"12345678","n":3,"nested":{"x":[1,{"y":null}]},"tags":["a","b"]}`},
		{"same key in sibling objects", `{"path":"a","nested":{"k":{"k":1},"j":{"k":2}},"tags":[{"k":1},{"k":1}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, allow("*"), nil)
			p := newProbe(t, "echo", echoSchema, nil)
			e.register(t, p)
			got := call(t, e, req("echo", tt.args))
			if got.IsError {
				t.Fatalf("Call = %+v; want success", got)
			}
			if p.ran.Load() != 1 {
				t.Errorf("tool ran %d times; want 1", p.ran.Load())
			}
		})
	}
}

func TestCallEmptyArgumentsAreEmptyObject(t *testing.T) {
	for _, args := range []string{"", "null", "  null\n", " \t\n", "{}", " {} "} {
		t.Run(fmt.Sprintf("%q", args), func(t *testing.T) {
			e := newEnv(t, allow("*"), nil)
			p := newProbe(t, "noargs", `{"type":"object","additionalProperties":false}`,
				func(context.Context, json.RawMessage) (*tool.Result, error) { return &tool.Result{Text: "done"}, nil })
			e.register(t, p)
			got := call(t, e, req("noargs", args))
			if got.IsError || got.Text != "done" {
				t.Fatalf("Call(%q) = %+v; want success", args, got)
			}
			if a := string(p.lastArgs()); a != "{}" {
				t.Errorf("tool received args %q; want {}", a)
			}
		})
	}
}

func TestCallFailsClosedWhenAuditFails(t *testing.T) {
	const secretResult = "TOP-SECRET-RESULT-4711"
	tests := []struct {
		name      string
		fail      func(int, *audit.Event) error
		wantRan   int32
		wantTypes []audit.Type // events that made it to the log
	}{
		{"start fails", failType(audit.ToolCallStart), 0, nil},
		{"first emit fails", failNth(1), 0, nil},
		{"end fails", failType(audit.ToolCallEnd), 1, []audit.Type{audit.ToolCallStart}},
		{"second emit fails", failNth(2), 1, []audit.Type{audit.ToolCallStart}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, allow("*"), &recorder{fail: tt.fail})
			p := newProbe(t, "secret", `{"type":"object"}`, func(context.Context, json.RawMessage) (*tool.Result, error) {
				return &tool.Result{Text: secretResult, Structured: map[string]any{"v": secretResult}}, nil
			})
			e.register(t, p)
			got := call(t, e, req("secret", `{}`))
			if diff := cmp.Diff(refused(reason.AuditUnavailable), got); diff != "" {
				t.Errorf("Call mismatch (-want +got):\n%s", diff)
			}
			if b, _ := json.Marshal(got); bytes.Contains(b, []byte(secretResult)) || bytes.Contains(b, []byte("disk on fire")) {
				t.Errorf("result %s leaks the tool result or the audit error", b)
			}
			if n := p.ran.Load(); n != tt.wantRan {
				t.Errorf("tool ran %d times; want %d", n, tt.wantRan)
			}
			if diff := cmp.Diff(tt.wantTypes, e.rec.types()); diff != "" {
				t.Errorf("recorded events mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCallRefusalStaysRefusedWhenAuditFails: a refusal whose audit record
// cannot be written is still a refusal (never turned into an allow).
func TestCallRefusalStaysRefusedWhenAuditFails(t *testing.T) {
	rec := &recorder{fail: func(int, *audit.Event) error { return errDiskOnFire }}
	e := newEnv(t, allow("read_file"), rec)
	p := newProbe(t, "delete_file", echoSchema, nil)
	e.register(t, p)
	for _, r := range []gateway.CallRequest{req("delete_file", `{"path":"a"}`), req("delete file", `{}`)} {
		got := call(t, e, r)
		if !got.IsError || got.Code == reason.OK || got.Code == reason.AuditUnavailable {
			t.Errorf("Call(%q) = %+v; want the refusal's own code", r.Tool, got)
		}
	}
	if p.ran.Load() != 0 {
		t.Error("tool ran")
	}
}

func TestCallSuccessEvents(t *testing.T) {
	e := newEnv(t, allow("*"), nil)
	p := newProbe(t, "echo", echoSchema, nil)
	srv := &tool.Func{Def: tool.Definition{Name: "srv__echo", InputSchema: mustSchema(t, echoSchema), Sensitivity: tool.High, Server: "srv"}, Fn: echo}
	e.register(t, p, srv)

	args := `{"path":"docs/a.txt","n":3}`
	r := req("srv__echo", args)
	r.RequestID = "req_42"
	got := call(t, e, r)
	want := &tool.Result{Text: "echo:docs/a.txt", Structured: map[string]any{"path": "docs/a.txt"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Call mismatch (-want +got):\n%s", diff)
	}

	wantRedacted, wantDigest := e.red.Redact(json.RawMessage(args))
	base := audit.Event{
		Principal: "alice", Roles: []string{"developer"}, Session: "sess_1", RequestID: "req_42",
		RemoteAddr: "192.0.2.7:4000", Tool: "srv__echo", Server: "srv",
		Args: wantRedacted, ArgsDigest: wantDigest, Decision: audit.DecisionAllow,
	}
	start, end := base, base
	start.Type, start.Status = audit.ToolCallStart, audit.StatusStarted
	end.Type, end.Status = audit.ToolCallEnd, audit.StatusOK
	end.Duration = 5 * time.Millisecond // one clock step between Call and audit end
	evs := e.rec.all()
	if diff := cmp.Diff([]audit.Event{start, end}, evs, cmpopts.IgnoreFields(audit.Event{}, "ResultDigest")); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
	if len(evs) != 2 {
		t.FailNow()
	}
	if evs[0].ResultDigest != "" {
		t.Errorf("start event has a result digest %q", evs[0].ResultDigest)
	}
	d := evs[1].ResultDigest
	if !strings.HasPrefix(d, audit.DigestPrefix) || len(d) != len(audit.DigestPrefix)+64 {
		t.Errorf("end ResultDigest = %q; want %s<64 hex>", d, audit.DigestPrefix)
	}

	// A different result has a different digest; the same result the same one.
	call(t, e, req("echo", `{"path":"docs/b.txt"}`))
	call(t, e, req("echo", `{"path":"docs/a.txt"}`))
	evs = e.rec.all()
	if len(evs) != 6 {
		t.Fatalf("got %d events; want 6", len(evs))
	}
	if evs[3].ResultDigest == d {
		t.Errorf("different results share digest %s", d)
	}
	if evs[5].ResultDigest != d {
		t.Errorf("same result digests differ: %s vs %s", evs[5].ResultDigest, d)
	}
}

// TestCallArgsRedactedInEveryEvent: whatever path a call takes, a secret
// argument value never reaches the audit log in clear.
func TestCallArgsRedactedInEveryEvent(t *testing.T) {
	const secret = "correct-horse-battery-staple"
	const short = "hunter2" // shorter than the schema's minLength 8
	const awsKey = "AKIAIOSFODNN7EXAMPLE"
	tests := []struct {
		name, tool, args, secret string
	}{
		{"success", "echo", `{"path":"a","password":"` + secret + `"}`, secret},
		{"additional property", "echo", `{"path":"a","api_key":"` + secret + `"}`, secret},
		{"denied tool", "forbidden", `{"path":"a","password":"` + secret + `"}`, secret},
		{"malformed name", "echo ", `{"path":"a","password":"` + secret + `"}`, secret},
		{"unknown tool", "nope", `{"password":"` + secret + `"}`, secret},
		{"duplicate key", "echo", `{"path":"a","password":"` + secret + `","password":"x"}`, secret},
		{"trailing data", "echo", `{"path":"a"} {"password":"` + secret + `"}`, secret},
		{"truncated", "echo", `{"path":"a","password":"` + secret + `"`, secret},
		{"too large", "echo", `{"path":"` + strings.Repeat("x", 1100) + `","password":"` + secret + `"}`, secret},
		{"schema error quotes sensitive value", "echo", `{"path":"a","password":"` + short + `"}`, short},
		{"schema error quotes nested sensitive value", "echo", `{"path":{"password":"` + secret + `"}}`, secret},
		{"schema error quotes secret-looking value", "echo", `{"path":"a","n":"` + awsKey + `"}`, awsKey},
		{"schema error quotes token in array", "echo", `{"path":["token=` + awsKey + `"]}`, awsKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, allow("echo", "nope"), nil)
			e.register(t, newProbe(t, "echo", echoSchema, nil), newProbe(t, "forbidden", echoSchema, nil))
			call(t, e, req(tt.tool, tt.args))
			evs := e.rec.all()
			if len(evs) == 0 {
				t.Fatal("no events recorded")
			}
			for _, ev := range evs {
				b, err := json.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(b, []byte(tt.secret)) {
					t.Errorf("%s event holds %q in clear: %s", ev.Type, tt.secret, b)
				}
				if ev.ArgsDigest == "" {
					t.Errorf("%s event has no args digest", ev.Type)
				}
			}
		})
	}
}

// TestCallSchemaErrorStillHelpful: the client still learns which argument
// was wrong, without the value.
func TestCallSchemaErrorStillHelpful(t *testing.T) {
	tests := []struct {
		args string
		want []string // substrings of the client text
	}{
		{`{}`, []string{"required", "path"}},
		{`{"path":"a","extra":1}`, []string{"additional", "extra"}},
		{`{"path":1}`, []string{"/properties/path", "type"}},
		{`{"path":"a","password":"short"}`, []string{"/properties/password", "minLength"}},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			e := newEnv(t, allow("*"), nil)
			e.register(t, newProbe(t, "echo", echoSchema, nil))
			got := call(t, e, req("echo", tt.args))
			for _, w := range tt.want {
				if !strings.Contains(got.Text, w) {
					t.Errorf("Text = %q; want it to mention %q", got.Text, w)
				}
			}
		})
	}
}

func TestCallToolErrors(t *testing.T) {
	const cause = "CAUSE-SECRET open /etc/shadow: permission denied"
	tests := []struct {
		name       string
		timeout    time.Duration
		fn         func(ctx context.Context, args json.RawMessage) (*tool.Result, error)
		want       *tool.Result // Detail ignored
		wantDetail string       // substring of the end event's Detail
	}{
		{
			name: "tool.Error keeps code and client message",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				return nil, &tool.Error{Code: reason.PathForbidden, Msg: "path is not allowed: x", Err: errors.New(cause)}
			},
			want:       &tool.Result{Text: "path is not allowed: x", IsError: true, Code: reason.PathForbidden},
			wantDetail: cause,
		},
		{
			name: "wrapped tool.Error",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				return nil, fmt.Errorf("files: %w", tool.Errorf(reason.NotFound, errors.New(cause), "no such file"))
			},
			want:       &tool.Result{Text: "no such file", IsError: true, Code: reason.NotFound},
			wantDetail: cause,
		},
		{
			name: "tool.Error without message",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				return nil, &tool.Error{Code: reason.ReadOnly, Err: errors.New(cause)}
			},
			want:       &tool.Result{Text: reason.Message(reason.ReadOnly), IsError: true, Code: reason.ReadOnly},
			wantDetail: cause,
		},
		{
			name: "tool.Error without code",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				return nil, &tool.Error{Msg: "it broke", Err: errors.New(cause)}
			},
			want:       &tool.Result{Text: "it broke", IsError: true, Code: reason.ToolFailed},
			wantDetail: cause,
		},
		{
			name: "plain error",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				return nil, errors.New(cause)
			},
			want:       refused(reason.ToolFailed),
			wantDetail: cause,
		},
		{
			name: "plain error with a result",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				return &tool.Result{Text: "partial " + cause}, errors.New(cause)
			},
			want:       refused(reason.ToolFailed),
			wantDetail: cause,
		},
		{
			name: "panic",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				panic(cause)
			},
			want:       refused(reason.ToolFailed),
			wantDetail: "panic",
		},
		{
			name: "panic with error value",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				panic(errors.New(cause))
			},
			want:       refused(reason.ToolFailed),
			wantDetail: "panic",
		},
		{
			name:       "nil result",
			fn:         func(context.Context, json.RawMessage) (*tool.Result, error) { return nil, nil },
			want:       refused(reason.ToolFailed),
			wantDetail: "no result",
		},
		{
			name: "error result without code",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				return &tool.Result{Text: "exit 3", IsError: true}, nil
			},
			want: &tool.Result{Text: "exit 3", IsError: true, Code: reason.ToolFailed},
		},
		{
			name: "error result with code",
			fn: func(context.Context, json.RawMessage) (*tool.Result, error) {
				return &tool.Result{Text: "exit 3", IsError: true, Code: reason.NonZeroExit, Structured: map[string]any{"exit_code": 3}}, nil
			},
			want: &tool.Result{Text: "exit 3", IsError: true, Code: reason.NonZeroExit, Structured: map[string]any{"exit_code": 3}},
		},
		{
			name:    "deadline",
			timeout: 50 * time.Millisecond,
			fn: func(ctx context.Context, _ json.RawMessage) (*tool.Result, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			},
			want:       refused(reason.Timeout),
			wantDetail: "deadline",
		},
		{
			name:    "deadline wrapped error",
			timeout: 50 * time.Millisecond,
			fn: func(ctx context.Context, _ json.RawMessage) (*tool.Result, error) {
				<-ctx.Done()
				return nil, fmt.Errorf("python: killed (%s): %w", cause, ctx.Err())
			},
			want:       refused(reason.Timeout),
			wantDetail: cause,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, allow("*"), nil)
			p := newProbe(t, "t", `{"type":"object"}`, tt.fn)
			p.Def.Timeout = tt.timeout
			e.register(t, p, newProbe(t, "echo", echoSchema, nil))
			got := call(t, e, req("t", `{}`))
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(tool.Result{}, "Detail")); diff != "" {
				t.Errorf("Call mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(got.Text, "CAUSE-SECRET") || strings.Contains(fmt.Sprint(got.Structured), "CAUSE-SECRET") {
				t.Errorf("client-visible result leaks the cause: %+v", got)
			}
			evs := e.rec.all()
			if len(evs) != 2 || evs[1].Type != audit.ToolCallEnd {
				t.Fatalf("events = %v; want start, end", e.rec.types())
			}
			end := evs[1]
			if end.Status != audit.StatusError || end.Reason != tt.want.Code || end.Error != tt.want.Text {
				t.Errorf("end event status=%q reason=%q error=%q; want error %s %q", end.Status, end.Reason, end.Error, tt.want.Code, tt.want.Text)
			}
			if !strings.Contains(end.Detail, tt.wantDetail) {
				t.Errorf("end event Detail = %q; want it to contain %q", end.Detail, tt.wantDetail)
			}
			// The gateway still works after whatever the tool did.
			if ok := call(t, e, req("echo", `{"path":"after"}`)); ok.IsError || ok.Text != "echo:after" {
				t.Errorf("call after failure = %+v", ok)
			}
		})
	}
}

// TestCallDefaultTimeout: a tool without its own Timeout gets CallTimeout.
func TestCallDefaultTimeout(t *testing.T) {
	e := newEnv(t, allow("*"), nil, func(c *gateway.Config, _ *gateway.Deps) { c.CallTimeout = 50 * time.Millisecond })
	var hadDeadline atomic.Bool
	p := newProbe(t, "block", `{"type":"object"}`, func(ctx context.Context, _ json.RawMessage) (*tool.Result, error) {
		_, ok := ctx.Deadline()
		hadDeadline.Store(ok)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	e.register(t, p)
	if got := call(t, e, req("block", `{}`)); got.Code != reason.Timeout {
		t.Errorf("Call = %+v; want TIMEOUT", got)
	}
	if !hadDeadline.Load() {
		t.Error("tool context had no deadline")
	}
}

// TestCallClientHangupKeepsEndRecord: a client that goes away mid-call
// cannot drop the call's tool.call.end record, even with an emitter that
// honours cancellation (STYLE §6: audit writes use context.WithoutCancel).
func TestCallClientHangupKeepsEndRecord(t *testing.T) {
	e := newEnv(t, allow("*"), &recorder{honorCtx: true})
	started := make(chan struct{})
	p := newProbe(t, "block", `{"type":"object"}`, func(ctx context.Context, _ json.RawMessage) (*tool.Result, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	e.register(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *tool.Result)
	go func() { done <- e.gw.Call(ctx, req("block", `{}`)) }()
	<-started
	cancel()
	got := <-done
	if !got.IsError || got.Code == reason.AuditUnavailable {
		t.Errorf("Call = %+v; want a tool failure, not AUDIT_UNAVAILABLE", got)
	}
	if diff := cmp.Diff([]audit.Type{audit.ToolCallStart, audit.ToolCallEnd}, e.rec.types()); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
}

func TestListTools(t *testing.T) {
	tests := []struct {
		name      string
		authz     *fakeAuthz
		principal *principal.Principal
		want      []string
	}{
		{"all", allow("*"), alice, []string{"a_tool", "b_tool", "git_log", "git_status", "z_tool"}},
		{"some", allow("z_tool", "git_log", "a_tool"), alice, []string{"a_tool", "git_log", "z_tool"}},
		{"none", allow(), alice, []string{}},
		{"nil principal", allow("*"), nil, []string{}},
		{"grant for unregistered tool", allow("nope", "b_tool"), alice, []string{"b_tool"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.authz, nil)
			for _, n := range []string{"z_tool", "git_status", "b_tool", "a_tool", "git_log"} {
				e.register(t, newProbe(t, n, `{"type":"object"}`, nil))
			}
			got := []string{}
			for _, d := range e.gw.ListTools(tt.principal) {
				got = append(got, d.Name)
				if d.InputSchema == nil || d.Sensitivity != tool.Low {
					t.Errorf("definition %s lost its schema or sensitivity: %+v", d.Name, d)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ListTools mismatch (-want +got):\n%s", diff)
			}
			if len(e.rec.all()) != 0 {
				t.Errorf("ListTools emitted events: %v", e.rec.types())
			}
		})
	}
}

// TestListToolsAgreesWithCall: a listed tool is never refused by policy,
// and an unlisted registered tool always is.
func TestListToolsAgreesWithCall(t *testing.T) {
	e := newEnv(t, allow("b_tool", "c_tool"), nil)
	names := []string{"a_tool", "b_tool", "c_tool", "d_tool"}
	for _, n := range names {
		e.register(t, newProbe(t, n, `{"type":"object"}`, nil))
	}
	listed := map[string]bool{}
	for _, d := range e.gw.ListTools(alice) {
		listed[d.Name] = true
	}
	for _, n := range names {
		got := call(t, e, req(n, `{}`))
		if denied := got.Code == reason.PermissionDenied; denied == listed[n] {
			t.Errorf("%s: listed=%v but call result %+v", n, listed[n], got)
		}
	}
}

func TestShutdownWaitsForInFlightCall(t *testing.T) {
	e := newEnv(t, allow("*"), nil)
	started, release := make(chan struct{}), make(chan struct{})
	var ctxErr atomic.Value
	slow := newProbe(t, "slow", `{"type":"object"}`, func(ctx context.Context, _ json.RawMessage) (*tool.Result, error) {
		close(started)
		<-release
		if err := ctx.Err(); err != nil {
			ctxErr.Store(err)
		}
		return &tool.Result{Text: "slow done"}, nil
	})
	fast := newProbe(t, "fast", `{"type":"object"}`, func(context.Context, json.RawMessage) (*tool.Result, error) {
		return &tool.Result{Text: "fast done"}, nil
	})
	e.register(t, slow, fast)

	slowDone := make(chan *tool.Result)
	r := req("slow", `{}`)
	r.RequestID = "req_slow"
	go func() { slowDone <- e.gw.Call(context.Background(), r) }()
	<-started

	shutdownDone := make(chan error)
	go func() { shutdownDone <- e.gw.Shutdown(context.Background()) }()

	// Wait until the gateway refuses new calls; the fast tool must not run
	// once it does.
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := fast.ran.Load()
		got := call(t, e, req("fast", `{}`))
		if got.Code == reason.Unavailable {
			if diff := cmp.Diff(refused(reason.Unavailable), got); diff != "" {
				t.Errorf("refusal mismatch (-want +got):\n%s", diff)
			}
			if fast.ran.Load() != before {
				t.Error("fast tool ran although the call was refused")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway never started refusing calls after Shutdown")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned %v while a call was in flight", err)
	default:
	}

	close(release)
	if got := <-slowDone; got.IsError || got.Text != "slow done" {
		t.Errorf("in-flight call = %+v; want its own result", got)
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("Shutdown = %v; want nil", err)
	}
	if err := ctxErr.Load(); err != nil {
		t.Errorf("graceful Shutdown cancelled the in-flight call: %v", err)
	}
	var ends int
	for _, ev := range e.rec.all() {
		if ev.RequestID == "req_slow" && ev.Type == audit.ToolCallEnd && ev.Status == audit.StatusOK {
			ends++
		}
	}
	if ends != 1 {
		t.Errorf("in-flight call recorded %d ok tool.call.end events; want 1", ends)
	}

	// After Shutdown: refused, nothing runs, nothing is consulted.
	slowRan := slow.ran.Load()
	if got := call(t, e, req("slow", `{}`)); got.Code != reason.Unavailable {
		t.Errorf("Call after Shutdown = %+v; want UNAVAILABLE", got)
	}
	if slow.ran.Load() != slowRan {
		t.Error("tool ran after Shutdown")
	}
	var unavailable int
	for _, ev := range e.rec.all() {
		if ev.Type == audit.ToolCallRefused && ev.Reason == reason.Unavailable && ev.Status == audit.StatusRefused {
			unavailable++
		}
	}
	if unavailable < 2 {
		t.Errorf("calls refused during shutdown recorded %d tool.call.refused UNAVAILABLE events; want >= 2", unavailable)
	}
	if err := e.gw.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v; want nil", err)
	}
}

func TestShutdownExpiredContextCancelsBlockingTool(t *testing.T) {
	e := newEnv(t, allow("*"), nil)
	started := make(chan struct{})
	p := newProbe(t, "block", `{"type":"object"}`, func(ctx context.Context, _ json.RawMessage) (*tool.Result, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	e.register(t, p)
	done := make(chan *tool.Result)
	r := req("block", `{}`)
	r.RequestID = "req_block"
	go func() { done <- e.gw.Call(context.Background(), r) }()
	<-started

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := e.gw.Shutdown(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown(expired) = %v; want context.Canceled", err)
	}
	// Shutdown returns only after the cancelled call recorded its end.
	evs := e.rec.all()
	if len(evs) != 2 || evs[1].Type != audit.ToolCallEnd || evs[1].RequestID != "req_block" || evs[1].Status != audit.StatusError {
		t.Errorf("events when Shutdown returned = %+v; want start and an error tool.call.end for req_block", evs)
	}
	if got := <-done; !got.IsError || got.Code != reason.Cancelled {
		t.Errorf("cancelled call = %+v; want a CANCELLED error result", got)
	}
	if len(evs) == 2 && evs[1].Reason != reason.Cancelled {
		t.Errorf("tool.call.end reason = %q; want CANCELLED", evs[1].Reason)
	}
}

// TestShutdownDoesNotWaitForeverOnStuckTool: a tool that ignores
// cancellation cannot hold Shutdown past its deadline plus cancelGrace.
func TestShutdownDoesNotWaitForeverOnStuckTool(t *testing.T) {
	defer gateway.SetCancelGrace(50 * time.Millisecond)()
	e := newEnv(t, allow("*"), nil)
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	e.register(t, newProbe(t, "stuck", `{"type":"object"}`, func(context.Context, json.RawMessage) (*tool.Result, error) {
		close(started)
		<-release // ignores ctx
		return &tool.Result{Text: "late"}, nil
	}))
	go e.gw.Call(context.Background(), req("stuck", `{}`))
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- e.gw.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Shutdown = %v; want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown waited for a tool that ignores cancellation")
	}
}

func TestConcurrentCalls(t *testing.T) {
	e := newEnv(t, allow("echo"), nil)
	p := newProbe(t, "echo", echoSchema, nil)
	e.register(t, p, newProbe(t, "denied", echoSchema, nil))

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan string, 2*n)
	for i := range n {
		wg.Go(func() {
			r := req("echo", fmt.Sprintf(`{"path":"p%d","password":"pw-%08d"}`, i, i))
			r.RequestID = fmt.Sprintf("req_%d", i)
			got := e.gw.Call(context.Background(), r)
			if got.IsError || got.Text != fmt.Sprintf("echo:p%d", i) {
				errs <- fmt.Sprintf("call %d = %+v", i, got)
			}
			if d := e.gw.Call(context.Background(), req("denied", `{"path":"x"}`)); d.Code != reason.PermissionDenied {
				errs <- fmt.Sprintf("denied call %d = %+v", i, d)
			}
			_ = e.gw.ListTools(alice)
		})
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Error(s)
	}
	if got := p.ran.Load(); got != n {
		t.Errorf("tool ran %d times; want %d", got, n)
	}
	// Each request has exactly a start followed by an end, with its own args.
	byID := map[string][]audit.Type{}
	for _, ev := range e.rec.all() {
		if ev.Tool == "echo" {
			byID[ev.RequestID] = append(byID[ev.RequestID], ev.Type)
			if ev.RequestID != fmt.Sprintf("req_%s", strings.TrimPrefix(extractPath(t, ev.Args), "p")) {
				t.Errorf("event for %s carries args of another call: %s", ev.RequestID, ev.Args)
			}
		}
	}
	if len(byID) != n {
		t.Errorf("events for %d requests; want %d", len(byID), n)
	}
	for id, types := range byID {
		if diff := cmp.Diff([]audit.Type{audit.ToolCallStart, audit.ToolCallEnd}, types); diff != "" {
			t.Errorf("%s events mismatch (-want +got):\n%s", id, diff)
		}
	}
}

func extractPath(t *testing.T, args json.RawMessage) string {
	var a struct {
		Path string `json:"path"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		t.Errorf("event args %s: %v", args, err)
	}
	return a.Path
}

func BenchmarkCall(b *testing.B) {
	e := newEnv(b, allow("*"), &recorder{discard: true})
	e.register(b, newProbe(b, "echo", echoSchema, nil))
	r := req("echo", `{"path":"docs/a.txt","password":"12345678","n":3}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := e.gw.Call(ctx, r); res.IsError {
			b.Fatal(res)
		}
	}
}
