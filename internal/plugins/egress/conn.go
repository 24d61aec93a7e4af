package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

// Status codes of the proxy's own answers.
const (
	statusBadRequest     = http.StatusBadRequest
	statusTimeout        = http.StatusRequestTimeout
	statusHeaderTooLarge = http.StatusRequestHeaderFieldsTooLarge
	statusForbidden      = http.StatusForbidden
	statusBadGateway     = http.StatusBadGateway
	statusTooMany        = http.StatusServiceUnavailable
)

// statusOf maps a refusal reason to its status code.
func statusOf(reason string) int {
	switch reason {
	case ReasonNotAllowed, ReasonAddressForbidden:
		return statusForbidden
	case ReasonResolveFailed, ReasonDialFailed:
		return statusBadGateway
	case ReasonTooMany:
		return statusTooMany
	}
	return statusBadRequest
}

// refusal is a check's verdict: a reason code and the audit detail.
type refusal struct {
	reason, detail string
}

// handle serves one client connection: one request, then close.
func (p *Proxy) handle(c net.Conn, start time.Time) {
	// final is an allowed connection's Event. It is emitted after both
	// connections are closed and the MaxConns slot is free, so that an
	// auditor that sees it can open the next connection at once.
	var final *Event
	defer func() {
		p.untrack(c)
		p.mu.Lock()
		p.active--
		p.mu.Unlock()
		if final != nil {
			p.emitFinal(final)
		}
		p.wg.Done()
	}()
	defer p.recoverPanic()

	ev := Event{Server: p.cfg.Server}
	_ = c.SetReadDeadline(start.Add(p.cfg.ReadHeaderTimeout))
	// Like net/http's server, allow one bufio buffer beyond the limit:
	// the reader may fetch the start of a body with the headers.
	lr := &limitedReader{r: c, n: MaxHeaderBytes + 4096}
	br := bufio.NewReaderSize(lr, 4096)
	req, err := http.ReadRequest(br)
	if err != nil {
		// The parser may report a cut-off line as malformed: the reader's
		// own error says whether the deadline or the limit cut it.
		timedOut := isTimeout(err) || isTimeout(lr.err)
		switch {
		case lr.read == 0 && !timedOut:
			return // closed before sending anything: not an attempt
		case lr.n <= 0:
			p.refuse(c, &ev, start, statusHeaderTooLarge, ReasonBadRequest, fmt.Sprintf("request header larger than %d bytes", MaxHeaderBytes))
		case timedOut:
			p.refuse(c, &ev, start, statusTimeout, ReasonBadRequest, fmt.Sprintf("no complete request header within %s", p.cfg.ReadHeaderTimeout))
		default:
			p.refuse(c, &ev, start, statusBadRequest, ReasonBadRequest, "malformed request: "+safeErr(err))
		}
		return
	}
	// req.Body is not closed on refusal: closing a server-side body
	// drains it from the client. Request.Write closes it when forwarding.
	ev.Method = req.Method
	if req.ProtoMajor != 1 {
		p.refuse(c, &ev, start, statusBadRequest, ReasonBadRequest, "unsupported protocol "+strconv.Quote(req.Proto))
		return
	}
	lr.n = math.MaxInt64
	_ = c.SetReadDeadline(time.Time{})
	if req.Method == http.MethodConnect {
		final = p.connect(c, br, req, &ev, start)
		return
	}
	final = p.forward(c, lr, br, req, &ev, start)
}

// emitFinal emits an allowed connection's Event.
func (p *Proxy) emitFinal(ev *Event) {
	defer p.recoverPanic()
	p.cfg.OnEvent(*ev)
}

// admit runs the allow-list and address checks for t and returns the
// addresses that may be dialed.
func (p *Proxy) admit(ctx context.Context, t target) ([]netip.Addr, *refusal) {
	if t.ip.IsValid() {
		if !slices.ContainsFunc(p.rules, func(r Rule) bool { return r.matchIP(t.ip, t.port) }) {
			return nil, &refusal{ReasonNotAllowed, fmt.Sprintf("no allow rule for the address %s", t.hostPort())}
		}
		// ParseRule refused never-dialable literals; an exact literal
		// rule permits its own address whatever its class.
		return []netip.Addr{t.ip}, nil
	}
	exact := slices.ContainsFunc(p.rules, func(r Rule) bool { return !r.wildcard && r.matchName(t.host, t.port) })
	if !exact && !p.cfg.AnyHost && !slices.ContainsFunc(p.rules, func(r Rule) bool { return r.matchName(t.host, t.port) }) {
		return nil, &refusal{ReasonNotAllowed, fmt.Sprintf("no allow rule for %s", t.hostPort())}
	}
	addrs, err := p.cfg.Resolver(ctx, t.host)
	if err != nil {
		return nil, &refusal{ReasonResolveFailed, fmt.Sprintf("resolving %q: %v", t.host, err)}
	}
	if len(addrs) == 0 {
		return nil, &refusal{ReasonResolveFailed, fmt.Sprintf("%q resolved to no addresses", t.host)}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if why := p.checkAddr(a, exact); why != "" {
			return nil, &refusal{ReasonAddressForbidden, fmt.Sprintf("%q resolved to %s: %s", t.host, a, why)}
		}
		if a = a.Unmap(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// checkAddr returns why a resolved address may not be dialed, or "".
// exact reports whether the name matched an exact (non-wildcard) rule.
func (p *Proxy) checkAddr(a netip.Addr, exact bool) string {
	c := httpfetch.Classify(a)
	switch {
	case c == httpfetch.Public:
		return ""
	case neverDialable(a):
		return fmt.Sprintf("%s address, never allowed", classOrZone(c, a))
	case !exact:
		return fmt.Sprintf("%s address; wildcard and any-host rules reach public addresses only", c)
	}
	u := a.Unmap()
	for _, pr := range p.allowPrivate {
		if pr.Contains(u) {
			return ""
		}
	}
	return fmt.Sprintf("%s address not in AllowPrivate", c)
}

func classOrZone(c httpfetch.AddrClass, a netip.Addr) string {
	if a.Zone() != "" {
		return "zoned"
	}
	return string(c)
}

// dial connects to the first of addrs (at most maxDialAddrs) that
// accepts, on port. It returns the address connected, or the last one
// tried and the errors.
func (p *Proxy) dial(ctx context.Context, addrs []netip.Addr, port uint16) (net.Conn, netip.AddrPort, error) {
	var errs []error
	var ap netip.AddrPort
	for _, a := range addrs[:min(len(addrs), maxDialAddrs)] {
		ap = netip.AddrPortFrom(a, port)
		c, err := p.cfg.Dial(ctx, "tcp", ap.String())
		if err == nil {
			return c, ap, nil
		}
		errs = append(errs, err)
	}
	return nil, ap, errors.Join(errs...)
}

// open admits t and dials it; on refusal it answers the client and
// emits the Event, and returns nil.
func (p *Proxy) open(c net.Conn, t target, ev *Event, start time.Time) net.Conn {
	ev.Host, ev.Port = t.host, strconv.Itoa(int(t.port))
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DialTimeout)
	defer cancel()
	addrs, rf := p.admit(ctx, t)
	if rf != nil {
		p.refuse(c, ev, start, statusOf(rf.reason), rf.reason, rf.detail)
		return nil
	}
	up, ap, err := p.dial(ctx, addrs, t.port)
	ev.Addr = ap
	if err != nil {
		p.refuse(c, ev, start, statusBadGateway, ReasonDialFailed, err.Error())
		return nil
	}
	if !p.track(up) {
		p.refuse(c, ev, start, statusBadGateway, ReasonDialFailed, "proxy closed")
		return nil
	}
	return up
}

// connect serves a CONNECT request: check, dial, 200, tunnel. It
// returns the Event to emit once the connections are released, nil
// after a refusal (whose Event was emitted).
func (p *Proxy) connect(c net.Conn, br *bufio.Reader, req *http.Request, ev *Event, start time.Time) *Event {
	t, err := parseAuthority(req.RequestURI, 0)
	if err != nil {
		p.refuse(c, ev, start, statusBadRequest, ReasonBadRequest, "CONNECT target: "+err.Error())
		return nil
	}
	up := p.open(c, t, ev, start)
	if up == nil {
		return nil
	}
	defer p.untrack(up)
	cu := &countingConn{Conn: up}
	ev.Allowed = true
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return p.finish(ev, cu, start, p.failure("writing 200", err))
	}
	// Bytes the client sent after the request (a pipelined TLS
	// ClientHello) are in br: send them first.
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		_ = up.SetWriteDeadline(time.Now().Add(p.cfg.IdleTimeout))
		if _, err := cu.Write(b); err != nil {
			return p.finish(ev, cu, start, p.failure("upstream write", err))
		}
	}
	return p.finish(ev, cu, start, p.tunnel(c, cu))
}

// finish completes the Event of an allowed connection.
func (p *Proxy) finish(ev *Event, up *countingConn, start time.Time, detail string) *Event {
	up.Close()
	ev.BytesUp, ev.BytesDown = up.up.Load(), up.down.Load()
	ev.Detail = detail
	ev.Duration = time.Since(start)
	return ev
}

// tunnel relays bytes between the client c and up until both directions
// have ended, and says how it ended ("" for a clean close by both).
func (p *Proxy) tunnel(c net.Conn, up *countingConn) string {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	type result struct {
		err  error
		dst  net.Conn
		name string
	}
	results := make(chan result, 2)
	go func() { results <- result{p.pipe(up, c, &last), up, "client"} }()
	go func() { results <- result{p.pipe(c, up, &last), c, "upstream"} }()
	var detail string
	for range 2 {
		r := <-results
		if r.err == nil && closeWrite(r.dst) == nil {
			continue // half-close: the other direction goes on
		}
		if detail == "" && r.err != nil {
			detail = p.failure(r.name+" side", r.err)
		}
		c.Close() // unblock the other direction
		up.Close()
	}
	return detail
}

// pipe copies src to dst until src ends (nil) or an error; a read that
// times out while the other direction moved bytes within IdleTimeout is
// retried.
func (p *Proxy) pipe(dst, src net.Conn, last *atomic.Int64) error {
	buf := make([]byte, 32<<10)
	idle := p.cfg.IdleTimeout
	for {
		_ = src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			_ = dst.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return nil
		case isTimeout(err) && time.Since(time.Unix(0, last.Load())) < idle:
		default:
			return err
		}
	}
}

// failure turns an I/O error of an allowed connection into an Event
// detail; errors caused by Close or the idle timeout say so.
func (p *Proxy) failure(what string, err error) string {
	switch {
	case p.isClosed():
		return "proxy closed"
	case isTimeout(err):
		return "idle timeout"
	}
	return what + ": " + err.Error()
}

// closeWrite half-closes c if it can (TCP FIN), else returns an error.
func closeWrite(c net.Conn) error {
	if cu, ok := c.(*countingConn); ok {
		c = cu.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// hopByHop are removed from forwarded requests and responses, besides
// the headers named by Connection (RFC 9110 §7.6.1). Expect is removed
// because the proxy does not relay 100 Continue.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect",
}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
}

// forward serves an absolute-form plain-HTTP request: check, dial, send
// the request with Connection: close, relay the response.
func (p *Proxy) forward(c net.Conn, lr *limitedReader, br *bufio.Reader, req *http.Request, ev *Event, start time.Time) *Event {
	t, path, err := parseAbsolute(req.RequestURI)
	if err != nil {
		p.refuse(c, ev, start, statusBadRequest, ReasonBadRequest, "request target: "+err.Error())
		return nil
	}
	up := p.open(c, t, ev, start)
	if up == nil {
		return nil
	}
	defer p.untrack(up)
	cu := &countingConn{Conn: up}
	ev.Allowed = true
	idle := p.cfg.IdleTimeout
	lr.r = idleConn{c, idle} // the request body is read through br
	upIdle := idleConn{cu, idle}

	u := &url.URL{Scheme: "http", Host: t.hostHeader(), Opaque: path}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		u.Opaque, u.RawQuery, u.ForceQuery = path[:i], path[i+1:], i == len(path)-1
	}
	h := req.Header.Clone()
	removeHopByHop(h)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // keep net/http from adding its own
	}
	out := &http.Request{
		Method: req.Method, URL: u, Host: t.hostHeader(),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: req.Body, ContentLength: req.ContentLength,
		TransferEncoding: req.TransferEncoding, Close: true,
	}
	if err := out.Write(upIdle); err != nil {
		detail := p.failure("sending request", err)
		p.answer(c, statusBadGateway)
		return p.finish(ev, cu, start, detail)
	}
	ulr := &limitedReader{r: upIdle, n: maxResponseHeaderBytes}
	ubr := bufio.NewReader(ulr)
	var resp *http.Response
	for range 8 { // skip interim 1xx responses (103 Early Hints)
		if resp, err = http.ReadResponse(ubr, out); err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		ulr.n = maxResponseHeaderBytes
	}
	switch {
	case err != nil:
		detail := p.failure("reading response", err)
		p.answer(c, statusBadGateway)
		return p.finish(ev, cu, start, detail)
	case resp.StatusCode < 200:
		resp.Body.Close()
		p.answer(c, statusBadGateway)
		return p.finish(ev, cu, start, fmt.Sprintf("upstream answered %d", resp.StatusCode))
	}
	defer resp.Body.Close()
	ulr.n = math.MaxInt64
	removeHopByHop(resp.Header)
	resp.Close = true
	detail := ""
	if err := resp.Write(idleConn{c, idle}); err != nil {
		detail = p.failure("relaying response", err)
	}
	return p.finish(ev, cu, start, detail)
}

// refuse emits the refusal Event, answers the client with status and a
// generic body, and lets the connection linger briefly so that the
// answer is not lost to a reset.
func (p *Proxy) refuse(c net.Conn, ev *Event, start time.Time, status int, reason, detail string) {
	ev.Allowed = false
	p.emit(ev, start, reason, detail)
	p.answer(c, status)
}

// answer writes a short generic response and half-closes c, then reads
// (and discards) what the client still sends for a moment.
func (p *Proxy) answer(c net.Conn, status int) {
	body := strings.ToLower(http.StatusText(status)) + "\n"
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
	if err != nil || closeWrite(c) != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(refusalLinger))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// safeErr is an error text from net/http's request parser without the
// offending line, which might carry a credential.
func safeErr(err error) string {
	s := strings.TrimPrefix(err.Error(), "net/http: ")
	if i := strings.IndexAny(s, ":\""); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// limitedReader reads at most n bytes from r (then io.EOF), counts what
// it read and keeps r's last error. n and r may be changed between reads
// by the connection's goroutine.
type limitedReader struct {
	r    io.Reader
	n    int64
	read int64
	err  error
}

func (l *limitedReader) Read(b []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > l.n {
		b = b[:l.n]
	}
	n, err := l.r.Read(b)
	l.n -= int64(n)
	l.read += int64(n)
	if err != nil {
		l.err = err
	}
	return n, err
}

// countingConn counts bytes written to (up) and read from (down) the
// upstream connection.
type countingConn struct {
	net.Conn
	up, down atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.down.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.up.Add(int64(n))
	return n, err
}

// idleConn sets a deadline of idle from now before every read and write.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(b []byte) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(b)
}

func (c idleConn) Write(b []byte) (int, error) {
	_ = c.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(b)
}
