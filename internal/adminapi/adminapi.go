// Package adminapi serves the JSON admin API under /admin/v1/: API keys,
// users, roles and their permissions, Cedar policies, the audit log,
// quarantines, approvals, upstream servers, secret names, health and the
// API's own OpenAPI 3.1 document (openapi.json, GET /admin/v1/openapi.json).
// Every request must come from a principal holding the admin permission
// for the area it touches ("keys", "users", "roles", "policies", "audit",
// "quarantine", "approvals", "plugins", "secrets", "health", "docs");
// others get 403 and an admin.denied audit event. Every change is audited
// as admin.* before the answer is sent (an unwritable audit log answers
// 503), and changes that would leave no enabled user able to administer
// users, roles and keys are refused with 409.
package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
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

// PolicyAdmin is the policy engine as operators manage it (implemented
// by the app around *policy.Engine and the gateway).
type PolicyAdmin interface {
	// Policies lists the Cedar policies in force.
	Policies() []policy.PolicyInfo
	// Mode is enforce or report.
	Mode() policy.Mode
	// Reload re-reads the policy files and the role grants and swaps them
	// in atomically. It returns the number of Cedar policies in force; on
	// error (a broken file: policy.ErrInvalidPolicy) the previous ones
	// stay in force and the error message names file and position.
	Reload(ctx context.Context) (int, error)
	// Explain decides a call to tool with args by p exactly as the
	// gateway's pipeline would (name-level grant, argument validation,
	// Cedar conditions), without running it. Unknown tool: the decision
	// is a deny with Rule saying so. Invalid args: store.ErrInvalid.
	Explain(ctx context.Context, p *principal.Principal, tool string, args json.RawMessage) (policy.Decision, error)
}

// Deps are the API's collaborators: Store, Authn, Policy, Audit, Logger
// and RequestMeta are required, the others optional.
type Deps struct {
	Store  store.Store
	Authn  *authn.Authenticator
	Policy Authorizer
	// Policies serves /admin/v1/policies; nil answers those routes with 501.
	Policies PolicyAdmin
	// AccessChanged is called after every change of users, roles, grants
	// or keys: it reloads the grants and drops cached decisions so the
	// change is in force for the next request.
	AccessChanged func(ctx context.Context) error
	Audit         Emitter
	Logger        *slog.Logger
	Now           func() time.Time
	// RequestMeta returns the request id and remote address of r.
	RequestMeta func(r *http.Request) (requestID, remote string)
	// Approvals decides approval requests; nil answers 501.
	Approvals ApprovalAdmin
	// Abuse serves quarantine creation/release and today's usage; nil
	// answers those with 501 (lists still read the store).
	Abuse AbuseAdmin
	// Checkpoint writes a signed audit checkpoint now (POST
	// /admin/v1/audit/checkpoint); nil answers 501.
	Checkpoint func(ctx context.Context) (audit.Checkpoint, error)
	// Plugins serves the upstream servers and their pinned tool
	// definitions (/admin/v1/plugins); nil answers 501.
	Plugins PluginAdmin
	// Secrets lists the stored secrets by name (/admin/v1/secrets; never
	// a value); nil answers 501.
	Secrets SecretLister
	// Health runs the gateway's health checks (/admin/v1/health): it
	// returns each check's result by name and a non-nil error when one
	// fails (the answer says "degraded"; the error is logged, never sent).
	// HealthChecks builds one. nil answers 501.
	Health func(ctx context.Context) (map[string]any, error)
	// Version is the gateway version given as info.version of the OpenAPI
	// document; "" keeps the document's own ("v1").
	Version string
}

// API is the admin HTTP handler.
type API struct {
	d   Deps
	mux *http.ServeMux
	// changeMu serializes changes of users, roles and grants with their
	// lockout check, so that two concurrent requests cannot each remove
	// "another" last administrator. It covers this process only.
	changeMu sync.Mutex
	// openapi is the OpenAPI document as served (info.version set).
	openapi []byte
}

// New returns the admin API.
func New(d Deps) (*API, error) {
	if d.Store == nil || d.Authn == nil || d.Policy == nil || d.Audit == nil || d.Logger == nil || d.RequestMeta == nil {
		return nil, errors.New("adminapi: missing dependency")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	doc, err := openAPIDocument(d.Version)
	if err != nil {
		return nil, err
	}
	a := &API{d: d, mux: http.NewServeMux(), openapi: doc}
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

// Routes lists every endpoint; openapi.json documents each one (a test
// holds the two together).
func (a *API) Routes() []Route {
	return []Route{
		{"GET", "/admin/v1/keys", "keys", a.listKeys},
		{"POST", "/admin/v1/keys", "keys", a.createKey},
		{"DELETE", "/admin/v1/keys/{id}", "keys", a.revokeKey},
		{"GET", "/admin/v1/audit", "audit", a.queryAudit},
		{"GET", "/admin/v1/audit/export", "audit", a.exportAudit},
		{"POST", "/admin/v1/audit/checkpoint", "audit", a.checkpoint},
		{"POST", "/admin/v1/keys/{id}/rotate", "keys", a.rotateKey},
		{"GET", "/admin/v1/users", "users", a.listUsers},
		{"POST", "/admin/v1/users", "users", a.createUser},
		{"GET", "/admin/v1/users/{name}", "users", a.getUser},
		{"POST", "/admin/v1/users/{name}/disable", "users", a.disableUser},
		{"POST", "/admin/v1/users/{name}/enable", "users", a.enableUser},
		{"POST", "/admin/v1/users/{name}/roles", "users", a.grantUserRole},
		{"DELETE", "/admin/v1/users/{name}/roles/{role}", "users", a.revokeUserRole},
		{"GET", "/admin/v1/roles", "roles", a.listRoles},
		{"POST", "/admin/v1/roles", "roles", a.createRole},
		{"GET", "/admin/v1/roles/{name}", "roles", a.getRole},
		{"POST", "/admin/v1/roles/{name}/permissions", "roles", a.grantPermission},
		{"DELETE", "/admin/v1/roles/{name}/permissions", "roles", a.revokePermission},
		{"GET", "/admin/v1/policies", "policies", a.listPolicies},
		{"POST", "/admin/v1/policies/reload", "policies", a.reloadPolicies},
		{"POST", "/admin/v1/policies/test", "policies", a.testPolicy},
		{"GET", "/admin/v1/violations", "quarantine", a.listViolations},
		{"GET", "/admin/v1/quarantines", "quarantine", a.listQuarantines},
		{"POST", "/admin/v1/quarantines", "quarantine", a.createQuarantine},
		{"POST", "/admin/v1/quarantines/release", "quarantine", a.releaseQuarantine},
		{"GET", "/admin/v1/usage", "quarantine", a.usage},
		{"GET", "/admin/v1/approvals", "approvals", a.listApprovals},
		{"GET", "/admin/v1/approvals/{id}", "approvals", a.getApproval},
		{"POST", "/admin/v1/approvals/{id}/approve", "approvals", a.approve},
		{"POST", "/admin/v1/approvals/{id}/deny", "approvals", a.deny},
		{"GET", "/admin/v1/plugins", "plugins", a.listPlugins},
		{"GET", "/admin/v1/plugins/{server}/tools/{tool}", "plugins", a.getPluginTool},
		{"POST", "/admin/v1/plugins/{server}/tools/{tool}/accept", "plugins", a.acceptPluginTool},
		{"GET", "/admin/v1/secrets", "secrets", a.listSecrets},
		{"GET", "/admin/v1/health", "health", a.health},
		{"GET", "/admin/v1/openapi.json", "docs", a.serveOpenAPI},
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

func conflict(format string, args ...any) error {
	return &httpError{http.StatusConflict, "conflict", fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &httpError{http.StatusForbidden, "forbidden", fmt.Sprintf(format, args...)}
}

// mayIssue refuses privilege escalation through the keys area: a key is
// a role's power in plaintext, so issuing (or rotating) a key for roles
// the caller does not hold needs the admin permission on both users and
// roles — with those the caller could grant itself any role anyway. A
// key narrowed by scopes issues no keys at all (its holder was meant to
// have less than its role). touchesUser says the request
// creates the user or grants it the role: that needs users.
func (a *API) mayIssue(r *http.Request, p *principal.Principal, roles []string, touchesUser bool) error {
	deny := func(why string) error {
		_ = a.emit(r, p, &audit.Event{Type: audit.AdminDenied, Decision: audit.DecisionDeny, Status: audit.StatusRefused,
			Reason: reason.PermissionDenied, Detail: fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, why)})
		return forbidden("access denied: %s", why)
	}
	if len(p.Scopes) > 0 {
		return deny("a key with scopes cannot issue keys")
	}
	full := a.d.Policy.Decide(p, policy.ActionAdmin, "users").Allow && a.d.Policy.Decide(p, policy.ActionAdmin, "roles").Allow
	if touchesUser && !a.d.Policy.Decide(p, policy.ActionAdmin, "users").Allow {
		return deny("creating a user or granting it a role needs the users admin permission")
	}
	for _, role := range roles {
		if !full && !slices.Contains(p.Roles, role) {
			return deny(fmt.Sprintf("issuing a key for role %s needs that role or the users and roles admin permissions", role))
		}
	}
	return nil
}

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, "not_found", fmt.Sprintf(format, args...)}
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
			case errors.Is(err, store.ErrConflict):
				writeError(w, http.StatusConflict, "conflict", "conflict")
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

// accessChangedTimeout bounds Deps.AccessChanged.
const accessChangedTimeout = 10 * time.Second

// changed tells the server that users, roles, grants or keys changed.
// The change is stored and audited already, so a failure is only logged:
// the server's poller of the store's access version picks it up later.
func (a *API) changed(r *http.Request) {
	if a.d.AccessChanged == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), accessChangedTimeout)
	defer cancel()
	if err := a.d.AccessChanged(ctx); err != nil {
		a.d.Logger.Error("admin api: applying an access change failed; it applies at the next poll", "path", r.URL.Path, "err", err)
	}
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

// maxBody caps request bodies.
const maxBody = 1 << 20

// decodeBody decodes exactly one JSON object into v, refusing unknown
// fields, trailing data and bodies over maxBody.
func decodeBody(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeBytes(b, v)
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, badRequest("reading body: %v", err)
	}
	if len(b) > maxBody {
		return nil, &httpError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", maxBody)}
	}
	return b, nil
}

func decodeBytes(b []byte, v any) error {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return badRequest("invalid JSON body: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
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
	// Scopes are the tool patterns the key is narrowed to; empty means
	// everything its roles allow.
	Scopes []string `json:"scopes,omitempty"`
	// RotatedFrom is the id of the key this one replaced, if any.
	RotatedFrom string `json:"rotated_from,omitempty"`
	// Key is the plaintext key; present only in the response that created it.
	Key string `json:"key,omitempty"`
}

func viewKey(k store.APIKey) KeyView {
	return KeyView{ID: k.ID, User: k.UserName, Roles: k.Roles, Prefix: k.Prefix, CreatedAt: k.CreatedAt,
		ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, LastUsedAt: k.LastUsedAt, Scopes: k.Scopes, RotatedFrom: k.RotatedFrom}
}

// CreateKeyRequest is the body of POST /admin/v1/keys.
type CreateKeyRequest struct {
	User string `json:"user"`
	Role string `json:"role"`
	// ExpiresIn is a Go duration ("720h"), at most MaxExpiresIn; empty
	// means no expiry.
	ExpiresIn string `json:"expires_in,omitempty"`
	// Scopes narrow the key to tools matching these patterns ("read_file",
	// "git_*"; path.Match syntax, see validPattern), at most MaxScopes;
	// empty means everything the role allows.
	Scopes []string `json:"scopes,omitempty"`
}

// RotateKeyRequest is the optional body of POST /admin/v1/keys/{id}/rotate.
type RotateKeyRequest struct {
	// ExpiresIn overrides the new key's lifetime (a Go duration, at most
	// MaxExpiresIn). Empty: an old key with an expiry gives the new key
	// the same total lifetime from now; one without gives none.
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
	scopes, err := validScopes(req.Scopes)
	if err != nil {
		return err
	}
	now := a.d.Now().UTC()
	var expires *time.Time
	if req.ExpiresIn != "" {
		d, err := parseExpiresIn(req.ExpiresIn)
		if err != nil {
			return err
		}
		t := now.Add(d)
		expires = &t
	}
	existing, err := a.d.Store.UserByName(r.Context(), req.User)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	touchesUser := err != nil || !slices.Contains(existing.Roles, req.Role)
	if err := a.mayIssue(r, p, []string{req.Role}, touchesUser); err != nil {
		return err
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
		Roles: []string{req.Role}, Scopes: scopes, CreatedAt: now, ExpiresAt: expires}
	if err := a.d.Store.CreateAPIKey(r.Context(), k); err != nil {
		return err
	}
	detail := fmt.Sprintf("key %s for user %s role %s", id, u.Name, req.Role)
	if len(scopes) > 0 {
		detail += fmt.Sprintf(" scopes %q", scopes)
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminKeyCreate, Status: audit.StatusOK, Detail: detail}); err != nil {
		return err
	}
	a.changed(r)
	v := viewKey(k)
	v.Key = plain
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// parseExpiresIn parses a key lifetime: a positive Go duration of at most
// MaxExpiresIn.
func parseExpiresIn(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > MaxExpiresIn {
		return 0, badRequest("expires_in must be a positive duration such as 720h, at most %s", MaxExpiresIn)
	}
	return d, nil
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
	a.changed(r)
	writeJSON(w, http.StatusOK, viewKey(k))
	return nil
}

// rotateKey replaces an active key by a new one with the same user,
// roles and scopes, and revokes it. The new key is created first, so a
// failure part-way leaves the old key working; of two concurrent
// rotations of one key only one wins (the store revokes a key once), the
// loser's new key is revoked again and it answers 409.
func (a *API) rotateKey(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	var req RotateKeyRequest
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) > 0 {
		if err := decodeBytes(b, &req); err != nil {
			return err
		}
	}
	var override time.Duration
	if req.ExpiresIn != "" {
		if override, err = parseExpiresIn(req.ExpiresIn); err != nil {
			return err
		}
	}
	old, err := a.d.Store.APIKeyByID(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	now := a.d.Now().UTC()
	if err := a.mayIssue(r, p, old.Roles, false); err != nil {
		return err
	}
	switch {
	case old.RevokedAt != nil:
		return conflict("key %s is revoked; create a new key instead", old.ID)
	case !old.Active(now):
		return conflict("key %s has expired; create a new key instead", old.ID)
	}
	var expires *time.Time
	switch {
	case override > 0:
		t := now.Add(override)
		expires = &t
	case old.ExpiresAt != nil:
		life := min(max(old.ExpiresAt.Sub(old.CreatedAt), time.Second), MaxExpiresIn)
		t := now.Add(life)
		expires = &t
	}
	plain, id, prefix, hash := a.d.Authn.NewKey()
	k := store.APIKey{ID: id, UserID: old.UserID, UserName: old.UserName, Hash: hash, Prefix: prefix,
		Roles: slices.Clone(old.Roles), Scopes: slices.Clone(old.Scopes), CreatedAt: now, ExpiresAt: expires, RotatedFrom: old.ID}
	if err := a.d.Store.CreateAPIKey(r.Context(), k); err != nil {
		return err
	}
	if _, err := a.d.Store.RevokeAPIKey(r.Context(), old.ID, now); err != nil {
		// Nobody has seen the new key; take it out of service again.
		if _, rerr := a.d.Store.RevokeAPIKey(context.WithoutCancel(r.Context()), k.ID, now); rerr != nil {
			a.d.Logger.Error("admin api: revoking an unused rotated key failed", "key", k.ID, "err", rerr)
		}
		if errors.Is(err, store.ErrNotFound) {
			return conflict("key %s was revoked meanwhile", old.ID)
		}
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminKeyRotate, Status: audit.StatusOK,
		Detail: fmt.Sprintf("key %s of user %s replaced by key %s", old.ID, old.UserName, k.ID)}); err != nil {
		return err
	}
	a.changed(r)
	v := viewKey(k)
	v.Key = plain
	writeJSON(w, http.StatusCreated, v)
	return nil
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
