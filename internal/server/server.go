// Package server wires the HTTP surface: /mcp (MCP Streamable HTTP through
// the official SDK), /healthz, /readyz, /admin/v1/ and the web console at
// /ui/. The middleware order is set in one place (chain), outermost
// first, and pinned by a test:
//
//	recover → request id → body limit → origin check → authenticate → audit bad requests → handler
//
// and for the console's page and sign-in (ConsoleChain, console.go):
//
//	recover → request id → body limit → console headers → origin check → handler
//
// Identity comes only from the Authorization header or, on /admin/v1/
// only, from a console session cookie accompanied by the session's CSRF
// token; no client-chosen header (X-User-ID, X-Forwarded-User, ...) is
// ever read. The client's address is the TCP peer, or — only when the
// peer is a configured trusted proxy — the nearest untrusted address in
// X-Forwarded-For.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/mcpserver"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/ui"
)

// Authenticator verifies bearer credentials (implemented by *authn.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, key string) (*principal.Principal, error)
}

// Emitter records audit events durably.
type Emitter interface {
	Emit(ctx context.Context, e *audit.Event) error
}

// Config configures the HTTP surface.
type Config struct {
	MaxBodyBytes      int64
	SessionTimeout    time.Duration
	ReadHeaderTimeout time.Duration
	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// (a reverse proxy in front of the gateway). Empty: the TCP peer is
	// the client, whatever headers say.
	TrustedProxies []netip.Prefix
	// AllowedHosts, if not empty, are the only Host header values (name
	// or name:port, case-insensitive) accepted on authenticated routes:
	// DNS-rebinding protection for non-loopback listeners. Loopback
	// listeners always require a loopback Host.
	AllowedHosts []string
	// ResourceMetadata, when set (OIDC is on), is the RFC 9728 protected
	// resource metadata document served at ResourceMetadataPaths, and
	// ResourceMetadataURL is advertised in every 401 challenge
	// (WWW-Authenticate: Bearer resource_metadata="...", MCP
	// authorization spec 2025-11-25).
	ResourceMetadata      []byte
	ResourceMetadataURL   string
	ResourceMetadataPaths []string
	// ConsoleIdleTimeout ends a console session unused for this long;
	// ConsoleMaxAge ends it this long after sign-in whatever its use;
	// ConsoleMaxSessions bounds the sessions held (the least recently
	// used goes). Zero: DefaultConsoleIdleTimeout, DefaultConsoleMaxAge,
	// DefaultConsoleMaxSessions.
	ConsoleIdleTimeout time.Duration
	ConsoleMaxAge      time.Duration
	ConsoleMaxSessions int
}

// Deps are the server's collaborators; all are required except Lockout,
// Alerts, Quarantined, OnAuthFailure, ConsoleAllowed and Now.
type Deps struct {
	Authn  Authenticator
	MCP    *mcp.Server
	Admin  http.Handler
	Audit  Emitter
	Ready  func(ctx context.Context) error
	Logger *slog.Logger
	// Lockout, if set, refuses sources and principals that failed too
	// often (brute-force protection).
	Lockout *authn.Lockout
	// Alerts receives an alert for every new lockout.
	Alerts alert.Sink
	// Quarantined, if set, reports a quarantined principal: every request
	// it makes is refused with a generic 403 (audited quarantine.refused).
	Quarantined func(principal string) bool
	// OnAuthFailure, if set, is told of every authentication failure (a
	// violation; principal is empty when the credential named nobody).
	OnAuthFailure func(ctx context.Context, principal, cause string)
	// ConsoleAllowed, if set, turns the web console on (/ui/, and session
	// cookies on /admin/v1/): it reports whether an authenticated
	// principal may sign in (see ConsoleAccess). Nil: /ui/ is 404 and no
	// cookie is ever read.
	ConsoleAllowed func(p *principal.Principal) bool
	// Metrics, if set, is served at GET /metrics (Prometheus text
	// exposition). Like /healthz it needs no credential: it carries tool
	// and role names and counts, never principals, arguments or secrets.
	Metrics http.Handler
	// Now is the clock of console sessions (default time.Now).
	Now func() time.Time
}

// Server is the HTTP front end.
type Server struct {
	cfg      Config
	d        Deps
	http     *http.Server
	base     context.Context
	stop     context.CancelFunc
	sessions *sessionStore
}

// New returns a Server.
func New(cfg Config, d Deps) (*Server, error) {
	if d.Authn == nil || d.MCP == nil || d.Admin == nil || d.Audit == nil || d.Ready == nil || d.Logger == nil {
		return nil, errors.New("server: missing dependency")
	}
	if cfg.MaxBodyBytes <= 0 || cfg.SessionTimeout <= 0 || cfg.ReadHeaderTimeout <= 0 {
		return nil, fmt.Errorf("server: invalid config: body limit, session timeout and header timeout must be positive")
	}
	if (cfg.ResourceMetadata == nil) != (cfg.ResourceMetadataURL == "") {
		return nil, errors.New("server: ResourceMetadata and ResourceMetadataURL go together")
	}
	if cfg.ConsoleIdleTimeout < 0 || cfg.ConsoleMaxAge < 0 || cfg.ConsoleMaxSessions < 0 {
		return nil, errors.New("server: invalid config: console session limits must not be negative")
	}
	if cfg.ConsoleIdleTimeout == 0 {
		cfg.ConsoleIdleTimeout = DefaultConsoleIdleTimeout
	}
	if cfg.ConsoleMaxAge == 0 {
		cfg.ConsoleMaxAge = DefaultConsoleMaxAge
	}
	if cfg.ConsoleMaxSessions == 0 {
		cfg.ConsoleMaxSessions = DefaultConsoleMaxSessions
	}
	if d.Alerts == nil {
		d.Alerts = alert.LogSink{Logger: d.Logger}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	base, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, d: d, base: base, stop: stop,
		sessions: newSessionStore(cfg.ConsoleIdleTimeout, cfg.ConsoleMaxAge, cfg.ConsoleMaxSessions, d.Now)}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(d.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// Named is a middleware with a name, for the order test and logs.
type Named struct {
	Name string
	Wrap Middleware
}

// Chain returns the middleware for /mcp, outermost first (bearer
// credentials only).
func (s *Server) Chain() []Named { return s.chain(false) }

// chain is the one place the order is set. sessions lets console
// session cookies authenticate too (the admin API with the console on).
func (s *Server) chain(sessions bool) []Named {
	return []Named{
		{"recover", s.recoverer},
		{"request_id", s.requestID},
		{"body_limit", s.bodyLimit},
		{"origin", s.originCheck},
		{"authenticate", s.authenticate(sessions)},
		{"audit_bad_request", s.auditBadRequest},
	}
}

// public is the prefix of Chain used for unauthenticated probes.
func (s *Server) public() []Named { return s.Chain()[:3] }

// ConsoleChain returns the middleware of /ui/, outermost first: the
// public prefix, the console's security headers, and the origin check
// (cross-origin sign-in and DNS rebinding); sign-in authenticates itself.
func (s *Server) ConsoleChain() []Named {
	return append(slices.Clone(s.public()), Named{"console_headers", s.consoleHeaders}, Named{"origin", s.originCheck})
}

func stack(h http.Handler, mws []Named) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i].Wrap(h)
	}
	return h
}

// Handler returns the full HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	console := s.d.ConsoleAllowed != nil
	mux.Handle("/mcp", stack(s.mcpHandler(), s.Chain()))
	mux.Handle("/admin/v1/", stack(s.d.Admin, s.chain(console)))
	if console {
		mux.Handle(ui.Prefix, stack(s.consoleHandler(), s.ConsoleChain()))
		mux.Handle("GET /ui", stack(http.RedirectHandler(ui.Prefix, http.StatusMovedPermanently), s.ConsoleChain()))
	}
	if s.d.Metrics != nil {
		mux.Handle("GET /metrics", stack(s.d.Metrics, s.public()))
	}
	mux.Handle("GET /healthz", stack(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}), s.public()))
	mux.Handle("GET /readyz", stack(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.d.Ready(ctx); err != nil {
			s.d.Logger.Warn("not ready", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}), s.public()))
	if s.cfg.ResourceMetadata != nil {
		meta := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Public metadata that browser-based MCP clients fetch
			// cross-origin (RFC 9728 §3).
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			_, _ = w.Write(s.cfg.ResourceMetadata)
		})
		for _, p := range s.cfg.ResourceMetadataPaths {
			mux.Handle("GET "+p, stack(meta, s.public()))
		}
	}
	mux.Handle("/", stack(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	}), s.public()))
	return mux
}

// mcpHandler serves both MCP eras on /mcp: requests that carry
// MCP-Protocol-Version 2026-07-28 or later and no session go to a
// stateless handler (that protocol has no sessions); everything else goes
// to a stateful handler (2025-11-25 and earlier, with idle timeout).
// TokenInfo (the authenticated identity) is attached for the SDK, which
// binds each session to its creator.
func (s *Server) mcpHandler() http.Handler {
	getServer := func(*http.Request) *mcp.Server { return s.d.MCP }
	logger := mcpserver.SDKLogger(s.d.Logger.With("component", "mcp"))
	stateless := mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{
		Stateless:                    true,
		Logger:                       logger,
		MaxRequestBodyBytes:          s.cfg.MaxBodyBytes,
		PropagateRequestCancellation: true,
	})
	stateful := mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{
		SessionTimeout:      s.cfg.SessionTimeout,
		Logger:              logger,
		MaxRequestBodyBytes: s.cfg.MaxBodyBytes,
	})
	dispatch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("Mcp-Protocol-Version"); v >= "2026-07-28" && r.Header.Get("Mcp-Session-Id") == "" {
			stateless.ServeHTTP(w, r)
			return
		}
		stateful.ServeHTTP(w, r)
	})
	verifier := func(ctx context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		p, ok := principal.FromContext(ctx)
		if !ok {
			return nil, auth.ErrInvalidToken // fail closed: authenticate must have run
		}
		rid, remote := RequestMeta(r)
		return mcpserver.TokenInfo(mcpserver.Identity{Principal: p, RequestID: rid, RemoteAddr: remote}, time.Time{}), nil
	}
	return auth.RequireBearerToken(verifier, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(dispatch)
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, cancels long-lived streams and
// waits for handlers to return until ctx is done; then it closes whatever
// is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.http.SetKeepAlivesEnabled(false)
	done := make(chan error, 1)
	go func() { done <- s.http.Shutdown(ctx) }()
	s.stop() // end hanging SSE streams so Shutdown does not wait for them
	s.closeSessions()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errors.Join(ctx.Err(), s.http.Close())
	}
}

// closeSessions ends every MCP session (2025-11-25 sessions otherwise live
// until their idle timeout, holding goroutines).
func (s *Server) closeSessions() {
	for ss := range s.d.MCP.Sessions() {
		_ = ss.Close()
	}
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	clientAddrKey
)

// RequestMeta returns the gateway-assigned request id and the client's
// address: the TCP peer, or the forwarded client address when the peer
// is a trusted proxy (see Config.TrustedProxies).
func RequestMeta(r *http.Request) (requestID, remote string) {
	id, _ := r.Context().Value(requestIDKey).(string)
	remote, ok := r.Context().Value(clientAddrKey).(string)
	if !ok {
		remote = r.RemoteAddr
	}
	return id, remote
}

// clientAddr returns the client's address for r: the peer, unless the
// peer is a trusted proxy; then X-Forwarded-For is walked from the right
// (the entries the trusted proxies appended) past trusted addresses, and
// the first untrusted one is the client. Headers from an untrusted peer,
// and malformed entries, are never believed.
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	if len(trusted) == 0 {
		return r.RemoteAddr
	}
	isTrusted := func(a netip.Addr) bool {
		a = a.Unmap()
		return slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !isTrusted(peer.Addr()) {
		return r.RemoteAddr
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	client := r.RemoteAddr
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed hop: stop at the last address we could vouch for
		}
		client = a.Unmap().String()
		if !isTrusted(a) {
			break
		}
	}
	return client
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// requestID runs inside this middleware, so r does not
				// carry the id; it is in the shared response header.
				rid := w.Header().Get("X-Request-Id")
				s.d.Logger.Error("panic in handler", "path", r.URL.Path, "request_id", rid, "panic", v, "stack", string(debug.Stack()))
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// requestID assigns every request a fresh id (never taken from the
// client), returns it in X-Request-Id, and resolves the client address.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := mcpserver.NewRequestID()
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = context.WithValue(ctx, clientAddrKey, clientAddr(r, s.cfg.TrustedProxies))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// bodyLimit refuses bodies over MaxBodyBytes with 413: at once when the
// declared length is too large, else when reading passes the limit.
func (s *Server) bodyLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBodyBytes {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request_too_large",
				"message": fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodyBytes)})
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// originCheck refuses requests a web page could have made: cross-origin
// browser requests (Sec-Fetch-Site / Origin, Go's CrossOriginProtection)
// and, on a loopback listener, any Host that is not a loopback name — DNS
// rebinding (MCP security best practices, CVE-2025-49596 class) — and,
// when Config.AllowedHosts is set, any other Host. It guards every
// authenticated route, not only /mcp.
func (s *Server) originCheck(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "message": "cross-origin request refused"})
	}))
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if ok && isLoopbackAddr(local) && !isLoopbackHost(r.Host) ||
			len(s.cfg.AllowedHosts) > 0 && !hostAllowed(r.Host, s.cfg.AllowedHosts) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "message": "invalid Host header"})
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// hostAllowed reports whether host (a Host header) is in allowed, which
// holds names with or without a port.
func hostAllowed(host string, allowed []string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	for _, a := range allowed {
		if strings.EqualFold(a, host) || strings.EqualFold(a, name) {
			return true
		}
	}
	return false
}

func isLoopbackAddr(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}

// isLoopbackHost reports whether a Host header names the loopback
// interface: "localhost", 127.0.0.0/8 or ::1, with or without a port.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authenticate requires a valid bearer credential — or, when sessions is
// set and the request has no Authorization header, a console session
// cookie with its CSRF token (authenticateSession). Failures get 401 with
// WWW-Authenticate (RFC 6750 §3) and the same generic body whatever the
// cause — unknown, wrong, revoked, expired, disabled or locked out; the
// cause is recorded in an auth.failure audit event. A token that verified
// but lacks a required scope gets 403 insufficient_scope (RFC 6750 §3.1).
// Sources and principals that fail too often are locked out before their
// credential is even looked up.
func (s *Server) authenticate(sessions bool) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			header := r.Header.Get("Authorization")
			if sessions && header == "" {
				if c, err := r.Cookie(SessionCookie); err == nil {
					s.authenticateSession(w, r, c.Value, next)
					return
				}
			}
			token, ok := authn.ParseBearer(header)
			cause := ""
			switch {
			case header == "":
				cause = authn.CauseMissing
			case !ok:
				cause = authn.CauseMalformed
			}
			p, err := s.verify(r, token, cause)
			if err != nil {
				s.refuse(w, r, err, header != "")
				return
			}
			s.admit(w, r, p, next)
		})
	}
}

// verify turns a bearer credential into a principal: the source's
// lockout first (before the credential is looked up), then a given
// failure cause (missing or malformed credential), the authenticator,
// and the principal's lockout. Errors are *authn.Failure.
func (s *Server) verify(r *http.Request, token, cause string) (*principal.Principal, error) {
	_, remote := RequestMeta(r)
	if locked, _ := s.d.Lockout.Locked(authn.SourceKey(remote)); locked {
		// Same answer as a wrong key: the client cannot tell.
		return nil, &authn.Failure{Cause: authn.CauseLocked}
	}
	if cause != "" {
		return nil, &authn.Failure{Cause: cause}
	}
	p, err := s.d.Authn.Authenticate(r.Context(), token)
	if err != nil {
		return nil, err
	}
	user := authn.PrincipalKey(p.Name)
	if locked, _ := s.d.Lockout.Locked(user); locked {
		return nil, &authn.Failure{Cause: authn.CauseLocked, User: p.Name, KeyID: p.KeyID}
	}
	s.d.Lockout.Success(user)
	return p, nil
}

// refuse counts an authentication failure towards the lockout and
// answers it (authFailure).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error, hadToken bool) {
	_, remote := RequestMeta(r)
	s.countFailure(r, authn.SourceKey(remote), err)
	s.authFailure(w, r, err, hadToken)
}

// admit refuses a quarantined principal, else serves next as p.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, p *principal.Principal, next http.Handler) {
	if s.refuseQuarantined(w, r, p) {
		return
	}
	next.ServeHTTP(w, r.WithContext(principal.NewContext(r.Context(), p)))
}

// refuseQuarantined answers a quarantined principal with a generic 403
// (audited quarantine.refused) and reports whether it did.
func (s *Server) refuseQuarantined(w http.ResponseWriter, r *http.Request, p *principal.Principal) bool {
	if s.d.Quarantined == nil || !s.d.Quarantined(p.Name) {
		return false
	}
	rid, remote := RequestMeta(r)
	if aerr := s.d.Audit.Emit(context.WithoutCancel(r.Context()), &audit.Event{Type: audit.QuarantineRefused,
		Principal: p.Name, Roles: p.Roles, RequestID: rid, RemoteAddr: remote, Decision: audit.DecisionDeny,
		Status: audit.StatusRefused, Reason: reason.PermissionDenied, Detail: r.Method + " " + r.URL.Path}); aerr != nil {
		s.d.Logger.Error("audit of quarantine refusal failed", "err", aerr)
	}
	writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "message": "access denied"})
	return true
}

// countFailure feeds the lockout and reports new lockouts (auth.lockout
// event and an alert). A missing credential counts too (probing);
// backend errors and scope shortfalls (a valid token) do not.
func (s *Server) countFailure(r *http.Request, src string, err error) {
	var f *authn.Failure
	if !errors.As(err, &f) || f.Cause == authn.CauseBackend || f.Cause == authn.CauseInsufficientScope || f.Cause == authn.CauseLocked {
		return
	}
	var user string
	if f.User != "" {
		user = authn.PrincipalKey(f.User)
	}
	for _, l := range s.d.Lockout.Failure(src, user) {
		rid, remote := RequestMeta(r)
		e := &audit.Event{Type: audit.AuthLockout, RequestID: rid, RemoteAddr: remote,
			Decision: audit.DecisionDeny, Status: audit.StatusRefused, Reason: reason.Unauthenticated,
			Detail: fmt.Sprintf("%s locked out for %s after %d failures", l.Subject, l.Duration, l.Failures)}
		if strings.HasPrefix(l.Subject, "user:") {
			e.Principal = f.User
		}
		if aerr := s.d.Audit.Emit(context.WithoutCancel(r.Context()), e); aerr != nil {
			s.d.Logger.Error("audit of lockout failed", "err", aerr)
		}
		s.d.Alerts.Alert(r.Context(), alert.Alert{Kind: alert.KindAuthLockout, Severity: alert.High,
			Subject: l.Subject, Detail: e.Detail, Time: time.Now()})
	}
}

func (s *Server) authFailure(w http.ResponseWriter, r *http.Request, err error, hadToken bool) {
	rid, remote := RequestMeta(r)
	e := &audit.Event{Type: audit.AuthFailure, RequestID: rid, RemoteAddr: remote,
		Decision: audit.DecisionDeny, Status: audit.StatusRefused, Reason: reason.Unauthenticated,
		Detail: r.Method + " " + r.URL.Path}
	var f *authn.Failure
	if errors.As(err, &f) {
		e.Detail += ": " + f.Cause
		if f.KeyID != "" {
			e.Detail += " key " + f.KeyID
		}
		if f.Subject != "" {
			e.Detail += " sub " + f.Subject
		}
		e.Principal = f.User
	}
	if aerr := s.d.Audit.Emit(r.Context(), e); aerr != nil {
		s.d.Logger.Error("audit of auth failure failed", "err", aerr)
	}
	if s.d.OnAuthFailure != nil && (f == nil || f.Cause != authn.CauseBackend && f.Cause != CauseSessionUnknown && f.Cause != CauseSessionExpired) {
		cause := "unknown"
		if f != nil {
			cause = f.Cause
		}
		s.d.OnAuthFailure(context.WithoutCancel(r.Context()), e.Principal, cause)
	}
	if f != nil && f.Cause == authn.CauseBackend {
		s.d.Logger.Error("authentication backend error", "err", f.Err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unavailable", "message": "service unavailable"})
		return
	}
	if f != nil && f.Cause == authn.CauseInsufficientScope {
		challenge := `Bearer realm="portcullis", error="insufficient_scope"`
		if f.Scope != "" {
			challenge += `, scope="` + f.Scope + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge+s.metadataParam())
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "message": "insufficient scope"})
		return
	}
	challenge := `Bearer realm="portcullis"`
	if hadToken {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge+s.metadataParam())
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated", "message": reason.Message(reason.Unauthenticated)})
}

// metadataParam is the RFC 9728 §5.1 challenge parameter, when OIDC is on.
func (s *Server) metadataParam() string {
	if s.cfg.ResourceMetadataURL == "" {
		return ""
	}
	return `, resource_metadata="` + s.cfg.ResourceMetadataURL + `"`
}

// auditBadRequest records protocol-level refusals (malformed JSON-RPC,
// wrong content type, oversized body, unknown session) of authenticated
// callers as request.invalid.
func (s *Server) auditBadRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status < 400 || rec.status == http.StatusForbidden && strings.HasPrefix(r.URL.Path, "/admin/") {
			return
		}
		p, _ := principal.FromContext(r.Context())
		rid, remote := RequestMeta(r)
		e := &audit.Event{Type: audit.RequestInvalid, RequestID: rid, RemoteAddr: remote,
			Status: audit.StatusRefused, Reason: reason.BadRequest,
			Detail: fmt.Sprintf("%s %s: HTTP %d", r.Method, r.URL.Path, rec.status)}
		if p != nil {
			e.Principal, e.Roles = p.Name, p.Roles
		}
		if err := s.d.Audit.Emit(r.Context(), e); err != nil {
			s.d.Logger.Error("audit of bad request failed", "err", err)
		}
	})
}

// statusRecorder records the response status. It keeps streaming working
// (Flush) and exposes the wrapped writer to http.ResponseController.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
