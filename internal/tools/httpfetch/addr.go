package httpfetch

import (
	"fmt"
	"net/netip"
)

// AddrClass names the kind of address an IP is for the egress rules. The
// empty class, Public, is a global unicast address that may be dialed;
// every other class is refused unless Config.AllowPrivate lists a prefix
// containing the address (Unspecified, Multicast and Broadcast can never
// be exempted).
type AddrClass string

// Address classes. The values appear in client messages ("address not
// allowed: private network").
const (
	Public        AddrClass = ""
	Unspecified   AddrClass = "unspecified"                  // 0.0.0.0/8 (RFC 1122 "this network"), ::
	Loopback      AddrClass = "loopback"                     // 127/8, ::1
	Private       AddrClass = "private network"              // RFC 1918, fc00::/7 (RFC 4193), fec0::/10, 64:ff9b:1::/48
	LinkLocal     AddrClass = "link-local"                   // 169.254/16 (cloud metadata), fe80::/10
	SharedCGNAT   AddrClass = "shared address space (CGNAT)" // 100.64/10 (RFC 6598)
	Multicast     AddrClass = "multicast"                    // 224/4, ff00::/8
	Broadcast     AddrClass = "broadcast"                    // 255.255.255.255
	Documentation AddrClass = "documentation"                // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
	Benchmarking  AddrClass = "benchmarking"                 // 198.18/15 (RFC 2544)
	Reserved      AddrClass = "reserved"                     // 240/4, 192.0.0/24, 192.88.99/24, IPv6 outside 2000::/3, 6to4, Teredo, ...
)

type prefixClass struct {
	p netip.Prefix
	c AddrClass
}

// v4Classes is the IPv4 special-purpose address registry (RFC 6890 and
// its updates), first match wins.
var v4Classes = []prefixClass{
	{netip.MustParsePrefix("0.0.0.0/8"), Unspecified},
	{netip.MustParsePrefix("10.0.0.0/8"), Private},
	{netip.MustParsePrefix("100.64.0.0/10"), SharedCGNAT},
	{netip.MustParsePrefix("127.0.0.0/8"), Loopback},
	{netip.MustParsePrefix("169.254.0.0/16"), LinkLocal},
	{netip.MustParsePrefix("172.16.0.0/12"), Private},
	{netip.MustParsePrefix("192.0.0.0/24"), Reserved}, // IETF protocol assignments (incl. 192.0.0.170 NAT64 discovery)
	{netip.MustParsePrefix("192.0.2.0/24"), Documentation},
	{netip.MustParsePrefix("192.88.99.0/24"), Reserved}, // 6to4 relay anycast (RFC 7526, deprecated)
	{netip.MustParsePrefix("192.168.0.0/16"), Private},
	{netip.MustParsePrefix("198.18.0.0/15"), Benchmarking},
	{netip.MustParsePrefix("198.51.100.0/24"), Documentation},
	{netip.MustParsePrefix("203.0.113.0/24"), Documentation},
	{netip.MustParsePrefix("224.0.0.0/4"), Multicast},
	{netip.MustParsePrefix("255.255.255.255/32"), Broadcast},
	{netip.MustParsePrefix("240.0.0.0/4"), Reserved},
}

// v6Classes is the IPv6 special-purpose registry, first match wins. The
// prefixes that embed an IPv4 address (::/96, ::ffff:0:0/96, 64:ff9b::/96,
// 2002::/16) are handled in Classify before this list.
var v6Classes = []prefixClass{
	{netip.MustParsePrefix("64:ff9b:1::/48"), Private}, // local-use NAT64 (RFC 8215)
	{netip.MustParsePrefix("100::/64"), Reserved},      // discard-only (RFC 6666)
	{netip.MustParsePrefix("2001::/32"), Reserved},     // Teredo: a relay delivers to an embedded IPv4 address
	{netip.MustParsePrefix("2001::/23"), Reserved},     // IETF protocol assignments
	{netip.MustParsePrefix("2001:db8::/32"), Documentation},
	{netip.MustParsePrefix("3fff::/20"), Documentation}, // RFC 9637
	{netip.MustParsePrefix("fc00::/7"), Private},        // unique local, incl. fd00::/8
	{netip.MustParsePrefix("fe80::/10"), LinkLocal},
	{netip.MustParsePrefix("fec0::/10"), Private}, // site-local (deprecated, RFC 3879)
	{netip.MustParsePrefix("ff00::/8"), Multicast},
}

var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052
	sixToFour      = netip.MustParsePrefix("2002::/16")    // RFC 3056, deprecated by RFC 7526
	globalUnicast  = netip.MustParsePrefix("2000::/3")
)

// Classify returns the class of a. IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d) are classified as the IPv4 address they map to; the
// deprecated IPv4-compatible form (::a.b.c.d) and 6to4 (2002::/16) as
// their embedded address when that is not public, and Reserved otherwise;
// NAT64 addresses of the well-known prefix 64:ff9b::/96 (RFC 6052, used by
// DNS64 on IPv6-only hosts) as their embedded IPv4 address. Any other IPv6
// address outside 2000::/3 is Reserved. An address with a zone is
// classified without it, and a zoned address that would be Public is
// Reserved. The zero Addr is Reserved.
func Classify(a netip.Addr) AddrClass {
	if !a.IsValid() {
		return Reserved
	}
	if a.Zone() != "" {
		if c := Classify(a.WithZone("")); c != Public {
			return c
		}
		return Reserved
	}
	a = a.Unmap()
	if a.Is4() {
		return classify4(a)
	}
	b := a.As16()
	switch {
	case a.IsUnspecified():
		return Unspecified
	case a.IsLoopback():
		return Loopback
	case isZero(b[:12]): // ::a.b.c.d, IPv4-compatible (RFC 4291 §2.5.5.1, deprecated)
		if c := classify4(netip.AddrFrom4([4]byte(b[12:16]))); c != Public {
			return c
		}
		return Reserved
	case nat64WellKnown.Contains(a):
		return classify4(netip.AddrFrom4([4]byte(b[12:16])))
	case sixToFour.Contains(a):
		if c := classify4(netip.AddrFrom4([4]byte(b[2:6]))); c != Public {
			return c
		}
		return Reserved
	}
	for _, pc := range v6Classes {
		if pc.p.Contains(a) {
			return pc.c
		}
	}
	if !globalUnicast.Contains(a) {
		return Reserved
	}
	return Public
}

func classify4(a netip.Addr) AddrClass {
	for _, pc := range v4Classes {
		if pc.p.Contains(a) {
			return pc.c
		}
	}
	return Public
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// addrError is a refused address; Class is safe to show the client.
type addrError struct {
	Addr  netip.Addr
	Class AddrClass
}

func (e *addrError) Error() string {
	return fmt.Sprintf("address %s not allowed: %s", e.Addr, e.Class)
}

// addrPolicy decides which addresses may be dialed.
type addrPolicy struct {
	allowPrivate []netip.Prefix // unmapped, masked
}

// check returns nil when a may be dialed: a public address, or one of an
// exemptable class inside an AllowPrivate prefix. Zoned addresses are
// never allowed.
func (p *addrPolicy) check(a netip.Addr) error {
	c := Classify(a)
	if c == Public {
		return nil
	}
	u := a.Unmap()
	if u.Zone() == "" && c != Unspecified && c != Multicast && c != Broadcast {
		for _, pr := range p.allowPrivate {
			if pr.Contains(u) {
				return nil
			}
		}
	}
	return &addrError{Addr: a, Class: c}
}

// parsePrivatePrefix parses one AllowPrivate entry: a CIDR prefix or a
// single address (a /32 or /128). An IPv4-mapped prefix is converted to
// IPv4; a zero-length prefix (0.0.0.0/0, ::/0) is refused: list the
// networks you mean.
func parsePrivatePrefix(s string) (netip.Prefix, error) {
	var pr netip.Prefix
	if a, err := netip.ParseAddr(s); err == nil {
		pr = netip.PrefixFrom(a, a.BitLen())
	} else if pr, err = netip.ParsePrefix(s); err != nil {
		return netip.Prefix{}, err
	}
	if pr.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zoned addresses are not allowed", s)
	}
	if pr.Addr().Is4In6() {
		if pr.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q: IPv4-mapped prefix shorter than /96", s)
		}
		pr = netip.PrefixFrom(pr.Addr().Unmap(), pr.Bits()-96)
	}
	if pr.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%q: a zero-length prefix would allow every address", s)
	}
	return pr.Masked(), nil
}
