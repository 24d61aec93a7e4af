package plugins

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
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
	base  http.RoundTripper
	token string // "" sends no Authorization header
}

// RoundTrip implements http.RoundTripper.
func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Del("Authorization")
	if t.token != "" {
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
	return t.base.RoundTrip(r)
}

// httpClient is the client for one credential.
func httpClient(token string) *http.Client {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: &bearerTransport{base: base, token: token}}
}

// token returns the stored credential for user ("" shared); ok is false
// when none is configured or stored.
func (s *server) token(ctx context.Context, user string) (string, bool, error) {
	name := s.cfg.Auth.BearerSecret
	if name == "" {
		return "", false, nil
	}
	if s.m.deps.Secrets == nil {
		return "", false, errors.New("no secrets store")
	}
	v, err := s.m.deps.Secrets.Get(ctx, name, user)
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
	tr := &mcp.StreamableClientTransport{Endpoint: s.cfg.URL, HTTPClient: httpClient(token), MaxRetries: 2}
	return client.Connect(sctx, tr, nil)
}

// connectHTTP opens the server's shared session (tool discovery, pings and,
// unless auth.per_user, every call). With per_user, calls use a session
// per principal opened with that principal's own stored credential.
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
	c.stop = func() {
		cs.Close()
		users.Range(func(_, v any) bool {
			if us := v.(*userSession); us.cs != nil {
				us.cs.Close()
			}
			return true
		})
	}
	if s.cfg.Auth.PerUser {
		c.sessionFor = func(ctx context.Context, user string) (*mcp.ClientSession, error) {
			v, _ := users.LoadOrStore(user, &userSession{})
			us := v.(*userSession)
			us.mu.Lock()
			defer us.mu.Unlock()
			if us.cs != nil {
				return us.cs, nil
			}
			tok, ok, err := s.token(ctx, user)
			if err != nil {
				return nil, tool.Errorf(reason.Unavailable, err, "upstream server %s is not available", s.cfg.Name)
			}
			if !ok || user == "" {
				return nil, tool.Errorf(reason.PermissionDenied, errNoCredential,
					"no credential for upstream server %s is stored for you", s.cfg.Name)
			}
			ucs, err := s.openHTTP(ctx, tok)
			if err != nil {
				return nil, tool.Errorf(reason.Unavailable, err, "upstream server %s refused the connection", s.cfg.Name)
			}
			us.cs = ucs
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
	mu sync.Mutex
	cs *mcp.ClientSession
}
