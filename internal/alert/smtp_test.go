package alert_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/config"
)

// smtpMsg is one message the fake server accepted.
type smtpMsg struct {
	from string
	to   []string
	data string
	auth string // decoded AUTH PLAIN response
	tls  bool
}

// fakeSMTP speaks enough of RFC 5321 (EHLO, STARTTLS, AUTH PLAIN, MAIL,
// RCPT, DATA, QUIT) on 127.0.0.1 for the SMTP receiver.
type fakeSMTP struct {
	ln       net.Listener
	tls      *tls.Config // non-nil: offer STARTTLS
	password string      // AUTH PLAIN succeeds only with it
	msgs     chan smtpMsg
	wg       sync.WaitGroup
}

func startFakeSMTP(t *testing.T, tc *tls.Config, password string) *fakeSMTP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSMTP{ln: ln, tls: tc, password: password, msgs: make(chan smtpMsg, 100)}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeSMTP) serve(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(safety))
	tp := textproto.NewConn(conn)
	var m smtpMsg
	tp.PrintfLine("220 fake ESMTP")
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ext := []string{"fake"}
			if f.tls != nil && !m.tls {
				ext = append(ext, "STARTTLS")
			}
			ext = append(ext, "AUTH PLAIN")
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				tp.PrintfLine("250%s%s", sep, e)
			}
		case "STARTTLS":
			if f.tls == nil {
				tp.PrintfLine("502 no")
				continue
			}
			tp.PrintfLine("220 go ahead")
			tc := tls.Server(conn, f.tls)
			if tc.Handshake() != nil {
				return
			}
			tp, m.tls = textproto.NewConn(tc), true
		case "AUTH":
			b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(arg, "PLAIN "))
			m.auth = string(b)
			if parts := strings.Split(m.auth, "\x00"); len(parts) == 3 && parts[2] == f.password {
				tp.PrintfLine("235 ok")
			} else {
				tp.PrintfLine("535 authentication failed")
			}
		case "MAIL":
			m.from = arg
			tp.PrintfLine("250 ok")
		case "RCPT":
			m.to = append(m.to, arg)
			tp.PrintfLine("250 ok")
		case "DATA":
			tp.PrintfLine("354 go ahead")
			b, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m.data = string(b)
			f.msgs <- m
			tp.PrintfLine("250 queued")
		case "QUIT":
			tp.PrintfLine("221 bye")
			return
		default:
			tp.PrintfLine("502 unknown")
		}
	}
}

// selfSigned returns a server config for 127.0.0.1 and a client config
// trusting it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool}
}

func smtpAlerts(addr string) config.AlertsConfig {
	return config.AlertsConfig{QueueSize: 8,
		SMTP: config.SMTPConfig{Addr: addr, From: "gateway@example.com", To: []string{"ops@example.com", "sec@example.com"}}}
}

// parseMail parses a received message, decoding Subject and body.
func parseMail(t *testing.T, data string) (h mail.Header, subject, body string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatalf("ReadMessage: %v\n%s", err, data)
	}
	subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return msg.Header, subject, string(b)
}

func TestSMTPDelivery(t *testing.T) {
	serverTLS, clientTLS := selfSigned(t)
	for _, tc := range []struct {
		name     string
		startTLS bool
		auth     bool
	}{
		{"plain loopback", false, false},
		{"auth", false, true},
		{"starttls and auth", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srvTLS *tls.Config
			if tc.startTLS {
				srvTLS = serverTLS
			}
			f := startFakeSMTP(t, srvTLS, "hunter2")
			e := newEnv()
			e.opts.TLSConfig = clientTLS
			cfg := smtpAlerts(f.ln.Addr().String())
			cfg.SMTP.StartTLS = tc.startTLS
			if tc.auth {
				cfg.SMTP.Username = "gw"
				cfg.SMTP.PasswordFile = writeSecret(t, "smtp.pw", "hunter2\n", 0o600)
			}
			d := e.start(t, cfg)
			d.Alert(context.Background(), alert.Alert{Kind: alert.KindAuthLockout, Severity: alert.High,
				Subject: "src:192.0.2.1", Detail: "locked 1m\n.\nline after a lone dot"})
			m := recv(t, f.msgs)
			closeNow(t, d)

			if m.tls != tc.startTLS {
				t.Errorf("tls = %v", m.tls)
			}
			if wantAuth := map[bool]string{true: "\x00gw\x00hunter2"}[tc.auth]; m.auth != wantAuth {
				t.Errorf("auth = %q, want %q", m.auth, wantAuth)
			}
			if diff := cmp.Diff([]string{"TO:<ops@example.com>", "TO:<sec@example.com>"}, m.to); diff != "" || m.from != "FROM:<gateway@example.com>" {
				t.Errorf("envelope from %q, to diff:\n%s", m.from, diff)
			}
			h, subject, body := parseMail(t, m.data)
			if subject != "[Portcullis] HIGH auth.lockout: src:192.0.2.1" {
				t.Errorf("Subject = %q", subject)
			}
			if h.Get("From") != "gateway@example.com" || h.Get("To") != "ops@example.com, sec@example.com" {
				t.Errorf("From %q To %q", h.Get("From"), h.Get("To"))
			}
			for _, want := range []string{"Kind: auth.lockout", "Severity: HIGH", "Time: 2026-03-01T12:00:00Z", "locked 1m\n.\nline after a lone dot"} {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
			if s := stats(t, d, "smtp"); s.Sent != 1 || s.Attempts != 1 {
				t.Errorf("stats = %+v", s)
			}
		})
	}
}

func TestSMTPStartTLSRequired(t *testing.T) {
	f := startFakeSMTP(t, nil, "") // does not offer STARTTLS
	e := newEnv()
	cfg := smtpAlerts(f.ln.Addr().String())
	cfg.SMTP.StartTLS = true
	d := e.start(t, cfg)
	d.Alert(context.Background(), lockout("src:a"))
	closeNow(t, d)
	if got := drain(f.msgs); len(got) != 0 {
		t.Errorf("delivered in plaintext: %+v", got)
	}
	if s := stats(t, d, "smtp"); s.Sent != 0 || s.Failed != 1 || s.Attempts != 1 {
		t.Errorf("stats = %+v", s)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "alert delivery failed") || !strings.Contains(logs, "STARTTLS") {
		t.Errorf("failure not logged:\n%s", logs)
	}
}

func TestSMTPHeaderInjection(t *testing.T) {
	f := startFakeSMTP(t, nil, "")
	e := newEnv()
	d := e.start(t, smtpAlerts(f.ln.Addr().String()))
	d.Alert(context.Background(), alert.Alert{Kind: "policy.x\r\nBcc: evil@example.com", Severity: "HIGH\n",
		Subject: "s\r\nX-Injected: yes\r\n\r\nforged body", Detail: "d\r\nX-Also: no"})
	m := recv(t, f.msgs)
	closeNow(t, d)

	h, subject, _ := parseMail(t, m.data)
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"Content-Transfer-Encoding", "Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("headers (-want +got):\n%s\n%s", diff, m.data)
	}
	if strings.ContainsAny(subject, "\r\n") || !strings.Contains(subject, "Bcc: evil@example.com") {
		t.Errorf("Subject = %q", subject)
	}
	if len(m.to) != 2 {
		t.Errorf("recipients = %q", m.to)
	}
}

// TestSecretsNotLogged fails every receiver in ways that put secrets
// within reach of a log line: a URL query token, a signing secret, a
// response body, an SMTP password refused by the server, and a network
// error (whose *url.Error would quote the URL).
func TestSecretsNotLogged(t *testing.T) {
	const (
		queryToken = "query-t0ken-1"
		pathToken  = "path-t0ken-2"
		hookSecret = "hook-s3cret-3"
		respBody   = "resp-b0dy-4"
		smtpPass   = "smtp-passw0rd-5"
	)
	srv, _ := hookServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, respBody)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close() // connections to it are refused

	f := startFakeSMTP(t, nil, "the-right-one")
	e := newEnv()
	bad := webhookCfg(srv.URL+"/"+pathToken+"?token="+queryToken, "generic")
	bad.SecretFile = writeSecret(t, "s", hookSecret, 0o600)
	dead := webhookCfg("http://"+deadAddr+"/"+pathToken+"?token="+queryToken, "slack")
	dead.Name, dead.MaxAttempts = "dead", 2
	cfg := cfgWith(bad, dead)
	cfg.SMTP = smtpAlerts(f.ln.Addr().String()).SMTP
	cfg.SMTP.Username, cfg.SMTP.PasswordFile = "gw", writeSecret(t, "pw", smtpPass, 0o600)
	d := e.start(t, cfg)
	d.Alert(context.Background(), lockout("src:a"))
	closeNow(t, d)

	for _, s := range d.Stats() {
		if s.Failed != 1 || s.Sent != 0 {
			t.Errorf("stats = %+v", s)
		}
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "alert delivery failed"); n != 3 {
		t.Errorf("%d failures logged, want 3:\n%s", n, logs)
	}
	for _, want := range []string{srv.Listener.Addr().String(), "status 400", deadAddr, "535"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{queryToken, pathToken, hookSecret, respBody, smtpPass} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
}
