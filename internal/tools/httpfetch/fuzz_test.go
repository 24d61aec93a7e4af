package httpfetch_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

func TestClassify(t *testing.T) {
	for s, want := range map[string]httpfetch.AddrClass{
		"93.184.215.14":            httpfetch.Public,
		"8.8.8.8":                  httpfetch.Public,
		"1.1.1.1":                  httpfetch.Public,
		"100.63.255.255":           httpfetch.Public,
		"100.128.0.0":              httpfetch.Public,
		"172.15.255.255":           httpfetch.Public,
		"172.32.0.0":               httpfetch.Public,
		"169.253.255.255":          httpfetch.Public,
		"223.255.255.255":          httpfetch.Public,
		"2606:4700:4700::1111":     httpfetch.Public,
		"::ffff:8.8.8.8":           httpfetch.Public,
		"64:ff9b::808:808":         httpfetch.Public, // NAT64 of 8.8.8.8
		"0.0.0.0":                  httpfetch.Unspecified,
		"0.1.2.3":                  httpfetch.Unspecified,
		"::":                       httpfetch.Unspecified,
		"127.0.0.1":                httpfetch.Loopback,
		"::1":                      httpfetch.Loopback,
		"::ffff:127.0.0.1":         httpfetch.Loopback,
		"::127.0.0.1":              httpfetch.Loopback,
		"::8.8.8.8":                httpfetch.Reserved, // IPv4-compatible, deprecated
		"2002:808:808::1":          httpfetch.Reserved, // 6to4 of a public address
		"2002:a00:1::1":            httpfetch.Private,  // 6to4 of 10.0.0.1
		"64:ff9b::a00:1":           httpfetch.Private,  // NAT64 of 10.0.0.1
		"64:ff9b:1::1":             httpfetch.Private,  // local-use NAT64
		"2001:0:4136:e378::1":      httpfetch.Reserved, // Teredo
		"10.255.255.255":           httpfetch.Private,
		"fd12:3456::1":             httpfetch.Private,
		"fec0::1":                  httpfetch.Private,
		"169.254.169.254":          httpfetch.LinkLocal,
		"fe80::1":                  httpfetch.LinkLocal,
		"fe80::1%eth0":             httpfetch.LinkLocal,
		"2606:4700:4700::1111%eth": httpfetch.Reserved, // zoned public
		"100.64.0.0":               httpfetch.SharedCGNAT,
		"239.255.255.250":          httpfetch.Multicast,
		"ff05::2":                  httpfetch.Multicast,
		"255.255.255.255":          httpfetch.Broadcast,
		"255.255.255.254":          httpfetch.Reserved,
		"192.0.2.255":              httpfetch.Documentation,
		"3fff::1":                  httpfetch.Documentation,
		"198.19.255.255":           httpfetch.Benchmarking,
		"192.88.99.1":              httpfetch.Reserved,
		"::2":                      httpfetch.Unspecified, // ::0.0.0.2
		"8000::1":                  httpfetch.Reserved,
		"1::1":                     httpfetch.Reserved,
	} {
		if got := httpfetch.Classify(netip.MustParseAddr(s)); got != want {
			t.Errorf("Classify(%s) = %q; want %q", s, got, want)
		}
	}
	if got := httpfetch.Classify(netip.Addr{}); got != httpfetch.Reserved {
		t.Errorf("Classify(zero) = %q", got)
	}
}

// FuzzClassify: whatever Classify calls public, the standard library does
// not call loopback, private, link-local, multicast or unspecified, for
// the address and for any IPv4 address embedded in it.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:c0a8:1::", "fe80::1", "8.8.8.8", "2606:4700::1"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:])
	}
	nat64 := netip.MustParsePrefix("64:ff9b::/96")
	f.Fuzz(func(t *testing.T, b []byte) {
		var a netip.Addr
		switch len(b) {
		case 4:
			a = netip.AddrFrom4([4]byte(b))
		case 16:
			a = netip.AddrFrom16([16]byte(b))
		default:
			return
		}
		if httpfetch.Classify(a) != httpfetch.Public {
			return
		}
		check := []netip.Addr{a, a.Unmap()}
		if a.Is4In6() || nat64.Contains(a) {
			check = append(check, netip.AddrFrom4([4]byte(b[12:16])))
		}
		for _, x := range check {
			if x.IsLoopback() || x.IsPrivate() || x.IsLinkLocalUnicast() || x.IsLinkLocalMulticast() ||
				x.IsInterfaceLocalMulticast() || x.IsMulticast() || x.IsUnspecified() {
				t.Fatalf("Classify(%s) = public, but %s is not", a, x)
			}
		}
	})
}

// FuzzURL: for any url argument, the resolver only ever sees a plain DNS
// name (never something that reads as an IP address), and the dialer only
// ever sees public addresses.
func FuzzURL(f *testing.F) {
	for _, s := range []string{
		"http://a.test/", "http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://[::ffff:127.0.0.1]/",
		"http://in.test/", "http://in.a.test/", "http://a.test@in.test/", "https://x.a.test:8080/p?q#f", "http://169.254.169.254/",
		"http://93.184.215.14/", "http://[64:ff9b::7f00:1]/", "http://A.TEST./", "http://a.test:80:80/",
		"gopher://a.test/", "http://[fe80::1%25eth0]/", "http://0177.0.0.1./",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		res := &checkingResolver{t: t}
		d := &recordingDialer{fail: true}
		tl, err := httpfetch.New(httpfetch.Config{
			Allow:    []string{"*.a.test", "*.a.test:8080", "a.test", "in.test", "93.184.215.14", "[2606:4700::1]"},
			Resolver: res, Dialer: d, Timeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(map[string]string{"url": u})
		tl.Call(context.Background(), raw)
		for _, a := range d.addresses() {
			ap, err := netip.ParseAddrPort(a)
			if err != nil || httpfetch.Classify(ap.Addr()) != httpfetch.Public {
				t.Fatalf("url %q: dialed %q", u, a)
			}
		}
	})
}

// checkingResolver fails the test for any host that is not a plain
// lower-case DNS name whose last label is not numeric; names starting
// with "in" resolve to loopback, others to a public address.
type checkingResolver struct{ t *testing.T }

func (r *checkingResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if _, err := netip.ParseAddr(host); err == nil {
		r.t.Fatalf("resolver asked for IP literal %q", host)
	}
	labels := strings.Split(host, ".")
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" || strings.HasPrefix(last, "0x") {
		r.t.Fatalf("resolver asked for numeric-looking host %q", host)
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			r.t.Fatalf("resolver asked for %q", host)
		}
	}
	if strings.HasPrefix(host, "in") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return []netip.Addr{publicIP}, nil
}
