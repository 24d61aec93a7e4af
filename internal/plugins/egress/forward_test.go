package egress

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// seenRequest is what the upstream server received.
type seenRequest struct {
	method, host, uri, body string
	header                  http.Header
}

// TestForwardPlainHTTP: absolute-form requests are forwarded to the
// pinned address with the Host taken from the URL (a spoofed Host header
// is ignored) and hop-by-hop and proxy headers removed, both ways.
func TestForwardPlainHTTP(t *testing.T) {
	seen := make(chan seenRequest, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- seenRequest{r.Method, r.Host, r.RequestURI, string(b), r.Header.Clone()}
		w.Header().Set("X-Upstream", "yes")
		_, _ = io.WriteString(w, "hello from upstream")
	}))
	defer up.Close()
	upAddr := netip.MustParseAddrPort(up.Listener.Addr().String())
	port := upAddr.Port()
	hp := "allowed.test:" + itoa(port)

	tests := []struct {
		name     string
		req      string
		method   string
		wantURI  string
		wantBody string
		respBody string
	}{
		{"GET with spoofed Host and proxy headers",
			"GET http://" + hp + "/path?q=1 HTTP/1.1\r\nHost: evil.test\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Keep: 2\r\nTE: trailers\r\nUpgrade: websocket\r\n\r\n",
			"GET", "/path?q=1", "", "hello from upstream"},
		{"chunked POST", "POST http://" + hp + "/submit HTTP/1.1\r\nHost: " + hp + "\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
			"POST", "/submit", "hello world", "hello from upstream"},
		{"POST with Content-Length", "POST http://" + hp + "/p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
			"POST", "/p", "abc", "hello from upstream"},
		{"query without path", "GET http://" + strings.ToUpper(hp) + "?x=1 HTTP/1.1\r\n\r\n", "GET", "/?x=1", "", "hello from upstream"},
		{"empty query kept", "GET http://" + hp + "/a? HTTP/1.1\r\n\r\n", "GET", "/a?", "", "hello from upstream"},
		{"HEAD", "HEAD http://" + hp + "/ HTTP/1.1\r\n\r\n", "HEAD", "/", "", ""},
		{"HTTP/1.0 client", "GET http://" + hp + "/old HTTP/1.0\r\n\r\n", "GET", "/old", "", "hello from upstream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDNS(map[string]string{"allowed.test": "127.0.0.1"})
			h := startProxy(t, Config{
				Allow:        []string{hp},
				AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
				Resolver:     d.resolve,
			})
			c := h.dial()
			if _, err := io.WriteString(c, tt.req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: tt.method})
			if err != nil {
				t.Fatalf("response: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || string(body) != tt.respBody {
				t.Fatalf("response %d %q, %v; want 200 %q", resp.StatusCode, body, err, tt.respBody)
			}
			if resp.Header.Get("X-Upstream") != "yes" || !resp.Close {
				t.Errorf("response headers %v; want X-Upstream and Connection: close", resp.Header)
			}
			var got seenRequest
			select {
			case got = <-seen:
			default:
				t.Fatal("upstream saw no request")
			}
			if got.method != tt.method || got.host != hp || got.uri != tt.wantURI || got.body != tt.wantBody {
				t.Errorf("upstream saw %s %s Host %s body %q; want %s %s Host %s body %q",
					got.method, got.uri, got.host, got.body, tt.method, tt.wantURI, hp, tt.wantBody)
			}
			for _, k := range []string{"Proxy-Authorization", "Proxy-Connection", "X-Hop", "Te", "Upgrade", "Expect", "User-Agent"} {
				if v, ok := got.header[k]; ok {
					t.Errorf("upstream received %s: %q", k, v)
				}
			}
			if got.header.Get("Connection") != "close" {
				t.Errorf("upstream Connection = %q, want close", got.header.Get("Connection"))
			}
			if strings.Contains(tt.req, "X-Keep") && got.header.Get("X-Keep") != "2" {
				t.Errorf("end-to-end header X-Keep lost: %v", got.header)
			}
			ev := h.onlyEvent()
			if !ev.Allowed || ev.Method != tt.method || ev.Host != "allowed.test" || ev.Port != itoa(port) ||
				ev.Addr != upAddr || ev.BytesUp == 0 || ev.BytesDown == 0 || ev.Detail != "" {
				t.Errorf("event %+v", ev)
			}
			if strings.Contains(h.logs.String()+ev.Detail, "c2VjcmV0") || strings.Contains(ev.Detail, "path") {
				t.Errorf("request contents reached the log or event")
			}
		})
	}
}

// TestForwardDefaultPort: a URL without a port is port 80, and the Host
// header has no port.
func TestForwardDefaultPort(t *testing.T) {
	seen := make(chan string, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.Host }))
	defer up.Close()
	fd := &fakeDial{to: netip.MustParseAddrPort(up.Listener.Addr().String())}
	d := newDNS(map[string]string{"allowed.test": "127.0.0.1"})
	h := startProxy(t, Config{
		Allow: []string{"allowed.test:80"}, AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Resolver: d.resolve, Dial: fd.dial,
	})
	r, _, _ := h.roundTrip("GET http://allowed.test/x HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if got := <-seen; got != "allowed.test" {
		t.Errorf("upstream Host %q, want allowed.test", got)
	}
	if calls := fd.calls(); len(calls) != 1 || calls[0] != "tcp 127.0.0.1:80" {
		t.Errorf("dialed %v, want [tcp 127.0.0.1:80]", calls)
	}
	if ev := h.onlyEvent(); ev.Port != "80" || ev.Addr.String() != "127.0.0.1:80" {
		t.Errorf("event %+v", ev)
	}
}

// TestForwardUpstreamMisbehaves: a broken or hostile upstream gets the
// client a 502 (or the response as far as it came), never a hang, and
// the event says what happened.
func TestForwardUpstreamMisbehaves(t *testing.T) {
	tests := []struct {
		name       string
		answer     string // raw bytes the upstream writes after reading the request
		wantStatus int
		wantBody   string
		wantDetail string
	}{
		{"closes without answering", "", 502, "", "reading response"},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", 502, "", "upstream answered 101"},
		{"early hints then 200", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", ""},
		{"body until close", "HTTP/1.0 200 OK\r\n\r\nstreamed body", 200, "streamed body", ""},
		{"huge response header", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", maxResponseHeaderBytes) + "\r\n\r\n", 502, "", "reading response"},
		{"garbage", "SSH-2.0-OpenSSH\r\n", 502, "", "reading response"},
		{"hop-by-hop response headers", "HTTP/1.1 200 OK\r\nConnection: X-Internal, keep-alive\r\nX-Internal: hop\r\nKeep-Alive: timeout=5\r\n" +
			"Proxy-Authenticate: Basic\r\nX-Upstream: yes\r\nContent-Length: 2\r\n\r\nok", 200, "ok", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				_, _ = io.WriteString(c, tt.answer)
			})
			h := startProxy(t, Config{Allow: []string{srv.addrPort().String()}})
			c := h.dial()
			if _, err := io.WriteString(c, "GET http://"+srv.addrPort().String()+"/ HTTP/1.1\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("response: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || (tt.wantBody != "" && string(body) != tt.wantBody) {
				t.Errorf("client got %d %q; want %d %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			for _, k := range []string{"X-Internal", "Keep-Alive", "Proxy-Authenticate"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("client received hop-by-hop %s: %q", k, v)
				}
			}
			if !resp.Close {
				t.Error("response to the client lacks Connection: close")
			}
			ev := h.onlyEvent()
			if !ev.Allowed || ev.Reason != "" || !strings.Contains(ev.Detail, tt.wantDetail) || (tt.wantDetail == "" && ev.Detail != "") {
				t.Errorf("event %+v; want allowed with detail %q", ev, tt.wantDetail)
			}
		})
	}
}

func itoa(n uint16) string { return strconv.Itoa(int(n)) }
