package alert_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/config"
)

func lockout(subject string) alert.Alert {
	return alert.Alert{Kind: alert.KindAuthLockout, Severity: alert.High, Subject: subject, Detail: "locked 1m"}
}

func TestDedupe(t *testing.T) {
	e := newEnv()
	srv, reqs := hookServer(t, nil)
	cfg := cfgWith(webhookCfg(srv.URL, "generic"))
	cfg.DedupeWindow = time.Minute
	d := e.start(t, cfg)
	ctx := context.Background()

	d.Alert(ctx, lockout("src:a")) // delivered
	e.clock.Advance(10 * time.Second)
	for range 3 {
		d.Alert(ctx, lockout("src:a")) // suppressed
	}
	d.Alert(ctx, lockout("src:b"))                                                                        // other subject: delivered
	d.Alert(ctx, alert.Alert{Kind: alert.KindPolicyReloadFailed, Severity: alert.High, Subject: "src:a"}) // other kind: delivered
	e.clock.Advance(51 * time.Second)                                                                     // 61s after the first delivery
	d.Alert(ctx, lockout("src:a"))                                                                        // delivered, carries 3
	e.clock.Advance(30 * time.Second)
	d.Alert(ctx, lockout("src:a")) // within a minute of the last delivery: suppressed
	closeNow(t, d)

	type got struct {
		Kind, Subject string
		Suppressed    *int
	}
	var all []got
	for _, r := range drain(reqs) {
		var g got
		if err := json.Unmarshal(r.body, &g); err != nil {
			t.Fatal(err)
		}
		all = append(all, g)
	}
	three := 3
	want := []got{{alert.KindAuthLockout, "src:a", nil}, {alert.KindAuthLockout, "src:b", nil},
		{alert.KindPolicyReloadFailed, "src:a", nil}, {alert.KindAuthLockout, "src:a", &three}}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	s := stats(t, d, "webhook:ops")
	if s.Sent != 4 || s.Suppressed != 4 || s.Dropped != 0 || s.Failed != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestDedupeDisabled(t *testing.T) {
	e := newEnv()
	srv, reqs := hookServer(t, nil)
	d := e.start(t, cfgWith(webhookCfg(srv.URL, "generic"))) // DedupeWindow 0
	for range 3 {
		d.Alert(context.Background(), lockout("src:a"))
	}
	closeNow(t, d)
	if n := len(drain(reqs)); n != 3 {
		t.Errorf("delivered %d, want 3", n)
	}
}

func TestQueueFullDropsOldest(t *testing.T) {
	e := newEnv()
	release := make(chan struct{})
	srv, reqs := hookServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	const size = 4
	cfg := cfgWith(webhookCfg(srv.URL, "generic"))
	cfg.QueueSize = size
	d := e.start(t, cfg)
	ctx := context.Background()

	d.Alert(ctx, lockout("first"))
	recv(t, reqs) // the receiver is now stuck delivering "first"

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 * size {
			d.Alert(ctx, lockout(fmt.Sprint(i)))
		}
	}()
	select {
	case <-done:
	case <-time.After(safety):
		t.Fatal("Alert blocked on a full queue")
	}
	if s := stats(t, d, "webhook:ops"); s.Queued != size || s.Dropped != 9*size {
		t.Errorf("stats with a stuck receiver = %+v, want queued %d dropped %d", s, size, 9*size)
	}
	close(release)
	closeNow(t, d)

	var subjects []string
	for _, r := range drain(reqs) {
		var p struct{ Subject string }
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		subjects = append(subjects, p.Subject)
	}
	if diff := cmp.Diff([]string{"36", "37", "38", "39"}, subjects); diff != "" {
		t.Errorf("delivered after release (-want +got):\n%s", diff)
	}
	// One warning, not one per drop: the injected clock did not move.
	if n := strings.Count(e.logs.String(), "alert queue full"); n != 1 {
		t.Errorf("%d queue-full warnings, want 1:\n%s", n, e.logs)
	}
}

func TestCloseDrains(t *testing.T) {
	e := newEnv()
	release := make(chan struct{})
	srv, reqs := hookServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			<-release
		}
	})
	d := e.start(t, cfgWith(webhookCfg(srv.URL, "generic")))
	ctx := context.Background()
	for i := range 4 {
		d.Alert(ctx, lockout(fmt.Sprint(i)))
	}
	recv(t, reqs)
	closed := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), safety)
		defer cancel()
		closed <- d.Close(ctx)
	}()
	close(release)
	if err := recv(t, closed); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := 1 + len(drain(reqs)); n != 4 {
		t.Errorf("server got %d alerts, want 4", n)
	}
	d.Alert(ctx, lockout("late")) // after Close: dropped, not delivered
	if s := stats(t, d, "webhook:ops"); s.Sent != 4 || s.Queued != 0 || s.Dropped != 1 {
		t.Errorf("stats = %+v", s)
	}
}

func TestCloseGivesUp(t *testing.T) {
	e := newEnv()
	srv, reqs := hookServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	})
	d, err := alert.NewDispatcher(cfgWith(webhookCfg(srv.URL, "generic")), e.log, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d.Alert(context.Background(), lockout(fmt.Sprint(i)))
	}
	recv(t, reqs)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
	if s := stats(t, d, "webhook:ops"); s.Sent != 0 || s.Failed != 1 || s.Dropped != 2 || s.Queued != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestNewDispatcherErrors(t *testing.T) {
	good := writeSecret(t, "good", "k", 0o600)
	open := writeSecret(t, "open", "k", 0o644)
	empty := writeSecret(t, "empty", "\n", 0o600)
	log := slog.New(slog.DiscardHandler)
	hook := func(mod func(*config.WebhookConfig)) config.AlertsConfig {
		w := webhookCfg("https://hooks.example/x?token=t0ken", "generic")
		w.SecretFile = good
		mod(&w)
		return cfgWith(w)
	}
	smtpCfg := func(mod func(*config.SMTPConfig)) config.AlertsConfig {
		c := config.AlertsConfig{QueueSize: 1, SMTP: config.SMTPConfig{Addr: "127.0.0.1:25", From: "a@x", To: []string{"b@x"},
			Username: "u", PasswordFile: good}}
		mod(&c.SMTP)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  config.AlertsConfig
		log  *slog.Logger
	}{
		{"nil logger", cfgWith(), nil},
		{"queue size 0", config.AlertsConfig{}, log},
		{"missing secret", hook(func(w *config.WebhookConfig) { w.SecretFile = good + ".missing" }), log},
		{"insecure secret", hook(func(w *config.WebhookConfig) { w.SecretFile = open }), log},
		{"empty secret", hook(func(w *config.WebhookConfig) { w.SecretFile = empty }), log},
		{"bad url", hook(func(w *config.WebhookConfig) { w.URL = "ftp://x/?token=t0ken" }), log},
		{"url credentials", hook(func(w *config.WebhookConfig) { w.URL = "https://u:p@x/" }), log},
		{"bad format", hook(func(w *config.WebhookConfig) { w.Format = "teams" }), log},
		{"no defaults", hook(func(w *config.WebhookConfig) { w.MaxAttempts = 0 }), log},
		{"smtp missing password", smtpCfg(func(s *config.SMTPConfig) { s.PasswordFile = open + ".missing" }), log},
		{"smtp insecure password", smtpCfg(func(s *config.SMTPConfig) { s.PasswordFile = open }), log},
		{"smtp no password file", smtpCfg(func(s *config.SMTPConfig) { s.PasswordFile = "" }), log},
		{"smtp bad addr", smtpCfg(func(s *config.SMTPConfig) { s.Addr = "mail" }), log},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := alert.NewDispatcher(tc.cfg, tc.log, alert.Options{})
			if !errors.Is(err, alert.ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			if d != nil {
				t.Error("non-nil Dispatcher with an error")
			}
			if strings.Contains(err.Error(), "t0ken") {
				t.Errorf("error echoes the URL: %v", err)
			}
		})
	}
}

func TestNoReceivers(t *testing.T) {
	d := newEnv().start(t, config.AlertsConfig{QueueSize: 1})
	d.Alert(context.Background(), lockout("x"))
	if s := d.Stats(); len(s) != 0 {
		t.Errorf("Stats = %+v", s)
	}
}
