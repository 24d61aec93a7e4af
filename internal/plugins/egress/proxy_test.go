package egress

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestNewRejectsInvalidConfig(t *testing.T) {
	ok := func() Config {
		return Config{Server: "demo", Logger: slog.New(slog.DiscardHandler), OnEvent: func(Event) {}}
	}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"no server", func(c *Config) { c.Server = "" }, "Server is empty"},
		{"no logger", func(c *Config) { c.Logger = nil }, "Logger is nil"},
		{"no audit", func(c *Config) { c.OnEvent = nil }, "OnEvent is nil"},
		{"negative dial timeout", func(c *Config) { c.DialTimeout = -1 }, "negative timeout"},
		{"negative idle timeout", func(c *Config) { c.IdleTimeout = -1 }, "negative timeout"},
		{"negative header timeout", func(c *Config) { c.ReadHeaderTimeout = -1 }, "negative timeout"},
		{"negative max conns", func(c *Config) { c.MaxConns = -1 }, "negative MaxConns"},
		{"strict wildcard", func(c *Config) { c.Allow = []string{"*.example.com:443"} }, "strict level allows no wildcards"},
		{"bad pattern", func(c *Config) { c.Allow = []string{"ok.test:443", "0x7f.1:80"} }, "non-standard notation"},
		{"zero-length prefix v4", func(c *Config) { c.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} }, "zero-length"},
		{"zero-length prefix v6", func(c *Config) { c.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("::/0")} }, "zero-length"},
		{"mapped short prefix", func(c *Config) { c.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("::ffff:0:0/90")} }, "shorter than /96"},
		{"invalid prefix", func(c *Config) { c.AllowPrivate = []netip.Prefix{{}} }, "invalid prefix"},
		{"multicast prefix", func(c *Config) { c.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("224.0.0.0/4")} }, "never be dialed"},
		{"unspecified prefix", func(c *Config) { c.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8")} }, "never be dialed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok()
			tt.mod(&cfg)
			p, err := New(cfg)
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				if p != nil {
					p.Close()
				}
				t.Fatalf("New = %v; want ErrInvalidConfig containing %q", err, tt.wantErr)
			}
		})
	}
	t.Run("mapped prefix converted", func(t *testing.T) {
		cfg := ok()
		cfg.AllowPrivate = []netip.Prefix{netip.MustParsePrefix("::ffff:10.1.2.3/120")}
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if want := netip.MustParsePrefix("10.1.2.0/24"); len(p.allowPrivate) != 1 || p.allowPrivate[0] != want {
			t.Errorf("allowPrivate = %v, want [%v]", p.allowPrivate, want)
		}
	})
}

// TestConnectTunnel: an allowed CONNECT to a loopback echo server (the
// name resolves to 127.0.0.1, which AllowPrivate permits) relays bytes
// both ways, including bytes the client pipelined behind the request,
// and produces one Allowed event with the pinned address and byte counts.
func TestConnectTunnel(t *testing.T) {
	echo := startEcho(t)
	dns := newDNS(map[string]string{"allowed.test": "127.0.0.1"})
	h := startProxy(t, Config{
		Allow:        []string{"allowed.test:" + echo.port()},
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Resolver:     dns.resolve,
	})
	c := h.dial()
	req := "CONNECT Allowed.Test.:" + echo.port() + " HTTP/1.1\r\nHost: evil.test\r\nProxy-Authorization: Basic c2VjcmV0\r\n\r\nearly+"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	r, err := readResponse(br)
	if err != nil || r.status != 200 {
		t.Fatalf("CONNECT answer %+v, %v; want 200", r, err)
	}
	if _, err := io.WriteString(c, "late"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read tunnel: %v", err)
	}
	if string(got) != "early+late" {
		t.Fatalf("echoed %q, want %q", got, "early+late")
	}
	ev := h.onlyEvent()
	want := Event{
		Server: "demo", Method: "CONNECT", Host: "allowed.test", Port: echo.port(),
		Addr: echo.addrPort(), Allowed: true, BytesUp: 10, BytesDown: 10,
	}
	if diff := cmp.Diff(want, ev, cmpopts.IgnoreFields(Event{}, "Duration"), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("event (-want +got):\n%s", diff)
	}
	if ev.Duration <= 0 {
		t.Errorf("Duration = %v, want > 0", ev.Duration)
	}
	if diff := cmp.Diff([]string{"allowed.test"}, dns.lookups()); diff != "" {
		t.Errorf("lookups (-want +got):\n%s", diff)
	}
	if strings.Contains(h.logs.String(), "c2VjcmV0") {
		t.Error("a request header reached the log")
	}
}

// TestAllowed covers what the allow-list admits; the fake dialer
// records the pinned address and connects to a loopback echo server.
func TestAllowed(t *testing.T) {
	echo := startEcho(t)
	dns := map[string]string{
		"a.example.com":      "8.8.8.8",
		"a.b.example.com":    "2001:4860:4860::8888",
		"api.example.com":    "8.8.4.4",
		"anything.test":      "1.1.1.1,1.0.0.1",
		"mapped.test":        "::ffff:8.8.8.8",
		"internal.test":      "10.1.2.3",
		"rebind-public.test": "8.8.8.8,8.8.8.8",
	}
	tests := []struct {
		name   string
		cfg    Config
		target string
		dialed string
		addr   string
	}{
		{"wildcard one label", Config{Wildcards: true, Allow: []string{"*.example.com:443"}}, "a.example.com:443", "tcp 8.8.8.8:443", "8.8.8.8:443"},
		{"wildcard two labels", Config{Wildcards: true, Allow: []string{"*.example.com:443"}}, "a.b.example.com:443", "tcp [2001:4860:4860::8888]:443", "[2001:4860:4860::8888]:443"},
		{"case and trailing dot", Config{Allow: []string{"API.example.com.:443"}}, "api.EXAMPLE.com.:443", "tcp 8.8.4.4:443", "8.8.4.4:443"},
		{"any host", Config{AnyHost: true}, "anything.test:8443", "tcp 1.1.1.1:8443", "1.1.1.1:8443"},
		{"mapped answer dialed as IPv4", Config{Allow: []string{"mapped.test:443"}}, "mapped.test:443", "tcp 8.8.8.8:443", "8.8.8.8:443"},
		{"duplicate answers", Config{Allow: []string{"rebind-public.test:443"}}, "rebind-public.test:443", "tcp 8.8.8.8:443", "8.8.8.8:443"},
		{"private via exact rule and AllowPrivate", Config{
			Allow: []string{"internal.test:5432"}, AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		}, "internal.test:5432", "tcp 10.1.2.3:5432", "10.1.2.3:5432"},
		{"documentation-range literal rule", Config{Allow: []string{"192.0.2.7:443"}}, "192.0.2.7:443", "tcp 192.0.2.7:443", "192.0.2.7:443"},
		{"IPv6 literal rule", Config{Allow: []string{"[2001:4860::1]:443"}}, "[2001:4860:0::1]:443", "tcp [2001:4860::1]:443", "[2001:4860::1]:443"},
		{"mapped literal matches IPv4 rule", Config{Allow: []string{"10.9.9.9:443"}}, "[::ffff:10.9.9.9]:443", "tcp 10.9.9.9:443", "10.9.9.9:443"},
		{"metadata literal listed explicitly", Config{Allow: []string{"169.254.169.254:80"}}, "169.254.169.254:80", "tcp 169.254.169.254:80", "169.254.169.254:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fd := &fakeDial{to: echo.addrPort()}
			d := newDNS(dns)
			tt.cfg.Resolver, tt.cfg.Dial = d.resolve, fd.dial
			h := startProxy(t, tt.cfg)
			if status := h.connectEcho(tt.target); status != 200 {
				t.Fatalf("CONNECT %s = %d, want 200", tt.target, status)
			}
			if diff := cmp.Diff([]string{tt.dialed}, fd.calls()); diff != "" {
				t.Errorf("dialed (-want +got):\n%s", diff)
			}
			ev := h.onlyEvent()
			if !ev.Allowed || ev.Reason != "" || ev.Addr.String() != tt.addr {
				t.Errorf("event = %+v; want allowed with Addr %s", ev, tt.addr)
			}
		})
	}
}

// TestRefused is the attack table: every request is refused with the
// right status, exactly one event with the right reason, no dial, and
// (for names refused by the allow-list or syntax) no DNS lookup.
func TestRefused(t *testing.T) {
	const secret = "c2VjcmV0LXRva2Vu"
	dns := map[string]string{
		"allowed.test":   "127.0.0.1",
		"rebind.test":    "8.8.8.8,127.0.0.1",
		"a.example.com":  "8.8.8.8,127.0.0.1",
		"b.example.com":  "10.0.0.5",
		"metadata.test":  "169.254.169.254",
		"metadata6.test": "fd00:ec2::254",
		"nat64.test":     "64:ff9b::a9fe:a9fe",
		"zero.test":      "0.0.0.0",
		"multicast.test": "224.0.0.251",
		"zoned.test":     "fe80::1%eth0",
		"empty.test":     "",
		"cgnat.test":     "100.64.0.1",
	}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		name    string
		cfg     Config
		req     string // request line and headers, without the final CRLF
		status  int
		reason  string
		host    string // Event.Host
		detail  string // substring of Event.Detail
		lookups int
		dials   int
	}{
		// Resolution and address checks.
		{"loopback without AllowPrivate", Config{Allow: []string{"allowed.test:443"}}, "CONNECT allowed.test:443 HTTP/1.1", 403, ReasonAddressForbidden, "allowed.test", "loopback address not in AllowPrivate", 1, 0},
		{"rebinding: public and loopback", Config{Allow: []string{"rebind.test:443"}}, "CONNECT rebind.test:443 HTTP/1.1", 403, ReasonAddressForbidden, "rebind.test", "127.0.0.1: loopback", 1, 0},
		{"rebinding under a wildcard with AllowPrivate", Config{Wildcards: true, Allow: []string{"*.example.com:443"}, AllowPrivate: loopback}, "CONNECT a.example.com:443 HTTP/1.1", 403, ReasonAddressForbidden, "a.example.com", "wildcard and any-host rules reach public addresses only", 1, 0},
		{"wildcard to private", Config{Wildcards: true, Allow: []string{"*.example.com:443"}, AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "CONNECT b.example.com:443 HTTP/1.1", 403, ReasonAddressForbidden, "b.example.com", "private network", 1, 0},
		{"metadata name with AnyHost", Config{AnyHost: true}, "CONNECT metadata.test:80 HTTP/1.1", 403, ReasonAddressForbidden, "metadata.test", "link-local", 1, 0},
		{"metadata name with AnyHost and AllowPrivate", Config{AnyHost: true, AllowPrivate: []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}}, "CONNECT metadata.test:80 HTTP/1.1", 403, ReasonAddressForbidden, "metadata.test", "link-local", 1, 0},
		{"metadata via NAT64", Config{AnyHost: true}, "CONNECT nat64.test:80 HTTP/1.1", 403, ReasonAddressForbidden, "nat64.test", "link-local", 1, 0},
		{"ULA metadata", Config{AnyHost: true}, "CONNECT metadata6.test:80 HTTP/1.1", 403, ReasonAddressForbidden, "metadata6.test", "private network", 1, 0},
		{"CGNAT", Config{Allow: []string{"cgnat.test:80"}}, "CONNECT cgnat.test:80 HTTP/1.1", 403, ReasonAddressForbidden, "cgnat.test", "CGNAT", 1, 0},
		{"unspecified even with AllowPrivate", Config{Allow: []string{"zero.test:80"}, AllowPrivate: loopback}, "CONNECT zero.test:80 HTTP/1.1", 403, ReasonAddressForbidden, "zero.test", "never allowed", 1, 0},
		{"multicast", Config{Allow: []string{"multicast.test:80"}}, "CONNECT multicast.test:80 HTTP/1.1", 403, ReasonAddressForbidden, "multicast.test", "never allowed", 1, 0},
		{"zoned answer", Config{Allow: []string{"zoned.test:80"}, AllowPrivate: []netip.Prefix{netip.MustParsePrefix("fe80::/10")}}, "CONNECT zoned.test:80 HTTP/1.1", 403, ReasonAddressForbidden, "zoned.test", "zoned", 1, 0},
		{"name does not resolve", Config{Allow: []string{"missing.test:443"}}, "CONNECT missing.test:443 HTTP/1.1", 502, ReasonResolveFailed, "missing.test", "no such host", 1, 0},
		{"name resolves to nothing", Config{Allow: []string{"empty.test:443"}}, "CONNECT empty.test:443 HTTP/1.1", 502, ReasonResolveFailed, "empty.test", "no addresses", 1, 0},
		{"dial fails", Config{Allow: []string{"8.8.8.8:443"}}, "CONNECT 8.8.8.8:443 HTTP/1.1", 502, ReasonDialFailed, "8.8.8.8", "connection refused", 0, 1},

		// Allow-list.
		{"unlisted host", Config{Allow: []string{"allowed.test:443"}}, "CONNECT evil.test:443 HTTP/1.1", 403, ReasonNotAllowed, "evil.test", "no allow rule for evil.test:443", 0, 0},
		{"empty allow-list", Config{}, "CONNECT allowed.test:443 HTTP/1.1", 403, ReasonNotAllowed, "allowed.test", "no allow rule", 0, 0},
		{"port mismatch", Config{Allow: []string{"allowed.test:443"}, AllowPrivate: loopback}, "CONNECT allowed.test:22 HTTP/1.1", 403, ReasonNotAllowed, "allowed.test", "allowed.test:22", 0, 0},
		{"wildcard excludes apex", Config{Wildcards: true, Allow: []string{"*.example.com:443"}}, "CONNECT example.com:443 HTTP/1.1", 403, ReasonNotAllowed, "example.com", "", 0, 0},
		{"wildcard excludes lookalike", Config{Wildcards: true, Allow: []string{"*.example.com:443"}}, "CONNECT evilexample.com:443 HTTP/1.1", 403, ReasonNotAllowed, "evilexample.com", "", 0, 0},
		{"wildcard suffix attack", Config{Wildcards: true, Allow: []string{"*.example.com:443"}}, "CONNECT a.example.com.evil.test:443 HTTP/1.1", 403, ReasonNotAllowed, "a.example.com.evil.test", "", 0, 0},
		{"loopback literal", Config{AnyHost: true, Allow: []string{"allowed.test:80"}}, "CONNECT 127.0.0.1:80 HTTP/1.1", 403, ReasonNotAllowed, "127.0.0.1", "address 127.0.0.1:80", 0, 0},
		{"IPv6 loopback literal", Config{AnyHost: true}, "CONNECT [::1]:80 HTTP/1.1", 403, ReasonNotAllowed, "::1", "", 0, 0},
		{"mapped loopback literal", Config{AnyHost: true}, "CONNECT [::ffff:127.0.0.1]:80 HTTP/1.1", 403, ReasonNotAllowed, "127.0.0.1", "", 0, 0},
		{"metadata literal with AnyHost", Config{AnyHost: true}, "CONNECT 169.254.169.254:80 HTTP/1.1", 403, ReasonNotAllowed, "169.254.169.254", "", 0, 0},
		{"public literal with AnyHost", Config{AnyHost: true}, "CONNECT 8.8.8.8:443 HTTP/1.1", 403, ReasonNotAllowed, "8.8.8.8", "", 0, 0},
		{"literal port mismatch", Config{Allow: []string{"127.0.0.1:80"}}, "CONNECT 127.0.0.1:81 HTTP/1.1", 403, ReasonNotAllowed, "127.0.0.1", "", 0, 0},
		{"name for a literal rule", Config{Allow: []string{"127.0.0.1:80"}}, "CONNECT localhost:80 HTTP/1.1", 403, ReasonNotAllowed, "localhost", "", 0, 0},
		{"absolute-form unlisted", Config{Allow: []string{"allowed.test:443"}}, "GET http://allowed.test/ HTTP/1.1", 403, ReasonNotAllowed, "allowed.test", "allowed.test:80", 0, 0},

		// Syntax: refused before any lookup.
		{"decimal IPv4", Config{AnyHost: true}, "CONNECT 2130706433:80 HTTP/1.1", 400, ReasonBadRequest, "", "non-standard notation", 0, 0},
		{"octal IPv4", Config{AnyHost: true}, "CONNECT 0177.0.0.1:80 HTTP/1.1", 400, ReasonBadRequest, "", "non-standard notation", 0, 0},
		{"hex IPv4", Config{AnyHost: true}, "CONNECT 0x7f.1:80 HTTP/1.1", 400, ReasonBadRequest, "", "non-standard notation", 0, 0},
		{"short IPv4", Config{AnyHost: true}, "CONNECT 127.1:80 HTTP/1.1", 400, ReasonBadRequest, "", "non-standard notation", 0, 0},
		{"decimal IPv4 in URL", Config{AnyHost: true}, "GET http://2130706433/ HTTP/1.1", 400, ReasonBadRequest, "", "non-standard notation", 0, 0},
		{"non-ASCII host", Config{AnyHost: true}, "CONNECT b\xc3\xbccher.test:443 HTTP/1.1", 400, ReasonBadRequest, "", "non-ASCII", 0, 0},
		{"userinfo", Config{AnyHost: true}, "CONNECT user:" + secret + "@allowed.test:443 HTTP/1.1", 400, ReasonBadRequest, "", "userinfo", 0, 0},
		{"userinfo in URL", Config{AnyHost: true}, "GET http://user:" + secret + "@allowed.test/ HTTP/1.1", 400, ReasonBadRequest, "", "userinfo", 0, 0},
		{"missing port", Config{AnyHost: true}, "CONNECT allowed.test HTTP/1.1", 400, ReasonBadRequest, "", "missing port", 0, 0},
		{"zoned literal", Config{AnyHost: true}, "CONNECT [fe80::1%25eth0]:443 HTTP/1.1", 400, ReasonBadRequest, "", "", 0, 0},
		{"origin-form", Config{AnyHost: true}, "GET /?token=" + secret + " HTTP/1.1\r\nHost: allowed.test", 400, ReasonBadRequest, "", "origin-form", 0, 0},
		{"https absolute-form", Config{AnyHost: true}, "GET https://allowed.test/ HTTP/1.1", 400, ReasonBadRequest, "", "scheme \"https\"", 0, 0},
		{"ftp absolute-form", Config{AnyHost: true}, "GET ftp://allowed.test/ HTTP/1.1", 400, ReasonBadRequest, "", "scheme \"ftp\"", 0, 0},
		{"CONNECT with a URL", Config{AnyHost: true}, "CONNECT http://allowed.test:443/ HTTP/1.1", 400, ReasonBadRequest, "", "not an authority", 0, 0},
		{"HTTP/2 preface", Config{AnyHost: true}, "PRI * HTTP/2.0\r\n\r\nSM", 400, ReasonBadRequest, "", "unsupported protocol", 0, 0},
		{"garbage", Config{AnyHost: true}, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, ReasonBadRequest, "", "malformed request", 0, 0},
		{"bad header line", Config{AnyHost: true}, "CONNECT allowed.test:443 HTTP/1.1\r\nX-Token " + secret, 400, ReasonBadRequest, "", "malformed", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDNS(dns)
			fd := &fakeDial{}
			tt.cfg.Resolver, tt.cfg.Dial = d.resolve, fd.dial
			h := startProxy(t, tt.cfg)
			raw := tt.req + "\r\nProxy-Authorization: Basic " + secret + "\r\n\r\n"
			r, _, _ := h.roundTrip(raw)
			if r.status != tt.status {
				t.Errorf("status = %d, want %d", r.status, tt.status)
			}
			if strings.Contains(r.headers+r.body, secret) || len(r.body) > 40 {
				t.Errorf("answer is not short and generic: %q %q", r.headers, r.body)
			}
			ev := h.onlyEvent()
			if ev.Allowed || ev.Reason != tt.reason || ev.Host != tt.host || ev.Server != "demo" || !strings.Contains(ev.Detail, tt.detail) {
				t.Errorf("event = %+v; want reason %s, host %q, detail containing %q", ev, tt.reason, tt.host, tt.detail)
			}
			if (tt.reason == ReasonDialFailed) != ev.Addr.IsValid() {
				t.Errorf("event Addr = %v; want it set only for DIAL_FAILED", ev.Addr)
			}
			if strings.Contains(ev.Detail, secret) || strings.Contains(h.logs.String(), secret) {
				t.Errorf("secret leaked: detail %q, logs %q", ev.Detail, h.logs.String())
			}
			if got := len(d.lookups()); got != tt.lookups {
				t.Errorf("%d DNS lookups %v, want %d", got, d.lookups(), tt.lookups)
			}
			if got := len(fd.calls()); got != tt.dials {
				t.Errorf("%d dials %v, want %d", got, fd.calls(), tt.dials)
			}
		})
	}
}

// TestDialTriesPinnedAddressesOnly: when the first address refuses, the
// next resolved address is tried — and only resolved addresses, at most
// maxDialAddrs.
func TestDialTriesPinnedAddressesOnly(t *testing.T) {
	echo := startEcho(t)
	d := newDNS(map[string]string{"multi.test": "8.8.8.1,8.8.8.2,8.8.8.3,8.8.8.4,8.8.8.5"})
	var (
		mu      sync.Mutex
		dialed  []string
		failAll atomic.Bool
	)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		if failAll.Load() || addr != "8.8.8.2:443" {
			return nil, errors.New("refused " + addr)
		}
		var nd net.Dialer
		return nd.DialContext(ctx, network, echo.addrPort().String())
	}
	h := startProxy(t, Config{Allow: []string{"multi.test:443"}, Resolver: d.resolve, Dial: dial})
	if status := h.connectEcho("multi.test:443"); status != 200 {
		t.Fatalf("status %d", status)
	}
	if ev := h.next(); !ev.Allowed || ev.Addr.String() != "8.8.8.2:443" {
		t.Errorf("event %+v; want allowed via 8.8.8.2:443", ev)
	}
	failAll.Store(true)
	mu.Lock()
	dialed = nil
	mu.Unlock()
	r, _, _ := h.roundTrip("CONNECT multi.test:443 HTTP/1.1\r\n\r\n")
	ev := h.next()
	if r.status != 502 || ev.Reason != ReasonDialFailed || ev.Addr.String() != "8.8.8.4:443" || !strings.Contains(ev.Detail, "refused 8.8.8.1:443") {
		t.Errorf("status %d, event %+v; want 502 DIAL_FAILED after 8.8.8.4", r.status, ev)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"8.8.8.1:443", "8.8.8.2:443", "8.8.8.3:443", "8.8.8.4:443"}, dialed); diff != "" {
		t.Errorf("dialed (-want +got):\n%s", diff)
	}
}

// TestDefaultDialerLiteralLoopback: an IP-literal rule for a loopback
// address permits exactly that address, with the default dialer.
func TestDefaultDialerLiteralLoopback(t *testing.T) {
	echo := startEcho(t)
	h := startProxy(t, Config{Allow: []string{echo.addrPort().String()}})
	if status := h.connectEcho(echo.addrPort().String()); status != 200 {
		t.Fatalf("CONNECT to a listed literal = %d, want 200", status)
	}
	if ev := h.onlyEvent(); !ev.Allowed || ev.Addr != echo.addrPort() {
		t.Errorf("event %+v", ev)
	}
}

func TestDialControl(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:80": true, "[2001:db8::1]:443": true, "8.8.8.8:53": true,
		"0.0.0.0:80": false, "[::]:80": false, "224.0.0.1:80": false, "255.255.255.255:80": false,
		"[fe80::1%eth0]:80": false, "example.com:80": false,
	} {
		if err := dialControl("tcp", addr, nil); (err == nil) != ok {
			t.Errorf("dialControl(%s) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestHeaderTooLarge(t *testing.T) {
	h := startProxy(t, Config{AnyHost: true})
	big := "CONNECT allowed.test:443 HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", MaxHeaderBytes+8192) + "\r\n\r\n"
	c := h.dial()
	go func() { _, _ = io.WriteString(c, big) }() // the proxy stops reading; the write may fail
	r, err := readResponse(bufio.NewReader(c))
	if err != nil || r.status != 431 {
		t.Fatalf("answer %+v, %v; want 431", r, err)
	}
	ev := h.onlyEvent()
	if ev.Reason != ReasonBadRequest || !strings.Contains(ev.Detail, "larger than 32768 bytes") {
		t.Errorf("event %+v", ev)
	}
	// Just under the limit is fine.
	h2 := startProxy(t, Config{})
	ok := "CONNECT allowed.test:443 HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", MaxHeaderBytes-100) + "\r\n\r\n"
	if r, _, _ := h2.roundTrip(ok); r.status != 403 {
		t.Errorf("32 KiB header: status %d, want 403 (read, then not allowed)", r.status)
	}
}

func TestReadHeaderTimeout(t *testing.T) {
	h := startProxy(t, Config{AnyHost: true, ReadHeaderTimeout: 100 * time.Millisecond})
	c := h.dial()
	if _, err := io.WriteString(c, "CONNECT allowed.te"); err != nil {
		t.Fatal(err)
	}
	r, err := readResponse(bufio.NewReader(c))
	if err != nil || r.status != 408 {
		t.Fatalf("answer %+v, %v; want 408", r, err)
	}
	if ev := h.onlyEvent(); ev.Reason != ReasonBadRequest || !strings.Contains(ev.Detail, "within 100ms") {
		t.Errorf("event %+v", ev)
	}
}

// TestSilentConnection: a connection that sends nothing and closes is
// not an attempt and produces no event.
func TestSilentConnection(t *testing.T) {
	h := startProxy(t, Config{AnyHost: true})
	c := h.dial()
	c.Close()
	// A later real attempt is still recorded.
	r, _, _ := h.roundTrip("CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n")
	if r.status != 403 {
		t.Errorf("status %d", r.status)
	}
	if evs := h.allEvents(); len(evs) != 1 || evs[0].Reason != ReasonNotAllowed {
		t.Errorf("events %+v; want only the CONNECT's", evs)
	}
}

func TestMaxConns(t *testing.T) {
	echo := startEcho(t)
	h := startProxy(t, Config{Allow: []string{echo.addrPort().String()}, MaxConns: 1})
	target := echo.addrPort().String()
	r, first, _ := h.roundTrip("CONNECT " + target + " HTTP/1.1\r\n\r\n")
	if r.status != 200 {
		t.Fatalf("first CONNECT %d", r.status)
	}
	r2, _, _ := h.roundTrip("CONNECT " + target + " HTTP/1.1\r\n\r\n")
	if r2.status != 503 {
		t.Fatalf("second CONNECT while the first is open = %d, want 503", r2.status)
	}
	if ev := h.next(); ev.Reason != ReasonTooMany || ev.Allowed || !strings.Contains(ev.Detail, "1 connections") {
		t.Errorf("event %+v; want TOO_MANY", ev)
	}
	first.Close()
	if ev := h.next(); !ev.Allowed {
		t.Errorf("event %+v; want the first tunnel's end", ev)
	}
	if status := h.connectEcho(target); status != 200 {
		t.Errorf("CONNECT after the first closed = %d, want 200", status)
	}
	if evs := h.allEvents(); len(evs) != 1 || !evs[0].Allowed {
		t.Errorf("events %+v", evs)
	}
}

// TestTooManyWithoutAnswer: past MaxConns lingering refusals, extra
// connections are closed without an answer but still produce an event.
func TestTooManyWithoutAnswer(t *testing.T) {
	p, err := New(Config{Server: "demo", Logger: slog.New(slog.DiscardHandler), OnEvent: func(Event) {}, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	var evs []Event
	p.cfg.OnEvent = func(ev Event) { evs = append(evs, ev) }
	p.active, p.refusing = 1, 1 // one served, one refusal lingering
	a, b := net.Pipe()
	defer b.Close()
	p.accept(a)
	p.wg.Wait()
	if len(evs) != 1 || evs[0].Reason != ReasonTooMany || !strings.Contains(evs[0].Detail, "without an answer") {
		t.Errorf("events %+v", evs)
	}
	if p.refusing != 1 || len(p.conns) != 0 {
		t.Errorf("refusing %d, conns %d after the refusal", p.refusing, len(p.conns))
	}
	p.active = 0
	p.Close()
}

func TestCloseEndsTunnels(t *testing.T) {
	echo := startEcho(t)
	h := startProxy(t, Config{Allow: []string{echo.addrPort().String()}})
	r, c, br := h.roundTrip("CONNECT " + echo.addrPort().String() + " HTTP/1.1\r\n\r\n")
	if r.status != 200 {
		t.Fatalf("CONNECT %d", r.status)
	}
	if _, err := io.WriteString(c, "x"); err != nil {
		t.Fatal(err)
	}
	if b, err := br.ReadByte(); err != nil || b != 'x' {
		t.Fatalf("echo: %q %v", b, err)
	}
	closed := make(chan struct{})
	go func() { h.p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a live tunnel")
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("tunnel still delivers after Close")
	}
	ev := h.next()
	if !ev.Allowed || ev.Detail != "proxy closed" || ev.BytesUp != 1 || ev.BytesDown != 1 {
		t.Errorf("event %+v; want allowed, proxy closed, 1/1 bytes", ev)
	}
	if err := h.p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := h.p.Listen(); !errors.Is(err, ErrClosed) {
		t.Errorf("Listen after Close: %v, want ErrClosed", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.p.Serve(ln); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close: %v, want ErrClosed", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("Serve after Close left its listener open")
	}
	if _, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
		t.Error("proxy still listening after Close")
	}
}

func TestIdleTimeout(t *testing.T) {
	echo := startEcho(t)
	h := startProxy(t, Config{Allow: []string{echo.addrPort().String()}, IdleTimeout: 150 * time.Millisecond})
	r, _, br := h.roundTrip("CONNECT " + echo.addrPort().String() + " HTTP/1.1\r\n\r\n")
	if r.status != 200 {
		t.Fatalf("CONNECT %d", r.status)
	}
	start := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("idle tunnel delivered a byte")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("idle tunnel closed after %v", el)
	}
	if ev := h.next(); !ev.Allowed || ev.Detail != "idle timeout" {
		t.Errorf("event %+v; want idle timeout", ev)
	}
}

// TestIdleTimeoutOneWayTraffic: a download that the client never
// answers is not idle.
func TestIdleTimeoutOneWayTraffic(t *testing.T) {
	talker := startServer(t, func(c net.Conn) {
		for range 12 {
			if _, err := c.Write([]byte("t")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	h := startProxy(t, Config{Allow: []string{talker.addrPort().String()}, IdleTimeout: 200 * time.Millisecond})
	r, _, br := h.roundTrip("CONNECT " + talker.addrPort().String() + " HTTP/1.1\r\n\r\n")
	if r.status != 200 {
		t.Fatalf("CONNECT %d", r.status)
	}
	got, err := io.ReadAll(br)
	if err != nil || string(got) != strings.Repeat("t", 12) {
		t.Errorf("read %q, %v; want 12 bytes over ~600ms despite a 200ms idle timeout", got, err)
	}
	if ev := h.next(); !ev.Allowed || ev.BytesDown != 12 {
		t.Errorf("event %+v", ev)
	}
}

// TestOnEventPanicRecovered: a panicking audit hook is logged, the
// connection is closed, and the proxy keeps serving.
func TestOnEventPanicRecovered(t *testing.T) {
	logs := &syncBuffer{}
	var n atomic.Int32
	p, err := New(Config{
		Server: "demo", Logger: slog.New(slog.NewTextHandler(logs, nil)),
		OnEvent: func(Event) { n.Add(1); panic("audit hook broke") },
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := p.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "CONNECT evil.test:443 HTTP/1.1\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || len(b) != 0 {
			t.Errorf("client got %q, %v; want a closed connection without an answer (audit failed)", b, err)
		}
	}
	p.Close()
	if n.Load() != 2 || strings.Count(logs.String(), "panicked") != 2 {
		t.Errorf("%d events, logs %q", n.Load(), logs.String())
	}
}

// flakyListener fails Accept with a transient error, then returns one
// connection, then reports itself closed.
type flakyListener struct {
	net.Listener
	calls int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.calls++
	switch l.calls {
	case 1:
		return nil, errors.New("accept: too many open files")
	case 2:
		return l.Listener.Accept()
	}
	return nil, net.ErrClosed
}

func TestServeAcceptErrors(t *testing.T) {
	logs := &syncBuffer{}
	events := make(chan Event, 4)
	p, err := New(Config{Server: "demo", Logger: slog.New(slog.NewTextHandler(logs, nil)), OnEvent: func(ev Event) { events <- ev }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "CONNECT evil.test:443 HTTP/1.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	err = p.Serve(&flakyListener{Listener: ln})
	if !errors.Is(err, net.ErrClosed) || errors.Is(err, ErrClosed) {
		t.Errorf("Serve = %v; want the listener's net.ErrClosed", err)
	}
	if !strings.Contains(logs.String(), "too many open files") {
		t.Errorf("accept error not logged: %q", logs.String())
	}
	if ev := <-events; ev.Reason != ReasonNotAllowed {
		t.Errorf("event %+v", ev)
	}
}

// TestServeBackoffStopsOnClose: a Serve loop waiting out an accept error
// returns ErrClosed as soon as the proxy is closed.
func TestServeBackoffStopsOnClose(t *testing.T) {
	p, err := New(Config{Server: "demo", Logger: slog.New(slog.DiscardHandler), OnEvent: func(Event) {}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln, failed: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- p.Serve(fl) }()
	<-fl.failed
	p.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve = %v, want ErrClosed", err)
	}
}

// failingListener always fails Accept with a transient error.
type failingListener struct {
	net.Listener
	failed chan struct{}
	once   atomic.Bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.once.CompareAndSwap(false, true) {
		close(l.failed)
	}
	return nil, errors.New("transient")
}
