package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/ui"
)

// The web console (package ui) lives under /ui/:
//
//	GET    /ui/, /ui/app.js, /ui/app.css   the page (public: it holds no data)
//	POST   /ui/session  {"key": "..."}      sign in → session cookie + {"csrf", "principal"}
//	DELETE /ui/session  (cookie + X-CSRF-Token)  sign out
//
// A session cookie then authenticates /admin/v1/ (never /mcp) together
// with the session's CSRF token in X-CSRF-Token; see authenticateSession.

// sessionPath is the sign-in and sign-out endpoint.
const sessionPath = ui.Prefix + "session"

// maxSignInBytes bounds the sign-in body: an API key is 56 bytes, an OIDC
// access token a few KiB.
const maxSignInBytes = 16 << 10

// ConsoleAccess returns a Deps.ConsoleAllowed: a principal may sign in to
// the console when az allows it policy.ActionAdmin on the area of at
// least one of routes — the check the admin API's guard makes for each
// route — so everyone signed in can use some page and nobody else signs
// in. Decisions are made at sign-in, with the policy then in force.
func ConsoleAccess(az adminapi.Authorizer, routes []adminapi.Route) func(p *principal.Principal) bool {
	var areas []string
	for _, r := range routes {
		if !slices.Contains(areas, r.Area) {
			areas = append(areas, r.Area)
		}
	}
	return func(p *principal.Principal) bool {
		return slices.ContainsFunc(areas, func(area string) bool {
			return az.Decide(p, policy.ActionAdmin, area).Allow
		})
	}
}

// consoleHeaders sets the console's security headers (CSP, frame and
// sniffing protection, no caching) on every /ui/ answer, errors included.
func (s *Server) consoleHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ui.SetSecurityHeaders(w.Header())
		next.ServeHTTP(w, r)
	})
}

// consoleHandler serves /ui/: the static page and the session endpoint.
func (s *Server) consoleHandler() http.Handler {
	static := ui.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != sessionPath {
			static.ServeHTTP(w, r)
			return
		}
		switch r.Method {
		case http.MethodPost:
			s.signIn(w, r)
		case http.MethodDelete:
			s.signOut(w, r)
		default:
			w.Header().Set("Allow", "POST, DELETE")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed", "message": "method not allowed"})
		}
	})
}

// SignInRequest is the body of POST /ui/session.
type SignInRequest struct {
	// Key is an admin API key or, with OIDC on, an access token.
	Key string `json:"key"`
}

// SignInResponse is the answer to a sign-in; the session id is only in
// the HttpOnly cookie.
type SignInResponse struct {
	// CSRF is the token every request of the session must carry in
	// X-CSRF-Token.
	CSRF      string `json:"csrf"`
	Principal string `json:"principal"`
}

// signIn exchanges a credential for a console session. The credential
// passes exactly what a bearer credential passes (lockout, the
// authenticator, quarantine), refusals are the same generic 401 with an
// auth.failure event; a principal without the admin permission on any
// admin area gets 403 (admin.denied). The cross-origin check ran before
// (login CSRF), and the body must be JSON, which a form cannot send.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "unsupported_media_type", "message": "send application/json"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSignInBytes+1))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge) || len(body) > maxSignInBytes:
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request_too_large", "message": "sign-in body too large"})
		return
	case err != nil:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "message": "unreadable body"})
		return
	}
	var req SignInRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "message": `body must be {"key": "..."}`})
		return
	}
	cause := ""
	if req.Key == "" {
		cause = authn.CauseMissing
	}
	p, err := s.verify(r, req.Key, cause)
	if err != nil {
		s.refuse(w, r, err, true)
		return
	}
	if s.refuseQuarantined(w, r, p) {
		return
	}
	if !s.d.ConsoleAllowed(p) {
		rid, remote := RequestMeta(r)
		if aerr := s.d.Audit.Emit(context.WithoutCancel(r.Context()), &audit.Event{Type: audit.AdminDenied,
			Principal: p.Name, Roles: p.Roles, RequestID: rid, RemoteAddr: remote, Decision: audit.DecisionDeny,
			Status: audit.StatusRefused, Reason: reason.PermissionDenied,
			Detail: r.Method + " " + r.URL.Path + ": no admin permission on any admin area"}); aerr != nil {
			s.d.Logger.Error("audit of console refusal failed", "err", aerr)
		}
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "message": "access denied"})
		return
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		s.sessions.delete(c.Value) // a new sign-in replaces the old session
	}
	// Audited before the session exists: no record, no session.
	rid, remote := RequestMeta(r)
	if aerr := s.d.Audit.Emit(context.WithoutCancel(r.Context()), &audit.Event{Type: audit.ConsoleSessionCreate,
		Principal: p.Name, Roles: p.Roles, RequestID: rid, RemoteAddr: remote, Decision: audit.DecisionAllow,
		Status: audit.StatusOK, Detail: "web console sign-in"}); aerr != nil {
		s.d.Logger.Error("audit of console sign-in failed; refused", "err", aerr)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unavailable", "message": "audit log unavailable"})
		return
	}
	id, sess := s.sessions.create(req.Key, p.Name)
	http.SetCookie(w, sessionCookie(id))
	writeJSON(w, http.StatusOK, SignInResponse{CSRF: sess.csrf, Principal: p.Name})
}

// signOut ends the cookie's session (which needs its CSRF token: a
// forged sign-out is refused) and expires the cookie. Without a live
// session it only expires the cookie.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if sess, cause := s.sessions.lookup(c.Value); cause == "" {
			if !csrfOK(r, sess.csrf) {
				s.csrfFailure(w, r, sess.principal)
				return
			}
			s.sessions.delete(c.Value)
			rid, remote := RequestMeta(r)
			if aerr := s.d.Audit.Emit(context.WithoutCancel(r.Context()), &audit.Event{Type: audit.ConsoleSessionEnd,
				Principal: sess.principal, RequestID: rid, RemoteAddr: remote, Status: audit.StatusOK,
				Detail: "web console sign-out"}); aerr != nil {
				s.d.Logger.Error("audit of console sign-out failed", "err", aerr)
			}
		}
	}
	http.SetCookie(w, sessionCookie(""))
	w.WriteHeader(http.StatusNoContent)
}

// authenticateSession authenticates a request by its console session
// cookie: a live session, its CSRF token in CSRFHeader (403 otherwise),
// which alone marks the session used (restarts its idle timeout), then
// the session's credential exactly as a bearer credential (lockout,
// the authenticator, quarantine). A credential that no longer
// authenticates ends the session.
func (s *Server) authenticateSession(w http.ResponseWriter, r *http.Request, id string, next http.Handler) {
	sess, cause := s.sessions.lookup(id)
	if cause != "" {
		// Not counted towards lockout and no violation: ended sessions
		// are routine, and 256-bit ids are not guessed.
		http.SetCookie(w, sessionCookie(""))
		s.authFailure(w, r, &authn.Failure{Cause: cause}, true)
		return
	}
	if !csrfOK(r, sess.csrf) {
		s.csrfFailure(w, r, sess.principal)
		return
	}
	if !s.sessions.touch(id) {
		// Ended or expired since the lookup, a moment ago.
		http.SetCookie(w, sessionCookie(""))
		s.authFailure(w, r, &authn.Failure{Cause: CauseSessionExpired}, true)
		return
	}
	p, err := s.verify(r, sess.credential, "")
	if err != nil {
		var f *authn.Failure
		if !errors.As(err, &f) || f.Cause != authn.CauseBackend && f.Cause != authn.CauseLocked {
			s.sessions.delete(id)
			http.SetCookie(w, sessionCookie(""))
		}
		s.refuse(w, r, err, true)
		return
	}
	s.admit(w, r, p, next)
}

// csrfFailure refuses a session request without its CSRF token: 403 and
// an auth.failure event naming the session's principal. It feeds neither
// the lockout nor the violations: a cross-site page could otherwise lock
// an administrator out.
func (s *Server) csrfFailure(w http.ResponseWriter, r *http.Request, name string) {
	rid, remote := RequestMeta(r)
	if aerr := s.d.Audit.Emit(context.WithoutCancel(r.Context()), &audit.Event{Type: audit.AuthFailure,
		Principal: name, RequestID: rid, RemoteAddr: remote, Decision: audit.DecisionDeny,
		Status: audit.StatusRefused, Reason: reason.Unauthenticated,
		Detail: r.Method + " " + r.URL.Path + ": " + CauseCSRF}); aerr != nil {
		s.d.Logger.Error("audit of CSRF refusal failed", "err", aerr)
	}
	writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "message": "missing or invalid CSRF token"})
}
