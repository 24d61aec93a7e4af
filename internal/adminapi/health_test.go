package adminapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/plugins"
	"github.com/portcullis/portcullis/internal/principal"
)

// withHealth rebuilds f's API with health as Deps.Health; logs go to
// the returned builder.
func withHealth(t *testing.T, f *fixture, health func(context.Context) (map[string]any, error)) *strings.Builder {
	t.Helper()
	logs := &strings.Builder{}
	api, err := adminapi.New(adminapi.Deps{Store: f.db, Authn: f.an, Policy: f.pol, Audit: f.spy,
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: f.clock.Now, Health: health,
		RequestMeta: func(r *http.Request) (string, string) { return r.Header.Get("X-Test-Rid"), "192.0.2.7:4242" }})
	if err != nil {
		t.Fatal(err)
	}
	f.api = api
	return logs
}

func TestHealth(t *testing.T) {
	ok := func(context.Context) error { return nil }
	failing := func(context.Context) error { return errors.New("probe: disk /var/lib/portcullis full") }
	running := []plugins.Status{
		{Name: "notes", Kind: "stdio", State: "running", Since: t0, Restarts: 1, LastError: "exit status 1 at /srv/notes"},
		{Name: "web", Kind: "http", State: "starting", Since: t0},
	}
	restarting := []plugins.Status{{Name: "notes", State: "restarting", Since: t0, Restarts: 4, LastError: "exit status 1 at /srv/notes"}}
	tests := []struct {
		name       string
		store      func(context.Context) error
		audit      func(context.Context) error
		servers    func() []plugins.Status
		wantStatus string
		wantChecks string // JSON
		wantLogged string // "" for nothing logged
	}{
		{"all ok, no plugins", ok, ok, nil, "ok",
			`{"audit":"ok","store":"ok","plugins":[]}`, ""},
		{"all ok with plugins", ok, ok, func() []plugins.Status { return running }, "ok",
			`{"audit":"ok","store":"ok","plugins":[{"name":"notes","state":"running","since":"2026-05-04T10:00:00Z","restarts":1},
			{"name":"web","state":"starting","since":"2026-05-04T10:00:00Z","restarts":0}]}`, ""},
		{"audit failing", ok, failing, nil, "degraded",
			`{"audit":"failing","store":"ok","plugins":[]}`, "audit: probe: disk"},
		{"store failing", failing, ok, nil, "degraded",
			`{"audit":"ok","store":"failing","plugins":[]}`, "store: probe: disk"},
		{"plugin restarting", ok, ok, func() []plugins.Status { return restarting }, "degraded",
			`{"audit":"ok","store":"ok","plugins":[{"name":"notes","state":"restarting","since":"2026-05-04T10:00:00Z","restarts":4}]}`,
			"server notes is restarting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			logs := withHealth(t, f, adminapi.HealthChecks(map[string]func(context.Context) error{
				"store": tt.store, "audit": tt.audit}, tt.servers))
			w, rid := f.do(rootP, "GET", "/admin/v1/health", "")
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			var got struct {
				Status string
				Checks any
			}
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			var want any
			if err := json.Unmarshal([]byte(tt.wantChecks), &want); err != nil {
				t.Fatal(err)
			}
			if got.Status != tt.wantStatus {
				t.Errorf("status %q, want %q", got.Status, tt.wantStatus)
			}
			if diff := cmp.Diff(want, got.Checks); diff != "" {
				t.Errorf("checks (-want +got):\n%s", diff)
			}
			// Causes and plugin errors stay in the log.
			if body := w.Body.String(); strings.Contains(body, "/var/lib") || strings.Contains(body, "/srv/notes") {
				t.Errorf("answer carries an internal cause: %s", body)
			}
			if tt.wantLogged == "" && logs.Len() != 0 {
				t.Errorf("logged on success: %s", logs)
			}
			if tt.wantLogged != "" && !strings.Contains(logs.String(), tt.wantLogged) {
				t.Errorf("log %q lacks %q", logs, tt.wantLogged)
			}
			if evs := f.spy.byRequest(rid); len(evs) != 0 {
				t.Errorf("a read emitted %+v", evs)
			}
		})
	}
}

// TestHealthRefused: non-admins get 403 and admin.denied; without
// Deps.Health admins get 501; a Health returning no checks answers an
// empty checks object.
func TestHealthRefused(t *testing.T) {
	f := newFixture(t)
	withHealth(t, f, adminapi.HealthChecks(nil, nil))
	for _, p := range []*principal.Principal{devP, guestP} {
		w, rid := f.do(p, "GET", "/admin/v1/health", "")
		if w.Code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", p.Name, w.Code)
		}
		if evs := f.spy.byRequest(rid); len(evs) != 1 || evs[0].Type != audit.AdminDenied {
			t.Errorf("%s: events %+v, want one admin.denied", p.Name, evs)
		}
	}
	withHealth(t, f, nil)
	w, _ := f.do(rootP, "GET", "/admin/v1/health", "")
	if w.Code != http.StatusNotImplemented {
		t.Fatalf("nil Health: %d, want 501", w.Code)
	}
	if code, _ := decodeErr(t, w); code != "not_implemented" {
		t.Errorf("nil Health: code %q", code)
	}
	withHealth(t, f, func(context.Context) (map[string]any, error) { return nil, errors.New("broken") })
	w, _ = f.do(rootP, "GET", "/admin/v1/health", "")
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"status":"degraded","checks":{}}` {
		t.Errorf("nil checks: %d %s", w.Code, w.Body)
	}
}

// TestHealthClient: the client reads a degraded gateway without error.
func TestHealthClient(t *testing.T) {
	f := newFixture(t)
	withHealth(t, f, adminapi.HealthChecks(map[string]func(context.Context) error{
		"audit": func(context.Context) error { return errors.New("down") }}, nil))
	ts := serveAPI(t, f)
	c := &adminapi.Client{BaseURL: ts.URL, Key: bootstrapKey(t, f, "root", "admin")}
	v, err := c.Health(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != adminapi.HealthDegraded || v.Checks["audit"] != adminapi.CheckFailing {
		t.Errorf("health %+v", v)
	}
}
