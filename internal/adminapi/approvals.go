package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/portcullis/portcullis/internal/approval"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/store"
)

// ApprovalAdmin decides approval requests (*approval.Service).
type ApprovalAdmin interface {
	Decide(ctx context.Context, p *principal.Principal, id string, approve bool, comment string) (store.Approval, error)
}

// DecisionRequest carries an approver's optional comment.
type DecisionRequest struct {
	Comment string `json:"comment"`
}

func (a *API) listApprovals(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	state := r.URL.Query().Get("state")
	switch state {
	case "", store.ApprovalPending, store.ApprovalApproved, store.ApprovalDenied, store.ApprovalExpired, store.ApprovalConsumed:
	default:
		return badRequest("state must be pending, approved, denied, expired or consumed")
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			return badRequest("limit must be 1..10000")
		}
		limit = n
	}
	out, err := a.d.Store.ListApprovals(r.Context(), state, limit)
	if err != nil {
		return err
	}
	if out == nil {
		out = []store.Approval{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": out})
	return nil
}

func (a *API) getApproval(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	ap, err := a.d.Store.GetApproval(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ap)
	return nil
}

func (a *API) approve(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	return a.decide(w, r, p, true)
}

func (a *API) deny(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	return a.decide(w, r, p, false)
}

// decide approves or denies: never one's own request, only with the
// approve permission for the tool, only a pending request (409 otherwise).
func (a *API) decide(w http.ResponseWriter, r *http.Request, p *principal.Principal, ok bool) error {
	if a.d.Approvals == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "approvals are not available")
		return nil
	}
	var req DecisionRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			return err
		}
	}
	if !validText(req.Comment, MaxReasonLen) {
		return badRequest("comment must be at most %d bytes of text", MaxReasonLen)
	}
	ap, err := a.d.Approvals.Decide(r.Context(), p, r.PathValue("id"), ok, req.Comment)
	refused := func(why string) error {
		if aerr := a.emit(r, p, &audit.Event{Type: audit.AdminDenied, Decision: audit.DecisionDeny,
			Status: audit.StatusRefused, Reason: reason.PermissionDenied, Tool: ap.Tool,
			Detail: fmt.Sprintf("%s %s: %s", r.Method, ap.ID, why)}); aerr != nil {
			return aerr
		}
		return forbidden("%s", why)
	}
	switch {
	case errors.Is(err, approval.ErrSelfApproval):
		return refused("you cannot decide your own request")
	case errors.Is(err, approval.ErrNotApprover):
		return refused("you may not approve calls to this tool")
	case errors.Is(err, store.ErrConflict):
		return conflict("request %s is %s, not pending", ap.ID, ap.State)
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, ap)
	return nil
}
