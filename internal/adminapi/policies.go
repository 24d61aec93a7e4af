package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/policy"
	"github.com/portcullis/portcullis/internal/principal"
)

// PoliciesView is the answer of GET /admin/v1/policies.
type PoliciesView struct {
	// Mode is "enforce" or "report".
	Mode     policy.Mode         `json:"mode"`
	Policies []policy.PolicyInfo `json:"policies"` // never null
}

// ReloadResult is the answer of POST /admin/v1/policies/reload.
type ReloadResult struct {
	// Policies is the number of Cedar policies in force after the reload.
	Policies int `json:"policies"`
}

// PolicyTestRequest is the body of POST /admin/v1/policies/test.
type PolicyTestRequest struct {
	// User is the name of a stored user; the decision uses its roles.
	User string `json:"user"`
	// Tool is the tool name, e.g. "read_file" or "notes__search".
	Tool string `json:"tool"`
	// Args are the call's arguments (a JSON object); absent or null: none.
	Args json.RawMessage `json:"args,omitempty"`
}

// PolicyTestResult is the answer of POST /admin/v1/policies/test: what
// the gateway would decide, and why (for administrators only).
type PolicyTestResult struct {
	Allow bool `json:"allow"`
	// Rule describes what decided, e.g. "role:developer allow call read_file".
	Rule string `json:"rule"`
	// Policies are the ids of the Cedar policies that matched; never null.
	Policies []string `json:"policies"`
}

// errNoPolicies answers the policy routes when Deps.Policies is nil.
var errNoPolicies = &httpError{http.StatusNotImplemented, "not_implemented", "policy management is not available on this server"}

func (a *API) listPolicies(w http.ResponseWriter, _ *http.Request, _ *principal.Principal) error {
	if a.d.Policies == nil {
		return errNoPolicies
	}
	ps := a.d.Policies.Policies()
	if ps == nil {
		ps = []policy.PolicyInfo{}
	}
	writeJSON(w, http.StatusOK, PoliciesView{Mode: a.d.Policies.Mode(), Policies: ps})
	return nil
}

// reloadPolicies re-reads policy files and grants. A broken policy or
// grant answers 422 with the loader's message (file and position: the
// caller is an administrator); the previous policies stay in force.
func (a *API) reloadPolicies(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	if a.d.Policies == nil {
		return errNoPolicies
	}
	n, err := a.d.Policies.Reload(r.Context())
	if err != nil {
		if aerr := a.emit(r, p, &audit.Event{Type: audit.AdminPolicyReload, Status: audit.StatusError,
			Detail: "reload rejected: " + err.Error()}); aerr != nil {
			return aerr
		}
		if errors.Is(err, policy.ErrInvalidPolicy) || errors.Is(err, policy.ErrInvalidGrant) {
			return &httpError{http.StatusUnprocessableEntity, "invalid_policy", err.Error()}
		}
		return err
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminPolicyReload, Status: audit.StatusOK,
		Detail: fmt.Sprintf("%d policies in force", n)}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ReloadResult{Policies: n})
	return nil
}

// testPolicy answers what the gateway would decide for a stored user
// calling a tool with arguments, without running anything.
func (a *API) testPolicy(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	if a.d.Policies == nil {
		return errNoPolicies
	}
	var req PolicyTestRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.User == "" || !validText(req.User, 256) {
		return badRequest("user must name a user")
	}
	if err := validToolName(req.Tool); err != nil {
		return err
	}
	args := req.Args
	if t := bytes.TrimSpace(args); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		args = nil
	} else if t[0] != '{' {
		return badRequest("args must be a JSON object")
	}
	u, err := a.d.Store.UserByName(r.Context(), req.User)
	if err != nil {
		return err // ErrNotFound: 404
	}
	var d policy.Decision
	if u.Disabled {
		d = policy.Decision{Rule: "user disabled"}
	} else {
		tp := &principal.Principal{UserID: u.ID, Name: u.Name, Roles: u.Roles, Method: principal.MethodAPIKey}
		if d, err = a.d.Policies.Explain(r.Context(), tp, req.Tool, args); err != nil {
			return err // store.ErrInvalid (bad arguments): 400
		}
	}
	verdict := "deny"
	if d.Allow {
		verdict = "allow"
	}
	if err := a.emit(r, p, &audit.Event{Type: audit.AdminPolicyTest, Status: audit.StatusOK,
		Detail: fmt.Sprintf("user %q tool %q: %s (%s)", u.Name, req.Tool, verdict, d.Rule)}); err != nil {
		return err
	}
	res := PolicyTestResult{Allow: d.Allow, Rule: d.Rule, Policies: d.Policies}
	if res.Policies == nil {
		res.Policies = []string{}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
