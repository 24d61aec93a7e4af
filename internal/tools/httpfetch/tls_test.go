package httpfetch_test

import (
	"context"
	"crypto/x509"
	"io"
	"log"
	"net/http/httptest"
	"testing"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

// TestTLSPinnedAndVerified: the connection is pinned to the resolved
// address while the certificate is verified against the URL's name
// (httptest's certificate is valid for example.com, 127.0.0.1 and ::1).
func TestTLSPinnedAndVerified(t *testing.T) {
	ts := httptest.NewUnstartedServer(handler())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	ts.StartTLS()
	t.Cleanup(ts.Close)
	plain := newServer(t)
	tp, pp := port(ts), port(plain)
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	cfg := httpfetch.Config{
		Allow:        []string{"example.com:" + tp, "wrong.test:" + tp, "example.com:" + pp, "a.test:" + pp},
		AllowPrivate: []string{"127.0.0.1/32"},
		RootCAs:      roots,
		Resolver: newResolver(map[string]string{
			"example.com": "127.0.0.1", "wrong.test": "127.0.0.1", "a.test": "127.0.0.1",
		}),
	}
	tl := newTool(t, cfg)

	r, err := fetchURL(t, tl, "https://example.com:"+tp+"/echo")
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if e := decodeEcho(t, r); e.Host != "example.com:"+tp {
		t.Errorf("Host = %q", e.Host)
	}

	_, err = fetchURL(t, tl, "https://wrong.test:"+tp+"/echo")
	wantRefused(t, err, reason.ToolFailed, "TLS certificate verification failed")

	noRoots := cfg
	noRoots.RootCAs = nil
	_, err = fetchURL(t, newTool(t, noRoots), "https://example.com:"+tp+"/echo")
	wantRefused(t, err, reason.ToolFailed, "TLS certificate verification failed")

	_, err = fetchURL(t, tl, "https://example.com:"+pp+"/echo") // TLS to a plain HTTP server
	if codeOf(err) != reason.ToolFailed {
		t.Errorf("https to a plain server: %v", err)
	}

	// https → http is a downgrade and refused; http → https is fine, but
	// it is another origin: credentials are dropped.
	_, err = fetchURL(t, tl, "https://example.com:"+tp+redirectTo("http://example.com:"+pp+"/echo", 0))
	wantRefused(t, err, reason.PermissionDenied, "redirect refused: https to http downgrade")
	r, err = call(context.Background(), t, tl, map[string]any{
		"url":     "http://a.test:" + pp + redirectTo("https://example.com:"+tp+"/echo", 0),
		"headers": map[string]string{"Authorization": "Bearer t"},
	})
	if err != nil {
		t.Fatalf("upgrade redirect: %v", err)
	}
	if e := decodeEcho(t, r); e.Header.Get("Authorization") != "" {
		t.Error("Authorization forwarded to another origin")
	}
}
