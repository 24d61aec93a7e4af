package egress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines running: Close
// must stop every listener and connection goroutine.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is a running proxy with its recorded events and logs.
type harness struct {
	t      *testing.T
	p      *Proxy
	addr   string
	logs   *syncBuffer
	events chan Event
	closed bool
}

// startProxy fills in Server, Logger and OnEvent, starts the proxy on a
// loopback port and closes it at the end of the test.
func startProxy(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}, events: make(chan Event, 256)}
	cfg.Server = "demo"
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.OnEvent = func(ev Event) { h.events <- ev }
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.p = p
	if h.addr, err = p.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	if !h.closed {
		h.closed = true
		if err := h.p.Close(); err != nil {
			h.t.Errorf("Close: %v", err)
		}
	}
}

// next waits for the next event.
func (h *harness) next() Event {
	h.t.Helper()
	select {
	case ev := <-h.events:
		return ev
	case <-time.After(5 * time.Second):
		h.t.Fatal("no event within 5s")
		return Event{}
	}
}

// allEvents closes the proxy (waiting for every connection goroutine)
// and returns the events not yet consumed.
func (h *harness) allEvents() []Event {
	h.close()
	var out []Event
	for {
		select {
		case ev := <-h.events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// dial connects a client to the proxy.
func (h *harness) dial() net.Conn {
	h.t.Helper()
	c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		h.t.Fatalf("dial proxy: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	h.t.Cleanup(func() { c.Close() })
	return c
}

// response is a proxy answer as the client sees it.
type response struct {
	status  int
	headers string // raw header block
	body    string // Content-Length bytes of body, if any
}

// readResponse reads a status line, headers and a Content-Length body
// from br; for a 200 to CONNECT it stops after the headers.
func readResponse(br *bufio.Reader) (response, error) {
	var r response
	line, err := br.ReadString('\n')
	if err != nil {
		return r, fmt.Errorf("status line: %w", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return r, fmt.Errorf("bad status line %q", line)
	}
	if r.status, err = strconv.Atoi(f[1]); err != nil {
		return r, err
	}
	n := 0
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return r, fmt.Errorf("headers: %w", err)
		}
		if l == "\r\n" {
			break
		}
		r.headers += l
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Content-Length") {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if n > 0 {
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return r, fmt.Errorf("body: %w", err)
		}
		r.body = string(b)
	}
	return r, nil
}

// roundTrip sends raw on a new connection and reads the answer.
func (h *harness) roundTrip(raw string) (response, net.Conn, *bufio.Reader) {
	h.t.Helper()
	c := h.dial()
	if _, err := io.WriteString(c, raw); err != nil {
		h.t.Fatalf("write request: %v", err)
	}
	br := bufio.NewReader(c)
	r, err := readResponse(br)
	if err != nil {
		h.t.Fatalf("read response: %v", err)
	}
	return r, c, br
}

// server is a loopback TCP server running fn per connection; it stops
// (listener and connections closed, goroutines done) at the end of the
// test.
type server struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startServer(t *testing.T, fn func(net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				fn(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *server) addrPort() netip.AddrPort { return netip.MustParseAddrPort(s.ln.Addr().String()) }

func (s *server) port() string { return strconv.Itoa(int(s.addrPort().Port())) }

// startEcho starts a server that echoes every byte until EOF, then
// closes.
func startEcho(t *testing.T) *server {
	return startServer(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// fakeDNS is a Resolver over a fixed table that counts lookups.
type fakeDNS struct {
	mu    sync.Mutex
	table map[string][]netip.Addr
	calls []string
}

func newDNS(entries map[string]string) *fakeDNS {
	d := &fakeDNS{table: map[string][]netip.Addr{}}
	for name, list := range entries {
		var addrs []netip.Addr
		for a := range strings.SplitSeq(list, ",") {
			if a != "" {
				addrs = append(addrs, netip.MustParseAddr(a))
			}
		}
		d.table[name] = addrs
	}
	return d
}

func (d *fakeDNS) resolve(_ context.Context, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, host)
	addrs, ok := d.table[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

func (d *fakeDNS) lookups() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

// fakeDial records the addresses it is asked to dial and connects to
// to instead (or fails when to is the zero AddrPort).
type fakeDial struct {
	mu     sync.Mutex
	to     netip.AddrPort
	dialed []string
}

func (f *fakeDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.dialed = append(f.dialed, network+" "+addr)
	f.mu.Unlock()
	if !f.to.IsValid() {
		return nil, errors.New("connection refused (fake)")
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", f.to.String())
}

func (f *fakeDial) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dialed...)
}

// connect sends a CONNECT for target and, if it is answered 200, checks
// that the tunnel echoes bytes. It returns the status.
func (h *harness) connectEcho(target string) int {
	h.t.Helper()
	r, c, br := h.roundTrip("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	if r.status != 200 {
		return r.status
	}
	msg := "ping " + target
	if _, err := io.WriteString(c, msg); err != nil {
		h.t.Fatalf("write through tunnel: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		h.t.Fatalf("read through tunnel: %v", err)
	}
	if string(got) != msg {
		h.t.Fatalf("tunnel echoed %q, want %q", got, msg)
	}
	c.Close()
	return r.status
}

// onlyEvent closes the proxy and returns its single event, failing the
// test if there was not exactly one.
func (h *harness) onlyEvent() Event {
	h.t.Helper()
	evs := h.allEvents()
	if len(evs) != 1 {
		h.t.Fatalf("got %d events, want exactly 1: %+v", len(evs), evs)
	}
	return evs[0]
}
