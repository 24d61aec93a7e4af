package adminapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// RoleView is a role as the admin API shows it.
type RoleView struct {
	Name        string           `json:"name"`
	Description string           `json:"description"`
	Permissions []PermissionView `json:"permissions"` // by action, then pattern; never null
}

// PermissionView is one grant of a role: Effect ("allow" or "deny") on
// Action ("call", "admin", "approve") for resources matching Pattern.
type PermissionView struct {
	Action  string `json:"action"`
	Pattern string `json:"pattern"`
	Effect  string `json:"effect"`
}

func viewRole(r store.Role) RoleView {
	v := RoleView{Name: r.Name, Description: r.Description, Permissions: make([]PermissionView, 0, len(r.Grants))}
	for _, g := range r.Grants {
		v.Permissions = append(v.Permissions, PermissionView{Action: g.Action, Pattern: g.Pattern, Effect: g.Effect})
	}
	return v
}

// CreateRoleRequest is the body of POST /admin/v1/roles.
type CreateRoleRequest struct {
	// Name must match ^[a-z][a-z0-9_-]{0,31}$.
	Name string `json:"name"`
	// Description is free text without control characters, at most
	// MaxDescriptionLen bytes.
	Description string `json:"description,omitempty"`
}

// GrantPermissionRequest is the body of POST /admin/v1/roles/{name}/permissions.
type GrantPermissionRequest struct {
	// Action is "call", "admin" or "approve".
	Action string `json:"action"`
	// Pattern is a tool name or glob ("git_*", "*") for call and approve,
	// an admin area or glob for admin; see validPattern.
	Pattern string `json:"pattern"`
	// Effect is "allow" (default) or "deny"; deny wins over any allow.
	Effect string `json:"effect,omitempty"`
}

// RevokePermissionRequest is the body of DELETE
// /admin/v1/roles/{name}/permissions (patterns contain '*', so they are
// not put in the path).
type RevokePermissionRequest struct {
	Action  string `json:"action"`
	Pattern string `json:"pattern"`
}

func (a *API) listRoles(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	roles, err := a.d.Store.ListRoles(r.Context())
	if err != nil {
		return err
	}
	out := make([]RoleView, 0, len(roles))
	for _, role := range roles {
		out = append(out, viewRole(role))
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": out})
	return nil
}

// role returns the named role or a 404.
func (a *API) role(ctx context.Context, name string) (store.Role, error) {
	roles, err := a.d.Store.ListRoles(ctx)
	if err != nil {
		return store.Role{}, err
	}
	for _, role := range roles {
		if role.Name == name {
			return role, nil
		}
	}
	return store.Role{}, notFound("no role %q", name)
}

func (a *API) getRole(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	role, err := a.role(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewRole(role))
	return nil
}

func (a *API) createRole(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	var req CreateRoleRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !roleName.MatchString(req.Name) {
		return badRequest("name must match %s", roleName)
	}
	if !validText(req.Description, MaxDescriptionLen) {
		return badRequest("description must be at most %d bytes of text without control characters", MaxDescriptionLen)
	}
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	if err := a.d.Store.CreateRole(r.Context(), req.Name, req.Description); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return conflict("role %q exists", req.Name)
		}
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminRoleCreate, Status: audit.StatusOK,
		Detail: fmt.Sprintf("role %q", req.Name)}); err != nil {
		return err
	}
	a.changed(r)
	writeJSON(w, http.StatusCreated, RoleView{Name: req.Name, Description: req.Description, Permissions: []PermissionView{}})
	return nil
}

func (a *API) grantPermission(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	var req GrantPermissionRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Effect == "" {
		req.Effect = policy.EffectAllow
	}
	if req.Effect != policy.EffectAllow && req.Effect != policy.EffectDeny {
		return badRequest("effect must be %s or %s", policy.EffectAllow, policy.EffectDeny)
	}
	if err := validAction(req.Action); err != nil {
		return err
	}
	if err := validPattern(req.Pattern); err != nil {
		return err
	}
	name := r.PathValue("name")
	g := store.Grant{Role: name, Action: req.Action, Pattern: req.Pattern, Effect: req.Effect}
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	role, err := a.role(r.Context(), name)
	if err != nil {
		return err
	}
	for _, have := range role.Grants {
		if have.Action == g.Action && have.Pattern == g.Pattern && have.Effect == g.Effect {
			writeJSON(w, http.StatusOK, viewRole(role)) // nothing changes
			return nil
		}
	}
	if name == adminRole && g.Action == string(policy.ActionAdmin) && g.Effect == policy.EffectDeny {
		return conflict("the %s role cannot be denied admin permissions; create a separate role for restricted administrators", adminRole)
	}
	err = a.checkAdminRemains(r.Context(), fmt.Sprintf("granting role %q %s", name, describeGrant(g)),
		func(users []store.User, grants []store.Grant) ([]store.User, []store.Grant) {
			return users, append(withoutGrant(grants, g.Role, g.Action, g.Pattern), g)
		})
	if err != nil {
		return err
	}
	if err := a.d.Store.GrantPermission(r.Context(), g); err != nil {
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminRoleGrant, Status: audit.StatusOK,
		Detail: fmt.Sprintf("role %q granted %s", name, describeGrant(g))}); err != nil {
		return err
	}
	a.changed(r)
	role.Grants = append(withoutGrant(role.Grants, g.Role, g.Action, g.Pattern), g)
	writeRole(w, role)
	return nil
}

func (a *API) revokePermission(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	var req RevokePermissionRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if err := validAction(req.Action); err != nil {
		return err
	}
	if err := validPattern(req.Pattern); err != nil {
		return err
	}
	name := r.PathValue("name")
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	role, err := a.role(r.Context(), name)
	if err != nil {
		return err
	}
	var g *store.Grant
	for i := range role.Grants {
		if role.Grants[i].Action == req.Action && role.Grants[i].Pattern == req.Pattern {
			g = &role.Grants[i]
		}
	}
	if g == nil {
		return notFound("role %q has no %s permission for %q", name, req.Action, req.Pattern)
	}
	if name == adminRole && g.Action == string(policy.ActionAdmin) && g.Pattern == "*" && g.Effect == policy.EffectAllow {
		return conflict("the %s role keeps its admin \"*\" allow permission: removing it would lock operators out of the admin API", adminRole)
	}
	gone := *g
	err = a.checkAdminRemains(r.Context(), fmt.Sprintf("revoking %s from role %q", describeGrant(gone), name),
		func(users []store.User, grants []store.Grant) ([]store.User, []store.Grant) {
			return users, withoutGrant(grants, name, req.Action, req.Pattern)
		})
	if err != nil {
		return err
	}
	if err := a.d.Store.RevokePermission(r.Context(), name, req.Action, req.Pattern); err != nil {
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminRoleRevoke, Status: audit.StatusOK,
		Detail: fmt.Sprintf("role %q lost %s", name, describeGrant(gone))}); err != nil {
		return err
	}
	a.changed(r)
	role.Grants = withoutGrant(role.Grants, name, req.Action, req.Pattern)
	writeRole(w, role)
	return nil
}

// writeRole answers with role, its grants sorted as the store lists them
// (by action, then pattern).
func writeRole(w http.ResponseWriter, role store.Role) {
	slices.SortFunc(role.Grants, func(x, y store.Grant) int {
		return cmp.Or(cmp.Compare(x.Action, y.Action), cmp.Compare(x.Pattern, y.Pattern))
	})
	writeJSON(w, http.StatusOK, viewRole(role))
}
