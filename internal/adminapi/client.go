package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/store"
)

// Client calls the admin API of a running gateway.
type Client struct {
	// BaseURL is the gateway's base URL, e.g. http://127.0.0.1:8420.
	BaseURL string
	// Key is an admin API key; it is sent only as a bearer token.
	Key  string
	HTTP *http.Client
}

// APIError is a non-2xx answer from the admin API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("admin API: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	resp, err := c.send(ctx, method, path, query, body, 30*time.Second)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin API: bad response: %w", err)
	}
	return nil
}

// send performs one request with the admin key and returns the response
// of any status; timeout bounds the whole exchange (0: none, for streams).
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body any, timeout time.Duration) (*http.Response, error) {
	u, err := url.Parse(strings.TrimRight(c.BaseURL, "/") + path)
	if err != nil {
		return nil, fmt.Errorf("admin API: bad server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("admin API: server URL must be http or https, got %q", c.BaseURL)
	}
	u.RawQuery = query.Encode()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: timeout}
	}
	// The admin API never redirects. Following one would resend the key:
	// Go keeps Authorization on redirects to the same host name (another
	// port, or https → http).
	noRedirect := *hc
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noRedirect.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w (is `portcullis serve` running at %s?)", err, c.BaseURL)
	}
	return resp, nil
}

// apiError reads an error answer.
func apiError(resp *http.Response, data []byte) error {
	var e struct{ Error, Message string }
	_ = json.Unmarshal(data, &e)
	return &APIError{Status: resp.StatusCode, Code: e.Error, Message: e.Message}
}

// CreateKey creates a key (and the user, if new) and returns it with its
// plaintext, which the server never shows again.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (KeyView, error) {
	var v KeyView
	err := c.do(ctx, http.MethodPost, "/admin/v1/keys", nil, req, &v)
	return v, err
}

// ListKeys lists keys (never their plaintext or hash).
func (c *Client) ListKeys(ctx context.Context) ([]KeyView, error) {
	var out struct{ Keys []KeyView }
	err := c.do(ctx, http.MethodGet, "/admin/v1/keys", nil, nil, &out)
	return out.Keys, err
}

// RevokeKey revokes the key with this id.
func (c *Client) RevokeKey(ctx context.Context, id string) (KeyView, error) {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return KeyView{}, errors.New("admin API: bad key id")
	}
	var v KeyView
	err := c.do(ctx, http.MethodDelete, "/admin/v1/keys/"+url.PathEscape(id), nil, nil, &v)
	return v, err
}

// RotateKey replaces the active key id by a new key with the same user,
// roles and scopes, revokes it, and returns the new key with its
// plaintext (shown once). expiresIn overrides the new key's lifetime
// (empty: the old key's lifetime, counted from now).
func (c *Client) RotateKey(ctx context.Context, id, expiresIn string) (KeyView, error) {
	seg, err := pathSegment("key id", id)
	if err != nil {
		return KeyView{}, err
	}
	var v KeyView
	err = c.do(ctx, http.MethodPost, "/admin/v1/keys/"+seg+"/rotate", nil, RotateKeyRequest{ExpiresIn: expiresIn}, &v)
	return v, err
}

// pathSegment escapes s for use as one path segment, refusing values that
// cannot name anything (empty, ".", "..", containing '/', '?' or '#'),
// so that a bad argument never reaches another endpoint.
func pathSegment(what, s string) (string, error) {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/?#") {
		return "", fmt.Errorf("admin API: bad %s %q", what, s)
	}
	return url.PathEscape(s), nil
}

// ListUsers lists users with their roles, by name.
func (c *Client) ListUsers(ctx context.Context) ([]UserView, error) {
	var out struct{ Users []UserView }
	err := c.do(ctx, http.MethodGet, "/admin/v1/users", nil, nil, &out)
	return out.Users, err
}

// CreateUser creates a user with roles (an existing name: APIError 409).
func (c *Client) CreateUser(ctx context.Context, req CreateUserRequest) (UserView, error) {
	var v UserView
	err := c.do(ctx, http.MethodPost, "/admin/v1/users", nil, req, &v)
	return v, err
}

// GetUser returns one user (unknown: APIError 404).
func (c *Client) GetUser(ctx context.Context, name string) (UserView, error) {
	return c.userCall(ctx, http.MethodGet, name, "", nil)
}

// DisableUser disables a user: its keys and tokens stop authenticating.
func (c *Client) DisableUser(ctx context.Context, name string) (UserView, error) {
	return c.userCall(ctx, http.MethodPost, name, "/disable", nil)
}

// EnableUser enables a disabled user again.
func (c *Client) EnableUser(ctx context.Context, name string) (UserView, error) {
	return c.userCall(ctx, http.MethodPost, name, "/enable", nil)
}

// GrantRole gives a user a role.
func (c *Client) GrantRole(ctx context.Context, name, role string) (UserView, error) {
	return c.userCall(ctx, http.MethodPost, name, "/roles", GrantRoleRequest{Role: role})
}

// RevokeRole takes a role from a user.
func (c *Client) RevokeRole(ctx context.Context, name, role string) (UserView, error) {
	seg, err := pathSegment("role", role)
	if err != nil {
		return UserView{}, err
	}
	return c.userCall(ctx, http.MethodDelete, name, "/roles/"+seg, nil)
}

func (c *Client) userCall(ctx context.Context, method, name, suffix string, body any) (UserView, error) {
	seg, err := pathSegment("user name", name)
	if err != nil {
		return UserView{}, err
	}
	var v UserView
	err = c.do(ctx, method, "/admin/v1/users/"+seg+suffix, nil, body, &v)
	return v, err
}

// ListRoles lists roles with their permissions, by name.
func (c *Client) ListRoles(ctx context.Context) ([]RoleView, error) {
	var out struct{ Roles []RoleView }
	err := c.do(ctx, http.MethodGet, "/admin/v1/roles", nil, nil, &out)
	return out.Roles, err
}

// GetRole returns one role (unknown: APIError 404).
func (c *Client) GetRole(ctx context.Context, name string) (RoleView, error) {
	return c.roleCall(ctx, http.MethodGet, name, "", nil)
}

// CreateRole creates a role without permissions (an existing name: APIError 409).
func (c *Client) CreateRole(ctx context.Context, req CreateRoleRequest) (RoleView, error) {
	var v RoleView
	err := c.do(ctx, http.MethodPost, "/admin/v1/roles", nil, req, &v)
	return v, err
}

// GrantPermission gives a role a permission (or changes its effect).
func (c *Client) GrantPermission(ctx context.Context, role string, req GrantPermissionRequest) (RoleView, error) {
	return c.roleCall(ctx, http.MethodPost, role, "/permissions", req)
}

// RevokePermission takes a permission from a role.
func (c *Client) RevokePermission(ctx context.Context, role string, req RevokePermissionRequest) (RoleView, error) {
	return c.roleCall(ctx, http.MethodDelete, role, "/permissions", req)
}

func (c *Client) roleCall(ctx context.Context, method, name, suffix string, body any) (RoleView, error) {
	seg, err := pathSegment("role name", name)
	if err != nil {
		return RoleView{}, err
	}
	var v RoleView
	err = c.do(ctx, method, "/admin/v1/roles/"+seg+suffix, nil, body, &v)
	return v, err
}

// ListPolicies returns the policy mode and the Cedar policies in force.
func (c *Client) ListPolicies(ctx context.Context) (PoliciesView, error) {
	var v PoliciesView
	err := c.do(ctx, http.MethodGet, "/admin/v1/policies", nil, nil, &v)
	return v, err
}

// ReloadPolicies asks the server to re-read its policy files and grants
// and returns how many Cedar policies are in force. A broken file is an
// APIError with Status 422, Code "invalid_policy" and the file and
// position in Message; the previous policies stay in force.
func (c *Client) ReloadPolicies(ctx context.Context) (int, error) {
	var v ReloadResult
	err := c.do(ctx, http.MethodPost, "/admin/v1/policies/reload", nil, nil, &v)
	return v.Policies, err
}

// TestPolicy asks what the gateway would decide for a user calling a tool
// with arguments, without running it.
func (c *Client) TestPolicy(ctx context.Context, req PolicyTestRequest) (PolicyTestResult, error) {
	var v PolicyTestResult
	err := c.do(ctx, http.MethodPost, "/admin/v1/policies/test", nil, req, &v)
	return v, err
}

// QueryAudit returns audit events matching the filters (see the API's
// /admin/v1/audit parameters: user, tool, type, status, request_id, since,
// until, before, limit).
func (c *Client) QueryAudit(ctx context.Context, filters url.Values) ([]audit.Event, error) {
	var out struct{ Events []audit.Event }
	err := c.do(ctx, http.MethodGet, "/admin/v1/audit", filters, nil, &out)
	return out.Events, err
}

// ExportAudit streams every event matching filters (plus format=jsonl|csv)
// to w, oldest first, with no overall timeout (ctx bounds it). A stream
// the server cut short is an error, never a silently short export.
func (c *Client) ExportAudit(ctx context.Context, filters url.Values, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, "/admin/v1/audit/export", filters, nil, 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return apiError(resp, data)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("admin API: export interrupted: %w", err)
	}
	return nil
}

// Checkpoint asks the server to write a signed audit checkpoint now.
func (c *Client) Checkpoint(ctx context.Context) (audit.Checkpoint, error) {
	var cp audit.Checkpoint
	err := c.do(ctx, http.MethodPost, "/admin/v1/audit/checkpoint", nil, nil, &cp)
	return cp, err
}

// ListQuarantines lists active quarantines (all: released ones too).
func (c *Client) ListQuarantines(ctx context.Context, all bool) ([]store.Quarantine, error) {
	var out struct{ Quarantines []store.Quarantine }
	q := url.Values{}
	if all {
		q.Set("all", "true")
	}
	err := c.do(ctx, http.MethodGet, "/admin/v1/quarantines", q, nil, &out)
	return out.Quarantines, err
}

// Quarantine puts a principal, session or plugin in quarantine.
func (c *Client) Quarantine(ctx context.Context, req QuarantineRequest) (store.Quarantine, error) {
	var q store.Quarantine
	err := c.do(ctx, http.MethodPost, "/admin/v1/quarantines", nil, req, &q)
	return q, err
}

// ReleaseQuarantine releases a quarantine by id or subject.
func (c *Client) ReleaseQuarantine(ctx context.Context, req ReleaseRequest) (store.Quarantine, error) {
	var q store.Quarantine
	err := c.do(ctx, http.MethodPost, "/admin/v1/quarantines/release", nil, req, &q)
	return q, err
}

// ListViolations lists violations (filters: user, type, since, limit).
func (c *Client) ListViolations(ctx context.Context, filters url.Values) ([]store.Violation, error) {
	var out struct{ Violations []store.Violation }
	err := c.do(ctx, http.MethodGet, "/admin/v1/violations", filters, nil, &out)
	return out.Violations, err
}

// Usage returns quota usage of a UTC day (YYYY-MM-DD; empty: today).
func (c *Client) Usage(ctx context.Context, day string) ([]store.Usage, error) {
	var out struct{ Usage []store.Usage }
	q := url.Values{}
	if day != "" {
		q.Set("day", day)
	}
	err := c.do(ctx, http.MethodGet, "/admin/v1/usage", q, nil, &out)
	return out.Usage, err
}

// ListApprovals lists approval requests (state "" = all), newest first.
func (c *Client) ListApprovals(ctx context.Context, state string) ([]store.Approval, error) {
	var out struct{ Approvals []store.Approval }
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	err := c.do(ctx, http.MethodGet, "/admin/v1/approvals", q, nil, &out)
	return out.Approvals, err
}

// GetApproval returns one approval request.
func (c *Client) GetApproval(ctx context.Context, id string) (store.Approval, error) {
	var a store.Approval
	if id == "" || strings.ContainsAny(id, "/?#") {
		return a, errors.New("admin API: bad approval id")
	}
	err := c.do(ctx, http.MethodGet, "/admin/v1/approvals/"+url.PathEscape(id), nil, nil, &a)
	return a, err
}

// DecideApproval approves (or denies) a pending request with a comment.
func (c *Client) DecideApproval(ctx context.Context, id string, approve bool, comment string) (store.Approval, error) {
	var a store.Approval
	if id == "" || strings.ContainsAny(id, "/?#") {
		return a, errors.New("admin API: bad approval id")
	}
	verb := "deny"
	if approve {
		verb = "approve"
	}
	err := c.do(ctx, http.MethodPost, "/admin/v1/approvals/"+url.PathEscape(id)+"/"+verb, nil,
		DecisionRequest{Comment: comment}, &a)
	return a, err
}

// ListPlugins returns every upstream server's state and every pinned tool
// definition.
func (c *Client) ListPlugins(ctx context.Context) (PluginsView, error) {
	var v PluginsView
	err := c.do(ctx, http.MethodGet, "/admin/v1/plugins", nil, nil, &v)
	return v, err
}

// InspectPluginTool returns the pin of server's tool (upstream name) with
// the diff of a pending change (unknown: APIError 404).
func (c *Client) InspectPluginTool(ctx context.Context, server, tool string) (PluginToolView, error) {
	path, err := pluginToolPath(server, tool)
	if err != nil {
		return PluginToolView{}, err
	}
	var v PluginToolView
	err = c.do(ctx, http.MethodGet, path, nil, nil, &v)
	return v, err
}

// AcceptPluginTool accepts the pending definition of server's tool and
// returns the new pin. hash is the pending fingerprint the caller
// inspected ("" accepts whatever is pending); a definition that changed
// since is APIError 409, as is a tool with nothing pending.
func (c *Client) AcceptPluginTool(ctx context.Context, server, tool, hash string) (pin.Record, error) {
	path, err := pluginToolPath(server, tool)
	if err != nil {
		return pin.Record{}, err
	}
	var rec pin.Record
	err = c.do(ctx, http.MethodPost, path+"/accept", nil, AcceptRequest{Hash: hash}, &rec)
	return rec, err
}

func pluginToolPath(server, tool string) (string, error) {
	s, err := pathSegment("server", server)
	if err != nil {
		return "", err
	}
	t, err := pathSegment("tool", tool)
	if err != nil {
		return "", err
	}
	return "/admin/v1/plugins/" + s + "/tools/" + t, nil
}

// ListSecrets returns the stored secrets by name and user, never a value.
func (c *Client) ListSecrets(ctx context.Context) ([]SecretView, error) {
	var v SecretsView
	err := c.do(ctx, http.MethodGet, "/admin/v1/secrets", nil, nil, &v)
	return v.Secrets, err
}

// Health runs the gateway's health checks; a degraded gateway is not an
// error (Status says so).
func (c *Client) Health(ctx context.Context) (HealthView, error) {
	var v HealthView
	err := c.do(ctx, http.MethodGet, "/admin/v1/health", nil, nil, &v)
	return v, err
}
