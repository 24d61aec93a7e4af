package httpfetch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// Causes recorded in tool.Error.Err (audit only).
var (
	errBadURL        = errors.New("malformed URL")
	errScheme        = errors.New("scheme is not http or https")
	errUserinfo      = errors.New("URL has userinfo")
	errNumericHost   = errors.New("host is an IPv4 address in a non-standard notation")
	errBadHost       = errors.New("invalid host name")
	errNotAllowed    = errors.New("host:port matches no allow-list pattern")
	errDowngrade     = errors.New("redirect from https to http")
	errTooManyHops   = errors.New("too many redirects")
	errPinMismatch   = errors.New("transport dialed an address other than the pinned one")
	errNoAddresses   = errors.New("name resolved to no addresses")
	errBadHeader     = errors.New("header refused")
	errTrailingData  = errors.New("trailing data after arguments object")
	errBodyWithGet   = errors.New("body with GET or HEAD")
	errBadMethod     = errors.New("method not allowed")
	errBadLocation   = errors.New("malformed Location header")
	errAddrForbidden = errors.New("address forbidden")
)

// target is one request destination after parsing and normalisation.
type target struct {
	u    *url.URL   // normalised copy: lower-case host, no trailing dot, no userinfo or fragment
	host string     // lower-case DNS name, or the canonical IP literal (IPv4-mapped unmapped)
	ip   netip.Addr // valid when host is an IP literal
	port uint16     // explicit, or the scheme's default
}

// hostPort is "host:port" ("[v6]:port"), as http.Transport asks to dial it.
func (t *target) hostPort() string { return net.JoinHostPort(t.host, strconv.Itoa(int(t.port))) }

// origin is scheme://host:port (RFC 6454), the unit that credentials are
// bound to across redirects.
func (t *target) origin() string { return t.u.Scheme + "://" + t.hostPort() }

func defaultPort(scheme string) uint16 {
	if scheme == "https" {
		return 443
	}
	return 80
}

// parseTarget parses and normalises raw. Errors are INVALID_ARGUMENTS
// for what is not a well-formed absolute URL, and PERMISSION_DENIED for
// what egress policy refuses regardless of the allow-list: other schemes,
// userinfo and IPv4 addresses in legacy notations.
func parseTarget(raw string) (*target, *tool.Error) {
	if len(raw) > MaxURLBytes {
		return nil, tool.Errorf(reason.InvalidArguments, errBadURL, "URL longer than %d bytes", MaxURLBytes)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: %w", errBadURL, err), "malformed URL")
	}
	if u.Scheme == "" {
		return nil, tool.Errorf(reason.InvalidArguments, errBadURL, "URL must be absolute (http:// or https://)")
	}
	if u.Scheme != "http" && u.Scheme != "https" { // url.Parse lower-cases the scheme
		return nil, tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: %q", errScheme, u.Scheme), "URL scheme not allowed (only http and https)")
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, tool.Errorf(reason.InvalidArguments, errBadURL, "URL has no host")
	}
	if u.User != nil {
		return nil, tool.Errorf(reason.PermissionDenied, errUserinfo, "credentials in the URL (user@host) are not allowed; send an Authorization header")
	}
	tg := &target{port: defaultPort(u.Scheme)}
	explicitPort := false
	if ps := u.Port(); ps != "" {
		n, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || n == 0 {
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: port %q", errBadURL, ps), "invalid port")
		}
		tg.port, explicitPort = uint16(n), true
	}
	bracketed := strings.HasPrefix(u.Host, "[")
	host, ip, terr := parseHost(u.Hostname(), bracketed)
	if terr != nil {
		return nil, terr
	}
	tg.host, tg.ip = host, ip

	nu := *u
	nu.User, nu.Fragment, nu.RawFragment = nil, "", ""
	switch {
	case explicitPort:
		nu.Host = tg.hostPort()
	case ip.Is6():
		nu.Host = "[" + host + "]"
	default:
		nu.Host = host
	}
	tg.u = &nu
	return tg, nil
}

// parseHost normalises a URL host (u.Hostname(), brackets removed):
// an IPv6 literal must have been bracketed; an IPv4 literal must be in
// strict dotted-decimal form (netip.ParseAddr: four decimal fields, no
// leading zeros); a name must be an ASCII DNS name whose last label is not
// numeric. A name whose last label is all digits or 0x-hex is what the
// WHATWG URL standard ("ends in a number") and inet_aton(3) read as an
// IPv4 address (2130706433, 0177.0.0.1, 0x7f.1, 127.1): such hosts are
// refused outright, so that no resolver (in particular the cgo one, which
// hands the name to getaddrinfo) can turn them into an address.
func parseHost(h string, bracketed bool) (string, netip.Addr, *tool.Error) {
	h = strings.ToLower(h)
	if bracketed {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return "", netip.Addr{}, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: %q", errBadHost, h), "invalid IPv6 address")
		}
		return canonicalIP(a)
	}
	h = strings.TrimSuffix(h, ".")
	if a, err := netip.ParseAddr(h); err == nil {
		if !a.Is4() {
			return "", netip.Addr{}, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: %q", errBadHost, h), "IPv6 addresses must be in brackets")
		}
		return canonicalIP(a)
	}
	if endsInNumber(h) {
		return "", netip.Addr{}, tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: %q", errNumericHost, h),
			"host looks like an IP address in a non-standard notation; use dotted decimal (e.g. 192.0.2.1)")
	}
	if !validHostname(h) {
		return "", netip.Addr{}, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: %q", errBadHost, h), "invalid host name")
	}
	return h, netip.Addr{}, nil
}

// canonicalIP returns the host string of an IP literal: IPv4-mapped
// addresses as IPv4, everything in netip's canonical form. The zone, if
// any, is kept so that the address check refuses it.
func canonicalIP(a netip.Addr) (string, netip.Addr, *tool.Error) {
	a = a.Unmap()
	return a.String(), a, nil
}

// endsInNumber reports whether the last label of h (one trailing dot
// already removed) is all decimal digits or "0x" followed by hex digits:
// the WHATWG URL standard's "ends in a number" test, which makes the whole
// host an IPv4 address in browsers and inet_aton.
func endsInNumber(h string) bool {
	last := h
	if i := strings.LastIndexByte(h, '.'); i >= 0 {
		last = h[i+1:]
	}
	if last == "" {
		return false
	}
	if strings.HasPrefix(last, "0x") {
		last = last[2:]
		for i := 0; i < len(last); i++ {
			if !isHex(last[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// validHostname reports whether h (lower case) is an ASCII DNS name:
// at most 253 bytes, labels of 1-63 bytes from [a-z0-9_-]. Internationalised
// names must be given in their A-label (xn--) form; Unicode look-alikes
// are refused.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// pattern is one allow-list entry.
type pattern struct {
	host     string // lower-case name; for a wildcard the suffix after "*."; or a canonical IP literal
	wildcard bool   // "*.example.com": any name ending in ".example.com" (one or more labels), not example.com itself
	port     uint16 // 0: the default port of the URL's scheme (80 for http, 443 for https)
}

// parsePattern parses "host", "host:port", "*.suffix", "*.suffix:port",
// an IPv4 address with optional port, or an IPv6 address ("::1",
// "[::1]", "[::1]:8080").
func parsePattern(s string) (pattern, error) {
	var p pattern
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		if strings.HasSuffix(s, "]") {
			host = s[1 : len(s)-1]
		} else {
			h, pt, err := net.SplitHostPort(s)
			if err != nil {
				return p, fmt.Errorf("allow pattern %q: %w", s, err)
			}
			host, port = h, pt
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return p, fmt.Errorf("allow pattern %q: invalid IPv6 address", s)
		}
	case strings.Count(s, ":") > 1: // bare IPv6 address, no port
	default:
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i+1:]
			if port == "" {
				return p, fmt.Errorf("allow pattern %q: empty port", s)
			}
		}
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return p, fmt.Errorf("allow pattern %q: invalid port", s)
		}
		p.port = uint16(n)
	}
	host = strings.ToLower(host)
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return p, fmt.Errorf("allow pattern %q: zoned address", s)
		}
		p.host = a.Unmap().String()
		return p, nil
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		p.wildcard = true
		host = rest
		if !strings.Contains(strings.TrimSuffix(host, "."), ".") {
			return p, fmt.Errorf("allow pattern %q: a wildcard must cover a domain of at least two labels", s)
		}
	}
	host = strings.TrimSuffix(host, ".")
	if endsInNumber(host) || !validHostname(host) {
		return p, fmt.Errorf("allow pattern %q: invalid host (want name, *.domain or IP address, optional :port)", s)
	}
	p.host = host
	return p, nil
}

// match reports whether tg is allowed by p.
func (p *pattern) match(tg *target) bool {
	want := p.port
	if want == 0 {
		want = defaultPort(tg.u.Scheme)
	}
	if tg.port != want {
		return false
	}
	if p.wildcard {
		return tg.ip == (netip.Addr{}) && strings.HasSuffix(tg.host, "."+p.host)
	}
	return tg.host == p.host
}
