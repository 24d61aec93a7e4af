// Package egress is the gateway's allow-listing HTTP egress proxy for
// sandboxed upstream MCP servers ("plugins"). A plugin's sandbox has an
// empty network namespace; HTTP_PROXY and HTTPS_PROXY inside it point at
// a port that the sandbox init bridges to one listener of this proxy.
// There is one Proxy (and one listener) per plugin server, so the server
// a connection comes from is known by where it arrived, never by what
// the client claims.
//
// # Protocol
//
// One request per client connection, HTTP/1.x only:
//
//   - CONNECT host:port (authority form, RFC 9110 §9.3.6): after the
//     checks below the proxy answers 200 and relays bytes both ways
//     until both sides have closed, the tunnel has been idle for
//     Config.IdleTimeout, or the Proxy is closed. TLS is end to end;
//     the proxy never sees plaintext.
//   - GET http://host[:port]/path (absolute form, RFC 9112 §3.2.2; any
//     method but CONNECT): the request is forwarded to the pinned
//     address with "Connection: close" and the response relayed, then
//     both connections are closed. The port defaults to 80. The Host
//     header is rewritten from the URL (a spoofed Host is ignored);
//     hop-by-hop headers (RFC 9110 §7.6.1: Connection and the headers it
//     names, Keep-Alive, Proxy-Connection, TE, Trailer,
//     Transfer-Encoding, Upgrade), Proxy-Authorization,
//     Proxy-Authenticate and Expect are removed.
//
// Anything else is refused with 400 BAD_REQUEST: origin-form targets
// ("GET /"), other schemes (https:// in absolute form, ftp://),
// userinfo, fragments, non-ASCII hosts (IDNs must be sent in xn-- form;
// nothing is decoded), IPv4 literals in legacy notations (2130706433,
// 0177.0.0.1, 0x7f.1, 127.1 are never parsed leniently), HTTP/2,
// garbage. A request header larger than MaxHeaderBytes gets 431, one not
// complete within Config.ReadHeaderTimeout 408 (both BAD_REQUEST too).
//
// # Checks, in order
//
//  1. Syntax (above). Host names are compared as lower-case ASCII with
//     one trailing dot removed; IPv4-mapped IPv6 literals become IPv4.
//  2. Allow-list (Config.Allow, see ParseRule): the port must match
//     exactly. An IP literal is allowed only by a rule that is exactly
//     that literal; a name by an exact rule, by a "*.suffix" rule
//     (standard level: a.example.com and a.b.example.com, not
//     example.com nor evilexample.com), or by Config.AnyHost (minimal
//     level). No match: 403 NOT_ALLOWED, before any DNS query.
//  3. Resolution: a name is resolved once, by the proxy
//     (Config.Resolver). A failure or an empty answer: 502
//     RESOLVE_FAILED.
//  4. Addresses: EVERY resolved address must be dialable, else 403
//     ADDRESS_FORBIDDEN — a name with one public and one loopback
//     address (DNS rebinding) is refused, not filtered. Public addresses
//     (httpfetch.Classify == httpfetch.Public) are dialable.
//     Non-public ones — loopback, private (RFC 1918, ULA), link-local
//     including the 169.254.169.254 cloud metadata service, CGNAT,
//     reserved, documentation, benchmarking — only as follows:
//     an IP-literal rule permits exactly its own address (the operator
//     wrote that address down; the gateway configuration documents
//     "IP literals in the list also permit that private or loopback
//     address"); a name permits a non-public address only if it matched
//     an exact (non-wildcard) rule AND the address lies in one of
//     Config.AllowPrivate's prefixes. Wildcard rules and AnyHost reach
//     public addresses only. Unspecified, multicast and broadcast
//     addresses and zoned IPv6 addresses are never dialable.
//  5. Dial: the proxy dials the checked addresses themselves
//     ("ip:port", never the name, in resolver order, at most four), so
//     there is no second lookup for DNS rebinding to race. Failure: 502
//     DIAL_FAILED.
//
// # Events
//
// Config.OnEvent is called exactly once per accepted client connection,
// except one that is served and closes before sending a single byte
// (that is not an attempt). A refusal's Event (Allowed false, a Reason;
// audit type egress.refused) is emitted before the refusal response is
// written, for TOO_MANY before anything is read. An allowed connection's
// Event (Allowed true, the pinned address, byte counts, duration; audit
// type egress.connect) is emitted once, when the connection has ended
// and both sockets are closed and its MaxConns slot is free: a
// long-lived tunnel is therefore recorded when it ends, or when Close
// ends it. OnEvent cannot veto a connection; a panic in it is recovered
// and logged (a refused client then gets no answer).
// Events carry the normalised host and port, never request headers,
// paths or queries, which may hold credentials; the client gets a short
// generic body.
//
// # Bounds
//
// Request header MaxHeaderBytes (431), Config.ReadHeaderTimeout (408),
// Config.DialTimeout for resolution and dialing together,
// Config.IdleTimeout per tunnel or forwarded exchange (no bytes in
// either direction for that long closes both sides), Config.MaxConns
// client connections being served at once (more: 503 TOO_MANY).
package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/internal/tools/httpfetch"
)

// Defaults and bounds.
const (
	// DefaultDialTimeout bounds name resolution plus dialing of one
	// connection.
	DefaultDialTimeout = 10 * time.Second
	// DefaultIdleTimeout closes a tunnel or forwarded exchange that moved
	// no byte in either direction for this long.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultReadHeaderTimeout bounds reading the request line and
	// headers.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultMaxConns is the default number of client connections
	// served at once.
	DefaultMaxConns = 64
	// MaxHeaderBytes caps a client's request line plus headers (bytes).
	MaxHeaderBytes = 32 << 10

	maxResponseHeaderBytes = 64 << 10 // plain-HTTP upstream response headers
	maxDialAddrs           = 4        // addresses tried per connection, in resolver order
	refusalLinger          = 500 * time.Millisecond
	writeTimeout           = 5 * time.Second // for the proxy's own short responses
)

// Reason codes of refused connections (Event.Reason). They are stable:
// extend the list, never rename an entry.
const (
	ReasonNotAllowed       = "NOT_ALLOWED"       // no allow rule matches host:port (403)
	ReasonAddressForbidden = "ADDRESS_FORBIDDEN" // a literal or resolved address is not dialable (403)
	ReasonResolveFailed    = "RESOLVE_FAILED"    // the name did not resolve, or to no address (502)
	ReasonBadRequest       = "BAD_REQUEST"       // malformed, unsupported or oversized request, or header timeout (400, 408, 431)
	ReasonDialFailed       = "DIAL_FAILED"       // no pinned address accepted the connection (502)
	ReasonTooMany          = "TOO_MANY"          // Config.MaxConns connections already being served (503)
)

// Errors.
var (
	// ErrInvalidConfig reports a Config that New cannot use.
	ErrInvalidConfig = errors.New("egress: invalid config")
	// ErrClosed is returned by Serve and Listen once Close was called.
	ErrClosed = errors.New("egress: proxy closed")
)

// Config configures the proxy of one plugin server.
type Config struct {
	// Server is the plugin server's name, carried into every Event.
	// Required.
	Server string
	// Allow lists the reachable destinations as "host:port" patterns
	// (see ParseRule). Empty Allow without AnyHost allows nothing.
	Allow []string
	// Wildcards permits "*.example.com:443" patterns (security levels
	// standard and minimal). Without it (strict) a pattern containing
	// '*' makes New fail.
	Wildcards bool
	// AnyHost allows any host name on any port (security level minimal)
	// as long as every address it resolves to is public; every
	// connection is still an Event. IP literals still need an exact
	// rule, and non-public addresses an exact rule plus AllowPrivate.
	AnyHost bool
	// AllowPrivate lists prefixes of non-public addresses that names
	// matched by an exact (non-wildcard) Allow rule may resolve to, e.g.
	// 10.20.0.0/16 for an internal API or 127.0.0.1/32 in tests.
	// IPv4-mapped prefixes are converted to IPv4. Invalid and
	// zero-length prefixes and prefixes of unspecified, multicast or
	// broadcast addresses are refused by New.
	AllowPrivate []netip.Prefix
	// Resolver resolves a host name to addresses (default: the pure-Go
	// resolver, (&net.Resolver{PreferGo: true}).LookupNetIP with network
	// "ip"). It is never called for IP literals or names refused by the
	// allow-list.
	Resolver func(ctx context.Context, host string) ([]netip.Addr, error)
	// Dial connects to a literal "ip:port" (network "tcp") that passed
	// every check (default: a net.Dialer with DialTimeout whose Control
	// hook refuses unspecified, multicast and broadcast addresses).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OnEvent receives one Event per connection attempt (see the package
	// comment for when). Required: the caller audits it. It runs on the
	// connection's goroutine and must not call Close.
	OnEvent func(Event)
	// Logger receives operational errors (accept failures, recovered
	// panics), never request contents. Required.
	Logger *slog.Logger
	// DialTimeout bounds resolution plus dialing (default
	// DefaultDialTimeout).
	DialTimeout time.Duration
	// IdleTimeout closes a tunnel idle this long in both directions
	// (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// ReadHeaderTimeout bounds reading the request header (default
	// DefaultReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	// MaxConns bounds the client connections served at once, tunnels
	// included (default DefaultMaxConns); beyond it a connection gets
	// 503 and an Event with ReasonTooMany.
	MaxConns int
}

// Event describes one connection attempt through the proxy.
type Event struct {
	// Server is Config.Server.
	Server string
	// Method is "CONNECT" or the method of an absolute-form request;
	// empty when the request could not be read (or for TOO_MANY, which
	// answers before reading).
	Method string
	// Host is the requested host, normalised (lower case, no trailing
	// dot, canonical IP literal), and Port its port in decimal; both
	// empty when the target could not be parsed.
	Host string
	Port string
	// Addr is the pinned address dialed: the connected one when Allowed,
	// the last one tried for DIAL_FAILED, zero when refused before
	// dialing.
	Addr netip.AddrPort
	// Allowed is true for a connection that was made (the Event is then
	// emitted when it ends).
	Allowed bool
	// Reason is one of the Reason* codes when Allowed is false, else "".
	Reason string
	// Detail explains a refusal, or how an allowed connection ended
	// ("" for a normal close, "idle timeout", "proxy closed", an I/O
	// error). For the audit log only; never sent to the client.
	Detail string
	// BytesUp counts bytes written to the upstream connection, BytesDown
	// bytes read from it (for plain HTTP both include the headers).
	BytesUp, BytesDown int64
	// Duration is from accepting the client connection to the Event.
	Duration time.Duration
}

// Proxy is the egress proxy of one plugin server. Its methods are safe
// for concurrent use.
type Proxy struct {
	cfg          Config
	rules        []Rule
	allowPrivate []netip.Prefix
	ctx          context.Context // cancelled by Close: aborts resolution and dials
	cancel       context.CancelFunc

	mu        sync.Mutex
	closed    bool
	done      chan struct{} // closed by Close
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // client and upstream connections, closed by Close
	active    int                   // client connections being served
	refusing  int                   // TOO_MANY refusals in progress
	wg        sync.WaitGroup        // Serve loops and connection goroutines
}

// New validates cfg, fills in defaults and returns a Proxy that serves
// nothing until Listen or Serve. Errors wrap ErrInvalidConfig (and
// ErrInvalidRule for a bad Allow pattern): missing Server, Logger or
// OnEvent, negative timeouts or MaxConns, an invalid Allow pattern, an
// invalid AllowPrivate prefix.
func New(cfg Config) (*Proxy, error) {
	switch {
	case cfg.Server == "":
		return nil, fmt.Errorf("%w: Server is empty", ErrInvalidConfig)
	case cfg.Logger == nil:
		return nil, fmt.Errorf("%w: Logger is nil", ErrInvalidConfig)
	case cfg.OnEvent == nil:
		return nil, fmt.Errorf("%w: OnEvent is nil (connections must be audited)", ErrInvalidConfig)
	case cfg.DialTimeout < 0 || cfg.IdleTimeout < 0 || cfg.ReadHeaderTimeout < 0:
		return nil, fmt.Errorf("%w: negative timeout", ErrInvalidConfig)
	case cfg.MaxConns < 0:
		return nil, fmt.Errorf("%w: negative MaxConns", ErrInvalidConfig)
	}
	p := &Proxy{
		done:      make(chan struct{}),
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
	}
	for _, s := range cfg.Allow {
		r, err := ParseRule(s, cfg.Wildcards)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		p.rules = append(p.rules, r)
	}
	for _, pr := range cfg.AllowPrivate {
		pr, err := privatePrefix(pr)
		if err != nil {
			return nil, fmt.Errorf("%w: AllowPrivate: %w", ErrInvalidConfig, err)
		}
		p.allowPrivate = append(p.allowPrivate, pr)
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Resolver == nil {
		r := &net.Resolver{PreferGo: true}
		cfg.Resolver = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return r.LookupNetIP(ctx, "ip", host)
		}
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.DialTimeout, Control: dialControl}
		cfg.Dial = d.DialContext
	}
	p.cfg = cfg
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// privatePrefix validates and normalises one AllowPrivate prefix.
func privatePrefix(pr netip.Prefix) (netip.Prefix, error) {
	if !pr.IsValid() { // a netip.Prefix never has a zone: PrefixFrom drops it
		return pr, errors.New("invalid prefix")
	}
	if pr.Addr().Is4In6() {
		if pr.Bits() < 96 {
			return pr, fmt.Errorf("%s: IPv4-mapped prefix shorter than /96", pr)
		}
		pr = netip.PrefixFrom(pr.Addr().Unmap(), pr.Bits()-96)
	}
	if pr.Bits() == 0 {
		return pr, fmt.Errorf("%s: a zero-length prefix would allow every address", pr)
	}
	pr = pr.Masked()
	if neverDialable(pr.Addr()) {
		return pr, fmt.Errorf("%s: %s addresses can never be dialed", pr, httpfetch.Classify(pr.Addr()))
	}
	return pr, nil
}

// neverDialable reports addresses no rule can permit: unspecified,
// multicast, broadcast, zoned.
func neverDialable(a netip.Addr) bool {
	if a.Zone() != "" {
		return true
	}
	switch httpfetch.Classify(a) {
	case httpfetch.Unspecified, httpfetch.Multicast, httpfetch.Broadcast:
		return true
	}
	return false
}

// dialControl is the default dialer's last look at the address, after
// the socket exists and before connect(2).
func dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || neverDialable(ap.Addr()) {
		return fmt.Errorf("egress: refusing to dial %q", address)
	}
	return nil
}

// Listen listens on 127.0.0.1 on a free port, serves it in the
// background until Close, and returns the address as "127.0.0.1:port".
// It returns ErrClosed after Close, or the net.Listen error.
func (p *Proxy) Listen() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("egress: listen: %w", err)
	}
	if !p.addListener(ln) {
		ln.Close()
		return "", ErrClosed
	}
	go func() {
		if err := p.serve(ln); err != nil && !errors.Is(err, ErrClosed) {
			p.cfg.Logger.Error("egress: listener stopped", "server", p.cfg.Server, "err", err)
		}
	}()
	return ln.Addr().String(), nil
}

// Serve accepts connections on ln until Close (then it returns
// ErrClosed) or until ln fails permanently (it returns that error,
// e.g. one wrapping net.ErrClosed if ln was closed by someone else).
// Transient accept errors are logged and retried with backoff. Serve
// closes ln when it returns.
func (p *Proxy) Serve(ln net.Listener) error {
	if !p.addListener(ln) {
		ln.Close()
		return ErrClosed
	}
	return p.serve(ln)
}

// Close stops every listener, closes every client and upstream
// connection (live tunnels end, and their Events are emitted) and waits
// for all connection goroutines to finish. It is idempotent and always
// returns nil. It must not be called from OnEvent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
		p.cancel()
		for ln := range p.listeners {
			ln.Close()
		}
		for c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Proxy) addListener(ln net.Listener) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.listeners[ln] = struct{}{}
	p.wg.Add(1)
	return true
}

func (p *Proxy) serve(ln net.Listener) error {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
		ln.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.isClosed() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("egress: accept: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.cfg.Logger.Warn("egress: accept failed; retrying", "server", p.cfg.Server, "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				return ErrClosed
			}
			continue
		}
		delay = 0
		p.accept(c)
	}
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// accept starts serving c, or refuses it when MaxConns are being served.
func (p *Proxy) accept(c net.Conn) {
	start := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return
	}
	busy := p.active >= p.cfg.MaxConns
	respond := true
	if busy {
		// Refusals linger briefly; past MaxConns of them a connection
		// is closed without an answer (still an Event).
		respond = p.refusing < p.cfg.MaxConns
		if respond {
			p.refusing++
		}
	} else {
		p.active++
	}
	p.conns[c] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	if busy {
		go p.refuseBusy(c, start, respond)
		return
	}
	go p.handle(c, start)
}

// track registers an upstream connection so that Close closes it; false
// (and c closed) if the proxy is closing.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// untrack closes c and forgets it.
func (p *Proxy) untrack(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) refuseBusy(c net.Conn, start time.Time, respond bool) {
	defer p.wg.Done()
	defer func() {
		p.untrack(c)
		p.mu.Lock()
		if respond {
			p.refusing--
		}
		p.mu.Unlock()
	}()
	defer p.recoverPanic()
	ev := Event{Server: p.cfg.Server}
	detail := fmt.Sprintf("%d connections already being served", p.cfg.MaxConns)
	if !respond {
		p.emit(&ev, start, ReasonTooMany, detail+"; closed without an answer")
		return
	}
	p.refuse(c, &ev, start, statusTooMany, ReasonTooMany, detail)
}

func (p *Proxy) recoverPanic() {
	if r := recover(); r != nil {
		p.cfg.Logger.Error("egress: connection handler panicked", "server", p.cfg.Server, "panic", r)
	}
}

// emit finishes ev and hands it to OnEvent.
func (p *Proxy) emit(ev *Event, start time.Time, reason, detail string) {
	ev.Reason, ev.Detail = reason, detail
	ev.Duration = time.Since(start)
	p.cfg.OnEvent(*ev)
}
