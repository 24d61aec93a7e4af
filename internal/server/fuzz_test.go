package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzMCPEndpoint sends arbitrary bodies, as an authenticated developer,
// through the whole HTTP stack to the SDK's JSON-RPC decoding and our
// receiving middleware, at both protocol eras. Invariants: no panic
// reaches the recoverer (which would answer 500), no 5xx at all, and the
// server still answers a well-formed request afterwards.
func FuzzMCPEndpoint(f *testing.F) {
	s := newStack(f, stackOptions{noHTTP: true})
	h := s.srv.Handler()
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"../x"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"a","content":"b","content":"c"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"f","version":"1"}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`,
		`{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`{"jsonrpc":"2.0","id":1,"method":"prompts/list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file\u0000","arguments":null}}`,
		`{{{`, ``, `null`, `"x"`, `[]`,
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, body string, stateless bool) {
		pv := pvSessions
		if stateless {
			pv = pvStateless
		}
		// Long-lived requests (subscriptions/listen, SSE) are legitimate;
		// the client hanging up must end them.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, "POST", "http://127.0.0.1/mcp", strings.NewReader(body))
		for k, v := range mcpHeaders(s.keys["dev"], pv) {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { h.ServeHTTP(rec, req); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("request did not end after the client hung up; body %q", body)
		}
		if rec.Code >= 500 {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body.String())
		}
	})
	// Still serving after the fuzzing.
	req := httptest.NewRequest("GET", "http://127.0.0.1/healthz", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		f.Fatalf("healthz after fuzzing: %d", rec.Code)
	}
}
