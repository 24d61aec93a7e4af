package adminapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/secrets"
)

// withSecrets rebuilds f's API with lister as Deps.Secrets; logs go to
// the returned builder.
func withSecrets(t *testing.T, f *fixture, lister adminapi.SecretLister) *strings.Builder {
	t.Helper()
	logs := &strings.Builder{}
	api, err := adminapi.New(adminapi.Deps{Store: f.db, Authn: f.an, Policy: f.pol, Audit: f.spy,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: f.clock.Now, Secrets: lister,
		RequestMeta: func(r *http.Request) (string, string) { return r.Header.Get("X-Test-Rid"), "192.0.2.7:4242" }})
	if err != nil {
		t.Fatal(err)
	}
	f.api = api
	return logs
}

// TestSecretsList: admins get names, users and update times of the
// stored secrets, from the store or straight from its backend, and
// nothing of a value: neither the plaintext nor the sealed bytes.
func TestSecretsList(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	key := make([]byte, secrets.KeySize)
	rand.Read(key)
	st, err := secrets.New(key, f.db, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	seeded := []struct {
		name, user string
		value      []byte
	}{
		{"github_token", "", []byte("ghp_PLAINTEXT-shared-0123456789")},
		{"github_token", "dev", []byte("ghp_PLAINTEXT-dev-9876543210")},
		{"notes.api:key", "", []byte("notes-PLAINTEXT-key")},
	}
	for _, s := range seeded {
		if err := st.Set(ctx, s.name, s.user, s.value); err != nil {
			t.Fatal(err)
		}
	}
	later := t0.Add(time.Hour)
	f.setNow(later)
	if err := st.Set(ctx, "notes.api:key", "", []byte("notes-PLAINTEXT-rotated")); err != nil {
		t.Fatal(err)
	}
	var sealed [][]byte // the stored nonces and ciphertexts
	for _, s := range seeded {
		rec, err := f.db.GetSecret(ctx, s.name, s.user)
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, rec.Nonce, rec.Ciphertext)
	}
	want := []adminapi.SecretView{
		{Name: "github_token", User: "", UpdatedAt: t0},
		{Name: "github_token", User: "dev", UpdatedAt: t0},
		{Name: "notes.api:key", User: "", UpdatedAt: later},
	}
	for _, tt := range []struct {
		name   string
		lister adminapi.SecretLister
	}{
		{"store", st},
		{"backend", adminapi.SecretListerFunc(f.db.ListSecrets)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			withSecrets(t, f, tt.lister)
			w, rid := f.do(rootP, "GET", "/admin/v1/secrets", "")
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var got adminapi.SecretsView
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got.Secrets); diff != "" {
				t.Errorf("secrets (-want +got):\n%s", diff)
			}
			// Exactly three fields per entry, whatever secrets.Info grows.
			var raw struct{ Secrets []map[string]json.RawMessage }
			if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			for _, e := range raw.Secrets {
				if len(e) != 3 || e["name"] == nil || e["user"] == nil || e["updated_at"] == nil {
					t.Errorf("entry %s, want name, user and updated_at only", e)
				}
			}
			body := w.Body.Bytes()
			for _, v := range [][]byte{seeded[0].value, seeded[1].value, seeded[2].value, []byte("PLAINTEXT")} {
				if bytes.Contains(body, v) {
					t.Errorf("a value (%q) is in the answer: %s", v, body)
				}
			}
			for _, b := range sealed {
				for _, enc := range []string{base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b), hex.EncodeToString(b)} {
					if strings.Contains(string(body), enc) {
						t.Errorf("sealed bytes are in the answer: %s", body)
					}
				}
			}
			if evs := f.spy.byRequest(rid); len(evs) != 0 {
				t.Errorf("a read emitted %+v", evs)
			}
		})
	}
}

// TestSecretsListRefused: non-admins get 403 and an admin.denied event
// (even with no secrets store); without a lister admins get 501; an
// empty store answers an empty list; a failing lister answers a generic
// 500 and logs the cause.
func TestSecretsListRefused(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name   string
		lister adminapi.SecretLister
	}{{"nil", nil}, {"store", adminapi.SecretListerFunc(f.db.ListSecrets)}} {
		withSecrets(t, f, tt.lister)
		for _, p := range []*principal.Principal{devP, guestP} {
			w, rid := f.do(p, "GET", "/admin/v1/secrets", "")
			if w.Code != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", tt.name, p.Name, w.Code)
			}
			if evs := f.spy.byRequest(rid); len(evs) != 1 || evs[0].Type != audit.AdminDenied || evs[0].Principal != p.Name {
				t.Errorf("%s %s: events %+v, want one admin.denied", tt.name, p.Name, evs)
			}
		}
	}

	withSecrets(t, f, nil)
	w, _ := f.do(rootP, "GET", "/admin/v1/secrets", "")
	if w.Code != http.StatusNotImplemented {
		t.Fatalf("nil lister: %d, want 501", w.Code)
	}
	if code, _ := decodeErr(t, w); code != "not_implemented" {
		t.Errorf("nil lister: code %q", code)
	}

	withSecrets(t, f, adminapi.SecretListerFunc(f.db.ListSecrets))
	w, _ = f.do(rootP, "GET", "/admin/v1/secrets", "")
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"secrets":[]}` {
		t.Errorf("empty store: %d %s, want 200 {\"secrets\":[]}", w.Code, w.Body)
	}

	logs := withSecrets(t, f, adminapi.SecretListerFunc(func(context.Context) ([]secrets.Info, error) {
		return nil, errors.New("disk /var/lib/portcullis/p.db unreadable")
	}))
	w, _ = f.do(rootP, "GET", "/admin/v1/secrets", "")
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "/var/lib") {
		t.Errorf("failing lister: %d %s, want a generic 500", w.Code, w.Body)
	}
	if !strings.Contains(logs.String(), "unreadable") {
		t.Errorf("the cause is not logged: %s", logs)
	}
}

// TestSecretsClient: the client lists the same names.
func TestSecretsClient(t *testing.T) {
	f := newFixture(t)
	if err := f.db.PutSecret(context.Background(), secrets.Record{Name: "tok", User: "dev", Nonce: []byte("n"),
		Ciphertext: []byte("c"), CreatedAt: t0, UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	withSecrets(t, f, adminapi.SecretListerFunc(f.db.ListSecrets))
	ts := serveAPI(t, f)
	c := &adminapi.Client{BaseURL: ts.URL, Key: bootstrapKey(t, f, "root", "admin")}
	got, err := c.ListSecrets(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]adminapi.SecretView{{Name: "tok", User: "dev", UpdatedAt: t0}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	c.Key = bootstrapKey(t, f, "dev", "developer")
	if _, err := c.ListSecrets(ctx(t)); apiStatus(err) != http.StatusForbidden {
		t.Errorf("developer: %v, want 403", err)
	}
}
