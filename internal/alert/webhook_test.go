package alert_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/alert"
)

func TestWebhookFormats(t *testing.T) {
	a := alert.Alert{Kind: alert.KindAuthLockout, Severity: alert.High, Subject: "src:192.0.2.1 <@U1> & co",
		Detail: "locked 1m", Time: time.Date(2026, 3, 1, 11, 59, 0, 0, time.FixedZone("X", 3600))}
	t.Run("generic", func(t *testing.T) {
		e := newEnv()
		srv, reqs := hookServer(t, nil)
		d := e.start(t, cfgWith(webhookCfg(srv.URL, "generic")))
		d.Alert(context.Background(), a)
		r := recv(t, reqs)
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if r.header.Get(alert.HeaderSignature) != "" || r.header.Get(alert.HeaderTimestamp) != "" {
			t.Error("unsigned webhook carries signature headers")
		}
		var got map[string]any
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		id, _ := got["id"].(string)
		if len(id) < 20 {
			t.Errorf("id = %q", id)
		}
		delete(got, "id")
		want := map[string]any{"kind": "auth.lockout", "severity": "HIGH", "subject": "src:192.0.2.1 <@U1> & co",
			"detail": "locked 1m", "time": "2026-03-01T10:59:00Z", "source": "portcullis"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("payload (-want +got):\n%s", diff)
		}
		d.Alert(context.Background(), lockout("other"))
		var second struct{ ID, Time string }
		if err := json.Unmarshal(recv(t, reqs).body, &second); err != nil {
			t.Fatal(err)
		}
		if second.ID == id || second.Time != "2026-03-01T12:00:00Z" { // zero Time: the injected clock
			t.Errorf("second alert id %q time %q (first id %q)", second.ID, second.Time, id)
		}
	})
	t.Run("slack", func(t *testing.T) {
		e := newEnv()
		srv, reqs := hookServer(t, nil)
		d := e.start(t, cfgWith(webhookCfg(srv.URL, "slack")))
		d.Alert(context.Background(), a)
		var got map[string]string
		if err := json.Unmarshal(recv(t, reqs).body, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"text": "[HIGH] auth.lockout: src:192.0.2.1 &lt;@U1&gt; &amp; co — locked 1m"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("payload (-want +got):\n%s", diff)
		}
	})
}

func TestWebhookSignature(t *testing.T) {
	e := newEnv()
	srv, reqs := hookServer(t, nil)
	w := webhookCfg(srv.URL, "generic")
	w.SecretFile = writeSecret(t, "hook.secret", "correct horse\n", 0o600)
	d := e.start(t, cfgWith(w))
	d.Alert(context.Background(), lockout("src:a"))
	r := recv(t, reqs)
	ts, sig := r.header.Get(alert.HeaderTimestamp), r.header.Get(alert.HeaderSignature)
	if ts != strconv.FormatInt(e.clock.Now().Unix(), 10) {
		t.Errorf("timestamp = %q", ts)
	}
	secret := []byte("correct horse") // trailing newline trimmed
	now := e.clock.Now()
	if err := alert.VerifySignature(secret, ts, r.body, sig, now, 5*time.Minute); err != nil {
		t.Fatalf("VerifySignature: %v", err)
	}
	tampered := []byte(strings.Replace(string(r.body), "src:a", "src:b", 1))
	for name, err := range map[string]error{
		"wrong secret":  alert.VerifySignature([]byte("wrong"), ts, r.body, sig, now, 5*time.Minute),
		"tampered body": alert.VerifySignature(secret, ts, tampered, sig, now, 5*time.Minute),
		"old timestamp": alert.VerifySignature(secret, ts, r.body, sig, now.Add(6*time.Minute), 5*time.Minute),
	} {
		if !errors.Is(err, alert.ErrSignature) {
			t.Errorf("%s: err = %v, want ErrSignature", name, err)
		}
	}
}

func TestVerifySignature(t *testing.T) {
	secret, body := []byte("k"), []byte(`{"kind":"x"}`)
	now := time.Unix(1_700_000_000, 0)
	sig := func(ts string, b []byte) string {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(ts + "."))
		m.Write(b)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	ts := "1700000000"
	for _, tc := range []struct {
		name, ts, header string
		body             []byte
		ok               bool
	}{
		{"valid", ts, sig(ts, body), body, true},
		{"valid within tolerance", "1699999800", sig("1699999800", body), body, true},
		{"stale", "1699999000", sig("1699999000", body), body, false},
		{"future", "1700001000", sig("1700001000", body), body, false},
		{"timestamp not bound", "1700000001", sig(ts, body), body, false},
		{"tampered body", ts, sig(ts, body), []byte(`{"kind":"y"}`), false},
		{"no prefix", ts, strings.TrimPrefix(sig(ts, body), "sha256="), body, false},
		{"bad hex", ts, "sha256=zz", body, false},
		{"empty", ts, "", body, false},
		{"bad timestamp", "soon", sig("soon", body), body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := alert.VerifySignature(secret, tc.ts, tc.body, tc.header, now, 5*time.Minute)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, alert.ErrSignature)) {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// resetConn makes the client see a connection reset (RST) instead of a
// response.
func resetConn(t *testing.T, w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
}

func TestWebhookRetry(t *testing.T) {
	e := newEnv()
	srv, reqs := hookServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case 3:
			resetConn(t, w)
		}
	})
	d := e.start(t, cfgWith(webhookCfg(srv.URL, "generic")))
	d.Alert(context.Background(), lockout("src:a"))
	closeNow(t, d)

	got := drain(reqs)
	if len(got) != 4 {
		t.Fatalf("server saw %d attempts, want 4", len(got))
	}
	for _, r := range got[1:] {
		if string(r.body) != string(got[0].body) {
			t.Errorf("retry body %s differs from %s (the id must not change)", r.body, got[0].body)
		}
	}
	if s := stats(t, d, "webhook:ops"); s.Sent != 1 || s.Attempts != 4 || s.Failed != 0 {
		t.Errorf("stats = %+v", s)
	}
	sl := e.sleep.all()
	if len(sl) != 3 || sl[0] < 500*time.Millisecond || sl[0] > time.Second || sl[1] != 7*time.Second ||
		sl[2] < 2*time.Second || sl[2] > 4*time.Second {
		t.Errorf("sleeps = %v, want [0.5s-1s, 7s (Retry-After), 2s-4s]", sl)
	}
}

func TestWebhookRetryAfterCapped(t *testing.T) {
	e := newEnv()
	srv, reqs := hookServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	d := e.start(t, cfgWith(webhookCfg(srv.URL, "generic")))
	d.Alert(context.Background(), lockout("src:a"))
	closeNow(t, d)
	if n := len(drain(reqs)); n != 2 {
		t.Errorf("attempts = %d, want 2", n)
	}
	if sl := e.sleep.all(); len(sl) != 1 || sl[0] != 5*time.Minute {
		t.Errorf("sleeps = %v, want [5m]", sl)
	}
}

func TestWebhookFailures(t *testing.T) {
	for _, tc := range []struct {
		name         string
		respond      func(n int, w http.ResponseWriter, r *http.Request)
		timeout      time.Duration
		wantAttempts int
	}{
		{"400 not retried", func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) }, 0, 1},
		{"404 not retried", func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) }, 0, 1},
		{"redirect not followed", func(_ int, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, 0, 1},
		{"500 until attempts run out", func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }, 0, 3},
		{"per-attempt timeout", func(_ int, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, 50 * time.Millisecond, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv()
			srv, reqs := hookServer(t, tc.respond)
			w := webhookCfg(srv.URL+"/hook", "generic")
			w.MaxAttempts = 3
			if tc.timeout > 0 {
				w.Timeout = tc.timeout
			}
			d := e.start(t, cfgWith(w))
			d.Alert(context.Background(), lockout("src:a"))
			closeNow(t, d)
			got := drain(reqs)
			for _, r := range got {
				if r.path != "/hook" {
					t.Errorf("request to %s", r.path)
				}
			}
			if len(got) != tc.wantAttempts {
				t.Errorf("server saw %d attempts, want %d", len(got), tc.wantAttempts)
			}
			if s := stats(t, d, "webhook:ops"); s.Sent != 0 || s.Failed != 1 || s.Attempts != uint64(tc.wantAttempts) {
				t.Errorf("stats = %+v", s)
			}
			if !strings.Contains(e.logs.String(), "alert delivery failed") {
				t.Errorf("failure not logged:\n%s", e.logs)
			}
		})
	}
}
