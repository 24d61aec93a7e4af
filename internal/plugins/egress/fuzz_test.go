package egress

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/hostname"
)

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"api.example.com:443", "*.example.com:443", "[2001:db8::1]:443", "127.0.0.1:80",
		"2130706433:80", "0x7f.1:80", "*.*.x.y:1", "[::ffff:1.2.3.4]:9", "a:*", "[fe80::1%eth0]:1",
		"*.", "*:1", "[", "]:1", ":", "Ａ.example:443", "a..b:1", "*.com.:443",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, wildcards bool) {
		r, err := ParseRule(s, wildcards)
		if err != nil {
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("error %v does not wrap ErrInvalidRule", err)
			}
			return
		}
		if r.port == 0 || r.host == "" || !printableASCII(r.host) || strings.ToLower(r.host) != r.host {
			t.Fatalf("ParseRule(%q) = %+v: not normalised", s, r)
		}
		if r.wildcard && !wildcards {
			t.Fatalf("ParseRule(%q, false) produced a wildcard", s)
		}
		if r.ip.IsValid() && (r.ip.String() != r.host || r.ip.Is4In6() || neverDialable(r.ip)) {
			t.Fatalf("ParseRule(%q) = %+v: bad literal", s, r)
		}
		again, err := ParseRule(r.String(), wildcards)
		if err != nil || again != r {
			t.Fatalf("round trip %q -> %q: %+v, %v", s, r.String(), again, err)
		}
	})
}

// errUserinfo is parseAuthority's fixed message for "user@host": the
// userinfo, which may hold a password, is never quoted.
const errUserinfo = "userinfo (user@host) is not allowed: not an authority (host:port)"

func FuzzRequestTarget(f *testing.F) {
	for _, s := range []string{
		"example.com:443", "[::1]:80", "2130706433:80", "http://a.example/x?y", "HTTP://A:1", "https://x/",
		"http://u:p@h/", "http://[::ffff:127.0.0.1]/", "http://h//x", "/", "*", "0177.0.0.1:80",
	} {
		f.Add(s)
	}
	check := func(t *testing.T, in string, tg target) {
		if tg.port == 0 || tg.host == "" || strings.ToLower(tg.host) != tg.host || !printableASCII(tg.host) {
			t.Fatalf("%q -> %+v: not normalised", in, tg)
		}
		if tg.ip.IsValid() {
			if tg.ip.String() != tg.host || tg.ip.Is4In6() || tg.ip.Zone() != "" {
				t.Fatalf("%q -> %+v: bad literal", in, tg)
			}
		} else if !hostname.ValidName(tg.host) {
			t.Fatalf("%q -> %+v: numeric or invalid name", in, tg)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		if tg, err := parseAuthority(s, 0); err == nil {
			check(t, s, tg)
		}
		if tg, path, err := parseAbsolute(s); err == nil {
			check(t, s, tg)
			if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || !printableASCII(path) {
				t.Fatalf("%q -> path %q", s, path)
			}
		} else if strings.Contains(err.Error(), "userinfo") && err.Error() != errUserinfo {
			t.Fatalf("error %q may echo userinfo", err)
		}
	})
}

// FuzzRequest feeds arbitrary bytes to a connection handler: it must
// never panic, answer at most once with an HTTP/1.1 status line, and
// emit at most one event, never an allowed one (every dial fails).
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		"CONNECT a.example.com:443 HTTP/1.1\r\n\r\n",
		"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://a.example.com/ HTTP/1.1\r\nHost: evil\r\n\r\n",
		"POST http://a.example.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"\x16\x03\x01\x00",
		"CONNECT [::1]:80 HTTP/1.1\r\n\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var events []Event
		p, err := New(Config{
			Server: "fuzz", Logger: slog.New(slog.DiscardHandler), OnEvent: func(ev Event) { events = append(events, ev) },
			Wildcards: true, Allow: []string{"*.example.com:443", "a.example.com:80", "127.0.0.1:80"},
			AnyHost: true, ReadHeaderTimeout: 20 * time.Millisecond,
			Resolver: func(context.Context, string) ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr("8.8.8.8")}, nil
			},
			Dial: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no network") },
		})
		if err != nil {
			t.Fatal(err)
		}
		client, srv := net.Pipe()
		p.accept(srv)
		go func() { _, _ = client.Write(data) }()
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, _ := io.ReadAll(client)
		client.Close()
		p.Close()
		if len(out) > 0 && (!strings.HasPrefix(string(out), "HTTP/1.1 ") || strings.Count(string(out), "HTTP/1.1 ") != 1) {
			t.Fatalf("answer %q", out)
		}
		if len(events) > 1 || len(events) == 1 && events[0].Allowed {
			t.Fatalf("events %+v", events)
		}
	})
}
