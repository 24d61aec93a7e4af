package mcpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/mcpserver"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
)

// ---- fakes ----------------------------------------------------------------

// recorder is an Emitter that keeps a copy of every event.
// failType, if set, makes Emit of that type fail.
type recorder struct {
	mu       sync.Mutex
	events   []audit.Event
	failType audit.Type
}

func (r *recorder) Emit(_ context.Context, e *audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Type == r.failType {
		return errors.New("audit down")
	}
	r.events = append(r.events, *e)
	return nil
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

func (r *recorder) ofType(t audit.Type) []audit.Event {
	var out []audit.Event
	for _, e := range r.all() {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

// sessions is a fake session store.
type sessions struct {
	mu   sync.Mutex
	got  []store.Session
	fail error
}

func (s *sessions) RecordSession(_ context.Context, sess store.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, sess)
	return s.fail
}

func (s *sessions) all() []store.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Session(nil), s.got...)
}

// ---- fixture --------------------------------------------------------------

const cause = "CAUSE-SECRET stat /srv/private: no such file"

var (
	guest = &principal.Principal{Name: "gail", Roles: []string{"guest"}, Method: principal.MethodLocal}
	dev   = &principal.Principal{Name: "dave", Roles: []string{"developer"}, Method: principal.MethodLocal}
	admin = &principal.Principal{Name: "ada", Roles: []string{"admin"}, Method: principal.MethodLocal}
)

var grants = []store.Grant{
	{Role: "guest", Action: "call", Pattern: "read_file", Effect: "allow"},
	{Role: "developer", Action: "call", Pattern: "*", Effect: "allow"},
	{Role: "developer", Action: "call", Pattern: "delete_file", Effect: "deny"},
	{Role: "admin", Action: "call", Pattern: "*", Effect: "allow"},
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func schema(t testing.TB, s string) *jsonschema.Schema {
	t.Helper()
	var sc jsonschema.Schema
	if err := json.Unmarshal([]byte(s), &sc); err != nil {
		t.Fatal(err)
	}
	return &sc
}

const pathSchema = `{"type":"object","properties":{"path":{"type":"string"}},"required":["path"],"additionalProperties":false}`

type fixture struct {
	srv      *mcp.Server
	gw       *gateway.Gateway
	rec      *recorder
	sessions *sessions
	ran      map[string]*atomic.Int32
	logs     *bytes.Buffer
}

type fixOpts struct {
	identify  func(mcp.Request) (mcpserver.Identity, bool)
	sessions  *sessions
	auditFail audit.Type
}

func newFixture(t *testing.T, p *principal.Principal, o fixOpts) *fixture {
	t.Helper()
	eng, err := policy.New(grants)
	if err != nil {
		t.Fatal(err)
	}
	red, err := audit.NewRedactor(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{failType: o.auditFail}
	logs := &bytes.Buffer{}
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, err := gateway.New(gateway.Config{CallTimeout: 10 * time.Second}, gateway.Deps{
		Policy: eng, Audit: rec, Redactor: red, Logger: logger, Now: func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{gw: gw, rec: rec, ran: map[string]*atomic.Int32{}, logs: logs}
	add := func(d tool.Definition, fn func(ctx context.Context, args json.RawMessage) (*tool.Result, error)) {
		n := &atomic.Int32{}
		f.ran[d.Name] = n
		if err := gw.Register(&tool.Func{Def: d, Fn: func(ctx context.Context, args json.RawMessage) (*tool.Result, error) {
			n.Add(1)
			return fn(ctx, args)
		}}); err != nil {
			t.Fatal(err)
		}
	}
	add(tool.Definition{Name: "read_file", Title: "Read file", Description: "Reads a file.", InputSchema: schema(t, pathSchema), Sensitivity: tool.Low, ReadOnly: true},
		func(_ context.Context, args json.RawMessage) (*tool.Result, error) {
			var a struct{ Path string }
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, err
			}
			if a.Path == "private" {
				return nil, tool.Errorf(reason.PathForbidden, errors.New(cause), "path is not allowed")
			}
			return &tool.Result{Text: "contents of " + a.Path, Structured: map[string]any{"path": a.Path, "size": 42}, Detail: "DETAIL-" + cause}, nil
		})
	add(tool.Definition{Name: "delete_file", Description: "Deletes a file.", InputSchema: schema(t, pathSchema), Sensitivity: tool.High, Destructive: true},
		func(context.Context, json.RawMessage) (*tool.Result, error) {
			return &tool.Result{Text: "deleted"}, nil
		})
	add(tool.Definition{Name: "crash", Description: "Fails.", InputSchema: schema(t, `{"type":"object"}`), Sensitivity: tool.Medium},
		func(context.Context, json.RawMessage) (*tool.Result, error) { return nil, errors.New(cause) })
	add(tool.Definition{Name: "run", Description: "Exits non-zero.", InputSchema: schema(t, `{"type":"object"}`), Sensitivity: tool.High},
		func(context.Context, json.RawMessage) (*tool.Result, error) {
			return &tool.Result{Text: "exit status 3", IsError: true, Code: reason.NonZeroExit,
				Structured: map[string]any{"exit_code": 3, "code": "OK", "message": "program exited with status 3"}}, nil
		})

	identify := o.identify
	if identify == nil {
		identify = mcpserver.FixedIdentity(p)
	}
	f.sessions = o.sessions
	if f.sessions == nil {
		f.sessions = &sessions{}
	}
	srv, err := mcpserver.New(mcpserver.Options{
		Gateway: gw, Identify: identify, Audit: rec, Sessions: f.sessions,
		Logger: logger, Version: "test", Now: func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	return f
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect connects an SDK client to f over in-memory transports.
func (f *fixture) connect(t *testing.T, version string) *mcp.ClientSession {
	t.Helper()
	ctx := ctxT(t)
	st, ct := mcp.NewInMemoryTransports()
	ss, err := f.srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatalf("server Connect: %v", err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1.0"}, nil)
	cs, err := client.Connect(ctx, ct, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("client Connect(%q): %v", version, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	want := version
	if want == "" {
		want = "2026-07-28" // stateless era, reached via server/discover
	}
	if got := cs.InitializeResult().ProtocolVersion; got != want {
		t.Fatalf("negotiated protocol %q; want %q", got, want)
	}
	return cs
}

// versions: the legacy session protocol and the SDK's default (latest).
var versions = []struct{ name, v string }{
	{"2025-11-25", "2025-11-25"},
	{"latest", ""},
}

// ---- tests ----------------------------------------------------------------

func TestNewRejectsMissingOptions(t *testing.T) {
	f := newFixture(t, dev, fixOpts{})
	good := mcpserver.Options{
		Gateway: f.gw, Identify: mcpserver.FixedIdentity(dev), Audit: &recorder{}, Sessions: &sessions{},
		Logger: slog.New(slog.DiscardHandler),
	}
	tests := []struct {
		name string
		mod  func(*mcpserver.Options)
	}{
		{"gateway", func(o *mcpserver.Options) { o.Gateway = nil }},
		{"identify", func(o *mcpserver.Options) { o.Identify = nil }},
		{"audit", func(o *mcpserver.Options) { o.Audit = nil }},
		{"sessions", func(o *mcpserver.Options) { o.Sessions = nil }},
		{"logger", func(o *mcpserver.Options) { o.Logger = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mod(&o)
			if s, err := mcpserver.New(o); err == nil || s != nil {
				t.Errorf("New without %s = %v, %v; want nil, error", tt.name, s, err)
			}
		})
	}
	if _, err := mcpserver.New(good); err != nil {
		t.Errorf("New(all options) = %v", err)
	}
}

func TestToolsListFilteredPerRole(t *testing.T) {
	tests := []struct {
		p    *principal.Principal
		want []string
	}{
		{guest, []string{"read_file"}},
		{dev, []string{"crash", "read_file", "run"}},
		{admin, []string{"crash", "delete_file", "read_file", "run"}},
		{&principal.Principal{Name: "nobody", Roles: nil}, []string{}},
	}
	for _, v := range versions {
		for _, tt := range tests {
			t.Run(v.name+"/"+tt.p.Name, func(t *testing.T) {
				f := newFixture(t, tt.p, fixOpts{})
				cs := f.connect(t, v.v)
				res, err := cs.ListTools(ctxT(t), nil)
				if err != nil {
					t.Fatalf("ListTools: %v", err)
				}
				got := []string{}
				for _, tl := range res.Tools {
					got = append(got, tl.Name)
					if tl.InputSchema == nil {
						t.Errorf("%s has no input schema", tl.Name)
					}
					if tl.Annotations == nil || tl.Annotations.DestructiveHint == nil {
						t.Errorf("%s has no destructiveHint", tl.Name)
						continue
					}
					if want := tl.Name == "delete_file"; *tl.Annotations.DestructiveHint != want {
						t.Errorf("%s destructiveHint = %v; want %v", tl.Name, *tl.Annotations.DestructiveHint, want)
					}
					if want := tl.Name == "read_file"; tl.Annotations.ReadOnlyHint != want {
						t.Errorf("%s readOnlyHint = %v; want %v", tl.Name, tl.Annotations.ReadOnlyHint, want)
					}
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("tools/list for %s mismatch (-want +got):\n%s", tt.p.Name, diff)
				}
			})
		}
	}
}

func TestToolsListPublishesSchema(t *testing.T) {
	f := newFixture(t, guest, fixOpts{})
	cs := f.connect(t, "2025-11-25")
	res, err := cs.ListTools(ctxT(t), nil)
	if err != nil || len(res.Tools) != 1 {
		t.Fatalf("ListTools = %+v, %v", res, err)
	}
	tl := res.Tools[0]
	b, err := json.Marshal(tl.InputSchema)
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(pathSchema), &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("published inputSchema mismatch (-want +got):\n%s", diff)
	}
	if tl.Title != "Read file" || tl.Description != "Reads a file." {
		t.Errorf("title/description = %q/%q", tl.Title, tl.Description)
	}
}

func TestToolsCallSuccess(t *testing.T) {
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			f := newFixture(t, guest, fixOpts{})
			cs := f.connect(t, v.v)
			res, err := cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "docs/a.txt"}})
			if err != nil {
				t.Fatalf("CallTool: %v", err)
			}
			if res.IsError {
				t.Errorf("IsError = true; result %+v", res)
			}
			if len(res.Content) != 1 {
				t.Fatalf("content = %+v; want one text item", res.Content)
			}
			if tc, ok := res.Content[0].(*mcp.TextContent); !ok || tc.Text != "contents of docs/a.txt" {
				t.Errorf("content[0] = %#v; want text %q", res.Content[0], "contents of docs/a.txt")
			}
			want := map[string]any{"path": "docs/a.txt", "size": 42.0}
			if diff := cmp.Diff(want, res.StructuredContent); diff != "" {
				t.Errorf("structuredContent mismatch (-want +got):\n%s", diff)
			}
			if b, _ := json.Marshal(res); bytes.Contains(b, []byte("CAUSE-SECRET")) {
				t.Errorf("result carries the audit-only Detail: %s", b)
			}
			evs := f.rec.all()
			if len(evs) != 2 || evs[0].Type != audit.ToolCallStart || evs[1].Type != audit.ToolCallEnd {
				t.Fatalf("events = %+v; want start, end", evs)
			}
			if evs[0].Principal != "gail" || evs[0].RemoteAddr != "stdio" || !strings.HasPrefix(evs[0].RequestID, "req_") {
				t.Errorf("start event identity = %q %q %q", evs[0].Principal, evs[0].RemoteAddr, evs[0].RequestID)
			}
			if !strings.Contains(evs[1].Detail, "DETAIL-") {
				t.Errorf("end event Detail = %q; want the tool's detail", evs[1].Detail)
			}
		})
	}
}

func TestToolsCallRefusals(t *testing.T) {
	tests := []struct {
		name     string
		p        *principal.Principal
		tool     string
		args     any
		wantCode reason.Code
		wantText string
	}{
		{"forbidden tool", guest, "delete_file", map[string]any{"path": "a"}, reason.PermissionDenied, "access denied"},
		{"deny beats allow *", dev, "delete_file", map[string]any{"path": "a"}, reason.PermissionDenied, "access denied"},
		{"forbidden unknown tool", guest, "launch", map[string]any{}, reason.PermissionDenied, "access denied"},
		{"permitted unknown tool", dev, "launch", map[string]any{}, reason.UnknownTool, "unknown tool"},
		{"malformed name", dev, "read_file ", map[string]any{"path": "a"}, reason.UnknownTool, "unknown tool"},
		{"missing argument", guest, "read_file", map[string]any{}, reason.InvalidArguments, ""},
		{"additional argument", guest, "read_file", map[string]any{"path": "a", "x": 1}, reason.InvalidArguments, ""},
		{"duplicate keys", guest, "read_file", json.RawMessage(`{"path":"a","path":"b"}`), reason.InvalidArguments, ""},
		{"non-object arguments", guest, "read_file", json.RawMessage(`["a"]`), reason.InvalidArguments, ""},
		{"tool refusal", guest, "read_file", map[string]any{"path": "private"}, reason.PathForbidden, "path is not allowed"},
		{"tool failure", dev, "crash", map[string]any{}, reason.ToolFailed, "tool failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.p, fixOpts{})
			cs := f.connect(t, "2025-11-25")
			res, err := cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: tt.tool, Arguments: tt.args})
			if err != nil {
				t.Fatalf("CallTool: protocol error %v; want a tool result with isError", err)
			}
			if !res.IsError {
				t.Errorf("IsError = false; result %+v", res)
			}
			sc, ok := res.StructuredContent.(map[string]any)
			if !ok {
				t.Fatalf("structuredContent = %#v; want an object", res.StructuredContent)
			}
			if sc["code"] != string(tt.wantCode) {
				t.Errorf("structuredContent.code = %v; want %s", sc["code"], tt.wantCode)
			}
			text := ""
			if len(res.Content) == 1 {
				if tc, ok := res.Content[0].(*mcp.TextContent); ok {
					text = tc.Text
				}
			}
			if tt.wantText != "" && text != tt.wantText {
				t.Errorf("text = %q; want %q", text, tt.wantText)
			}
			if sc["message"] == nil || sc["message"] == "" {
				t.Errorf("structuredContent.message missing: %v", sc)
			}
			b, _ := json.Marshal(res)
			for _, leak := range []string{"CAUSE-SECRET", "role:", "default deny", "not registered"} {
				if bytes.Contains(b, []byte(leak)) {
					t.Errorf("result leaks %q: %s", leak, b)
				}
			}
			// Only refusals by the tool itself let it run.
			toolRan := tt.wantCode == reason.PathForbidden || tt.wantCode == reason.ToolFailed
			for name, n := range f.ran {
				want := int32(0)
				if toolRan && name == tt.tool {
					want = 1
				}
				if got := n.Load(); got != want {
					t.Errorf("tool %s ran %d times; want %d", name, got, want)
				}
			}
		})
	}
}

// TestToolsCallErrorResultKeepsToolFields: a failed run keeps the tool's
// structured fields (exit code, message) but its reason code is the
// gateway's, not one the tool wrote into structuredContent.
func TestToolsCallErrorResultKeepsToolFields(t *testing.T) {
	f := newFixture(t, dev, fixOpts{})
	cs := f.connect(t, "2025-11-25")
	res, err := cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: "run"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"code": "NON_ZERO_EXIT", "exit_code": 3.0, "message": "program exited with status 3"}
	if diff := cmp.Diff(want, res.StructuredContent); diff != "" {
		t.Errorf("structuredContent mismatch (-want +got):\n%s", diff)
	}
	if !res.IsError {
		t.Error("IsError = false")
	}
}

// TestUnknownAndForbiddenLookAlike: a guest cannot tell a tool it may not call
// from one that does not exist.
func TestUnknownAndForbiddenLookAlike(t *testing.T) {
	f := newFixture(t, guest, fixOpts{})
	cs := f.connect(t, "2025-11-25")
	ctx := ctxT(t)
	a, err1 := cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_file", Arguments: map[string]any{"path": "a"}})
	b, err2 := cs.CallTool(ctx, &mcp.CallToolParams{Name: "no_such_tool", Arguments: map[string]any{"path": "a"}})
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if diff := cmp.Diff(string(ja), string(jb)); diff != "" {
		t.Errorf("forbidden and missing tools answered differently (-forbidden +missing):\n%s", diff)
	}
}

func TestUnsupportedMethodsRefused(t *testing.T) {
	calls := []struct {
		name string
		do   func(ctx context.Context, cs *mcp.ClientSession) error
	}{
		{"prompts/list", func(ctx context.Context, cs *mcp.ClientSession) error {
			_, err := cs.ListPrompts(ctx, nil)
			return err
		}},
		{"prompts/get", func(ctx context.Context, cs *mcp.ClientSession) error {
			_, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "x"})
			return err
		}},
		{"resources/list", func(ctx context.Context, cs *mcp.ClientSession) error {
			_, err := cs.ListResources(ctx, nil)
			return err
		}},
		{"resources/templates/list", func(ctx context.Context, cs *mcp.ClientSession) error {
			_, err := cs.ListResourceTemplates(ctx, nil)
			return err
		}},
		{"resources/read", func(ctx context.Context, cs *mcp.ClientSession) error {
			_, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///etc/passwd"})
			return err
		}},
		{"completion/complete", func(ctx context.Context, cs *mcp.ClientSession) error {
			_, err := cs.Complete(ctx, &mcp.CompleteParams{
				Ref:      &mcp.CompleteReference{Type: "ref/prompt", Name: "x"},
				Argument: mcp.CompleteParamsArgument{Name: "a", Value: "b"},
			})
			return err
		}},
	}
	for _, v := range versions {
		for _, c := range calls {
			t.Run(v.name+"/"+c.name, func(t *testing.T) {
				f := newFixture(t, admin, fixOpts{})
				cs := f.connect(t, v.v)
				err := c.do(ctxT(t), cs)
				if err == nil {
					t.Fatalf("%s succeeded; want a JSON-RPC error", c.name)
				}
				var werr *jsonrpc.Error
				if !errors.As(err, &werr) {
					t.Fatalf("%s error %v (%T); want a JSON-RPC error", c.name, err, err)
				}
				if werr.Code != jsonrpc.CodeMethodNotFound {
					t.Errorf("%s error code = %d (%s); want %d", c.name, werr.Code, werr.Message, jsonrpc.CodeMethodNotFound)
				}
				// The session is still usable.
				if err := cs.Ping(ctxT(t), nil); err != nil {
					t.Errorf("ping after refusal: %v", err)
				}
			})
		}
	}
}

func TestIdentifyFailureRefuses(t *testing.T) {
	var asked atomic.Int32
	noIdentity := func(mcp.Request) (mcpserver.Identity, bool) {
		asked.Add(1)
		return mcpserver.Identity{}, false
	}
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			f := newFixture(t, nil, fixOpts{identify: noIdentity})
			cs := f.connect(t, v.v)
			ctx := ctxT(t)
			before := asked.Load()
			if res, err := cs.ListTools(ctx, nil); err == nil {
				t.Errorf("ListTools = %+v; want error", res)
			} else if werr := (*jsonrpc.Error)(nil); !errors.As(err, &werr) || !strings.Contains(werr.Message, "authentication required") {
				t.Errorf("ListTools error = %v; want JSON-RPC 'authentication required'", err)
			}
			if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "a"}}); err == nil {
				t.Errorf("CallTool = %+v; want error", res)
			}
			if asked.Load()-before < 2 {
				t.Errorf("Identify consulted %d times; want once per request", asked.Load()-before)
			}
			for name, n := range f.ran {
				if n.Load() != 0 {
					t.Errorf("tool %s ran without an identity", name)
				}
			}
			for _, e := range f.rec.all() {
				if e.Type != audit.SessionCreate {
					t.Errorf("unexpected event %+v", e)
				}
			}
			if got := f.sessions.all(); len(got) != 0 {
				t.Errorf("sessions recorded without identity: %+v", got)
			}
		})
	}
}

// serveHTTP serves f's MCP server over Streamable HTTP (the stateful,
// session-based handler) and connects a client with version.
func (f *fixture) serveHTTP(t *testing.T, version string) *mcp.ClientSession {
	t.Helper()
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return f.srv }, &mcp.StreamableHTTPOptions{
		Logger: slog.New(slog.DiscardHandler),
	})
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1.0"}, nil)
	cs, err := client.Connect(ctxT(t), &mcp.StreamableClientTransport{Endpoint: ts.URL, MaxRetries: -1, DisableStandaloneSSE: true},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("Connect over HTTP: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func TestInitializeRecordsSession(t *testing.T) {
	f := newFixture(t, dev, fixOpts{})
	cs := f.serveHTTP(t, "2025-11-25")
	sid := cs.ID()
	if sid == "" {
		t.Fatal("no session id over Streamable HTTP")
	}
	want := []store.Session{{ID: sid, Principal: "dave", ProtocolVersion: "2025-11-25", ClientName: "test-client", CreatedAt: t0}}
	if diff := cmp.Diff(want, f.sessions.all()); diff != "" {
		t.Errorf("recorded sessions mismatch (-want +got):\n%s", diff)
	}
	evs := f.rec.ofType(audit.SessionCreate)
	if len(evs) != 1 {
		t.Fatalf("mcp.session.create events = %+v; want 1", evs)
	}
	ev := evs[0]
	if ev.Session != sid || ev.Principal != "dave" || ev.Status != audit.StatusOK ||
		!cmp.Equal(ev.Roles, []string{"developer"}) || !strings.HasPrefix(ev.RequestID, "req_") {
		t.Errorf("session event = %+v", ev)
	}
	if !strings.Contains(ev.Detail, "2025-11-25") || !strings.Contains(ev.Detail, "test-client") {
		t.Errorf("session event Detail = %q; want protocol and client", ev.Detail)
	}

	// Calls on the session carry its id into the gateway's records.
	res, err := cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "x"}})
	if err != nil || res.IsError {
		t.Fatalf("CallTool = %+v, %v", res, err)
	}
	for _, e := range f.rec.ofType(audit.ToolCallStart) {
		if e.Session != sid {
			t.Errorf("tool.call.start Session = %q; want %q", e.Session, sid)
		}
	}
	if n := len(f.sessions.all()); n != 1 {
		t.Errorf("a tools/call recorded another session: %d sessions", n)
	}
}

// TestInitializeSurvivesSessionStoreFailure: a session store error is
// logged, not fatal to the handshake.
func TestInitializeSurvivesSessionStoreFailure(t *testing.T) {
	f := newFixture(t, dev, fixOpts{sessions: &sessions{fail: errors.New("db locked")}, auditFail: audit.SessionCreate})
	cs := f.serveHTTP(t, "2025-11-25")
	if len(f.sessions.all()) != 1 {
		t.Errorf("RecordSession calls = %d; want 1", len(f.sessions.all()))
	}
	for _, msg := range []string{"record session failed", "audit of session creation failed"} {
		if !strings.Contains(f.logs.String(), msg) {
			t.Errorf("%q not logged; logs:\n%s", msg, f.logs.String())
		}
	}
	if _, err := cs.ListTools(ctxT(t), nil); err != nil {
		t.Errorf("ListTools after store failure: %v", err)
	}
}

func TestSDKLogger(t *testing.T) {
	tests := []struct {
		name     string
		base     slog.Level
		log      func(l *slog.Logger)
		wantKept bool
	}{
		{"debug dropped", slog.LevelDebug, func(l *slog.Logger) { l.Debug("MSG") }, false},
		{"info dropped", slog.LevelDebug, func(l *slog.Logger) { l.Info("MSG") }, false},
		{"warn kept", slog.LevelDebug, func(l *slog.Logger) { l.Warn("MSG") }, true},
		{"error kept", slog.LevelDebug, func(l *slog.Logger) { l.Error("MSG") }, true},
		{"info dropped after With", slog.LevelDebug, func(l *slog.Logger) { l.With("k", "v").Info("MSG") }, false},
		{"info dropped after WithGroup", slog.LevelDebug, func(l *slog.Logger) { l.WithGroup("g").Info("MSG") }, false},
		{"warn kept after With", slog.LevelDebug, func(l *slog.Logger) { l.With("k", "v").Warn("MSG") }, true},
		{"warn kept after WithGroup", slog.LevelDebug, func(l *slog.Logger) { l.WithGroup("g").Warn("MSG", "k", "v") }, true},
		{"base level still applies", slog.LevelError, func(l *slog.Logger) { l.Warn("MSG") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.base}))
			tt.log(mcpserver.SDKLogger(base))
			if got := strings.Contains(buf.String(), "MSG"); got != tt.wantKept {
				t.Errorf("kept = %v; want %v (output %q)", got, tt.wantKept, buf.String())
			}
		})
	}
	t.Run("attributes survive", func(t *testing.T) {
		var buf bytes.Buffer
		l := mcpserver.SDKLogger(slog.New(slog.NewTextHandler(&buf, nil)))
		l.With("component", "mcp").WithGroup("g").Warn("MSG", "k", "v")
		if out := buf.String(); !strings.Contains(out, "component=mcp") || !strings.Contains(out, "g.k=v") {
			t.Errorf("output %q lost attributes", out)
		}
	})
}

func TestHTTPIdentity(t *testing.T) {
	id := mcpserver.Identity{Principal: dev, RequestID: "req_1", RemoteAddr: "192.0.2.1:5"}
	good := mcpserver.TokenInfo(id, t0)
	if good.UserID != "user:dave" || !good.Expiration.Equal(t0) {
		t.Errorf("TokenInfo = %+v; want UserID user:dave, expiry %v", good, t0)
	}
	tests := []struct {
		name   string
		extra  *mcp.RequestExtra
		want   mcpserver.Identity
		wantOK bool
	}{
		{"no extra", nil, mcpserver.Identity{}, false},
		{"no token", &mcp.RequestExtra{}, mcpserver.Identity{}, false},
		{"token without identity", &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{UserID: "user:dave"}}, mcpserver.Identity{}, false},
		{"identity of wrong type", &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{Extra: map[string]any{"portcullis.identity": &id}}}, mcpserver.Identity{}, false},
		{"client-chosen string", &mcp.RequestExtra{TokenInfo: &auth.TokenInfo{Extra: map[string]any{"portcullis.identity": "admin"}}}, mcpserver.Identity{}, false},
		{"nil principal", &mcp.RequestExtra{TokenInfo: mcpserver.TokenInfo(mcpserver.Identity{RequestID: "r"}, t0)}, mcpserver.Identity{}, false},
		{"good", &mcp.RequestExtra{TokenInfo: good}, id, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := mcpserver.HTTPIdentity(&mcp.CallToolRequest{Extra: tt.extra})
			if ok != tt.wantOK {
				t.Errorf("ok = %v; want %v", ok, tt.wantOK)
			}
			if ok && !cmp.Equal(got, tt.want) {
				t.Errorf("identity = %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestFixedIdentityAndRequestIDs(t *testing.T) {
	identify := mcpserver.FixedIdentity(guest)
	re := regexp.MustCompile(`^req_[A-Z2-7]{26}$`)
	seen := map[string]bool{}
	for range 1000 {
		id, ok := identify(&mcp.CallToolRequest{})
		if !ok || id.Principal != guest || id.RemoteAddr != "stdio" {
			t.Fatalf("FixedIdentity = %+v, %v", id, ok)
		}
		if !re.MatchString(id.RequestID) {
			t.Fatalf("request id %q does not match %s", id.RequestID, re)
		}
		if seen[id.RequestID] {
			t.Fatalf("request id %q repeated", id.RequestID)
		}
		seen[id.RequestID] = true
	}
}
