package oidc

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

// TestMain fails the package if a test leaves goroutines running (a JWKS
// fetch, an HTTP connection).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testAudience = "https://mcp.example.com/mcp"

// t0 is the fixed "now" of most tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a settable clock; no test sleeps.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// issuerConfig is a Config for iss at the fixed time t0.
func issuerConfig(iss *oidctest.Issuer) Config {
	return Config{
		Issuer:   iss.URL(),
		Audience: testAudience,
		Now:      func() time.Time { return t0 },
	}
}

// newRemote builds a discovery-based Verifier for iss; edit may change
// the Config first.
func newRemote(t testing.TB, iss *oidctest.Issuer, edit func(*Config)) *Verifier {
	t.Helper()
	cfg := issuerConfig(iss)
	if edit != nil {
		edit(&cfg)
	}
	v, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// newStatic builds a Verifier over iss's current JWK Set, without network.
func newStatic(t testing.TB, iss *oidctest.Issuer, edit func(*Config)) *Verifier {
	t.Helper()
	cfg := issuerConfig(iss)
	if edit != nil {
		edit(&cfg)
	}
	v, err := NewWithKeys(cfg, iss.JWKS())
	if err != nil {
		t.Fatalf("NewWithKeys: %v", err)
	}
	return v
}

// wantFailure asserts err is a *Failure with cause, in the right
// category, and that its message does not leak the token.
func wantFailure(t testing.TB, err error, cause, token string) *Failure {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("err = %v, want *Failure with cause %q", err, cause)
	}
	if f.Cause != cause {
		t.Fatalf("cause = %q (%v), want %q", f.Cause, err, cause)
	}
	wantCat := ErrInvalidToken
	if cause == CauseInsufficientScope {
		wantCat = ErrInsufficientScope
	}
	if !errors.Is(err, wantCat) {
		t.Fatalf("errors.Is(%v, %v) = false", err, wantCat)
	}
	if cause == CauseInsufficientScope && errors.Is(err, ErrInvalidToken) {
		t.Fatalf("insufficient scope must not also be ErrInvalidToken")
	}
	assertNoLeak(t, err.Error(), token)
	return f
}

// assertNoLeak fails if msg contains the token or any of its segments
// longer than 8 characters.
func assertNoLeak(t testing.TB, msg, token string) {
	t.Helper()
	if token == "" {
		return
	}
	if strings.Contains(msg, token) {
		t.Fatalf("error message contains the token")
	}
	for _, seg := range strings.Split(token, ".") {
		if len(seg) > 8 && strings.Contains(msg, seg) {
			t.Fatalf("error message %q contains a token segment", msg)
		}
	}
}
