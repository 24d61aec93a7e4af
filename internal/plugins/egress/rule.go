package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/internal/hostname"
	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

// ErrInvalidRule reports an allow pattern that ParseRule refuses.
var ErrInvalidRule = errors.New("egress: invalid allow pattern")

// maxPatternBytes bounds one allow pattern: a 253-byte name, "*." and
// ":65535" fit.
const maxPatternBytes = 300

// Rule is one parsed allow-list entry (see ParseRule). The zero Rule
// matches nothing. Rules are comparable values.
type Rule struct {
	host     string     // lower-case name; for a wildcard the suffix after "*."; or the canonical IP literal
	ip       netip.Addr // valid for an IP-literal rule
	wildcard bool       // "*.suffix": names ending in ".suffix" (one or more extra labels), not suffix itself
	port     uint16     // 1-65535, always explicit
}

// String returns the canonical form of r: "name:port", "*.suffix:port",
// "192.0.2.1:port" or "[2001:db8::1]:port"; ParseRule(r.String()) == r.
func (r Rule) String() string {
	if r.port == 0 {
		return ""
	}
	h := r.host
	if r.wildcard {
		h = "*." + h
	}
	return net.JoinHostPort(h, strconv.Itoa(int(r.port)))
}

// ParseRule parses one allow pattern "host:port". The port is required,
// decimal 1-65535 without leading zeros (no port wildcards). The host is
// one of:
//
//   - an ASCII DNS name, case-insensitive, one trailing dot ignored
//     ("api.example.com"); internationalised names only in their xn--
//     form, never decoded;
//   - "*.suffix" when wildcards is true (security levels standard and
//     minimal): any name with one or more labels before ".suffix"; the
//     suffix needs at least two labels ("*.com" is refused), and '*' is
//     allowed nowhere else. With wildcards false (level strict) any '*'
//     is an error "strict level allows no wildcards";
//   - an IPv4 literal in strict dotted decimal ("192.0.2.1") or a
//     bracketed IPv6 literal ("[2001:db8::1]"; IPv4-mapped addresses are
//     stored as IPv4). Legacy IPv4 notations (2130706433, 0177.0.0.1,
//     0x7f.1, 127.1), zoned addresses, and addresses that can never be
//     dialed (unspecified, multicast, broadcast) are refused.
//
// Errors wrap ErrInvalidRule and quote the pattern.
func ParseRule(pattern string, wildcards bool) (Rule, error) {
	bad := func(format string, args ...any) (Rule, error) {
		return Rule{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidRule}, args...)...)
	}
	if len(pattern) > maxPatternBytes {
		return bad("pattern longer than %d bytes", maxPatternBytes)
	}
	if !printableASCII(pattern) {
		return bad("%q: only printable ASCII (write international names in their xn-- form)", pattern)
	}
	if strings.Contains(pattern, "*") && !wildcards {
		return bad("strict level allows no wildcards: %q", pattern)
	}
	host, port, bracketed, err := splitHostPort(pattern)
	if err != nil {
		return bad("%q: %v", pattern, err)
	}
	if port == "" {
		return bad("%q: missing port (want host:port)", pattern)
	}
	var r Rule
	if r.port, err = parsePort(port); err != nil {
		return bad("%q: %v", pattern, err)
	}
	host = strings.ToLower(host)
	if rest, ok := strings.CutPrefix(host, "*."); ok && !bracketed {
		rest = strings.TrimSuffix(rest, ".")
		switch {
		case strings.Contains(rest, "*"):
			return bad("%q: only a single leading \"*.\" label may be a wildcard", pattern)
		case !hostname.ValidName(rest):
			return bad("%q: invalid wildcard domain", pattern)
		case !strings.Contains(rest, "."):
			return bad("%q: a wildcard must cover a domain of at least two labels", pattern)
		}
		r.host, r.wildcard = rest, true
		return r, nil
	}
	if strings.Contains(host, "*") {
		return bad("%q: only a single leading \"*.\" label may be a wildcard", pattern)
	}
	h, ip, err := parseHost(host, bracketed)
	if err != nil {
		return bad("%q: %v", pattern, err)
	}
	if ip.IsValid() {
		switch httpfetch.Classify(ip) {
		case httpfetch.Unspecified, httpfetch.Multicast, httpfetch.Broadcast:
			return bad("%q: %s addresses can never be dialed", pattern, httpfetch.Classify(ip))
		}
	}
	r.host, r.ip = h, ip
	return r, nil
}

// matchName reports whether r allows the name host (normalised) on port.
func (r *Rule) matchName(host string, port uint16) bool {
	if r.port != port || r.ip.IsValid() {
		return false
	}
	if r.wildcard {
		return strings.HasSuffix(host, "."+r.host)
	}
	return host == r.host
}

// matchIP reports whether r is exactly the IP literal ip on port.
func (r *Rule) matchIP(ip netip.Addr, port uint16) bool {
	return r.port == port && r.ip.IsValid() && r.ip == ip
}

// target is one requested destination after normalisation.
type target struct {
	host string     // lower-case name without trailing dot, or the canonical IP literal
	ip   netip.Addr // valid when host is an IP literal (IPv4-mapped unmapped)
	port uint16
}

// hostPort is "host:port" ("[v6]:port").
func (t target) hostPort() string { return net.JoinHostPort(t.host, strconv.Itoa(int(t.port))) }

// hostHeader is the Host header for a plain-HTTP request: the port is
// left out when it is 80.
func (t target) hostHeader() string {
	if t.port != 80 {
		return t.hostPort()
	}
	if t.ip.Is6() {
		return "[" + t.host + "]"
	}
	return t.host
}

// parseAuthority parses the authority-form target of a CONNECT request
// (RFC 9110 §9.3.6: "host:port") or the authority of an absolute URL.
// defPort 0 makes the port mandatory. Userinfo, paths, whitespace and
// non-ASCII bytes are refused. Error messages quote at most the
// authority, never a path or query.
func parseAuthority(s string, defPort uint16) (target, error) {
	var t target
	if s == "" {
		return t, errors.New("empty authority")
	}
	if len(s) > maxPatternBytes {
		return t, fmt.Errorf("authority longer than %d bytes", maxPatternBytes)
	}
	if strings.Contains(s, "@") { // not quoted: userinfo may hold a password
		return t, errors.New("userinfo (user@host) is not allowed: not an authority (host:port)")
	}
	if !printableASCII(s) {
		return t, fmt.Errorf("%q: non-ASCII or control bytes in host (international names must be in xn-- form)", s)
	}
	if strings.ContainsAny(s, "/?#*\\%") {
		return t, fmt.Errorf("%q: not an authority (host:port)", s)
	}
	host, port, bracketed, err := splitHostPort(s)
	if err != nil {
		return t, fmt.Errorf("%q: %w", s, err)
	}
	switch {
	case port != "":
		if t.port, err = parsePort(port); err != nil {
			return t, fmt.Errorf("%q: %w", s, err)
		}
	case defPort == 0:
		return t, fmt.Errorf("%q: missing port", s)
	default:
		t.port = defPort
	}
	if t.host, t.ip, err = parseHost(strings.ToLower(host), bracketed); err != nil {
		return t, fmt.Errorf("%q: %w", s, err)
	}
	return t, nil
}

// parseAbsolute parses an absolute-form request target (RFC 9112 §3.2.2)
// of a plain-HTTP proxy request: "http://authority[/path][?query]". It
// returns the target and the origin-form path and query to send
// upstream. Other schemes, userinfo, fragments, and paths starting with
// "//" are refused; error messages never contain the path or query.
func parseAbsolute(uri string) (target, string, error) {
	const scheme = "http://"
	if len(uri) < len(scheme) || !strings.EqualFold(uri[:len(scheme)], scheme) {
		if strings.HasPrefix(uri, "/") || uri == "*" {
			return target{}, "", errors.New("origin-form request target: a proxy needs an absolute http:// URL or CONNECT")
		}
		if i := strings.Index(uri, "://"); i > 0 && i <= 16 {
			return target{}, "", fmt.Errorf("scheme %q not supported (only http://, or CONNECT for TLS)", strings.ToLower(uri[:i]))
		}
		return target{}, "", errors.New("request target is not an absolute http:// URL")
	}
	rest := uri[len(scheme):]
	if !printableASCII(rest) {
		return target{}, "", errors.New("request target has non-ASCII or control bytes")
	}
	if strings.Contains(rest, "#") {
		return target{}, "", errors.New("request target has a fragment")
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	t, err := parseAuthority(rest[:end], 80)
	if err != nil {
		return target{}, "", err
	}
	path := rest[end:]
	switch {
	case path == "":
		path = "/"
	case path[0] == '?':
		path = "/" + path
	case strings.HasPrefix(path, "//"):
		return target{}, "", errors.New("path starts with \"//\"")
	}
	return t, path, nil
}

// splitHostPort splits "host:port", "host", "[v6]:port" or "[v6]". An
// unbracketed host with a colon (a bare IPv6 address) is an error. port
// is "" when absent; a present but empty port is an error.
func splitHostPort(s string) (host, port string, bracketed bool, err error) {
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 {
			return "", "", false, errors.New("missing ']'")
		}
		host, rest := s[1:i], s[i+1:]
		if rest == "" {
			return host, "", true, nil
		}
		if rest[0] != ':' {
			return "", "", false, errors.New("junk after ']'")
		}
		if rest == ":" {
			return "", "", false, errors.New("empty port")
		}
		return host, rest[1:], true, nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, "", false, nil
	}
	host, port = s[:i], s[i+1:]
	if strings.Contains(host, ":") || strings.ContainsAny(host, "[]") {
		return "", "", false, errors.New("IPv6 addresses must be in brackets")
	}
	if port == "" {
		return "", "", false, errors.New("empty port")
	}
	return host, port, false, nil
}

// parsePort parses a decimal port 1-65535 without sign or leading zeros.
func parsePort(s string) (uint16, error) {
	if s == "*" {
		return 0, errors.New("port wildcards are not supported (want a port 1-65535)")
	}
	if s == "" || len(s) > 5 || s[0] == '0' {
		return 0, fmt.Errorf("invalid port %q (want 1-65535)", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("invalid port %q (want 1-65535)", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("invalid port %q (want 1-65535)", s)
	}
	return uint16(n), nil
}

// parseHost normalises a host (brackets removed) by the rules every
// outbound path shares (internal/hostname); an IPv6 zone is refused.
func parseHost(h string, bracketed bool) (string, netip.Addr, error) {
	host, a, err := hostname.Parse(h, bracketed)
	if err != nil {
		return "", netip.Addr{}, err
	}
	if a.Zone() != "" {
		return "", netip.Addr{}, errors.New("zoned IPv6 addresses are not allowed")
	}
	return host, a, nil
}

// printableASCII reports whether s has only bytes 0x21-0x7e (no space,
// no control characters, no UTF-8).
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
