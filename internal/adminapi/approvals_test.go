package adminapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/approval"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// approvalFixture is the admin API fixture with an approval service over
// its store: approvers are whoever the policy engine lets "approve" the
// tool (admins by default).
type approvalFixture struct {
	*fixture
	svc *approval.Service
}

func newApprovalFixture(t *testing.T) *approvalFixture {
	t.Helper()
	f := newFixture(t)
	log := slog.New(slog.DiscardHandler)
	svc, err := approval.New(config.ApprovalConfig{TTL: 15 * time.Minute, ExemptRoles: []string{"admin"}}, approval.Deps{
		Store: f.db, Audit: f.spy, Alerts: alert.LogSink{Logger: log}, Logger: log, Now: f.clock.Now,
		MayApprove: func(p *principal.Principal, tool string) bool {
			return f.pol.Decide(p, policy.ActionApprove, tool).Allow
		}})
	if err != nil {
		t.Fatal(err)
	}
	api, err := adminapi.New(adminapi.Deps{Store: f.db, Authn: f.an, Policy: f.pol, Audit: f.spy, Logger: log, Now: f.clock.Now,
		Approvals:   svc,
		RequestMeta: func(r *http.Request) (string, string) { return r.Header.Get("X-Test-Rid"), "192.0.2.7:4242" }})
	if err != nil {
		t.Fatal(err)
	}
	f.api = api
	return &approvalFixture{fixture: f, svc: svc}
}

// request holds p's call to tool with args and returns its pending request.
func (f *approvalFixture) request(p *principal.Principal, tool, args string) store.Approval {
	f.t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(args), &m); err != nil {
		f.t.Fatal(err)
	}
	d, err := approval.Digest(aprKey, m)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := f.svc.Gate(context.Background(), approval.Call{Principal: p, Tool: tool, Digest: d,
		Args: json.RawMessage(args), RequestID: "req_call"})
	if err != nil || out.Run || out.Approval.State != store.ApprovalPending {
		f.t.Fatalf("Gate = %+v, %v; want pending", out, err)
	}
	return out.Approval
}

// gate reports whether p's call runs now.
func (f *approvalFixture) gate(p *principal.Principal, tool, args string) bool {
	f.t.Helper()
	var m map[string]any
	_ = json.Unmarshal([]byte(args), &m)
	d, _ := approval.Digest(aprKey, m)
	out, err := f.svc.Gate(context.Background(), approval.Call{Principal: p, Tool: tool, Digest: d, Args: json.RawMessage(args)})
	if err != nil {
		f.t.Fatal(err)
	}
	return out.Run
}

func (f *approvalFixture) state(id string) string {
	f.t.Helper()
	a, err := f.db.GetApproval(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return a.State
}

func (f *approvalFixture) eventsOfType(typ audit.Type) []audit.Event {
	f.spy.mu.Lock()
	defer f.spy.mu.Unlock()
	var out []audit.Event
	for _, e := range f.spy.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// grantRole creates role with grants and reloads the policy engine.
func (f *approvalFixture) grantRole(role string, grants ...store.Grant) {
	f.t.Helper()
	ctx := context.Background()
	if err := f.db.CreateRole(ctx, role, "test role"); err != nil && !strings.Contains(err.Error(), "exist") {
		f.t.Fatal(err)
	}
	for _, g := range grants {
		g.Role, g.Effect = role, "allow"
		if err := f.db.GrantPermission(ctx, g); err != nil {
			f.t.Fatal(err)
		}
	}
	all, err := f.db.Grants(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.pol.Replace(all); err != nil {
		f.t.Fatal(err)
	}
}

// aprKey keys the argument digests (the audit redaction key in the app).
var aprKey = []byte("0123456789abcdef0123456789abcdef")

const aprArgs = `{"message":"release","token":"hmac-sha256:ab12"}`

func TestApprovalsListGetDecide(t *testing.T) {
	f := newApprovalFixture(t)
	a := f.request(devP, "git_commit", aprArgs)
	f.setNow(t0.Add(time.Second))
	b := f.request(devP, "git_commit", `{"message":"other"}`)

	w, _ := f.do(rootP, "GET", "/admin/v1/approvals", "")
	if w.Code != http.StatusOK {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
	list := decodeInto[struct{ Approvals []store.Approval }](t, w.Body.Bytes())
	if len(list.Approvals) != 2 || list.Approvals[0].ID != b.ID || list.Approvals[1].ID != a.ID {
		t.Fatalf("list %+v; want %s then %s", list.Approvals, b.ID, a.ID)
	}
	for _, tc := range []struct {
		query string
		code  int
		n     int
	}{
		{"?state=pending", http.StatusOK, 2},
		{"?state=approved", http.StatusOK, 0},
		{"?limit=1", http.StatusOK, 1},
		{"?state=bogus", http.StatusBadRequest, 0},
		{"?state=pending'--", http.StatusBadRequest, 0},
		{"?limit=0", http.StatusBadRequest, 0},
		{"?limit=10001", http.StatusBadRequest, 0},
		{"?limit=x", http.StatusBadRequest, 0},
	} {
		w, _ := f.do(rootP, "GET", "/admin/v1/approvals"+tc.query, "")
		if w.Code != tc.code {
			t.Errorf("list%s: %d %s; want %d", tc.query, w.Code, w.Body, tc.code)
			continue
		}
		if tc.code == http.StatusOK {
			if got := decodeInto[struct{ Approvals []store.Approval }](t, w.Body.Bytes()); len(got.Approvals) != tc.n {
				t.Errorf("list%s: %d approvals, want %d", tc.query, len(got.Approvals), tc.n)
			}
		}
	}

	w, _ = f.do(rootP, "GET", "/admin/v1/approvals/"+a.ID, "")
	if w.Code != http.StatusOK {
		t.Fatalf("get: %d %s", w.Code, w.Body)
	}
	got := decodeInto[store.Approval](t, w.Body.Bytes())
	if got.ID != a.ID || got.Principal != "dev" || got.Tool != "git_commit" || got.State != store.ApprovalPending ||
		got.ArgsSHA256 != a.ArgsSHA256 || string(got.Args) != aprArgs {
		t.Errorf("get = %+v", got)
	}

	w, _ = f.do(rootP, "POST", "/admin/v1/approvals/"+a.ID+"/approve", `{"comment":"lgtm"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("approve: %d %s", w.Code, w.Body)
	}
	got = decodeInto[store.Approval](t, w.Body.Bytes())
	if got.State != store.ApprovalApproved || got.DecidedBy != "root" || got.Comment != "lgtm" {
		t.Errorf("approved = %+v", got)
	}
	w, _ = f.do(rootP, "POST", "/admin/v1/approvals/"+b.ID+"/deny", "")
	if w.Code != http.StatusOK {
		t.Fatalf("deny without a body: %d %s", w.Code, w.Body)
	}
	if got := decodeInto[store.Approval](t, w.Body.Bytes()); got.State != store.ApprovalDenied || got.DecidedBy != "root" {
		t.Errorf("denied = %+v", got)
	}

	// The approved call runs once; the denied one does not.
	if !f.gate(devP, "git_commit", aprArgs) {
		t.Error("the approved call did not run")
	}
	if f.gate(devP, "git_commit", aprArgs) {
		t.Error("the approved call ran twice")
	}
	if f.gate(devP, "git_commit", `{"message":"other"}`) {
		t.Error("the denied call ran")
	}
	grants, denies := f.eventsOfType(audit.ApprovalGrant), f.eventsOfType(audit.ApprovalDeny)
	if len(grants) != 1 || grants[0].Principal != "root" || !strings.Contains(grants[0].Detail, a.ID) ||
		!strings.Contains(grants[0].Detail, "lgtm") {
		t.Errorf("approval.grant events %+v", grants)
	}
	if len(denies) != 1 || denies[0].Principal != "root" || !strings.Contains(denies[0].Detail, b.ID) {
		t.Errorf("approval.deny events %+v", denies)
	}
}

// TestApprovalsDecisionRefusals: self-approval, a non-approver, a second
// decision, an unknown id and a bad comment are refused with the precise
// status, and the request stays as it was.
func TestApprovalsDecisionRefusals(t *testing.T) {
	f := newApprovalFixture(t)
	rootReq := f.request(rootP, "git_commit", aprArgs)
	a := f.request(devP, "git_commit", aprArgs)

	for _, tc := range []struct {
		name, path, body string
		code             int
		msg              string
	}{
		{"self approval", "/admin/v1/approvals/" + rootReq.ID + "/approve", "", http.StatusForbidden, "you cannot decide your own request"},
		{"self denial", "/admin/v1/approvals/" + rootReq.ID + "/deny", "", http.StatusForbidden, "you cannot decide your own request"},
		{"unknown id", "/admin/v1/approvals/apr_nosuch/approve", "", http.StatusNotFound, "not found"},
		{"comment too long", "/admin/v1/approvals/" + a.ID + "/approve", `{"comment":"` + strings.Repeat("x", adminapi.MaxReasonLen+1) + `"}`,
			http.StatusBadRequest, "comment"},
		{"control characters", "/admin/v1/approvals/" + a.ID + "/approve", `{"comment":"ok\u001b[2J"}`, http.StatusBadRequest, "comment"},
		{"unknown field", "/admin/v1/approvals/" + a.ID + "/approve", `{"comment":"ok","state":"approved"}`, http.StatusBadRequest, "unknown field"},
		{"not an object", "/admin/v1/approvals/" + a.ID + "/approve", `"approve"`, http.StatusBadRequest, "JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := f.do(rootP, "POST", tc.path, tc.body)
			if w.Code != tc.code {
				t.Fatalf("status %d %s; want %d", w.Code, w.Body, tc.code)
			}
			if _, msg := decodeErr(t, w); !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q; want it to mention %q", msg, tc.msg)
			}
		})
	}
	if w, _ := f.do(rootP, "GET", "/admin/v1/approvals/apr_nosuch", ""); w.Code != http.StatusNotFound {
		t.Errorf("get unknown id: %d", w.Code)
	}
	for _, id := range []string{rootReq.ID, a.ID} {
		if s := f.state(id); s != store.ApprovalPending {
			t.Errorf("%s is %s after refused decisions; want pending", id, s)
		}
	}

	// A comment of exactly the limit is fine; then the request is decided
	// and every further decision conflicts.
	w, _ := f.do(rootP, "POST", "/admin/v1/approvals/"+a.ID+"/deny", `{"comment":"`+strings.Repeat("x", adminapi.MaxReasonLen)+`"}`)
	if w.Code != http.StatusOK {
		t.Fatalf("deny: %d %s", w.Code, w.Body)
	}
	for _, verb := range []string{"approve", "deny"} {
		w, _ := f.do(rootP, "POST", "/admin/v1/approvals/"+a.ID+"/"+verb, "")
		if w.Code != http.StatusConflict {
			t.Fatalf("%s after deny: %d %s; want 409", verb, w.Code, w.Body)
		}
		if code, msg := decodeErr(t, w); code != "conflict" || !strings.Contains(msg, a.ID) || !strings.Contains(msg, "denied") {
			t.Errorf("%s after deny: %s %q", verb, code, msg)
		}
	}
	if s := f.state(a.ID); s != store.ApprovalDenied {
		t.Errorf("state %s, want denied", s)
	}
	if f.gate(devP, "git_commit", aprArgs) {
		t.Error("a denied call ran")
	}
}

// TestApprovalsExpiredConflicts: a request past its expiry (not yet
// swept) cannot be decided: 409, and the message says why.
func TestApprovalsExpiredConflicts(t *testing.T) {
	f := newApprovalFixture(t)
	a := f.request(devP, "git_commit", aprArgs)
	f.setNow(t0.Add(15 * time.Minute))
	w, _ := f.do(rootP, "POST", "/admin/v1/approvals/"+a.ID+"/approve", "")
	if w.Code != http.StatusConflict {
		t.Fatalf("approve after expiry: %d %s; want 409", w.Code, w.Body)
	}
	if _, msg := decodeErr(t, w); !strings.Contains(msg, "expired") {
		t.Errorf("message %q; want it to say the request expired", msg)
	}
	if n := len(f.eventsOfType(audit.ApprovalGrant)); n != 0 {
		t.Errorf("%d approval.grant events for an expired request", n)
	}
	if f.gate(devP, "git_commit", aprArgs) {
		t.Error("the call ran on an expired request")
	}
}

// TestApprovalsGuestDenied: without the approvals admin area every route
// is 403 with admin.denied audited, and nothing is decided.
func TestApprovalsGuestDenied(t *testing.T) {
	f := newApprovalFixture(t)
	a := f.request(devP, "git_commit", aprArgs)
	for _, p := range []*principal.Principal{guestP, devP} {
		for _, r := range []route{
			{"GET", "/admin/v1/approvals", ""},
			{"GET", "/admin/v1/approvals/" + a.ID, ""},
			{"POST", "/admin/v1/approvals/" + a.ID + "/approve", `{"comment":"me"}`},
			{"POST", "/admin/v1/approvals/" + a.ID + "/deny", ""},
		} {
			t.Run(p.Name+" "+r.method+" "+r.path, func(t *testing.T) {
				w, rid := f.do(p, r.method, r.path, r.body)
				if w.Code != http.StatusForbidden {
					t.Fatalf("status %d %s; want 403", w.Code, w.Body)
				}
				if code, msg := decodeErr(t, w); code != "forbidden" || msg != "access denied" {
					t.Errorf("body %s", w.Body)
				}
				evs := f.spy.byRequest(rid)
				if len(evs) != 1 || evs[0].Type != audit.AdminDenied || evs[0].Principal != p.Name ||
					!strings.Contains(evs[0].Detail, r.path) {
					t.Errorf("events %+v; want one admin.denied", evs)
				}
				if strings.Contains(w.Body.String(), a.ArgsSHA256) {
					t.Error("a refused request saw the approval")
				}
			})
		}
	}
	if s := f.state(a.ID); s != store.ApprovalPending {
		t.Errorf("state %s after refused requests; want pending", s)
	}
	if n := len(f.eventsOfType(audit.ApprovalGrant)) + len(f.eventsOfType(audit.ApprovalDeny)); n != 0 {
		t.Errorf("%d decision events", n)
	}
}

// TestApprovalsAreaWithoutApprovePermission: the approvals admin area lets
// a reviewer see requests, but deciding one needs the approve permission
// for its tool.
func TestApprovalsAreaWithoutApprovePermission(t *testing.T) {
	f := newApprovalFixture(t)
	f.grantRole("reviewer",
		store.Grant{Action: "admin", Pattern: "approvals"},
		store.Grant{Action: "approve", Pattern: "read_*"})
	rev := &principal.Principal{UserID: 20, Name: "rev", Roles: []string{"reviewer"}, KeyID: "key_rev", Method: principal.MethodAPIKey}
	a := f.request(devP, "git_commit", aprArgs)

	if w, _ := f.do(rev, "GET", "/admin/v1/approvals/"+a.ID, ""); w.Code != http.StatusOK {
		t.Fatalf("reviewer get: %d %s", w.Code, w.Body)
	}
	for _, verb := range []string{"approve", "deny"} {
		w, _ := f.do(rev, "POST", "/admin/v1/approvals/"+a.ID+"/"+verb, "")
		if w.Code != http.StatusForbidden {
			t.Fatalf("reviewer %s: %d %s; want 403", verb, w.Code, w.Body)
		}
		if code, msg := decodeErr(t, w); code != "forbidden" || !strings.Contains(msg, "may not approve") {
			t.Errorf("reviewer %s: %s %q", verb, code, msg)
		}
	}
	// Other admin areas stay closed.
	if w, _ := f.do(rev, "GET", "/admin/v1/keys", ""); w.Code != http.StatusForbidden {
		t.Errorf("reviewer keys: %d; want 403", w.Code)
	}
	if s := f.state(a.ID); s != store.ApprovalPending {
		t.Fatalf("state %s; want pending", s)
	}

	// With approve on the tool the same reviewer decides it.
	f.grantRole("reviewer", store.Grant{Action: "approve", Pattern: "git_commit"})
	w, _ := f.do(rev, "POST", "/admin/v1/approvals/"+a.ID+"/approve", "")
	if w.Code != http.StatusOK {
		t.Fatalf("reviewer with approve: %d %s", w.Code, w.Body)
	}
	if got := decodeInto[store.Approval](t, w.Body.Bytes()); got.DecidedBy != "rev" || got.State != store.ApprovalApproved {
		t.Errorf("decided %+v", got)
	}
}

// TestApprovalsRefusedDecisionsAudited: an attempt to approve one's own
// request, or a request one may not approve, is a refused admin action
// and is recorded as admin.denied like every other refusal of the API.
func TestApprovalsRefusedDecisionsAudited(t *testing.T) {
	f := newApprovalFixture(t)
	f.grantRole("reviewer", store.Grant{Action: "admin", Pattern: "approvals"})
	rev := &principal.Principal{UserID: 20, Name: "rev", Roles: []string{"reviewer"}, Method: principal.MethodAPIKey}
	own := f.request(rootP, "git_commit", aprArgs)
	other := f.request(devP, "git_commit", aprArgs)
	for _, tc := range []struct {
		name string
		p    *principal.Principal
		id   string
	}{
		{"self approval", rootP, own.ID},
		{"not an approver", rev, other.ID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, rid := f.do(tc.p, "POST", "/admin/v1/approvals/"+tc.id+"/approve", "")
			if w.Code != http.StatusForbidden {
				t.Fatalf("status %d; want 403", w.Code)
			}
			evs := f.spy.byRequest(rid)
			if len(evs) != 1 || evs[0].Type != audit.AdminDenied || evs[0].Principal != tc.p.Name ||
				!strings.Contains(evs[0].Detail, tc.id) {
				t.Errorf("events %+v; want one admin.denied naming %s", evs, tc.id)
			}
		})
	}
}

// TestApprovalsWithoutService: without an approval service decisions
// answer 501; lists still read the store.
func TestApprovalsWithoutService(t *testing.T) {
	f := newFixture(t)
	if w, _ := f.do(rootP, "POST", "/admin/v1/approvals/apr_x/approve", ""); w.Code != http.StatusNotImplemented {
		t.Errorf("approve without a service: %d; want 501", w.Code)
	}
	if w, _ := f.do(rootP, "GET", "/admin/v1/approvals", ""); w.Code != http.StatusOK ||
		!strings.Contains(w.Body.String(), `"approvals":[]`) {
		t.Errorf("list without a service: %d %s", w.Code, w.Body)
	}
}
