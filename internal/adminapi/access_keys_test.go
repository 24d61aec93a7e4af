package adminapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
)

func TestKeyScopes(t *testing.T) {
	f := newAccessFixture(t, true)
	w, rid := f.do(rootP, "POST", "/admin/v1/keys", `{"user":"ci","role":"developer","scopes":["git_*","read_file","git_*"],"expires_in":"24h"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	v := decodeInto[adminapi.KeyView](t, w.Body.Bytes())
	if !slices.Equal(v.Scopes, []string{"git_*", "read_file"}) || v.ExpiresAt == nil {
		t.Errorf("view %+v", v)
	}
	k, err := f.db.APIKeyByID(context.Background(), v.ID)
	if err != nil || !slices.Equal(k.Scopes, []string{"git_*", "read_file"}) {
		t.Errorf("stored scopes %v %v", k.Scopes, err)
	}
	evs := f.spy.byRequest(rid)
	if len(evs) == 0 || evs[len(evs)-1].Type != audit.AdminKeyCreate || !strings.Contains(evs[len(evs)-1].Detail, "git_*") {
		t.Errorf("events %+v", evs)
	}
	if n := f.changes.Load(); n != 1 {
		t.Errorf("key create: AccessChanged called %d times, want 1 (user and key in one request)", n)
	}
	w, _ = f.do(rootP, "GET", "/admin/v1/keys", "")
	if !strings.Contains(w.Body.String(), `"scopes":["git_*","read_file"]`) {
		t.Errorf("list lacks scopes: %s", w.Body)
	}

	before := f.keyCount(t)
	many := make([]string, adminapi.MaxScopes+1)
	for i := range many {
		many[i] = fmt.Sprintf("t%d", i)
	}
	manyJSON, _ := json.Marshal(many)
	for name, scopes := range map[string]string{
		"empty":     `[""]`,
		"slash":     `["a/b"]`,
		"bad glob":  `["git_["]`,
		"too long":  `["` + strings.Repeat("s", adminapi.MaxPatternLen+1) + `"]`,
		"control":   `["read\u0007file"]`,
		"space":     `[" read_file"]`,
		"too many":  string(manyJSON),
		"not array": `"git_*"`,
		"number":    `[1]`,
	} {
		w, rid := f.do(rootP, "POST", "/admin/v1/keys", `{"user":"ci","role":"developer","scopes":`+scopes+`}`)
		if w.Code != http.StatusBadRequest || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	if f.keyCount(t) != before {
		t.Error("refused scopes created a key")
	}
}

func TestRotateKey(t *testing.T) {
	f := newAccessFixture(t, true)
	ctx := context.Background()
	w, _ := f.do(rootP, "POST", "/admin/v1/keys", `{"user":"ci","role":"developer","scopes":["git_*"],"expires_in":"1h"}`)
	old := decodeInto[adminapi.KeyView](t, w.Body.Bytes())
	other := f.createKey("bob", "guest", "")
	f.changes.Store(0)

	f.setNow(t0.Add(30 * time.Minute))
	w, rid := f.do(rootP, "POST", "/admin/v1/keys/"+old.ID+"/rotate", "")
	if w.Code != http.StatusCreated {
		t.Fatalf("rotate: %d %s", w.Code, w.Body)
	}
	nk := decodeInto[adminapi.KeyView](t, w.Body.Bytes())
	now := t0.Add(30 * time.Minute)
	if nk.ID == old.ID || nk.Key == "" || nk.Key == old.Key || nk.RotatedFrom != old.ID || nk.User != "ci" ||
		!slices.Equal(nk.Roles, old.Roles) || !slices.Equal(nk.Scopes, []string{"git_*"}) || !nk.CreatedAt.Equal(now) {
		t.Errorf("new key %+v", nk)
	}
	if nk.ExpiresAt == nil || !nk.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("new key expires %v, want the old lifetime (1h) from now %v", nk.ExpiresAt, now.Add(time.Hour))
	}
	if _, err := f.an.Authenticate(ctx, old.Key); err == nil {
		t.Error("the rotated key still authenticates")
	}
	p, err := f.an.Authenticate(ctx, nk.Key)
	if err != nil {
		t.Fatalf("the new key does not authenticate: %v", err)
	}
	if p.Name != "ci" || p.KeyID != nk.ID || !slices.Equal(p.Roles, []string{"developer"}) {
		t.Errorf("principal %+v", p)
	}
	if _, err := f.an.Authenticate(ctx, other.Key); err != nil {
		t.Errorf("rotation broke another key: %v", err)
	}
	stored, err := f.db.APIKeyByID(ctx, nk.ID)
	if err != nil || !slices.Equal(stored.Scopes, []string{"git_*"}) || stored.RotatedFrom != old.ID {
		t.Errorf("stored new key %+v %v", stored, err)
	}
	evs := f.spy.byRequest(rid)
	if len(evs) != 1 || evs[0].Type != audit.AdminKeyRotate || !strings.Contains(evs[0].Detail, old.ID) || !strings.Contains(evs[0].Detail, nk.ID) {
		t.Errorf("events %+v", evs)
	}
	for _, e := range evs {
		if strings.Contains(e.Detail, nk.Key[len(authn.KeyPrefix):]) || strings.Contains(e.Detail, old.Key[len(authn.KeyPrefix):]) {
			t.Error("rotate event carries a key")
		}
	}
	if n := f.changes.Load(); n != 1 {
		t.Errorf("AccessChanged called %d times, want 1", n)
	}

	// The old key cannot be rotated again (409), nor can an unknown one (404).
	f.changes.Store(0)
	for _, c := range []struct {
		id     string
		status int
	}{{old.ID, http.StatusConflict}, {"key_nope", http.StatusNotFound}, {url.PathEscape("' OR 1=1 --"), http.StatusNotFound}} {
		if w, rid := f.do(rootP, "POST", "/admin/v1/keys/"+c.id+"/rotate", ""); w.Code != c.status || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("rotate %s: %d %s", c.id, w.Code, w.Body)
		}
	}
	// A revoked key: 409.
	if w, _ := f.do(rootP, "DELETE", "/admin/v1/keys/"+other.ID, ""); w.Code != 200 {
		t.Fatal(w.Body)
	}
	f.changes.Store(0)
	if w, _ := f.do(rootP, "POST", "/admin/v1/keys/"+other.ID+"/rotate", ""); w.Code != http.StatusConflict {
		t.Errorf("rotate revoked: %d %s", w.Code, w.Body)
	}
	// An expired key: 409, and it stays as it was.
	f.setNow(now.Add(2 * time.Hour))
	if w, _ := f.do(rootP, "POST", "/admin/v1/keys/"+nk.ID+"/rotate", ""); w.Code != http.StatusConflict {
		t.Errorf("rotate expired: %d %s", w.Code, w.Body)
	}
	if k, _ := f.db.APIKeyByID(ctx, nk.ID); k.RevokedAt != nil {
		t.Error("a refused rotation revoked the key")
	}
	if n := f.changes.Load(); n != 0 {
		t.Errorf("refused rotations called AccessChanged %d times", n)
	}

	// expires_in overrides; a key without expiry gives one without.
	f.setNow(t0)
	forever := f.createKey("dave", "guest", "")
	w, _ = f.do(rootP, "POST", "/admin/v1/keys/"+forever.ID+"/rotate", "  ")
	if v := decodeInto[adminapi.KeyView](t, w.Body.Bytes()); w.Code != 201 || v.ExpiresAt != nil {
		t.Errorf("rotate without expiry: %d %s", w.Code, w.Body)
	}
	short := f.createKey("erin", "guest", "1h")
	w, _ = f.do(rootP, "POST", "/admin/v1/keys/"+short.ID+"/rotate", `{"expires_in":"48h"}`)
	if v := decodeInto[adminapi.KeyView](t, w.Body.Bytes()); w.Code != 201 || v.ExpiresAt == nil || !v.ExpiresAt.Equal(t0.Add(48*time.Hour)) {
		t.Errorf("rotate with expires_in: %d %s", w.Code, w.Body)
	}

	// Bad bodies: 400 and the key stays active.
	victim := f.createKey("frank", "guest", "")
	for _, body := range []string{`{"expires_in":"-1h"}`, `{"expires_in":"30d"}`, `{"expires_in":"876001h"}`, `{"scopes":["*"]}`,
		`{"user":"root"}`, `{}{}`, `[]`, `null`, `x`} {
		if w, rid := f.do(rootP, "POST", "/admin/v1/keys/"+victim.ID+"/rotate", body); w.Code != http.StatusBadRequest || len(f.spy.byRequest(rid)) != 0 {
			t.Errorf("rotate body %s: %d %s", body, w.Code, w.Body)
		}
	}
	if _, err := f.an.Authenticate(ctx, victim.Key); err != nil {
		t.Errorf("refused rotations broke the key: %v", err)
	}

	// Audit unavailable: 503 and the new key is never shown.
	f.spy.failOn(audit.AdminKeyRotate)
	w, _ = f.do(rootP, "POST", "/admin/v1/keys/"+victim.ID+"/rotate", "")
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), authn.KeyPrefix) {
		t.Errorf("rotate without audit: %d %s", w.Code, w.Body)
	}
}
