package adminapi

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// UserView is a user as the admin API shows it.
type UserView struct {
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"` // sorted; never null
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
}

func viewUser(u store.User) UserView {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return UserView{Name: u.Name, Roles: roles, Disabled: u.Disabled, CreatedAt: u.CreatedAt}
}

// CreateUserRequest is the body of POST /admin/v1/users.
type CreateUserRequest struct {
	// Name must match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$.
	Name string `json:"name"`
	// Roles are existing role names; at least one, at most MaxUserRoles.
	Roles []string `json:"roles"`
}

// GrantRoleRequest is the body of POST /admin/v1/users/{name}/roles.
type GrantRoleRequest struct {
	Role string `json:"role"`
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	users, err := a.d.Store.ListUsers(r.Context())
	if err != nil {
		return err
	}
	out := make([]UserView, 0, len(users))
	for _, u := range users {
		out = append(out, viewUser(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
	return nil
}

// knownRole returns a 400 unless role exists.
func (a *API) knownRole(r *http.Request, role string) error {
	roles, err := a.d.Store.Roles(r.Context())
	if err != nil {
		return err
	}
	if !slices.Contains(roles, role) {
		return badRequest("unknown role %q (roles: %v)", role, roles)
	}
	return nil
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	var req CreateUserRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if !userName.MatchString(req.Name) {
		return badRequest("name must match %s", userName)
	}
	if len(req.Roles) == 0 || len(req.Roles) > MaxUserRoles {
		return badRequest("roles must list 1 to %d roles", MaxUserRoles)
	}
	known, err := a.d.Store.Roles(r.Context())
	if err != nil {
		return err
	}
	var roles []string
	for _, role := range req.Roles {
		if !slices.Contains(known, role) {
			return badRequest("unknown role %q (roles: %v)", role, known)
		}
		if !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	u, created, err := a.d.Store.EnsureUser(r.Context(), req.Name, roles)
	if err != nil {
		return err
	}
	if !created {
		return conflict("user %q exists", req.Name)
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminUserCreate, Status: audit.StatusOK,
		Detail: fmt.Sprintf("user %q roles %q", u.Name, u.Roles)}); err != nil {
		return err
	}
	a.changed(r)
	writeJSON(w, http.StatusCreated, viewUser(u))
	return nil
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	u, err := a.d.Store.UserByName(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewUser(u))
	return nil
}

func (a *API) disableUser(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	return a.setDisabled(w, r, p, true)
}

func (a *API) enableUser(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	return a.setDisabled(w, r, p, false)
}

// setDisabled disables or enables a user. Setting the state it already
// has changes nothing and is not audited.
func (a *API) setDisabled(w http.ResponseWriter, r *http.Request, p *principal.Principal, disabled bool) error {
	name := r.PathValue("name")
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	u, err := a.d.Store.UserByName(r.Context(), name)
	if err != nil {
		return err
	}
	if u.Disabled == disabled {
		writeJSON(w, http.StatusOK, viewUser(u))
		return nil
	}
	typ := audit.AdminUserEnable
	if disabled {
		typ = audit.AdminUserDisable
		err := a.checkAdminRemains(r.Context(), fmt.Sprintf("disabling user %q", u.Name),
			func(users []store.User, grants []store.Grant) ([]store.User, []store.Grant) {
				for i := range users {
					if users[i].ID == u.ID {
						users[i].Disabled = true
					}
				}
				return users, grants
			})
		if err != nil {
			return err
		}
	}
	u, err = a.d.Store.SetUserDisabled(r.Context(), u.Name, disabled)
	if err != nil {
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: typ, Status: audit.StatusOK, Detail: fmt.Sprintf("user %q", u.Name)}); err != nil {
		return err
	}
	a.changed(r)
	writeJSON(w, http.StatusOK, viewUser(u))
	return nil
}

func (a *API) grantUserRole(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	var req GrantRoleRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	u, err := a.d.Store.UserByName(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := a.knownRole(r, req.Role); err != nil {
		return err
	}
	if slices.Contains(u.Roles, req.Role) {
		writeJSON(w, http.StatusOK, viewUser(u)) // nothing changes
		return nil
	}
	// Adding a role never takes administration away from anyone (see
	// administrable), so no lockout check.
	if err := a.d.Store.GrantUserRole(r.Context(), u.ID, req.Role); err != nil {
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminUserGrant, Status: audit.StatusOK,
		Detail: fmt.Sprintf("user %q granted role %q", u.Name, req.Role)}); err != nil {
		return err
	}
	a.changed(r)
	u.Roles = append(u.Roles, req.Role)
	slices.Sort(u.Roles)
	writeJSON(w, http.StatusOK, viewUser(u))
	return nil
}

func (a *API) revokeUserRole(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	role := r.PathValue("role")
	a.changeMu.Lock()
	defer a.changeMu.Unlock()
	u, err := a.d.Store.UserByName(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	if !slices.Contains(u.Roles, role) {
		return notFound("user %q does not hold role %q", u.Name, role)
	}
	err = a.checkAdminRemains(r.Context(), fmt.Sprintf("revoking role %q from user %q", role, u.Name),
		func(users []store.User, grants []store.Grant) ([]store.User, []store.Grant) {
			for i := range users {
				if users[i].ID == u.ID {
					users[i].Roles = slices.DeleteFunc(users[i].Roles, func(s string) bool { return s == role })
				}
			}
			return users, grants
		})
	if err != nil {
		return err
	}
	if err := a.d.Store.RevokeUserRole(r.Context(), u.ID, role); err != nil {
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminUserRevoke, Status: audit.StatusOK,
		Detail: fmt.Sprintf("user %q lost role %q", u.Name, role)}); err != nil {
		return err
	}
	a.changed(r)
	u.Roles = slices.DeleteFunc(u.Roles, func(s string) bool { return s == role })
	writeJSON(w, http.StatusOK, viewUser(u))
	return nil
}
