package adminapi_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

// spyEmitter forwards to the real audit writer, keeps what it
// acknowledged, and can be told to fail events of some types.
type spyEmitter struct {
	inner  adminapi.Emitter
	mu     sync.Mutex
	events []audit.Event
	fail   map[audit.Type]bool
}

func (s *spyEmitter) Emit(ctx context.Context, e *audit.Event) error {
	s.mu.Lock()
	fail := s.fail[e.Type]
	s.mu.Unlock()
	if fail {
		return fmt.Errorf("%w: injected", audit.ErrUnavailable)
	}
	if err := s.inner.Emit(ctx, e); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, *e)
	return nil
}

func (s *spyEmitter) failOn(types ...audit.Type) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = map[audit.Type]bool{}
	for _, t := range types {
		s.fail[t] = true
	}
}

// byRequest returns the events recorded for request id rid.
func (s *spyEmitter) byRequest(rid string) []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []audit.Event
	for _, e := range s.events {
		if e.RequestID == rid {
			out = append(out, e)
		}
	}
	return out
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

type fixture struct {
	t     *testing.T
	db    *sqlite.DB
	an    *authn.Authenticator
	api   *adminapi.API
	spy   *spyEmitter
	clock *fakeClock
	logs  *strings.Builder
	pol   *policy.Engine
	n     int
}

// Principals as authentication would build them.
var (
	rootP  = &principal.Principal{UserID: 1, Name: "root", Roles: []string{"admin"}, KeyID: "key_root", Method: principal.MethodAPIKey}
	devP   = &principal.Principal{UserID: 2, Name: "dev", Roles: []string{"developer"}, KeyID: "key_dev", Method: principal.MethodAPIKey}
	guestP = &principal.Principal{UserID: 3, Name: "gina", Roles: []string{"guest"}, KeyID: "key_gina", Method: principal.MethodAPIKey}
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	logs := &strings.Builder{}
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, logs}, nil))
	clock := &fakeClock{now: t0}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"), sqlite.Options{Logger: log, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w, err := audit.NewWriter(audit.Config{CommitTimeout: 10 * time.Second, QueueSize: 64, MaxBatch: 16, Chain: audittest.Chain()}, db, clock.Now, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(context.Background()) })
	spy := &spyEmitter{inner: w}
	sec := make([]byte, authn.SecretSize)
	rand.Read(sec)
	an, err := authn.New(sec, db, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	grants, err := db.Grants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(grants)
	if err != nil {
		t.Fatal(err)
	}
	api, err := adminapi.New(adminapi.Deps{Store: db, Authn: an, Policy: pol, Audit: spy, Logger: log, Now: clock.Now,
		RequestMeta: func(r *http.Request) (string, string) { return r.Header.Get("X-Test-Rid"), "192.0.2.7:4242" }})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, role string }{{"root", "admin"}, {"dev", "developer"}, {"gina", "guest"}} {
		if _, _, err := db.EnsureUser(ctx, u.name, []string{u.role}); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{t: t, db: db, an: an, api: api, spy: spy, clock: clock, logs: logs, pol: pol}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// do serves one request as p (nil: no principal) and returns the
// recorder and the request id it was given.
func (f *fixture) do(p *principal.Principal, method, target, body string) (*httptest.ResponseRecorder, string) {
	f.t.Helper()
	f.n++
	rid := fmt.Sprintf("req_T%04d", f.n)
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	req.Header.Set("X-Test-Rid", rid)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if p != nil {
		req = req.WithContext(principal.NewContext(req.Context(), p))
	}
	w := httptest.NewRecorder()
	f.api.ServeHTTP(w, req)
	return w, rid
}

func decodeErr(t *testing.T, w *httptest.ResponseRecorder) (code, msg string) {
	t.Helper()
	var e struct{ Error, Message string }
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", w.Body, err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	return e.Error, e.Message
}

// createKey creates a key as root and returns its view.
func (f *fixture) createKey(user, role, expires string) adminapi.KeyView {
	f.t.Helper()
	b, _ := json.Marshal(adminapi.CreateKeyRequest{User: user, Role: role, ExpiresIn: expires})
	w, _ := f.do(rootP, "POST", "/admin/v1/keys", string(b))
	if w.Code != http.StatusCreated {
		f.t.Fatalf("create key %s/%s: %d %s", user, role, w.Code, w.Body)
	}
	var v adminapi.KeyView
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *fixture) keyCount(t testing.TB) int {
	t.Helper()
	keys, err := f.db.ListAPIKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	f := newFixture(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol, _ := policy.New(nil)
	meta := func(*http.Request) (string, string) { return "", "" }
	full := adminapi.Deps{Store: f.db, Authn: f.an, Policy: pol, Audit: f.spy, Logger: log, RequestMeta: meta}
	if _, err := adminapi.New(full); err != nil {
		t.Fatalf("valid deps: %v", err)
	}
	for name, mut := range map[string]func(*adminapi.Deps){
		"store":  func(d *adminapi.Deps) { d.Store = nil },
		"authn":  func(d *adminapi.Deps) { d.Authn = nil },
		"policy": func(d *adminapi.Deps) { d.Policy = nil },
		"audit":  func(d *adminapi.Deps) { d.Audit = nil },
		"logger": func(d *adminapi.Deps) { d.Logger = nil },
		"meta":   func(d *adminapi.Deps) { d.RequestMeta = nil },
	} {
		d := full
		mut(&d)
		if _, err := adminapi.New(d); err == nil {
			t.Errorf("New accepted Deps without %s", name)
		}
	}
}

type route struct{ method, path, body string }

func allRoutes(keyID string) []route {
	return []route{
		{"GET", "/admin/v1/keys", ""},
		{"POST", "/admin/v1/keys", `{"user":"eve","role":"admin"}`},
		{"DELETE", "/admin/v1/keys/" + keyID, ""},
		{"GET", "/admin/v1/audit", ""},
		{"GET", "/admin/v1/audit?limit=5", ""},
	}
}

func TestRoutesAreAllGuarded(t *testing.T) {
	f := newFixture(t)
	var paths []string
	for _, r := range f.api.Routes() {
		paths = append(paths, r.Method+" "+r.Path+" "+r.Area)
		if r.Area == "" {
			t.Errorf("route %s %s has no permission area", r.Method, r.Path)
		}
	}
	want := []string{"GET /admin/v1/keys keys", "POST /admin/v1/keys keys", "DELETE /admin/v1/keys/{id} keys", "GET /admin/v1/audit audit",
		"GET /admin/v1/audit/export audit", "POST /admin/v1/audit/checkpoint audit",
		"POST /admin/v1/keys/{id}/rotate keys",
		"GET /admin/v1/users users", "POST /admin/v1/users users", "GET /admin/v1/users/{name} users",
		"POST /admin/v1/users/{name}/disable users", "POST /admin/v1/users/{name}/enable users",
		"POST /admin/v1/users/{name}/roles users", "DELETE /admin/v1/users/{name}/roles/{role} users",
		"GET /admin/v1/roles roles", "POST /admin/v1/roles roles", "GET /admin/v1/roles/{name} roles",
		"POST /admin/v1/roles/{name}/permissions roles", "DELETE /admin/v1/roles/{name}/permissions roles",
		"GET /admin/v1/policies policies", "POST /admin/v1/policies/reload policies", "POST /admin/v1/policies/test policies",
		"GET /admin/v1/violations quarantine", "GET /admin/v1/quarantines quarantine", "POST /admin/v1/quarantines quarantine",
		"POST /admin/v1/quarantines/release quarantine", "GET /admin/v1/usage quarantine",
		"GET /admin/v1/approvals approvals", "GET /admin/v1/approvals/{id} approvals",
		"POST /admin/v1/approvals/{id}/approve approvals", "POST /admin/v1/approvals/{id}/deny approvals",
		"GET /admin/v1/plugins plugins", "GET /admin/v1/plugins/{server}/tools/{tool} plugins",
		"POST /admin/v1/plugins/{server}/tools/{tool}/accept plugins",
		"GET /admin/v1/secrets secrets", "GET /admin/v1/health health", "GET /admin/v1/openapi.json docs"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("routes changed; extend allRoutes or accessRoutes and these tests (-want +got):\n%s", diff)
	}
}

// TestNonAdminDenied: guests, developers and odd principals get 403 with
// a generic body on every route, nothing changes, and each attempt is an
// admin.denied event naming the principal (the rule only in Detail).
func TestNonAdminDenied(t *testing.T) {
	f := newFixture(t)
	victim := f.createKey("victim", "guest", "")
	before := f.keyCount(t)
	odd := []*principal.Principal{
		guestP,
		devP,
		{Name: "noroles", Method: principal.MethodAPIKey},
		{Name: "caps", Roles: []string{"Admin"}, Method: principal.MethodAPIKey},
		{Name: "spaced", Roles: []string{"admin "}, Method: principal.MethodAPIKey},
		{Name: "glob", Roles: []string{"*"}, Method: principal.MethodAPIKey},
		{Name: "admin", Roles: []string{"guest"}, Method: principal.MethodAPIKey}, // the name is not a role
	}
	for _, p := range odd {
		for _, r := range allRoutes(victim.ID) {
			t.Run(p.Name+" "+r.method+" "+r.path, func(t *testing.T) {
				w, rid := f.do(p, r.method, r.path, r.body)
				if w.Code != http.StatusForbidden {
					t.Fatalf("status %d, want 403: %s", w.Code, w.Body)
				}
				code, msg := decodeErr(t, w)
				if code != "forbidden" || msg != "access denied" {
					t.Errorf("body %s", w.Body)
				}
				evs := f.spy.byRequest(rid)
				if len(evs) != 1 || evs[0].Type != audit.AdminDenied {
					t.Fatalf("events %+v, want one admin.denied", evs)
				}
				e := evs[0]
				if e.Principal != p.Name || e.Decision != audit.DecisionDeny || e.Status != audit.StatusRefused ||
					e.RemoteAddr != "192.0.2.7:4242" || !strings.Contains(e.Detail, r.method) || !strings.Contains(e.Detail, "default deny") {
					t.Errorf("event %+v", e)
				}
			})
		}
	}
	if f.keyCount(t) != before {
		t.Error("a denied request changed the keys")
	}
	if _, err := f.db.UserByName(context.Background(), "eve"); err == nil {
		t.Error("a denied request created a user")
	}
	keys, _ := f.db.ListAPIKeys(context.Background())
	for _, k := range keys {
		if k.RevokedAt != nil {
			t.Errorf("key %s revoked by a denied request", k.ID)
		}
	}
}

func TestUnauthenticated(t *testing.T) {
	f := newFixture(t)
	for _, r := range allRoutes("key_x") {
		w, rid := f.do(nil, r.method, r.path, r.body)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("no principal %s %s: status %d, want 401", r.method, r.path, w.Code)
		}
		if len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("unauthenticated request recorded as an admin event")
		}
		// A context carrying a nil *Principal is not a principal.
		req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
		req = req.WithContext(principal.NewContext(req.Context(), nil))
		w2 := httptest.NewRecorder()
		f.api.ServeHTTP(w2, req)
		if w2.Code != http.StatusUnauthorized {
			t.Errorf("nil principal %s %s: status %d, want 401", r.method, r.path, w2.Code)
		}
	}
	if _, err := f.db.UserByName(context.Background(), "eve"); err == nil {
		t.Error("unauthenticated request created a user")
	}
}

func TestCreateKey(t *testing.T) {
	f := newFixture(t)
	w, rid := f.do(rootP, "POST", "/admin/v1/keys", `{"user":"alice","role":"developer","expires_in":"720h"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	raw := w.Body.String()
	var v adminapi.KeyView
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if !authn.WellFormed(v.Key) || !strings.HasPrefix(v.ID, "key_") || v.User != "alice" ||
		!slices.Equal(v.Roles, []string{"developer"}) || !strings.HasPrefix(v.Key, v.Prefix) || len(v.Prefix) >= len(v.Key)/2 {
		t.Errorf("view %+v", v)
	}
	if !v.CreatedAt.Equal(t0) || v.ExpiresAt == nil || !v.ExpiresAt.Equal(t0.Add(720*time.Hour)) || v.RevokedAt != nil {
		t.Errorf("times: created %v expires %v", v.CreatedAt, v.ExpiresAt)
	}
	if strings.Contains(strings.ToLower(raw), "hash") {
		t.Errorf("create response mentions a hash: %s", raw)
	}

	// The key works, for exactly its role, until it expires.
	p, err := f.an.Authenticate(context.Background(), v.Key)
	if err != nil {
		t.Fatalf("new key does not authenticate: %v", err)
	}
	if p.Name != "alice" || !slices.Equal(p.Roles, []string{"developer"}) || p.KeyID != v.ID {
		t.Errorf("principal %+v", p)
	}

	// Audit: user created and key created, by root, with this request.
	evs := f.spy.byRequest(rid)
	var types []audit.Type
	for _, e := range evs {
		types = append(types, e.Type)
		if e.Principal != "root" || !slices.Equal(e.Roles, []string{"admin"}) || e.Status != audit.StatusOK || e.RemoteAddr != "192.0.2.7:4242" {
			t.Errorf("event %+v", e)
		}
		if strings.Contains(e.Detail, v.Key) || strings.Contains(e.Detail, v.Key[len(authn.KeyPrefix):]) {
			t.Errorf("event %s carries the plaintext key", e.Type)
		}
	}
	if diff := cmp.Diff([]audit.Type{audit.AdminUserCreate, audit.AdminKeyCreate}, types); diff != "" {
		t.Errorf("event types (-want +got):\n%s", diff)
	}
	if len(evs) == 2 && !strings.Contains(evs[1].Detail, v.ID) {
		t.Errorf("admin.key.create detail %q lacks the key id", evs[1].Detail)
	}

	// The list never shows plaintext or hash.
	w, _ = f.do(rootP, "GET", "/admin/v1/keys", "")
	if w.Code != http.StatusOK {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
	list := w.Body.String()
	k, _, err := f.db.APIKeyByHash(context.Background(), f.an.Hash(v.Key))
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string]string{
		"plaintext":      v.Key,
		"key body":       v.Key[len(authn.KeyPrefix):],
		"hash hex":       hex.EncodeToString(k.Hash),
		"hash base64":    base64.StdEncoding.EncodeToString(k.Hash),
		"hash b64 url":   base64.RawURLEncoding.EncodeToString(k.Hash),
		"json key field": `"key"`,
		"hash field":     `"hash"`,
	} {
		if strings.Contains(list, secret) {
			t.Errorf("GET /admin/v1/keys contains the %s: %s", name, list)
		}
	}
	var lv struct{ Keys []adminapi.KeyView }
	if err := json.Unmarshal(w.Body.Bytes(), &lv); err != nil {
		t.Fatal(err)
	}
	if len(lv.Keys) != 1 || lv.Keys[0].ID != v.ID || lv.Keys[0].Key != "" || lv.Keys[0].Prefix != v.Prefix {
		t.Errorf("list %+v", lv.Keys)
	}
	// Keys are never stored in plaintext either.
	all, err := f.db.QueryAudit(context.Background(), audit.Query{Limit: audit.MaxQueryLimit})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(all); strings.Contains(string(b), v.Key[len(authn.KeyPrefix):]) {
		t.Error("durable audit log contains the key")
	}
	if strings.Contains(f.logs.String(), v.Key[len(authn.KeyPrefix):]) {
		t.Error("log contains the key")
	}
}

func TestCreateKeyEmptyList(t *testing.T) {
	f := newFixture(t)
	w, _ := f.do(rootP, "GET", "/admin/v1/keys", "")
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"keys":[]}` {
		t.Errorf("empty list: %d %s", w.Code, w.Body)
	}
}

func TestCreateKeyValidation(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("a", 65)
	cases := map[string]string{
		"unknown role":          `{"user":"alice","role":"superuser"}`,
		"empty role":            `{"user":"alice","role":""}`,
		"role case":             `{"user":"alice","role":"Admin"}`,
		"role with space":       `{"user":"alice","role":"admin "}`,
		"role glob":             `{"user":"alice","role":"*"}`,
		"empty user":            `{"user":"","role":"guest"}`,
		"missing user":          `{"role":"guest"}`,
		"user with space":       `{"user":"al ice","role":"guest"}`,
		"user traversal":        `{"user":"../x","role":"guest"}`,
		"user slash":            `{"user":"a/b","role":"guest"}`,
		"user 65 chars":         `{"user":"` + long + `","role":"guest"}`,
		"user sql":              `{"user":"' OR 1=1 --","role":"guest"}`,
		"user unicode":          `{"user":"ålice","role":"guest"}`,
		"user homoglyph":        `{"user":"аdmin","role":"admin"}`,
		"user NUL":              `{"user":"a\u0000b","role":"guest"}`,
		"user newline":          `{"user":"a\nb","role":"guest"}`,
		"user trailing newline": `{"user":"alice\n","role":"guest"}`,
		"user leading dot":      `{"user":".hidden","role":"guest"}`,
		"user leading dash":     `{"user":"-rf","role":"guest"}`,
		"unknown field":         `{"user":"alice","role":"guest","admin":true}`,
		"roles array field":     `{"user":"alice","role":"guest","roles":["admin"]}`,
		"wrong type":            `{"user":1,"role":"guest"}`,
		"not json":              `user=alice&role=guest`,
		"empty body":            ``,
		"null":                  `null`,
		"array":                 `[{"user":"alice","role":"guest"}]`,
		"trailing object":       `{"user":"alice","role":"guest"}{"user":"mallory","role":"admin"}`,
		"trailing garbage":      `{"user":"alice","role":"guest"} xyz`,
		"expires negative":      `{"user":"alice","role":"guest","expires_in":"-1h"}`,
		"expires zero":          `{"user":"alice","role":"guest","expires_in":"0s"}`,
		"expires bare zero":     `{"user":"alice","role":"guest","expires_in":"0"}`,
		"expires garbage":       `{"user":"alice","role":"guest","expires_in":"abc"}`,
		"expires days":          `{"user":"alice","role":"guest","expires_in":"30d"}`,
		"expires overflow":      `{"user":"alice","role":"guest","expires_in":"9999999999h"}`,
		"expires past 2262":     `{"user":"alice","role":"guest","expires_in":"2562047h"}`,
		"expires over the cap":  `{"user":"alice","role":"guest","expires_in":"876001h"}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			before := f.keyCount(t)
			w, rid := f.do(rootP, "POST", "/admin/v1/keys", body)
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", w.Code, w.Body)
			}
			if code, _ := decodeErr(t, w); code != "bad_request" {
				t.Errorf("code %q", code)
			}
			if f.keyCount(t) != before {
				t.Error("a refused request created a key")
			}
			for _, e := range f.spy.byRequest(rid) {
				t.Errorf("refused request emitted %s", e.Type)
			}
		})
	}
	for _, name := range []string{"alice", "mallory", "аdmin", ".hidden", "-rf", long} {
		if _, err := f.db.UserByName(context.Background(), name); err == nil {
			t.Errorf("user %q created by a refused request", name)
		}
	}

	// The edges of the name rule are accepted.
	for _, name := range []string{"a", strings.Repeat("b", 64), "first.last@example.com", "ci-bot_2", "Z9"} {
		f.createKey(name, "guest", "")
	}
}

// TestCreateKeyExpiryWorks: a key made with expires_in stops working at
// exactly that time, and a long expiry is stored as given.
func TestCreateKeyExpiry(t *testing.T) {
	f := newFixture(t)
	v := f.createKey("temp", "guest", "1h")
	check := func(at time.Time, ok bool) {
		t.Helper()
		f.clock.mu.Lock()
		f.clock.now = at
		f.clock.mu.Unlock()
		_, err := f.an.Authenticate(context.Background(), v.Key)
		if (err == nil) != ok {
			t.Errorf("at %v: err = %v, want ok=%v", at, err, ok)
		}
	}
	check(t0.Add(time.Hour-time.Nanosecond), true)
	check(t0.Add(time.Hour), false)
	check(t0, true)

	// The longest allowed expiry is stored as given, not wrapped past
	// the int64-nanosecond horizon into the past.
	for i, d := range []time.Duration{87600 * time.Hour, adminapi.MaxExpiresIn} {
		long := f.createKey(fmt.Sprintf("longlived%d", i), "guest", d.String())
		if long.ExpiresAt == nil || !long.ExpiresAt.Equal(t0.Add(d)) {
			t.Errorf("%s: response expiry %v, want %v", d, long.ExpiresAt, t0.Add(d))
		}
		k, _, err := f.db.APIKeyByHash(context.Background(), f.an.Hash(long.Key))
		if err != nil {
			t.Fatal(err)
		}
		if k.ExpiresAt == nil || !k.ExpiresAt.Equal(t0.Add(d)) {
			t.Errorf("%s: stored expiry %v, want %v", d, k.ExpiresAt, t0.Add(d))
		}
		if _, err := f.an.Authenticate(context.Background(), long.Key); err != nil {
			t.Errorf("%s key refused: %v", d, err)
		}
	}
}

// TestCreateKeyExistingUser: a key for an existing user with a new role
// grants the role (audited); with a held role nothing is granted.
func TestCreateKeyExistingUser(t *testing.T) {
	f := newFixture(t)
	w, rid := f.do(rootP, "POST", "/admin/v1/keys", `{"user":"gina","role":"developer"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	u, err := f.db.UserByName(context.Background(), "gina")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"developer", "guest"}, u.Roles); diff != "" {
		t.Errorf("gina's roles (-want +got):\n%s", diff)
	}
	var types []audit.Type
	for _, e := range f.spy.byRequest(rid) {
		types = append(types, e.Type)
		if e.Principal != "root" {
			t.Errorf("%s by %q", e.Type, e.Principal)
		}
		if e.Type == audit.AdminUserGrant && (!strings.Contains(e.Detail, "gina") || !strings.Contains(e.Detail, "developer")) {
			t.Errorf("grant detail %q", e.Detail)
		}
	}
	if diff := cmp.Diff([]audit.Type{audit.AdminUserGrant, audit.AdminKeyCreate}, types); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	w, rid = f.do(rootP, "POST", "/admin/v1/keys", `{"user":"gina","role":"guest"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	types = nil
	for _, e := range f.spy.byRequest(rid) {
		types = append(types, e.Type)
	}
	if diff := cmp.Diff([]audit.Type{audit.AdminKeyCreate}, types); diff != "" {
		t.Errorf("held role: events (-want +got):\n%s", diff)
	}
}

func TestRevokeKey(t *testing.T) {
	f := newFixture(t)
	v := f.createKey("alice", "guest", "")
	other := f.createKey("bob", "guest", "")

	w, rid := f.do(rootP, "DELETE", "/admin/v1/keys/"+v.ID, "")
	if w.Code != http.StatusOK {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	var rv adminapi.KeyView
	if err := json.Unmarshal(w.Body.Bytes(), &rv); err != nil {
		t.Fatal(err)
	}
	if rv.ID != v.ID || rv.RevokedAt == nil || !rv.RevokedAt.Equal(t0) || rv.Key != "" {
		t.Errorf("revoked view %+v", rv)
	}
	evs := f.spy.byRequest(rid)
	if len(evs) != 1 || evs[0].Type != audit.AdminKeyRevoke || evs[0].Principal != "root" || !strings.Contains(evs[0].Detail, v.ID) {
		t.Errorf("events %+v", evs)
	}
	if _, err := f.an.Authenticate(context.Background(), v.Key); err == nil {
		t.Error("revoked key still authenticates")
	}
	if _, err := f.an.Authenticate(context.Background(), other.Key); err != nil {
		t.Errorf("revoking one key broke another: %v", err)
	}

	w, rid = f.do(rootP, "DELETE", "/admin/v1/keys/"+v.ID, "")
	if w.Code != http.StatusNotFound {
		t.Errorf("second revoke: %d %s", w.Code, w.Body)
	}
	if len(f.spy.byRequest(rid)) != 0 {
		t.Error("a failed revoke was audited as a revocation")
	}
	for _, id := range []string{"key_doesnotexist", "x", url.PathEscape("' OR 1=1 --"), "%2e%2e", url.PathEscape(v.ID + " "), strings.ToUpper(other.ID)} {
		w, _ := f.do(rootP, "DELETE", "/admin/v1/keys/"+id, "")
		if w.Code != http.StatusNotFound {
			t.Errorf("revoke %q: %d %s", id, w.Code, w.Body)
		}
	}
	if _, err := f.an.Authenticate(context.Background(), other.Key); err != nil {
		t.Errorf("odd revoke ids revoked another key: %v", err)
	}
}

func TestUnknownEndpoints(t *testing.T) {
	f := newFixture(t)
	for _, r := range []route{
		{"GET", "/admin/v1/xyz", ""},
		{"GET", "/admin/v1/", ""},
		{"PUT", "/admin/v1/keys", ""},
		{"PATCH", "/admin/v1/keys/key_x", ""},
		{"GET", "/admin/v1/keys/key_x", ""},
		{"POST", "/admin/v1/audit", "{}"},
		{"GET", "/admin/v1/keys/a/b", ""},
	} {
		w, _ := f.do(rootP, r.method, r.path, r.body)
		if w.Code != http.StatusNotFound && w.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status %d", r.method, r.path, w.Code)
			continue
		}
		if code, _ := decodeErr(t, w); code == "" {
			t.Errorf("%s %s: no error code in %s", r.method, r.path, w.Body)
		}
	}
}

func TestQueryAudit(t *testing.T) {
	f := newFixture(t)
	// Produce events: two keys (user create + key create each), one
	// revocation, one denial.
	a := f.createKey("alice", "guest", "")
	f.createKey("bob", "developer", "")
	f.clock.mu.Lock()
	f.clock.now = t0.Add(2 * time.Hour)
	f.clock.mu.Unlock()
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/keys/"+a.ID, ""); w.Code != 200 {
		t.Fatal(w.Body)
	}
	f.do(guestP, "GET", "/admin/v1/keys", "")

	query := func(q string) []audit.Event {
		t.Helper()
		w, _ := f.do(rootP, "GET", "/admin/v1/audit"+q, "")
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", q, w.Code, w.Body)
		}
		var out struct{ Events []audit.Event }
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if out.Events == nil {
			t.Fatalf("%s: events is null, want []: %s", q, w.Body)
		}
		return out.Events
	}
	types := func(evs []audit.Event) []audit.Type {
		var out []audit.Type
		for _, e := range evs {
			out = append(out, e.Type)
		}
		return out
	}

	all := query("")
	if len(all) != 6 {
		t.Fatalf("got %d events, want 6: %v", len(all), types(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq >= all[i-1].Seq {
			t.Errorf("not newest first: %v", types(all))
		}
	}
	if got := types(query("?type=admin.key.create")); !slices.Equal(got, []audit.Type{audit.AdminKeyCreate, audit.AdminKeyCreate}) {
		t.Errorf("type filter: %v", got)
	}
	if got := query("?user=gina"); len(got) != 1 || got[0].Type != audit.AdminDenied {
		t.Errorf("user filter: %v", types(got))
	}
	if got := query("?status=refused"); len(got) != 1 || got[0].Principal != "gina" {
		t.Errorf("status filter: %v", types(got))
	}
	if got := query("?limit=1"); len(got) != 1 || got[0].Seq != all[0].Seq {
		t.Errorf("limit=1: %v", got)
	}
	if got := query(fmt.Sprintf("?before=%d", all[1].Seq)); len(got) != len(all)-2 || got[0].Seq != all[2].Seq {
		t.Errorf("before paging: %v", types(got))
	}
	if got := query("?request_id=" + all[0].RequestID); len(got) != 1 {
		t.Errorf("request_id filter: %d events", len(got))
	}
	// Time filters: the revocation and denial happened at t0+2h.
	if got := query("?since=1h"); !slices.Equal(types(got), []audit.Type{audit.AdminDenied, audit.AdminKeyRevoke}) {
		t.Errorf("since=1h: %v", types(got))
	}
	if got := query("?since=" + url.QueryEscape(t0.Add(time.Hour).Format(time.RFC3339))); len(got) != 2 {
		t.Errorf("since RFC 3339: %v", types(got))
	}
	if got := query("?until=" + url.QueryEscape(t0.Add(time.Hour).Format(time.RFC3339Nano))); len(got) != 4 {
		t.Errorf("until: %v", types(got))
	}
	if got := query("?user=nobody"); len(got) != 0 {
		t.Errorf("user=nobody: %v", got)
	}
	// Filters are values, not SQL.
	if got := query("?user=" + url.QueryEscape("' OR '1'='1")); len(got) != 0 {
		t.Errorf("injection in user filter returned %d events", len(got))
	}

	for _, q := range []string{
		"limit=0", "limit=-1", "limit=100000", fmt.Sprintf("limit=%d", audit.MaxQueryLimit+1), "limit=abc", "limit=1.5",
		"before=-1", "before=0", "before=abc", "before=99999999999999999999",
		"since=garbage", "since=-1h", "since=2026-13-01T00:00:00Z", "until=garbage", "until=-5m",
	} {
		w, rid := f.do(rootP, "GET", "/admin/v1/audit?"+q, "")
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", q, w.Code, w.Body)
			continue
		}
		if code, _ := decodeErr(t, w); code != "bad_request" {
			t.Errorf("%s: code %q", q, code)
		}
		if len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("%s: a read emitted an event", q)
		}
	}
	if got := query(fmt.Sprintf("?limit=%d", audit.MaxQueryLimit)); len(got) != len(all) {
		t.Errorf("limit=max: %d", len(got))
	}
}

// TestAuditUnavailable: when the change cannot be audited the API answers
// 503 and never hands out the plaintext key.
func TestAuditUnavailable(t *testing.T) {
	for _, typ := range []audit.Type{audit.AdminUserCreate, audit.AdminKeyCreate} {
		t.Run(string(typ), func(t *testing.T) {
			f := newFixture(t)
			f.spy.failOn(typ)
			w, _ := f.do(rootP, "POST", "/admin/v1/keys", `{"user":"alice","role":"guest"}`)
			if w.Code != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503: %s", w.Code, w.Body)
			}
			if code, _ := decodeErr(t, w); code != "audit_unavailable" {
				t.Errorf("code %q", code)
			}
			if strings.Contains(w.Body.String(), authn.KeyPrefix) {
				t.Errorf("plaintext key returned without an audit record: %s", w.Body)
			}
		})
	}
	t.Run("grant", func(t *testing.T) {
		f := newFixture(t)
		f.spy.failOn(audit.AdminUserGrant)
		w, _ := f.do(rootP, "POST", "/admin/v1/keys", `{"user":"gina","role":"developer"}`)
		if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), authn.KeyPrefix) {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
	t.Run("revoke", func(t *testing.T) {
		f := newFixture(t)
		v := f.createKey("alice", "guest", "")
		f.spy.failOn(audit.AdminKeyRevoke)
		w, _ := f.do(rootP, "DELETE", "/admin/v1/keys/"+v.ID, "")
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503: %s", w.Code, w.Body)
		}
	})
	t.Run("denied still denied", func(t *testing.T) {
		f := newFixture(t)
		f.spy.failOn(audit.AdminDenied)
		w, _ := f.do(guestP, "POST", "/admin/v1/keys", `{"user":"eve","role":"admin"}`)
		if w.Code != http.StatusForbidden {
			t.Fatalf("status %d, want 403", w.Code)
		}
	})
}

// failingStore makes every store call fail, to check that internal errors
// stay internal.
type failingStore struct{ store.Store }

var errDisk = errors.New("sqlite: disk I/O error at /var/lib/portcullis/portcullis.db")

func (failingStore) ListAPIKeys(context.Context) ([]store.APIKey, error) { return nil, errDisk }
func (failingStore) Roles(context.Context) ([]string, error)             { return nil, errDisk }
func (failingStore) QueryAudit(context.Context, audit.Query) ([]audit.Event, error) {
	return nil, errDisk
}
func (failingStore) RevokeAPIKey(context.Context, string, time.Time) (store.APIKey, error) {
	return store.APIKey{}, errDisk
}

func TestInternalErrorsStayInternal(t *testing.T) {
	f := newFixture(t)
	grants, _ := f.db.Grants(context.Background())
	pol, _ := policy.New(grants)
	var logs strings.Builder
	var mu sync.Mutex
	api, err := adminapi.New(adminapi.Deps{Store: failingStore{f.db}, Authn: f.an, Policy: pol, Audit: f.spy,
		Logger:      slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)),
		RequestMeta: func(*http.Request) (string, string) { return "", "" }})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range allRoutes("key_x") {
		req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
		req = req.WithContext(principal.NewContext(req.Context(), rootP))
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code != http.StatusInternalServerError {
			t.Errorf("%s %s: status %d, want 500", r.method, r.path, w.Code)
		}
		if strings.Contains(w.Body.String(), "disk") || strings.Contains(w.Body.String(), "/var/lib") {
			t.Errorf("%s %s: internal error leaked: %s", r.method, r.path, w.Body)
		}
	}
	if !strings.Contains(logs.String(), "disk I/O error") {
		t.Error("internal error not logged for the operator")
	}
}
