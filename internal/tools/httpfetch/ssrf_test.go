package httpfetch_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

// TestLegacyIPv4NotationsRefused: hosts that browsers and inet_aton read
// as IPv4 addresses are refused before any resolver sees them, whatever
// the allow-list says.
func TestLegacyIPv4NotationsRefused(t *testing.T) {
	res := newResolver(nil)
	d := &recordingDialer{fail: true}
	tl := newTool(t, httpfetch.Config{
		Allow:        []string{"*.example.test", "127.0.0.1"},
		AllowPrivate: []string{"127.0.0.0/8"}, // even with loopback exempted
		Resolver:     res, Dialer: d,
	})
	for _, u := range []string{
		"http://2130706433/",           // decimal
		"http://017700000001/",         // octal, one part
		"http://0177.0.0.1/",           // octal
		"http://0177.0000.0000.0001/",  // octal, padded
		"http://0x7f.1/",               // hex, short
		"http://0x7f000001/",           // hex, one part
		"http://0X7F.0.0.1/",           // hex, upper case
		"http://127.1/",                // short form
		"http://127.0.1/",              // short form
		"http://0/",                    // 0.0.0.0
		"http://1.2.3.4.5/",            // too many parts
		"http://127.000.000.001/",      // leading zeros
		"http://a.example.test.0x10/",  // ends in a number
		"http://a.example.test.123/",   // ends in a number
		"http://2130706433.:8080/",     // trailing dot
		"http://0x/",                   // "0x" alone is 0 for WHATWG
		"http://00000000000000000001/", // long octal
	} {
		t.Run(u, func(t *testing.T) {
			_, err := fetchURL(t, tl, u)
			wantRefused(t, err, reason.PermissionDenied, "non-standard notation")
		})
	}
	if got := res.lookups(); len(got) != 0 {
		t.Errorf("resolver was asked for %q", got)
	}
	if got := d.addresses(); len(got) != 0 {
		t.Errorf("dialed %q", got)
	}
}

// TestForbiddenLiteralAddresses: literal addresses of every forbidden
// class are refused even when the allow-list names them, and nothing is
// resolved or dialed.
func TestForbiddenLiteralAddresses(t *testing.T) {
	cases := []struct {
		url, allow string
		class      httpfetch.AddrClass
	}{
		{"http://127.0.0.1/", "127.0.0.1", httpfetch.Loopback},
		{"http://127.0.0.1.:80/", "127.0.0.1", httpfetch.Loopback},
		{"http://127.255.255.254/", "127.255.255.254", httpfetch.Loopback},
		{"http://[::1]/", "[::1]", httpfetch.Loopback},
		{"http://[0:0:0:0:0:0:0:1]/", "::1", httpfetch.Loopback},
		{"http://[::ffff:127.0.0.1]/", "127.0.0.1", httpfetch.Loopback},
		{"http://[::ffff:7f00:1]/", "127.0.0.1", httpfetch.Loopback},
		{"http://[::127.0.0.1]/", "::127.0.0.1", httpfetch.Loopback},         // IPv4-compatible
		{"http://[64:ff9b::7f00:1]/", "64:ff9b::7f00:1", httpfetch.Loopback}, // NAT64 of 127.0.0.1
		{"http://[2002:7f00:1::1]/", "2002:7f00:1::1", httpfetch.Loopback},   // 6to4 of 127.0.0.1
		{"http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe", httpfetch.LinkLocal},
		{"http://0.0.0.0/", "0.0.0.0", httpfetch.Unspecified},
		{"http://0.0.0.0:8080/", "0.0.0.0:8080", httpfetch.Unspecified},
		{"http://[::]/", "[::]", httpfetch.Unspecified},
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254", httpfetch.LinkLocal},
		{"http://[::ffff:169.254.169.254]/", "169.254.169.254", httpfetch.LinkLocal},
		{"http://[fe80::1]/", "fe80::1", httpfetch.LinkLocal},
		{"http://[fe80::1%25eth0]/", "fe80::1", httpfetch.LinkLocal},
		{"http://10.0.0.1/", "10.0.0.1", httpfetch.Private},
		{"http://172.16.0.1/", "172.16.0.1", httpfetch.Private},
		{"http://172.31.255.255/", "172.31.255.255", httpfetch.Private},
		{"http://192.168.1.1/", "192.168.1.1", httpfetch.Private},
		{"http://[fd00::1]/", "fd00::1", httpfetch.Private},
		{"http://[fc00::1]/", "fc00::1", httpfetch.Private},
		{"http://[fd00:ec2::254]/", "fd00:ec2::254", httpfetch.Private}, // AWS IMDS over IPv6
		{"http://100.64.0.1/", "100.64.0.1", httpfetch.SharedCGNAT},
		{"http://100.127.255.254/", "100.127.255.254", httpfetch.SharedCGNAT},
		{"http://224.0.0.1/", "224.0.0.1", httpfetch.Multicast},
		{"http://[ff02::1]/", "ff02::1", httpfetch.Multicast},
		{"http://255.255.255.255/", "255.255.255.255", httpfetch.Broadcast},
		{"http://240.0.0.1/", "240.0.0.1", httpfetch.Reserved},
		{"http://192.0.0.170/", "192.0.0.170", httpfetch.Reserved},
		{"http://192.0.2.1/", "192.0.2.1", httpfetch.Documentation},
		{"http://198.51.100.7/", "198.51.100.7", httpfetch.Documentation},
		{"http://203.0.113.9/", "203.0.113.9", httpfetch.Documentation},
		{"http://[2001:db8::1]/", "2001:db8::1", httpfetch.Documentation},
		{"http://198.18.0.1/", "198.18.0.1", httpfetch.Benchmarking},
		{"http://[2001::1]/", "2001::1", httpfetch.Reserved}, // Teredo
		{"http://[100::1]/", "100::1", httpfetch.Reserved},
		{"http://[4000::1]/", "4000::1", httpfetch.Reserved}, // outside 2000::/3
	}
	res := newResolver(nil)
	d := &recordingDialer{fail: true}
	var allow []string
	for _, c := range cases {
		allow = append(allow, c.allow)
	}
	tl := newTool(t, httpfetch.Config{Allow: allow, Resolver: res, Dialer: d})
	empty := newTool(t, httpfetch.Config{Resolver: res, Dialer: d})
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			_, err := fetchURL(t, tl, c.url)
			wantRefused(t, err, reason.PermissionDenied, "address not allowed: "+string(c.class))
			_, err = fetchURL(t, empty, c.url)
			if codeOf(err) != reason.PermissionDenied {
				t.Fatalf("with an empty allow-list: %v", err)
			}
		})
	}
	if got := res.lookups(); len(got) != 0 {
		t.Errorf("resolver was asked for %q", got)
	}
	if got := d.addresses(); len(got) != 0 {
		t.Errorf("dialed %q", got)
	}
}

// TestAllowPrivateCannotExemptEverything: AllowPrivate exempts what its
// prefixes contain and nothing else; unspecified, multicast and broadcast
// stay refused.
func TestAllowPrivateCannotExemptEverything(t *testing.T) {
	d := &recordingDialer{fail: true}
	tl := newTool(t, httpfetch.Config{
		Allow:        []string{"0.0.0.0", "224.0.0.1", "255.255.255.255", "10.1.2.3", "10.2.0.1", "[::ffff:10.1.2.3]:8080"},
		AllowPrivate: []string{"0.0.0.0/1", "128.0.0.0/1", "10.1.0.0/16"},
		Resolver:     newResolver(nil), Dialer: d,
	})
	for _, c := range []struct {
		url  string
		code reason.Code
		msg  string
	}{
		{"http://0.0.0.0/", reason.PermissionDenied, "unspecified"},
		{"http://224.0.0.1/", reason.PermissionDenied, "multicast"},
		{"http://255.255.255.255/", reason.PermissionDenied, "broadcast"},
		{"http://10.1.2.3/", reason.ToolFailed, "connection failed"}, // exempted: reaches the dialer
		{"http://[::ffff:10.1.2.3]:8080/", reason.ToolFailed, "connection failed"},
	} {
		_, err := fetchURL(t, tl, c.url)
		wantRefused(t, err, c.code, c.msg)
	}
	if diff := cmp.Diff([]string{"10.1.2.3:80", "10.1.2.3:8080"}, d.addresses()); diff != "" {
		t.Errorf("dialed (-want +got):\n%s", diff)
	}
}

// TestNamesResolvingToForbiddenAddresses: allow-listed names whose
// addresses are forbidden are refused after the one lookup; a name with
// one good and one bad address is refused, not filtered.
func TestNamesResolvingToForbiddenAddresses(t *testing.T) {
	res := newResolver(map[string]string{
		"internal.test": "127.0.0.1",
		"localhost":     "127.0.0.1,::1",
		"meta.test":     "169.254.169.254",
		"mixed.test":    publicIP.String() + ",10.0.0.1",
		"mapped.test":   "::ffff:127.0.0.1",
		"ula.test":      "fd00::1",
		"cgnat.test":    "100.64.0.1",
		"zero.test":     "0.0.0.0",
		"zoned.test":    "fe80::1%eth0",
		"nat64.test":    "64:ff9b::a00:1",
	})
	d := &recordingDialer{fail: true}
	tl := newTool(t, httpfetch.Config{
		Allow: []string{"internal.test", "localhost", "meta.test", "mixed.test", "mapped.test", "ula.test",
			"cgnat.test", "zero.test", "zoned.test", "nat64.test"},
		Resolver: res, Dialer: d,
	})
	for host, class := range map[string]httpfetch.AddrClass{
		"internal.test": httpfetch.Loopback,
		"localhost":     httpfetch.Loopback,
		"LocalHost.":    httpfetch.Loopback,
		"meta.test":     httpfetch.LinkLocal,
		"mixed.test":    httpfetch.Private,
		"mapped.test":   httpfetch.Loopback,
		"ula.test":      httpfetch.Private,
		"cgnat.test":    httpfetch.SharedCGNAT,
		"zero.test":     httpfetch.Unspecified,
		"zoned.test":    httpfetch.LinkLocal,
		"nat64.test":    httpfetch.Private,
	} {
		t.Run(host, func(t *testing.T) {
			_, err := fetchURL(t, tl, "http://"+host+"/")
			wantRefused(t, err, reason.PermissionDenied, "address not allowed: "+string(class))
		})
	}
	if got := d.addresses(); len(got) != 0 {
		t.Errorf("dialed %q", got)
	}
}

// TestDNSRebindingPinned: the name is resolved once; the connection goes
// to that address although a second lookup would have answered loopback.
func TestDNSRebindingPinned(t *testing.T) {
	s := newServer(t)
	res := &fakeResolver{answers: map[string][][]netip.Addr{
		"rebind.test": {{publicIP}, {netip.MustParseAddr("127.0.0.1")}},
	}}
	d := &recordingDialer{to: s.Listener.Addr().String()}
	tl := newTool(t, httpfetch.Config{Allow: []string{"rebind.test"}, Resolver: res, Dialer: d})
	r, err := fetchURL(t, tl, "http://rebind.test/echo")
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if e := decodeEcho(t, r); e.Host != "rebind.test" {
		t.Errorf("Host = %q; want rebind.test", e.Host)
	}
	if diff := cmp.Diff([]string{"rebind.test"}, res.lookups()); diff != "" {
		t.Errorf("lookups (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{publicIP.String() + ":80"}, d.addresses()); diff != "" {
		t.Errorf("dialed (-want +got):\n%s", diff)
	}
	if !strings.Contains(r.Detail, publicIP.String()+":80") {
		t.Errorf("audit detail %q does not name the dialed address", r.Detail)
	}
	// A second call resolves again and now gets loopback: refused, and
	// still no connection to it.
	_, err = fetchURL(t, tl, "http://rebind.test/echo")
	wantRefused(t, err, reason.PermissionDenied, "address not allowed: loopback")
	if got := d.addresses(); len(got) != 1 {
		t.Errorf("dialed %q after the refusal", got)
	}
}

// TestSchemesAndMalformedURLs: only absolute http and https URLs with a
// plain host are fetched.
func TestSchemesAndMalformedURLs(t *testing.T) {
	res := newResolver(nil)
	d := &recordingDialer{fail: true}
	tl := newTool(t, httpfetch.Config{Allow: []string{"*.example.test", "evil.test", "allowed.test"}, Resolver: res, Dialer: d})
	for _, c := range []struct {
		url  string
		code reason.Code
		msg  string
	}{
		{"file:///etc/passwd", reason.PermissionDenied, "scheme not allowed"},
		{"file://localhost/etc/passwd", reason.PermissionDenied, "scheme not allowed"},
		{"gopher://a.example.test:70/_GET", reason.PermissionDenied, "scheme not allowed"},
		{"ftp://a.example.test/", reason.PermissionDenied, "scheme not allowed"},
		{"data:text/plain,hello", reason.PermissionDenied, "scheme not allowed"},
		{"ws://a.example.test/", reason.PermissionDenied, "scheme not allowed"},
		{"wss://a.example.test/", reason.PermissionDenied, "scheme not allowed"},
		{"dict://a.example.test:11211/stats", reason.PermissionDenied, "scheme not allowed"},
		{"javascript:alert(1)", reason.PermissionDenied, "scheme not allowed"},
		{"jar:http://a.example.test/x!/", reason.PermissionDenied, "scheme not allowed"},
		{"http://allowed.test@evil.test/", reason.PermissionDenied, "credentials in the URL"},
		{"http://evil.test@allowed.test/", reason.PermissionDenied, "credentials in the URL"},
		{"http://user:pass@a.example.test/", reason.PermissionDenied, "credentials in the URL"},
		{"http://@a.example.test/", reason.PermissionDenied, "credentials in the URL"},
		{"http://a.example.test:80@127.0.0.1/", reason.PermissionDenied, "credentials in the URL"},
		{"", reason.InvalidArguments, "url is required"},
		{"a.example.test/x", reason.InvalidArguments, "absolute"},
		{"//a.example.test/x", reason.InvalidArguments, "absolute"},
		{"http:/a.example.test", reason.InvalidArguments, "no host"},
		{"http:a.example.test", reason.InvalidArguments, "no host"},
		{"http://", reason.InvalidArguments, "no host"},
		{"http://a.example.test:0/", reason.InvalidArguments, "invalid port"},
		{"http://a.example.test:99999/", reason.InvalidArguments, "invalid port"},
		{"http://a.example.test:8o/", reason.InvalidArguments, "malformed URL"},
		{"http://[1.2.3.4]/", reason.InvalidArguments, "malformed URL"},
		{"http://a b.example.test/", reason.InvalidArguments, "malformed URL"},
		{"http://a.example.test\\@evil.test/", reason.InvalidArguments, "malformed URL"},
		{"http://%61.example.test/", reason.InvalidArguments, "malformed URL"},
		{"http://éxample.test/", reason.InvalidArguments, "invalid host name"},
		{"http://a..example.test/", reason.InvalidArguments, "invalid host name"},
		{"http://a.example.test../", reason.InvalidArguments, "invalid host name"},
		{"http://a!.example.test/", reason.InvalidArguments, "invalid host name"},
		{"http://a$.example.test/", reason.InvalidArguments, "invalid host name"},
		{"http://" + strings.Repeat("a", 8200) + ".example.test/", reason.InvalidArguments, "longer than"},
	} {
		t.Run(c.url[:min(len(c.url), 60)], func(t *testing.T) {
			_, err := fetchURL(t, tl, c.url)
			wantRefused(t, err, c.code, c.msg)
		})
	}
	if got := res.lookups(); len(got) != 0 {
		t.Errorf("resolver was asked for %q", got)
	}
	if got := d.addresses(); len(got) != 0 {
		t.Errorf("dialed %q", got)
	}
}
