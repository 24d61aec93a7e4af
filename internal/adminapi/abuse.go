package adminapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// AbuseAdmin is the quarantine and quota side of the abuse controls
// (implemented by *violation.Engine and *abuse.Quotas in the app).
type AbuseAdmin interface {
	// Quarantine puts a subject in quarantine now (in force at once,
	// stored, audited as quarantine.create, alerted).
	Quarantine(ctx context.Context, kind, subject, reason, by string) (store.Quarantine, error)
	// Release ends an active quarantine by id or subject (audited as
	// quarantine.release); none: store.ErrNotFound.
	Release(ctx context.Context, idOrSubject, by, reason string) (store.Quarantine, error)
	// UsageToday is today's quota usage as this process knows it.
	UsageToday() []store.Usage
}

// QuarantineRequest creates a quarantine by hand.
type QuarantineRequest struct {
	Kind    string `json:"kind"` // principal | session | plugin
	Subject string `json:"subject"`
	Reason  string `json:"reason"`
}

// ReleaseRequest releases a quarantine by id ("qua_...") or subject.
type ReleaseRequest struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// MaxReasonLen bounds a quarantine or release reason.
const MaxReasonLen = 1024

func (a *API) abuse(w http.ResponseWriter) bool {
	if a.d.Abuse == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "abuse controls are not available")
		return false
	}
	return true
}

func (a *API) listViolations(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	v := r.URL.Query()
	q := store.ViolationQuery{Principal: v.Get("user"), Type: v.Get("type")}
	var err error
	if q.Since, err = parseTime(v.Get("since"), a.d.Now()); err != nil {
		return badRequest("since: %v", err)
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit <= 0 || q.Limit > 10000 {
			return badRequest("limit must be 1..10000")
		}
	}
	out, err := a.d.Store.ListViolations(r.Context(), q)
	if err != nil {
		return err
	}
	if out == nil {
		out = []store.Violation{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"violations": out})
	return nil
}

func (a *API) listQuarantines(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	out, err := a.d.Store.ListQuarantines(r.Context(), r.URL.Query().Get("all") == "true")
	if err != nil {
		return err
	}
	if out == nil {
		out = []store.Quarantine{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"quarantines": out})
	return nil
}

func (a *API) createQuarantine(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	if !a.abuse(w) {
		return nil
	}
	var req QuarantineRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	switch req.Kind {
	case store.QuarantinePrincipal, store.QuarantineSession, store.QuarantinePlugin:
	default:
		return badRequest("kind must be principal, session or plugin")
	}
	if req.Subject == "" || !validText(req.Subject, 256) {
		return badRequest("subject must be 1-256 bytes of text")
	}
	if strings.TrimSpace(req.Reason) == "" || !validText(req.Reason, MaxReasonLen) {
		return badRequest("reason is required (at most %d bytes of text)", MaxReasonLen)
	}
	if req.Kind == store.QuarantinePrincipal && req.Subject == p.Name {
		return badRequest("you cannot quarantine yourself")
	}
	q, err := a.d.Abuse.Quarantine(r.Context(), req.Kind, req.Subject, req.Reason, p.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, q)
	return nil
}

func (a *API) releaseQuarantine(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	if !a.abuse(w) {
		return nil
	}
	var req ReleaseRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Target == "" || !validText(req.Target, 256) {
		return badRequest("target (a quarantine id or subject) is required")
	}
	if strings.TrimSpace(req.Reason) == "" || !validText(req.Reason, MaxReasonLen) {
		return badRequest("reason is required (at most %d bytes of text)", MaxReasonLen)
	}
	q, err := a.d.Abuse.Release(r.Context(), req.Target, p.Name, req.Reason)
	if errors.Is(err, store.ErrNotFound) {
		return &httpError{http.StatusNotFound, "not_found", "no active quarantine matches"}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, q)
	return nil
}

func (a *API) usage(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	day := r.URL.Query().Get("day")
	if day == "" || day == a.d.Now().UTC().Format("2006-01-02") {
		if a.d.Abuse != nil {
			out := a.d.Abuse.UsageToday()
			if out == nil {
				out = []store.Usage{}
			}
			writeJSON(w, http.StatusOK, map[string]any{"usage": out})
			return nil
		}
		day = a.d.Now().UTC().Format("2006-01-02")
	}
	if _, err := time.Parse("2006-01-02", day); err != nil {
		return badRequest("day must be YYYY-MM-DD")
	}
	out, err := a.d.Store.UsageOn(r.Context(), day)
	if err != nil {
		return err
	}
	if out == nil {
		out = []store.Usage{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"usage": out})
	return nil
}
