package httpfetch_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

// TestEnvironmentProxyIgnored: HTTP_PROXY and friends point at a proxy
// that answers 502 and counts connections; a transport that honours the
// environment reaches it (control), http_fetch does not.
//
// net/http reads the proxy environment once per process, so the test
// runs itself in a fresh process with the variables set from the start.
func TestEnvironmentProxyIgnored(t *testing.T) {
	if os.Getenv("HTTPFETCH_PROXY_CHILD") == "1" {
		proxyChild(t)
		return
	}
	proxy, conns := newRecordingProxy(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestEnvironmentProxyIgnored$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "HTTPFETCH_PROXY_CHILD=1",
		"HTTP_PROXY=http://"+proxy, "http_proxy=http://"+proxy,
		"HTTPS_PROXY=http://"+proxy, "https_proxy=http://"+proxy,
		"ALL_PROXY=http://"+proxy, "NO_PROXY=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("proxy saw %d connections; want 1 (the control request only)\n%s", n, out)
	}
}

func proxyChild(t *testing.T) {
	s := newServer(t)
	u := "http://fetch.test:" + port(s) + "/echo"

	// Control: the environment is in force in this process.
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", u, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("control request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Recording-Proxy") != "1" {
		t.Fatalf("control request did not go through the environment's proxy: %s", resp.Status)
	}

	tl := newTool(t, httpfetch.Config{
		Allow:        []string{"fetch.test:" + port(s)},
		AllowPrivate: []string{"127.0.0.1/32"},
		Resolver:     newResolver(map[string]string{"fetch.test": "127.0.0.1"}),
	})
	r, err := call(context.Background(), t, tl, map[string]any{"url": u})
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if r.Structured["status"] != 200 || decodeEcho(t, r).Host != "fetch.test:"+port(s) {
		t.Fatalf("fetch did not reach the server directly: %+v", r.Structured)
	}
}

// newRecordingProxy listens on loopback, counts connections and answers
// every request with 502.
func newRecordingProxy(t *testing.T) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				c.Write([]byte("HTTP/1.1 502 Bad Gateway\r\nX-Recording-Proxy: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), &n
}
