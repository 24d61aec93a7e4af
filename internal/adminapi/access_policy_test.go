package adminapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

func TestPolicyRoutes(t *testing.T) {
	f := newAccessFixture(t, true)
	f.pa.infos = []policy.PolicyInfo{{ID: "egress-deny-hosts", File: "egress-deny.cedar", Effect: "forbid", Conditional: true}}
	f.pa.mode = policy.ModeReport

	w, _ := f.do(rootP, "GET", "/admin/v1/policies", "")
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	want := `{"mode":"report","policies":[{"id":"egress-deny-hosts","file":"egress-deny.cedar","effect":"forbid","conditional":true}]}`
	if got := strings.TrimSpace(w.Body.String()); got != want {
		t.Errorf("list:\n got %s\nwant %s", got, want)
	}
	f.pa.mu.Lock()
	f.pa.infos = nil
	f.pa.mu.Unlock()
	if w, _ := f.do(rootP, "GET", "/admin/v1/policies", ""); !strings.Contains(w.Body.String(), `"policies":[]`) {
		t.Errorf("empty list: %s", w.Body)
	}

	t.Run("reload ok", func(t *testing.T) {
		w, rid := f.do(rootP, "POST", "/admin/v1/policies/reload", "")
		if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"policies":3}` {
			t.Errorf("%d %s", w.Code, w.Body)
		}
		evs := f.spy.byRequest(rid)
		if len(evs) != 1 || evs[0].Type != audit.AdminPolicyReload || evs[0].Status != audit.StatusOK || !strings.Contains(evs[0].Detail, "3") {
			t.Errorf("events %+v", evs)
		}
	})
	t.Run("reload invalid", func(t *testing.T) {
		f.pa.mu.Lock()
		f.pa.reloadErr = fmt.Errorf("%w: bad.cedar: parse error at bad.cedar:3:7: unexpected token", policy.ErrInvalidPolicy)
		f.pa.mu.Unlock()
		w, rid := f.do(rootP, "POST", "/admin/v1/policies/reload", "")
		if w.Code != http.StatusUnprocessableEntity {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if code, msg := decodeErr(t, w); code != "invalid_policy" || !strings.Contains(msg, "bad.cedar:3:7") {
			t.Errorf("error %s %q", code, msg)
		}
		evs := f.spy.byRequest(rid)
		if len(evs) != 1 || evs[0].Type != audit.AdminPolicyReload || evs[0].Status != audit.StatusError || !strings.Contains(evs[0].Detail, "bad.cedar:3:7") {
			t.Errorf("events %+v", evs)
		}
	})
	t.Run("reload internal error", func(t *testing.T) {
		f.pa.mu.Lock()
		f.pa.reloadErr = errors.New("open /etc/portcullis/policies: permission denied")
		f.pa.mu.Unlock()
		w, rid := f.do(rootP, "POST", "/admin/v1/policies/reload", "")
		if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "/etc/") {
			t.Errorf("%d %s", w.Code, w.Body)
		}
		if evs := f.spy.byRequest(rid); len(evs) != 1 || evs[0].Status != audit.StatusError {
			t.Errorf("events %+v", evs)
		}
	})
	t.Run("reload audit unavailable", func(t *testing.T) {
		f.pa.mu.Lock()
		f.pa.reloadErr = nil
		f.pa.mu.Unlock()
		f.spy.failOn(audit.AdminPolicyReload)
		defer f.spy.failOn()
		if w, _ := f.do(rootP, "POST", "/admin/v1/policies/reload", ""); w.Code != http.StatusServiceUnavailable {
			t.Errorf("%d %s", w.Code, w.Body)
		}
	})

	t.Run("test", func(t *testing.T) {
		f.pa.mu.Lock()
		f.pa.decision = policy.Decision{Allow: false, Rule: "policy no-secret-files-write", Policies: []string{"no-secret-files-write"}}
		f.pa.mu.Unlock()
		w, rid := f.do(rootP, "POST", "/admin/v1/policies/test", `{"user":"dev","tool":"write_file","args":{"path":".env","content":"x"}}`)
		if w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if got := strings.TrimSpace(w.Body.String()); got != `{"allow":false,"rule":"policy no-secret-files-write","policies":["no-secret-files-write"]}` {
			t.Errorf("answer %s", got)
		}
		f.pa.mu.Lock()
		asked := f.pa.asked[len(f.pa.asked)-1]
		f.pa.mu.Unlock()
		dev := f.user(t, "dev")
		wantP := principal.Principal{UserID: dev.ID, Name: "dev", Roles: []string{"developer"}, Method: principal.MethodAPIKey}
		if diff := cmp.Diff(wantP, asked.p); diff != "" {
			t.Errorf("principal (-want +got):\n%s", diff)
		}
		if asked.tool != "write_file" || asked.args != `{"path":".env","content":"x"}` {
			t.Errorf("asked %+v", asked)
		}
		evs := f.spy.byRequest(rid)
		if len(evs) != 1 || evs[0].Type != audit.AdminPolicyTest || !strings.Contains(evs[0].Detail, "deny") || !strings.Contains(evs[0].Detail, "write_file") {
			t.Errorf("events %+v", evs)
		}
		if strings.Contains(evs[0].Detail, ".env") {
			t.Error("the test event carries the arguments")
		}

		// Allow, without args: args reach Explain as nil; policies is [].
		f.pa.mu.Lock()
		f.pa.decision = policy.Decision{Allow: true, Rule: "role:developer allow call read_file"}
		f.pa.mu.Unlock()
		w, _ = f.do(rootP, "POST", "/admin/v1/policies/test", `{"user":"dev","tool":"read_file","args":null}`)
		if got := strings.TrimSpace(w.Body.String()); got != `{"allow":true,"rule":"role:developer allow call read_file","policies":[]}` {
			t.Errorf("answer %s", got)
		}
		f.pa.mu.Lock()
		if a := f.pa.asked[len(f.pa.asked)-1]; a.args != "" {
			t.Errorf("null args reached Explain as %q", a.args)
		}
		f.pa.mu.Unlock()
	})
	t.Run("test disabled user", func(t *testing.T) {
		if _, err := f.db.SetUserDisabled(context.Background(), "gina", true); err != nil {
			t.Fatal(err)
		}
		_, n := f.pa.counts()
		w, rid := f.do(rootP, "POST", "/admin/v1/policies/test", `{"user":"gina","tool":"read_file"}`)
		if got := strings.TrimSpace(w.Body.String()); w.Code != 200 || got != `{"allow":false,"rule":"user disabled","policies":[]}` {
			t.Errorf("%d %s", w.Code, got)
		}
		if _, n2 := f.pa.counts(); n2 != n {
			t.Error("a disabled user's test reached the engine")
		}
		if got := f.types(rid); !slices.Equal(got, []audit.Type{audit.AdminPolicyTest}) {
			t.Errorf("events %v", got)
		}
	})
	t.Run("test refused", func(t *testing.T) {
		_, n := f.pa.counts()
		for _, c := range []struct {
			body   string
			status int
		}{
			{`{"user":"nobody","tool":"read_file"}`, http.StatusNotFound},
			{`{"user":"admin' OR '1'='1","tool":"read_file"}`, http.StatusNotFound},
			{`{"user":"","tool":"read_file"}`, http.StatusBadRequest},
			{`{"user":"dev","tool":""}`, http.StatusBadRequest},
			{`{"user":"dev","tool":"read_*"}`, http.StatusBadRequest},
			{`{"user":"dev","tool":"a/b"}`, http.StatusBadRequest},
			{`{"user":"dev","tool":"read_file","args":[1]}`, http.StatusBadRequest},
			{`{"user":"dev","tool":"read_file","args":"x"}`, http.StatusBadRequest},
			{`{"user":"dev","tool":"read_file","args":{}}{}`, http.StatusBadRequest},
			{`{"user":"dev","tool":"read_file","as":"root"}`, http.StatusBadRequest},
		} {
			if w, rid := f.do(rootP, "POST", "/admin/v1/policies/test", c.body); w.Code != c.status || len(f.spy.byRequest(rid)) != 0 {
				t.Errorf("%s: %d %s", c.body, w.Code, w.Body)
			}
		}
		if _, n2 := f.pa.counts(); n2 != n {
			t.Errorf("refused tests reached the engine %d times", n2-n)
		}
		f.pa.mu.Lock()
		f.pa.explainErr = fmt.Errorf("%w: path: required", store.ErrInvalid)
		f.pa.mu.Unlock()
		if w, rid := f.do(rootP, "POST", "/admin/v1/policies/test", `{"user":"dev","tool":"read_file","args":{}}`); w.Code != http.StatusBadRequest || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("invalid args: %d %s", w.Code, w.Body)
		}
	})
	if n := f.changes.Load(); n != 0 {
		t.Errorf("policy routes called AccessChanged %d times", n)
	}
}

func TestPolicyRoutesWithoutPolicyAdmin(t *testing.T) {
	f := newAccessFixture(t, false)
	for _, r := range []route{
		{"GET", "/admin/v1/policies", ""},
		{"POST", "/admin/v1/policies/reload", ""},
		{"POST", "/admin/v1/policies/test", `{"user":"dev","tool":"read_file"}`},
	} {
		w, rid := f.do(rootP, r.method, r.path, r.body)
		if w.Code != http.StatusNotImplemented {
			t.Errorf("%s %s: %d %s", r.method, r.path, w.Code, w.Body)
		}
		if code, _ := decodeErr(t, w); code != "not_implemented" {
			t.Errorf("code %q", code)
		}
		if len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("%s %s emitted %v", r.method, r.path, f.types(rid))
		}
		// Still guarded.
		if w, _ := f.do(guestP, r.method, r.path, r.body); w.Code != http.StatusForbidden {
			t.Errorf("guest %s %s: %d", r.method, r.path, w.Code)
		}
	}
}
