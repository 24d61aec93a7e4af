package adminapi

import (
	"context"
	"fmt"

	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// recoveryAreas are the admin areas an operator needs to undo any access
// change: manage users and roles, and issue keys.
var recoveryAreas = []string{"users", "roles", "keys"}

// administrable reports whether some enabled user holds a role that, on
// its own, is allowed admin on every recovery area under grants. A key
// carries one role (createKey), so such a user can be given a working
// admin key; a deny in another role the user holds does not matter to a
// key without that role. Cedar policies are not considered: they live in
// files the operator can edit without the API.
func administrable(users []store.User, grants []store.Grant) (bool, error) {
	eng, err := policy.New(grants)
	if err != nil {
		return false, err
	}
	for _, u := range users {
		if u.Disabled {
			continue
		}
		for _, role := range u.Roles {
			p := &principal.Principal{UserID: u.ID, Name: u.Name, Roles: []string{role}, Method: principal.MethodAPIKey}
			ok := true
			for _, area := range recoveryAreas {
				if !eng.Decide(p, policy.ActionAdmin, area).Allow {
					ok = false
					break
				}
			}
			if ok {
				return true, nil
			}
		}
	}
	return false, nil
}

// checkAdminRemains refuses (409) a change that would leave no enabled user
// able to administer users, roles and keys, when some user could before.
// change maps copies of the current users and grants to what they would
// be after the change. Callers hold a.changeMu across the check and the
// change.
func (a *API) checkAdminRemains(ctx context.Context, what string, change func(users []store.User, grants []store.Grant) ([]store.User, []store.Grant)) error {
	users, err := a.d.Store.ListUsers(ctx)
	if err != nil {
		return err
	}
	grants, err := a.d.Store.Grants(ctx)
	if err != nil {
		return err
	}
	before, err := administrable(users, grants)
	if err != nil || !before {
		// Nothing to protect (administrators come from elsewhere, e.g.
		// OIDC claims), or the stored grants are already broken; either
		// way this change cannot make it worse.
		return nil
	}
	uc := make([]store.User, len(users))
	for i, u := range users {
		u.Roles = append([]string(nil), u.Roles...)
		uc[i] = u
	}
	gc := append([]store.Grant(nil), grants...)
	after, err := administrable(change(uc, gc))
	if err != nil {
		return badRequest("the change would make the grants invalid: %v", err)
	}
	if !after {
		return conflict("%s would leave no enabled user able to administer users, roles and keys; "+
			"give another user the admin role first", what)
	}
	return nil
}

// withoutGrant returns grants without role's grant of action on pattern.
func withoutGrant(grants []store.Grant, role, action, pattern string) []store.Grant {
	out := grants[:0]
	for _, g := range grants {
		if g.Role == role && g.Action == action && g.Pattern == pattern {
			continue
		}
		out = append(out, g)
	}
	return out
}

func describeGrant(g store.Grant) string {
	return fmt.Sprintf("%s %s %q", g.Effect, g.Action, g.Pattern)
}
