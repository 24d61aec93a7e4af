package plugins

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/secrets"
	"github.com/portcullis/portcullis/internal/tool"
)

// bearerTransport adds the gateway's own credential for the upstream. The
// client's token never reaches it: calls are made on sessions the gateway
// opened, with requests it built.
type bearerTransport struct {
	base   http.RoundTripper
	token  string   // "" sends no Authorization header
	origin *url.URL // the configured upstream: the only place the token goes
}

// RoundTrip implements http.RoundTripper. The credential goes only to the
// configured upstream's origin (scheme and host), never to another.
func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Del("Authorization")
	if t.token != "" && r.URL.Scheme == t.origin.Scheme && r.URL.Host == t.origin.Host {
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
	return t.base.RoundTrip(r)
}

// httpClient is the client for one credential to the upstream at endpoint.
// Redirects are not followed (like every other outbound client of the
// gateway): a transport-level header would be re-sent on every hop, so an
// upstream answering 307 to another host would hand it the credential.
func httpClient(endpoint, token string) (*http.Client, error) {
	origin, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{
		Transport:     &bearerTransport{base: base, token: token, origin: origin},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// token returns the stored credential for user ("" shared): a user's
// own only, never the shared one in its place; ok is false when none is
// configured or stored.
func (s *server) token(ctx context.Context, user string) (string, bool, error) {
	name := s.cfg.Auth.BearerSecret
	if name == "" {
		return "", false, nil
	}
	if s.m.deps.Secrets == nil {
		return "", false, errors.New("no secrets store")
	}
	v, err := s.m.deps.Secrets.GetOwn(ctx, name, user)
	if errors.Is(err, secrets.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("secret %q: %w", name, err)
	}
	return string(v), true, nil
}

// openHTTP initializes one session with the given credential.
func (s *server) openHTTP(ctx context.Context, token string) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "portcullis", Version: s.m.cfg.Version},
		&mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { s.resync() }})
	sctx, cancel := context.WithTimeout(ctx, s.m.cfg.StartTimeout)
	defer cancel()
	hc, err := httpClient(s.cfg.URL, token)
	if err != nil {
		return nil, err
	}
	tr := &mcp.StreamableClientTransport{Endpoint: s.cfg.URL, HTTPClient: hc, MaxRetries: 2}
	return client.Connect(sctx, tr, nil)
}

// connectHTTP opens the server's shared session (tool discovery, pings and,
// unless auth.per_user, every call). With per_user, calls use a session
// per principal opened with that principal's own stored credential, read
// again on every call: a session opened with a credential that was since
// rotated is closed and a new one opened with the new credential, and a
// deleted credential closes the session and refuses the call.
func (s *server) connectHTTP(ctx context.Context) (*conn, error) {
	tok, ok, err := s.token(ctx, "")
	if err != nil {
		return nil, err
	}
	if s.cfg.Auth.BearerSecret != "" && !ok && !s.cfg.Auth.PerUser {
		return nil, fmt.Errorf("secret %q is not stored (portcullis secret set %s)", s.cfg.Auth.BearerSecret, s.cfg.Auth.BearerSecret)
	}
	cs, err := s.openHTTP(ctx, tok)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cs.Wait()
		close(done)
	}()
	c := &conn{session: cs, done: done, exit: func() exitInfo { return exitInfo{err: waitErr} }}
	var users sync.Map // principal name → *userSession
	var stopped atomic.Bool
	c.stop = func() {
		// Set before the walk: a call that gets its user's lock after the
		// walk sees it; one that got it before is waited for and closed.
		stopped.Store(true)
		cs.Close()
		users.Range(func(_, v any) bool {
			us := v.(*userSession)
			us.mu.Lock()
			us.closeLocked()
			us.mu.Unlock()
			return true
		})
	}
	if s.cfg.Auth.PerUser {
		c.sessionFor = func(ctx context.Context, user string) (*mcp.ClientSession, error) {
			if user == "" { // anonymous: no credential of its own, and no secret read
				return nil, tool.Errorf(reason.PermissionDenied, errNoCredential,
					"no credential for upstream server %s is stored for you", s.cfg.Name)
			}
			// The credential is read outside the user's lock: a store read
			// and a decryption that the user's other calls need not queue
			// behind (a rotation racing it costs at most one more reopen).
			tok, ok, err := s.token(ctx, user)
			v, _ := users.LoadOrStore(user, &userSession{})
			us := v.(*userSession)
			us.mu.Lock()
			defer us.mu.Unlock()
			if stopped.Load() {
				return nil, tool.Errorf(reason.Unavailable, errStopped, "upstream server %s is not available", s.cfg.Name)
			}
			if err != nil {
				return nil, tool.Errorf(reason.Unavailable, err, "upstream server %s is not available", s.cfg.Name)
			}
			if !ok {
				us.closeLocked() // the credential was deleted: so is its session
				return nil, tool.Errorf(reason.PermissionDenied, errNoCredential,
					"no credential for upstream server %s is stored for you", s.cfg.Name)
			}
			sum := sha256.Sum256([]byte(tok))
			if us.cs != nil && us.sum == sum {
				return us.cs, nil
			}
			us.closeLocked() // opened with a credential since rotated
			ucs, err := s.openHTTP(ctx, tok)
			if err != nil {
				return nil, tool.Errorf(reason.Unavailable, err, "upstream server %s refused the connection", s.cfg.Name)
			}
			us.cs, us.sum = ucs, sum
			go func() { // a session that ends is reopened on the next call
				_ = ucs.Wait()
				us.mu.Lock()
				if us.cs == ucs {
					us.cs = nil
				}
				us.mu.Unlock()
			}()
			return ucs, nil
		}
	}
	return c, nil
}

type userSession struct {
	mu  sync.Mutex
	cs  *mcp.ClientSession
	sum [sha256.Size]byte // SHA-256 of the credential cs was opened with (no second copy of it kept)
}

// errStopped: a per-user session was asked for after the server's
// connection stopped.
var errStopped = errors.New("upstream connection stopped")

// closeLocked closes the session, if any; us.mu is held.
func (us *userSession) closeLocked() {
	if us.cs != nil {
		us.cs.Close()
		us.cs = nil
	}
}
