// Package adminapi serves the JSON admin API under /admin/v1/. Every
// request must come from a principal holding the admin permission for the
// area it touches; others get 403 and an admin.denied audit event. Every
// change is audited as admin.*.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// Emitter records audit events durably.
type Emitter interface {
	Emit(ctx context.Context, e *audit.Event) error
}

// Authorizer decides access (implemented by *policy.Engine).
type Authorizer interface {
	Decide(p *principal.Principal, action policy.Action, resource string) policy.Decision
}

// Deps are the API's collaborators; all are required except Now.
type Deps struct {
	Store  store.Store
	Authn  *authn.Authenticator
	Policy Authorizer
	Audit  Emitter
	Logger *slog.Logger
	Now    func() time.Time
	// RequestMeta returns the request id and remote address of r.
	RequestMeta func(r *http.Request) (requestID, remote string)
}

// API is the admin HTTP handler.
type API struct {
	d   Deps
	mux *http.ServeMux
}

// New returns the admin API.
func New(d Deps) (*API, error) {
	if d.Store == nil || d.Authn == nil || d.Policy == nil || d.Audit == nil || d.Logger == nil || d.RequestMeta == nil {
		return nil, errors.New("adminapi: missing dependency")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	a := &API{d: d, mux: http.NewServeMux()}
	for _, r := range a.Routes() {
		a.mux.Handle(r.Method+" "+r.Path, a.guard(r.Area, r.Handler))
	}
	a.mux.HandleFunc("/admin/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such admin endpoint")
	})
	return a, nil
}

// Route is one admin endpoint.
type Route struct {
	Method, Path string
	Area         string // permission resource for ActionAdmin
	Handler      func(w http.ResponseWriter, r *http.Request, p *principal.Principal) error
}

// Routes lists every endpoint.
func (a *API) Routes() []Route {
	return []Route{
		{"GET", "/admin/v1/keys", "keys", a.listKeys},
		{"POST", "/admin/v1/keys", "keys", a.createKey},
		{"DELETE", "/admin/v1/keys/{id}", "keys", a.revokeKey},
		{"GET", "/admin/v1/audit", "audit", a.queryAudit},
	}
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// httpError is an error with a status and a client-safe code and message.
type httpError struct {
	status  int
	code    string
	message string
}

func (e *httpError) Error() string { return e.message }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

// guard authorizes the principal for area, runs h and maps its error.
func (a *API) guard(area string, h func(http.ResponseWriter, *http.Request, *principal.Principal) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal.FromContext(r.Context())
		if !ok {
			writeError(w, http.StatusUnauthorized, "unauthenticated", "authentication required")
			return
		}
		if d := a.d.Policy.Decide(p, policy.ActionAdmin, area); !d.Allow {
			a.emit(r, p, &audit.Event{Type: audit.AdminDenied, Decision: audit.DecisionDeny, Status: audit.StatusRefused,
				Reason: d.Reason, Detail: fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, d.Rule)})
			writeError(w, http.StatusForbidden, "forbidden", "access denied")
			return
		}
		if err := h(w, r, p); err != nil {
			var he *httpError
			switch {
			case errors.As(err, &he):
				writeError(w, he.status, he.code, he.message)
			case errors.Is(err, store.ErrNotFound):
				writeError(w, http.StatusNotFound, "not_found", "not found")
			case errors.Is(err, store.ErrInvalid):
				writeError(w, http.StatusBadRequest, "bad_request", "invalid request")
			case errors.Is(err, audit.ErrUnavailable), errors.Is(err, audit.ErrClosed):
				writeError(w, http.StatusServiceUnavailable, "audit_unavailable", "audit log unavailable")
			default:
				a.d.Logger.Error("admin api error", "path", r.URL.Path, "err", err)
				writeError(w, http.StatusInternalServerError, "internal", "internal error")
			}
		}
	})
}

// emit fills request fields and records e; failures are logged.
func (a *API) emit(r *http.Request, p *principal.Principal, e *audit.Event) error {
	e.RequestID, e.RemoteAddr = a.d.RequestMeta(r)
	if p != nil {
		e.Principal, e.Roles = p.Name, p.Roles
	}
	err := a.d.Audit.Emit(r.Context(), e)
	if err != nil {
		a.d.Logger.Error("admin audit failed", "type", e.Type, "err", err)
	}
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]string{"error": code, "message": message})
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	// Exactly one JSON value: a second object or trailing bytes would be
	// silently ignored otherwise.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("invalid JSON body: trailing data after the object")
	}
	return nil
}

var userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// KeyView is an API key as the admin API shows it (never the hash).
type KeyView struct {
	ID         string     `json:"id"`
	User       string     `json:"user"`
	Roles      []string   `json:"roles"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// Key is the plaintext key; present only in the response that created it.
	Key string `json:"key,omitempty"`
}

func viewKey(k store.APIKey) KeyView {
	return KeyView{ID: k.ID, User: k.UserName, Roles: k.Roles, Prefix: k.Prefix, CreatedAt: k.CreatedAt,
		ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, LastUsedAt: k.LastUsedAt}
}

// CreateKeyRequest is the body of POST /admin/v1/keys.
type CreateKeyRequest struct {
	User string `json:"user"`
	Role string `json:"role"`
	// ExpiresIn is a Go duration ("720h"), at most MaxExpiresIn; empty
	// means no expiry.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// MaxExpiresIn caps CreateKeyRequest.ExpiresIn (100 years). Stores keep
// times as int64 Unix nanoseconds, which end in 2262: a longer expiry
// would be stored wrapped into the past.
const MaxExpiresIn = 100 * 365 * 24 * time.Hour

func (a *API) createKey(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	var req CreateKeyRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !userName.MatchString(req.User) {
		return badRequest("user must match %s", userName)
	}
	roles, err := a.d.Store.Roles(r.Context())
	if err != nil {
		return err
	}
	if !slices.Contains(roles, req.Role) {
		return badRequest("unknown role %q (roles: %v)", req.Role, roles)
	}
	now := a.d.Now().UTC()
	var expires *time.Time
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 || d > MaxExpiresIn {
			return badRequest("expires_in must be a positive duration such as 720h, at most %s", MaxExpiresIn)
		}
		t := now.Add(d)
		expires = &t
	}
	u, created, err := a.d.Store.EnsureUser(r.Context(), req.User, []string{req.Role})
	if err != nil {
		return err
	}
	if created {
		if err := a.emit(r, p, &audit.Event{Type: audit.AdminUserCreate, Status: audit.StatusOK,
			Detail: fmt.Sprintf("user %s roles %v", u.Name, u.Roles)}); err != nil {
			return err
		}
	} else if !slices.Contains(u.Roles, req.Role) {
		if err := a.d.Store.GrantUserRole(r.Context(), u.ID, req.Role); err != nil {
			return err
		}
		if err := a.emit(r, p, &audit.Event{Type: audit.AdminUserGrant, Status: audit.StatusOK,
			Detail: fmt.Sprintf("user %s granted role %s", u.Name, req.Role)}); err != nil {
			return err
		}
	}
	plain, id, prefix, hash := a.d.Authn.NewKey()
	k := store.APIKey{ID: id, UserID: u.ID, UserName: u.Name, Hash: hash, Prefix: prefix,
		Roles: []string{req.Role}, CreatedAt: now, ExpiresAt: expires}
	if err := a.d.Store.CreateAPIKey(r.Context(), k); err != nil {
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminKeyCreate, Status: audit.StatusOK,
		Detail: fmt.Sprintf("key %s for user %s role %s", id, u.Name, req.Role)}); err != nil {
		return err
	}
	v := viewKey(k)
	v.Key = plain
	writeJSON(w, http.StatusCreated, v)
	return nil
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	keys, err := a.d.Store.ListAPIKeys(r.Context())
	if err != nil {
		return err
	}
	out := make([]KeyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, viewKey(k))
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
	return nil
}

func (a *API) revokeKey(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	id := r.PathValue("id")
	k, err := a.d.Store.RevokeAPIKey(r.Context(), id, a.d.Now().UTC())
	if err != nil {
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminKeyRevoke, Status: audit.StatusOK,
		Detail: fmt.Sprintf("key %s of user %s", k.ID, k.UserName)}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewKey(k))
	return nil
}

func (a *API) queryAudit(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	q, err := parseAuditQuery(r, a.d.Now())
	if err != nil {
		return err
	}
	events, err := a.d.Store.QueryAudit(r.Context(), q)
	if err != nil {
		return err
	}
	if events == nil {
		events = []audit.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
	return nil
}

// parseAuditQuery reads filters: user, tool, type, status, request_id,
// since/until (RFC 3339 or a duration meaning "that long ago"), before
// (sequence, for paging) and limit.
func parseAuditQuery(r *http.Request, now time.Time) (audit.Query, error) {
	v := r.URL.Query()
	q := audit.Query{
		Principal: v.Get("user"),
		Tool:      v.Get("tool"),
		Type:      audit.Type(v.Get("type")),
		Status:    v.Get("status"),
		RequestID: v.Get("request_id"),
	}
	var err error
	if q.Since, err = parseTime(v.Get("since"), now); err != nil {
		return q, badRequest("since: %v", err)
	}
	if q.Until, err = parseTime(v.Get("until"), now); err != nil {
		return q, badRequest("until: %v", err)
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit <= 0 || q.Limit > audit.MaxQueryLimit {
			return q, badRequest("limit must be 1..%d", audit.MaxQueryLimit)
		}
	}
	if s := v.Get("before"); s != "" {
		if q.BeforeSeq, err = strconv.ParseInt(s, 10, 64); err != nil || q.BeforeSeq <= 0 {
			return q, badRequest("before must be a positive sequence number")
		}
	}
	return q, nil
}

// parseTime accepts RFC 3339 or a Go duration meaning "that long ago".
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, errors.New("want RFC 3339 time or a duration such as 1h")
	}
	return now.Add(-d), nil
}
