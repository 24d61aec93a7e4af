package httpfetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// selectedHeaders are the response headers returned to the caller (never
// Set-Cookie).
var selectedHeaders = []string{"content-type", "content-length", "content-encoding", "location"}

// fetch sends rq to tg and follows redirects. ctx carries the call's
// deadline.
func (t *Tool) fetch(ctx context.Context, rq request, tg *target, allow []pattern) (*tool.Result, error) {
	origin := tg.origin()
	var trace []string
	for hop := 0; ; hop++ {
		addrs, terr := t.admit(ctx, tg, allow)
		if terr != nil {
			if hop > 0 {
				terr = redirectRefused(terr)
			}
			return nil, terr
		}
		resp, dialed, done, err := t.roundTrip(ctx, rq, tg, addrs, tg.origin() == origin)
		if err != nil {
			return nil, t.failure(ctx, err, "connection failed")
		}
		trace = append(trace, fmt.Sprintf("%s %s via %s: %d", rq.method, tg.hostPort(), dialed, resp.StatusCode))
		loc := resp.Header.Get("Location")
		if !isRedirect(resp.StatusCode) || loc == "" || t.redirects == 0 {
			res, err := t.result(ctx, rq, tg, resp, hop, trace)
			resp.Body.Close()
			done()
			return res, err
		}
		resp.Body.Close()
		done()
		if hop >= t.redirects {
			return nil, tool.Errorf(reason.ToolFailed, fmt.Errorf("%w: %s", errTooManyHops, strings.Join(trace, "; ")),
				"too many redirects (more than %d)", t.redirects)
		}
		nu, err := tg.u.Parse(loc)
		if err != nil {
			return nil, tool.Errorf(reason.ToolFailed, fmt.Errorf("%w: %w", errBadLocation, err), "redirect with a malformed Location header")
		}
		next, terr := parseTarget(nu.String())
		if terr != nil {
			return nil, redirectRefused(terr)
		}
		if tg.u.Scheme == "https" && next.u.Scheme == "http" {
			return nil, tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: to %s", errDowngrade, next.hostPort()), "redirect refused: https to http downgrade")
		}
		rq = rq.redirect(resp.StatusCode)
		tg = next
	}
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// redirect returns the request for the next hop after a redirect with
// status code: 307 and 308 keep method and body; 301, 302 and 303 turn
// everything but HEAD into a GET without a body (as net/http does).
func (r request) redirect(code int) request {
	if code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect {
		return r
	}
	if r.method != http.MethodHead {
		r.method = http.MethodGet
	}
	if r.hasBody {
		r.body, r.hasBody = "", false
		r.header = r.header.Clone()
		r.header.Del("Content-Type")
	}
	return r
}

// redirectRefused rewords a refusal of a redirect target: the client did
// not write that URL, the server did. Malformed targets are the server's
// failure (TOOL_FAILED); policy refusals stay PERMISSION_DENIED; other
// failures (resolution, timeout) are passed on unchanged.
func redirectRefused(e *tool.Error) *tool.Error {
	code := e.Code
	switch code {
	case reason.InvalidArguments:
		code = reason.ToolFailed
	case reason.PermissionDenied:
	default:
		return e
	}
	return &tool.Error{Code: code, Msg: "redirect refused: " + e.ClientMessage(), Err: e.Err}
}

// admit applies the address rules and the allow-list to tg and returns
// the addresses the connection is pinned to. A name is resolved once.
func (t *Tool) admit(ctx context.Context, tg *target, allow []pattern) ([]netip.Addr, *tool.Error) {
	if tg.ip.IsValid() {
		if err := t.addrs.check(tg.ip); err != nil {
			return nil, addrRefused(err)
		}
	}
	if !slices.ContainsFunc(allow, func(p pattern) bool { return p.match(tg) }) {
		return nil, tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: %s", errNotAllowed, tg.origin()), "host not in the allow-list")
	}
	if tg.ip.IsValid() {
		return []netip.Addr{tg.ip}, nil
	}
	ips, err := t.resolver.LookupNetIP(ctx, "ip", tg.host)
	if err != nil {
		return nil, t.failure(ctx, err, "host name could not be resolved")
	}
	if len(ips) == 0 {
		return nil, tool.Errorf(reason.ToolFailed, fmt.Errorf("%w: %s", errNoAddresses, tg.host), "host name could not be resolved")
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		ip = ip.Unmap()
		if err := t.addrs.check(ip); err != nil {
			return nil, addrRefused(fmt.Errorf("%s resolved to %v: %w", tg.host, ips, err))
		}
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out, nil
}

func addrRefused(err error) *tool.Error {
	var ae *addrError
	if errors.As(err, &ae) {
		return tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: %w", errAddrForbidden, err), "address not allowed: %s", ae.Class)
	}
	return tool.Errorf(reason.PermissionDenied, fmt.Errorf("%w: %w", errAddrForbidden, err), "address not allowed")
}

// failure maps a resolution, transport or read error: the call's
// deadline is TIMEOUT, the caller's cancellation CANCELLED, anything else
// TOOL_FAILED with msg (or a more precise TLS message).
func (t *Tool) failure(ctx context.Context, err error, msg string) *tool.Error {
	if te, ok := tool.AsError(err); ok {
		return te
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return tool.Errorf(reason.Timeout, err, "request timed out")
		}
		return tool.Errorf(reason.Cancelled, err, "")
	}
	var ae *addrError
	if errors.As(err, &ae) { // the dialer's last check refused the address
		return addrRefused(err)
	}
	var cv *tls.CertificateVerificationError
	var hn x509.HostnameError
	var ua x509.UnknownAuthorityError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &cv), errors.As(err, &hn), errors.As(err, &ua):
		return tool.Errorf(reason.ToolFailed, err, "TLS certificate verification failed")
	case errors.As(err, &rh):
		return tool.Errorf(reason.ToolFailed, err, "TLS handshake failed")
	}
	return tool.Errorf(reason.ToolFailed, err, "%s", msg)
}

// pinnedDial dials the addresses admit checked, whatever name the
// transport asks for, and records the one that answered.
type pinnedDial struct {
	expect string // host:port the transport must ask for
	addrs  []netip.Addr
	port   uint16
	dialer Dialer
	policy *addrPolicy

	mu     sync.Mutex
	dialed string
}

func (p *pinnedDial) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	if addr != p.expect {
		return nil, fmt.Errorf("%w: asked for %q, pinned %q", errPinMismatch, addr, p.expect)
	}
	var errs []error
	for i, a := range p.addrs {
		if i == maxDialAddrs || ctx.Err() != nil {
			break
		}
		if err := p.policy.check(a); err != nil { // checked in admit; cheap to be sure
			return nil, err
		}
		ap := netip.AddrPortFrom(a, p.port).String()
		c, err := p.dialer.DialContext(ctx, "tcp", ap)
		if err == nil {
			p.mu.Lock()
			p.dialed = ap
			p.mu.Unlock()
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, ctx.Err()
	}
	return nil, errors.Join(errs...)
}

func (p *pinnedDial) used() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialed
}

// roundTrip sends one hop over a fresh transport pinned to addrs. done
// releases the transport once the body is closed.
func (t *Tool) roundTrip(ctx context.Context, rq request, tg *target, addrs []netip.Addr, sameOrigin bool) (resp *http.Response, dialed string, done func(), err error) {
	var body io.Reader
	if rq.hasBody {
		body = strings.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, tg.u.String(), body)
	if err != nil {
		return nil, "", nil, err
	}
	req.Header = rq.header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if !sameOrigin {
		for _, h := range credentialHeaders {
			req.Header.Del(h)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", t.cfg.UserAgent)
	}
	req.Close = true
	pin := &pinnedDial{expect: tg.hostPort(), addrs: addrs, port: tg.port, dialer: t.dialer, policy: &t.addrs}
	tr := &http.Transport{
		Proxy:                  nil, // never HTTP_PROXY and friends
		DialContext:            pin.dial,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: t.cfg.RootCAs},
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
	}
	resp, err = tr.RoundTrip(req)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, pin.used(), nil, err
	}
	return resp, pin.used(), tr.CloseIdleConnections, nil
}

// result reads the body (capped) and builds the tool result.
func (t *Tool) result(ctx context.Context, rq request, tg *target, resp *http.Response, redirects int, trace []string) (*tool.Result, error) {
	var b []byte
	truncated := false
	if rq.method != http.MethodHead {
		var err error
		b, err = io.ReadAll(io.LimitReader(resp.Body, t.cfg.MaxBytes+1))
		if err != nil {
			return nil, t.failure(ctx, err, "reading the response failed")
		}
		if int64(len(b)) > t.cfg.MaxBytes {
			b, truncated = b[:t.cfg.MaxBytes], true
		}
	}
	body, enc := encodeBody(b, truncated)
	headers := map[string]any{}
	for _, k := range selectedHeaders {
		if v := resp.Header.Get(k); v != "" {
			headers[k] = v
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "HTTP %d %s\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	for _, k := range selectedHeaders {
		if v, ok := headers[k]; ok {
			fmt.Fprintf(&sb, "%s: %s\n", k, v)
		}
	}
	if redirects > 0 {
		fmt.Fprintf(&sb, "[final URL after %d redirects: %s]\n", redirects, tg.u)
	}
	if truncated {
		fmt.Fprintf(&sb, "[body truncated at %d bytes]\n", t.cfg.MaxBytes)
	}
	if enc == "base64" {
		sb.WriteString("[body is not UTF-8 text; base64-encoded]\n")
	}
	sb.WriteString("\n")
	sb.WriteString(body)
	detail := strings.Join(trace, "; ")
	if truncated {
		detail += fmt.Sprintf("; body truncated at %d bytes", t.cfg.MaxBytes)
	}
	return &tool.Result{
		Text: sb.String(),
		Structured: map[string]any{
			"status":        resp.StatusCode,
			"url":           tg.u.String(),
			"redirects":     redirects,
			"headers":       headers,
			"body":          body,
			"body_encoding": enc,
			"body_bytes":    len(b),
			"truncated":     truncated,
		},
		Detail: detail,
	}, nil
}

// encodeBody returns b as text when it is valid UTF-8 (a multi-byte
// character cut by truncation is dropped), otherwise as standard base64.
func encodeBody(b []byte, truncated bool) (string, string) {
	text := b
	if truncated {
		for i := 1; i <= utf8.UTFMax-1 && i <= len(text); i++ {
			if utf8.RuneStart(text[len(text)-i]) {
				if !utf8.FullRune(text[len(text)-i:]) {
					text = text[:len(text)-i]
				}
				break
			}
		}
	}
	if utf8.Valid(text) {
		return string(text), "text"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}
