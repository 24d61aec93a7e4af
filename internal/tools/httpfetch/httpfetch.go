// Package httpfetch provides the built-in http_fetch tool of DESIGN §2
// (HIGH, labels "network" and "egress"): one HTTP(S) request from the
// gateway to an allow-listed host, hardened against server-side request
// forgery (SSRF, CWE-918).
//
// # Checks
//
// Every request, and every hop of a redirect chain, passes all of these,
// in this order, before a connection is made:
//
//  1. URL: an absolute URL (url.Parse) whose scheme is http or https
//     (file:, gopher:, ftp:, data:, ws: ... are refused), with a host and
//     without userinfo ("http://allowed@evil/" is refused: credentials
//     belong in the Authorization header, and userinfo only serves to
//     make a URL look like another host). The host is lower-cased and one
//     trailing dot removed; the fragment is never sent.
//  2. Host syntax: an IPv4 literal must be strict dotted decimal, an IPv6
//     literal bracketed; a name must be an ASCII DNS name (IDNs in their
//     xn-- form). A name whose last label is all digits or 0x-hex
//     (2130706433, 0177.0.0.1, 0x7f.1, 127.1) is an IPv4 address in a
//     legacy notation for browsers (WHATWG "ends in a number") and for
//     inet_aton/getaddrinfo, so it is refused outright and never reaches
//     a resolver.
//  3. Literal addresses are checked against the address rules (below).
//  4. Allow-list: host:port must match a pattern of Config.Allow or of
//     Config.RoleAllow for one of the roles of the principal in the
//     context (internal/principal). No pattern, no request: an empty
//     allow-list allows nothing. A name is checked before it is resolved,
//     so a refused host costs no DNS query.
//  5. Resolution: a name is resolved exactly once per hop (Resolver; by
//     default the pure-Go resolver, never cgo's getaddrinfo), and the
//     request is refused if ANY returned address is forbidden — a name
//     with one public and one private address is refused, not filtered.
//  6. Pinning: the connection is made to the checked addresses only. The
//     transport's DialContext ignores the name, dials the pinned IP and
//     port, and refuses to dial anything but the expected host:port; the
//     default dialer re-checks the address in its Control hook, right
//     before connect(2). A second lookup never happens, so DNS rebinding
//     (public at check time, private at connect time) has nothing to
//     rebind. TLS still verifies the certificate against the URL's host
//     name (SNI and ServerName come from the URL, not from the address).
//
// Cedar policies see the first URL's host as context.url_host and can
// restrict further; redirect targets are checked here only.
//
// # Address rules
//
// Refused unless Config.AllowPrivate lists a prefix containing the address
// (see Classify): loopback (127/8, ::1), unspecified (0/8, ::), private
// (10/8, 172.16/12, 192.168/16, fc00::/7 incl. fd00::/8, fec0::/10),
// link-local (169.254/16 incl. the 169.254.169.254 cloud metadata service,
// fe80::/10), shared address space 100.64/10 (CGNAT), multicast, broadcast,
// reserved (240/4, 192.0.0/24, 192.88.99/24, IPv6 outside 2000::/3, 100::/64,
// 2001::/23 incl. Teredo), documentation (192.0.2/24, 198.51.100/24,
// 203.0.113/24, 2001:db8::/32, 3fff::/20) and benchmarking (198.18/15).
// IPv4-mapped IPv6 (::ffff:127.0.0.1) is the IPv4 address it maps to;
// NAT64 64:ff9b::/96 is allowed only when the embedded IPv4 address is
// public (IPv6-only hosts with DNS64 need it); the deprecated
// IPv4-compatible ::/96 and 6to4 2002::/16 are always refused. Unspecified,
// multicast and broadcast cannot be exempted, nor can zoned addresses.
//
// # Request
//
// Methods GET (default), HEAD, POST, PUT, PATCH and DELETE (no OPTIONS,
// TRACE or CONNECT). A body is refused with GET and HEAD and capped at
// Config.MaxRequestBytes. Caller headers must be valid RFC 9110 field
// names and values (no CR, LF, NUL), at most MaxHeaders of them, and none
// of the headers the transport owns or that spoof the request's route or
// origin (refused, not dropped): Host, Connection, Keep-Alive,
// Transfer-Encoding, TE, Trailer, Upgrade, Content-Length, Expect,
// HTTP2-Settings, Proxy-*, Forwarded, X-Forwarded-*, X-Real-IP.
// Authorization and Cookie are allowed (API tokens and sessions), but are
// sent only to the origin (scheme, host, port) of the URL given: a
// redirect to another origin loses them (a chain that comes back to the
// original origin sends them there again, as net/http does). HTTP/1.1 only, no keep-alive,
// no compression negotiation (the size cap applies to the bytes on the
// wire), no proxy from the environment (HTTP_PROXY etc. are ignored: a
// proxy would make the address checks meaningless), no cookie jar.
//
// # Redirects
//
// 301, 302, 303, 307 and 308 with a Location are followed up to
// Config.MaxRedirects times (default 5); each hop is a new request that
// passes every check above. A redirect from https to http is refused.
// 301/302/303 turn any method but HEAD into GET without a body (as
// net/http does); 307/308 keep method and body.
//
// # Result
//
// The status, the final URL, the number of redirects, the response
// headers content-type, content-length, content-encoding and location,
// and the body: as text when it is valid UTF-8, otherwise base64
// (body_encoding "text" or "base64"), cut at Config.MaxBytes with
// truncated true. A status of 4xx or 5xx is a successful fetch, not a
// tool error. The audit detail records each hop and the address dialed.
//
// # Reason codes
//
// INVALID_ARGUMENTS: not a well-formed absolute URL, bad port or host
// syntax, bad method, a refused or malformed header, a body with GET/HEAD.
// PERMISSION_DENIED (counted as a violation): another scheme, userinfo,
// a legacy-notation IPv4 host, a host not in the allow-list, a forbidden
// address, and a redirect to any of these or from https to http.
// TOO_LARGE: request body or headers over their caps. TIMEOUT: the whole
// call (all hops, body included) took longer than Config.Timeout.
// CANCELLED: the caller went away. TOOL_FAILED: name resolution,
// connection, TLS or protocol failures, too many redirects.
package httpfetch

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// Name is the tool name (DESIGN §2); public contract.
const Name = "http_fetch"

// Defaults and bounds.
const (
	// DefaultTimeout bounds one call: resolution, all hops and the body.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxBytes caps the response body returned (bytes).
	DefaultMaxBytes int64 = 1 << 20
	// DefaultMaxRequestBytes caps the request body (bytes).
	DefaultMaxRequestBytes int64 = 1 << 20
	// DefaultMaxRedirects is how many redirects are followed.
	DefaultMaxRedirects = 5
	// MaxRedirectsLimit is the largest Config.MaxRedirects accepted.
	MaxRedirectsLimit = 20
	// MaxURLBytes bounds the url argument and every Location followed.
	MaxURLBytes = 8192
	// MaxHeaders bounds the number of caller headers, MaxHeaderBytes the
	// sum of their names and values.
	MaxHeaders     = 64
	MaxHeaderBytes = 16 << 10
	// DefaultUserAgent is sent unless the caller sets User-Agent.
	DefaultUserAgent = "Portcullis-http_fetch/1"

	maxResponseHeaderBytes = 64 << 10
	maxDialAddrs           = 4 // addresses tried, in resolver order, per hop
	dialTimeout            = 10 * time.Second
	tlsHandshakeTimeout    = 10 * time.Second
)

// Methods are the HTTP methods http_fetch sends.
var Methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// ErrInvalidConfig reports a Config that New cannot use.
var ErrInvalidConfig = errors.New("httpfetch: invalid config")

// Resolver resolves a host name to addresses; *net.Resolver implements
// it. network is "ip" (both families).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer opens a TCP connection to a literal "ip:port" address;
// *net.Dialer implements it. It is only ever given addresses that passed
// the address rules.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

var (
	_ Resolver  = (*net.Resolver)(nil)
	_ Dialer    = (*net.Dialer)(nil)
	_ tool.Tool = (*Tool)(nil)
)

// Config configures http_fetch.
type Config struct {
	// Allow lists the destinations every principal may fetch, as
	// "host:port" patterns: "api.example.com:443", "*.example.com:443"
	// (any name below example.com, not example.com itself),
	// "example.org" (no port: the scheme's default, 80 for http and 443
	// for https), "192.0.2.10:8080", "[2001:db8::1]:443". Names are
	// case-insensitive; IP patterns match literal-address URLs only. Empty
	// Allow and RoleAllow allow nothing.
	Allow []string
	// RoleAllow adds patterns per role: a principal may fetch
	// Allow ∪ RoleAllow[r] for each of its roles r.
	RoleAllow map[string][]string
	// AllowPrivate lists CIDR prefixes (or single addresses) exempted
	// from the address rules, e.g. "10.20.0.0/16" for an internal API or
	// "127.0.0.1/32" in tests. A zero-length prefix is refused.
	AllowPrivate []string
	// MaxBytes caps the response body returned (default DefaultMaxBytes);
	// more is cut and flagged truncated.
	MaxBytes int64
	// MaxRequestBytes caps the request body (default
	// DefaultMaxRequestBytes).
	MaxRequestBytes int64
	// Timeout bounds one call, all hops and the body together (default
	// DefaultTimeout).
	Timeout time.Duration
	// MaxRedirects is how many redirects are followed (0: the default,
	// DefaultMaxRedirects; negative: none, the 3xx response is returned);
	// at most MaxRedirectsLimit.
	MaxRedirects int
	// UserAgent is sent unless the caller sets one (default
	// DefaultUserAgent).
	UserAgent string
	// RootCAs verifies servers' certificates (nil: the system roots).
	RootCAs *x509.CertPool
	// Resolver resolves names (default: &net.Resolver{PreferGo: true},
	// the pure-Go resolver).
	Resolver Resolver
	// Dialer connects to pinned addresses (default: a net.Dialer whose
	// Control hook re-checks the address before connect).
	Dialer Dialer
}

// Tool is http_fetch. It is immutable after New and safe for concurrent
// use; every call uses its own transport and connection.
type Tool struct {
	cfg       Config
	allow     []pattern
	roleAllow map[string][]pattern
	addrs     addrPolicy
	resolver  Resolver
	dialer    Dialer
	redirects int // how many redirects are followed; 0: none
}

// New returns the tool. It refuses negative sizes or timeouts,
// MaxRedirects above MaxRedirectsLimit, and malformed allow patterns or
// AllowPrivate prefixes, wrapping ErrInvalidConfig.
func New(cfg Config) (*Tool, error) {
	if cfg.MaxBytes < 0 || cfg.MaxRequestBytes < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: negative size or timeout", ErrInvalidConfig)
	}
	if cfg.MaxRedirects > MaxRedirectsLimit {
		return nil, fmt.Errorf("%w: max redirects %d above %d", ErrInvalidConfig, cfg.MaxRedirects, MaxRedirectsLimit)
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	t := &Tool{cfg: cfg, roleAllow: map[string][]pattern{}, resolver: cfg.Resolver, dialer: cfg.Dialer}
	switch {
	case cfg.MaxRedirects == 0:
		t.redirects = DefaultMaxRedirects
	case cfg.MaxRedirects > 0:
		t.redirects = cfg.MaxRedirects
	}
	var err error
	if t.allow, err = parsePatterns(cfg.Allow); err != nil {
		return nil, err
	}
	for role, list := range cfg.RoleAllow {
		if role == "" {
			return nil, fmt.Errorf("%w: empty role name in role allow-list", ErrInvalidConfig)
		}
		if t.roleAllow[role], err = parsePatterns(list); err != nil {
			return nil, err
		}
	}
	for _, s := range cfg.AllowPrivate {
		pr, err := parsePrivatePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%w: allow_private: %w", ErrInvalidConfig, err)
		}
		t.addrs.allowPrivate = append(t.addrs.allowPrivate, pr)
	}
	if t.resolver == nil {
		t.resolver = &net.Resolver{PreferGo: true}
	}
	if t.dialer == nil {
		t.dialer = &net.Dialer{Timeout: dialTimeout, Control: t.control}
	}
	return t, nil
}

func parsePatterns(list []string) ([]pattern, error) {
	out := make([]pattern, 0, len(list))
	for _, s := range list {
		p, err := parsePattern(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// control is the default dialer's last look at the address, after the
// socket exists and before connect(2).
func (t *Tool) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: dial address %q", errAddrForbidden, address)
	}
	return t.addrs.check(ap.Addr())
}

// Definition implements tool.Tool.
func (t *Tool) Definition() tool.Definition {
	redirects := fmt.Sprintf("redirects are followed up to %d times, each re-checked", t.redirects)
	if t.redirects == 0 {
		redirects = "redirects are not followed"
	}
	return tool.Definition{
		Name:  Name,
		Title: "HTTP fetch",
		Description: fmt.Sprintf("Send one HTTP(S) request to an allow-listed host and return the status, selected headers "+
			"and the body (UTF-8 text, otherwise base64; cut at %d bytes). Only http and https; loopback, private, "+
			"link-local and cloud-metadata addresses are refused; %s; Authorization and Cookie are never sent to "+
			"another origin. Time limit %s.", t.cfg.MaxBytes, redirects, t.cfg.Timeout),
		InputSchema: &jsonschema.Schema{
			Type:          "object",
			Required:      []string{"url"},
			PropertyOrder: []string{"url", "method", "headers", "body"},
			Properties: map[string]*jsonschema.Schema{
				"url": {Type: "string", Description: "Absolute http:// or https:// URL.",
					MinLength: jsonschema.Ptr(1), MaxLength: jsonschema.Ptr(MaxURLBytes)},
				"method": {Type: "string", Description: "HTTP method (default GET).",
					Enum: []any{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}, Default: json.RawMessage(`"GET"`)},
				"headers": {Type: "object", Description: "Request headers, name to value. Host, Connection, " +
					"Content-Length, Transfer-Encoding, Proxy-* and X-Forwarded-* are refused.",
					MaxProperties:        jsonschema.Ptr(MaxHeaders),
					AdditionalProperties: &jsonschema.Schema{Type: "string", MaxLength: jsonschema.Ptr(MaxHeaderBytes)}},
				"body": {Type: "string", Description: "Request body (not with GET or HEAD).",
					MaxLength: jsonschema.Ptr(int(t.cfg.MaxRequestBytes))},
			},
			AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
		},
		Sensitivity: tool.High,
		Destructive: true, // PUT, PATCH and DELETE change remote state
		Timeout:     t.cfg.Timeout + 5*time.Second,
		Labels:      []string{"network", "egress"},
	}
}

type args struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    *string           `json:"body"`
}

// request is what is sent on one hop.
type request struct {
	method  string
	body    string
	hasBody bool
	header  http.Header
}

// Call implements tool.Tool.
func (t *Tool) Call(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	a, terr := decodeArgs(raw)
	if terr != nil {
		return nil, terr
	}
	rq := request{method: a.Method}
	if rq.method == "" {
		rq.method = http.MethodGet
	}
	if !slices.Contains(Methods, rq.method) {
		return nil, tool.Errorf(reason.InvalidArguments, errBadMethod, "method not allowed (GET, HEAD, POST, PUT, PATCH or DELETE)")
	}
	if a.Body != nil {
		if int64(len(*a.Body)) > t.cfg.MaxRequestBytes {
			return nil, tool.Errorf(reason.TooLarge, nil, "request body larger than %d bytes", t.cfg.MaxRequestBytes)
		}
		if *a.Body != "" {
			if rq.method == http.MethodGet || rq.method == http.MethodHead {
				return nil, tool.Errorf(reason.InvalidArguments, errBodyWithGet, "a body is not allowed with GET or HEAD")
			}
			rq.body, rq.hasBody = *a.Body, true
		}
	}
	if rq.header, terr = buildHeaders(a.Headers); terr != nil {
		return nil, terr
	}
	tg, terr := parseTarget(a.URL)
	if terr != nil {
		return nil, terr
	}
	allow := t.allowFor(ctx)
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	return t.fetch(ctx, rq, tg, allow)
}

func decodeArgs(raw json.RawMessage) (args, *tool.Error) {
	var a args
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, tool.Errorf(reason.InvalidArguments, err, "invalid arguments")
	}
	if _, err := dec.Token(); err != io.EOF {
		return a, tool.Errorf(reason.InvalidArguments, errTrailingData, "invalid arguments")
	}
	if a.URL == "" {
		return a, tool.Errorf(reason.InvalidArguments, errBadURL, "url is required")
	}
	return a, nil
}

// allowFor returns Allow ∪ RoleAllow[r] for the roles of the principal in
// ctx (just Allow without a principal).
func (t *Tool) allowFor(ctx context.Context) []pattern {
	out := slices.Clip(t.allow)
	if p, ok := principal.FromContext(ctx); ok {
		for _, r := range p.Roles {
			out = append(out, t.roleAllow[r]...)
		}
	}
	return out
}

// credentialHeaders are sent only to the origin of the URL given.
var credentialHeaders = []string{"Authorization", "Cookie"}

// forbiddenHeader reports whether a caller may not set the header named
// lower (lower case): hop-by-hop and framing headers the transport owns
// (RFC 9110 §7.6.1, RFC 9112), Host (the request goes to the checked host
// only), proxy headers, and headers that claim another client address.
func forbiddenHeader(lower string) bool {
	switch lower {
	case "host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
		"content-length", "expect", "http2-settings", "forwarded", "x-real-ip":
		return true
	}
	return strings.HasPrefix(lower, "proxy-") || strings.HasPrefix(lower, "x-forwarded-")
}

// buildHeaders validates the caller's headers (see the package comment).
func buildHeaders(in map[string]string) (http.Header, *tool.Error) {
	h := make(http.Header, len(in)+1)
	if len(in) > MaxHeaders {
		return nil, tool.Errorf(reason.TooLarge, errBadHeader, "more than %d headers", MaxHeaders)
	}
	names := make([]string, 0, len(in))
	for n := range in {
		names = append(names, n)
	}
	sort.Strings(names)
	total := 0
	for _, n := range names {
		v := in[n]
		if !validHeaderName(n) {
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: name %q", errBadHeader, n), "invalid header name %q", clip(n, 64))
		}
		ck := http.CanonicalHeaderKey(n)
		if forbiddenHeader(strings.ToLower(n)) {
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: %s", errBadHeader, ck), "header %s is not allowed", ck)
		}
		if !validHeaderValue(v) {
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: value of %s", errBadHeader, ck), "invalid value for header %s (control characters)", ck)
		}
		if _, dup := h[ck]; dup {
			return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%w: %s twice", errBadHeader, ck), "header %s given twice", ck)
		}
		if total += len(n) + len(v); total > MaxHeaderBytes {
			return nil, tool.Errorf(reason.TooLarge, errBadHeader, "headers larger than %d bytes", MaxHeaderBytes)
		}
		h[ck] = []string{v}
	}
	return h, nil
}

// validHeaderName reports whether n is an RFC 9110 token (§5.6.2).
func validHeaderName(n string) bool {
	if n == "" || len(n) > 256 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v has no control characters but HTAB
// (RFC 9110 §5.5: no CR, LF or NUL, so no header injection).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
