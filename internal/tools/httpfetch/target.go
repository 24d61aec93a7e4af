package httpfetch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/internal/hostname"
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

// parseHost normalises a URL host (u.Hostname(), brackets removed) by the
// rules every outbound path shares (internal/hostname: strict dotted
// decimal IPv4, bracketed IPv6, ASCII DNS names whose last label is not
// numeric). The zone of an IPv6 literal is kept so that the address check
// refuses it. A host in a legacy numeric notation is PERMISSION_DENIED,
// anything else malformed INVALID_ARGUMENTS.
func parseHost(h string, bracketed bool) (string, netip.Addr, *tool.Error) {
	host, a, err := hostname.Parse(h, bracketed)
	switch {
	case errors.Is(err, hostname.ErrNumeric):
		return "", netip.Addr{}, tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: %q", errNumericHost, h),
			"host looks like an IP address in a non-standard notation; use dotted decimal (e.g. 192.0.2.1)")
	case err != nil:
		return "", netip.Addr{}, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: %q", errBadHost, h), "%s", err.Error())
	}
	return host, a, nil
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
	if !hostname.ValidName(host) {
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
