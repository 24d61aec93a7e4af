package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Console session defaults (Config.Console*), after OWASP's session
// management guidance for high-value applications: a short idle timeout,
// a bounded absolute lifetime.
const (
	DefaultConsoleIdleTimeout = 30 * time.Minute
	DefaultConsoleMaxAge      = 8 * time.Hour
	DefaultConsoleMaxSessions = 1000
)

// SessionCookie is the name of the console's session cookie. The
// __Host- prefix makes browsers accept it only with Secure, Path=/ and
// no Domain (RFC 6265bis §4.1.3.2), so a sibling subdomain or a
// plain-HTTP page cannot set or shadow it.
const SessionCookie = "__Host-portcullis_session"

// CSRFHeader carries the session's CSRF token. Every request a session
// cookie authenticates must carry it — GET included, so that a
// cross-site request cannot read anything even where SameSite fails.
const CSRFHeader = "X-CSRF-Token"

// Failure causes of console sessions, in auth.failure details (after the
// authn causes).
const (
	// CauseSessionUnknown: the cookie names no session — never issued,
	// signed out, evicted, or lost in a restart.
	CauseSessionUnknown = "console_session_unknown"
	// CauseSessionExpired: the session passed its idle timeout or its
	// absolute lifetime.
	CauseSessionExpired = "console_session_expired"
	// CauseCSRF: a session cookie came without the session's CSRF token
	// (answered 403).
	CauseCSRF = "csrf_token_invalid"
)

// tokenBytes is the entropy of session ids and CSRF tokens.
const tokenBytes = 32

// tokenLen is the length of a token in unpadded base64url.
var tokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// newToken returns tokenBytes random bytes from crypto/rand, base64url.
func newToken() string {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// consoleSession is one signed-in console. The credential is kept in
// memory only — never stored, logged or sent back — so that every request
// re-authenticates it: a revoked key, a disabled user, an expired token or
// a quarantine ends the session at once.
type consoleSession struct {
	credential string
	csrf       string
	principal  string
	created    time.Time
	lastSeen   time.Time
}

// sessionStore holds console sessions in memory, keyed by the SHA-256 of
// their id (a lookup's timing says nothing about stored ids), at most
// limit of them: when full, the least recently used one goes. A restart ends
// every session.
type sessionStore struct {
	idle, maxAge time.Duration
	limit        int
	now          func() time.Time

	mu sync.Mutex
	m  map[[sha256.Size]byte]*consoleSession
}

func newSessionStore(idle, maxAge time.Duration, limit int, now func() time.Time) *sessionStore {
	return &sessionStore{idle: idle, maxAge: maxAge, limit: limit, now: now, m: map[[sha256.Size]byte]*consoleSession{}}
}

func sessionKey(id string) [sha256.Size]byte { return sha256.Sum256([]byte(id)) }

func (st *sessionStore) expired(s *consoleSession, now time.Time) bool {
	return now.Sub(s.lastSeen) >= st.idle || now.Sub(s.created) >= st.maxAge
}

// create starts a session for principal with credential and returns its
// id and a copy.
func (st *sessionStore) create(credential, principal string) (string, consoleSession) {
	id := newToken()
	now := st.now()
	s := &consoleSession{credential: credential, csrf: newToken(), principal: principal, created: now, lastSeen: now}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sweepLocked(now)
	for len(st.m) >= st.limit {
		st.evictOldestLocked()
	}
	st.m[sessionKey(id)] = s
	return id, *s
}

// lookup returns a copy of the live session id, without marking it used
// (a request that fails the CSRF check must not keep a session alive:
// touch it only once the check passed); else cause says why there is
// none (CauseSessionUnknown or CauseSessionExpired; an expired session is
// removed).
func (st *sessionStore) lookup(id string) (consoleSession, string) {
	if len(id) != tokenLen {
		return consoleSession{}, CauseSessionUnknown
	}
	now := st.now()
	k := sessionKey(id)
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.m[k]
	switch {
	case !ok:
		return consoleSession{}, CauseSessionUnknown
	case st.expired(s, now):
		delete(st.m, k)
		return consoleSession{}, CauseSessionExpired
	}
	return *s, ""
}

// touch marks the live session id used now, restarting its idle timeout
// (not its absolute lifetime), and reports whether it was live: a session
// that ended or expired since its lookup is not revived.
func (st *sessionStore) touch(id string) bool {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.m[sessionKey(id)]
	if !ok || st.expired(s, now) {
		return false
	}
	s.lastSeen = now
	return true
}

// delete ends session id, if it exists.
func (st *sessionStore) delete(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.m, sessionKey(id))
}

// len returns the number of sessions held, expired ones included.
func (st *sessionStore) len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.m)
}

func (st *sessionStore) sweepLocked(now time.Time) {
	for k, s := range st.m {
		if st.expired(s, now) {
			delete(st.m, k)
		}
	}
}

func (st *sessionStore) evictOldestLocked() {
	var oldest [sha256.Size]byte
	var at time.Time
	first := true
	for k, s := range st.m {
		if first || s.lastSeen.Before(at) {
			oldest, at, first = k, s.lastSeen, false
		}
	}
	delete(st.m, oldest)
}

// csrfOK reports whether r carries want in CSRFHeader (constant time).
func csrfOK(r *http.Request, want string) bool {
	got := r.Header.Get(CSRFHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sessionCookie returns the Set-Cookie of session id; "" expires it.
// Exactly: Path=/, Secure, HttpOnly, SameSite=Strict, no Domain and no
// Max-Age (it ends with the browser; the server ends it sooner).
func sessionCookie(id string) *http.Cookie {
	c := &http.Cookie{Name: SessionCookie, Value: id, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	if id == "" {
		c.MaxAge = -1
	}
	return c
}
