package adminapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/principal"
)

func (a *API) queryAudit(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	q, err := parseAuditQuery(r.URL.Query(), a.d.Now())
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

// exportAudit streams every event matching the filters, oldest first, as
// JSON lines or CSV (format=jsonl|csv). The export itself is recorded as
// audit.export first: a bulk read of the log is an event worth keeping.
func (a *API) exportAudit(w http.ResponseWriter, r *http.Request, p *principal.Principal) error {
	v := r.URL.Query()
	format := v.Get("format")
	if format == "" {
		format = audit.FormatJSONL
	}
	if v.Get("limit") != "" || v.Get("order") != "" {
		return badRequest("export takes no limit or order: it streams every matching event, oldest first")
	}
	q, err := parseAuditQuery(v, a.d.Now())
	if err != nil {
		return err
	}
	x, err := audit.NewExporter(w, format)
	if err != nil {
		return badRequest("format must be jsonl or csv")
	}
	filters, _ := json.Marshal(v)
	if err := a.emit(r, p, &audit.Event{Type: audit.AuditExport, Status: audit.StatusOK,
		Detail: "filters " + string(filters)}); err != nil {
		return err
	}
	if format == audit.FormatCSV {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("Content-Disposition", `attachment; filename="portcullis-audit.`+format+`"`)
	q.Ascending, q.Limit = true, audit.MaxQueryLimit
	for {
		page, err := a.d.Store.QueryAudit(r.Context(), q)
		if err != nil {
			// Headers are sent; a truncated export must not look complete,
			// so the connection is cut instead of ending cleanly.
			a.d.Logger.Error("audit export failed midway", "err", err)
			panic(http.ErrAbortHandler)
		}
		for i := range page {
			if err := x.Write(&page[i]); err != nil {
				return nil // client went away
			}
		}
		if err := x.Flush(); err != nil {
			return nil
		}
		if len(page) < q.Limit {
			return nil
		}
		q.AfterSeq = page[len(page)-1].Seq
	}
}

func (a *API) checkpoint(w http.ResponseWriter, r *http.Request, _ *principal.Principal) error {
	if a.d.Checkpoint == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "checkpoints are not available")
		return nil
	}
	cp, err := a.d.Checkpoint(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cp)
	return nil
}

// parseAuditQuery reads filters: user, role, tool, server, type, status,
// decision, session, request_id, chain (a replica's audit chain id),
// since/until (RFC 3339 or a duration
// meaning "that long ago"), before/after (sequence numbers, for paging),
// order (desc, the default, or asc) and limit.
func parseAuditQuery(v url.Values, now time.Time) (audit.Query, error) {
	q := audit.Query{
		Principal: v.Get("user"),
		Role:      v.Get("role"),
		Tool:      v.Get("tool"),
		Server:    v.Get("server"),
		Type:      audit.Type(v.Get("type")),
		Status:    v.Get("status"),
		Decision:  v.Get("decision"),
		Session:   v.Get("session"),
		RequestID: v.Get("request_id"),
		Chain:     v.Get("chain"),
	}
	if !audit.ValidChainID(q.Chain) {
		return q, badRequest("chain must be at most %d letters, digits, '.', '_' or '-'", audit.MaxChainIDLen)
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
	if s := v.Get("after"); s != "" {
		if q.AfterSeq, err = strconv.ParseInt(s, 10, 64); err != nil || q.AfterSeq < 0 {
			return q, badRequest("after must be a sequence number")
		}
	}
	switch v.Get("order") {
	case "", "desc":
	case "asc":
		q.Ascending = true
	default:
		return q, badRequest("order must be asc or desc")
	}
	return q, nil
}
