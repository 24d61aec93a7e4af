// Package pin defends against rug pulls and tool poisoning by upstream MCP
// servers ("plugins"). Each tool definition a server declares (name, title,
// description, input and output schema, annotations: MCP 2025-11-25,
// server/tools) is fingerprinted and pinned on first sight (trust on first
// use); a later change to any part of it is held as pending, and the tool
// withheld, until an admin accepts exactly the definition they inspected.
// Every definition is also scanned for poisoning (hidden instructions,
// requests for secrets files, instructions about other tools, whitespace
// padding, invisible and bidirectional Unicode; see Scan); a flagged
// definition is never trusted on first use.
//
// The package knows nothing of MCP wire types or of a store: callers
// convert the SDK's tools to Definition, and persist through Backend
// (store/sqlite implements it; pintest has an in-memory one).
package pin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"
)

// Errors. Backends wrap ErrNotFound and ErrInvalid with %w; Accept wraps
// ErrStale and ErrMalformed in ErrInvalid ("%w: %w").
var (
	ErrNotFound = errors.New("pin: not found")
	ErrInvalid  = errors.New("pin: invalid")
	// ErrStale means the definition awaiting acceptance is not the one the
	// admin inspected: the server changed it again in between.
	ErrStale = errors.New("pin: definition changed since inspected")
	// ErrMalformed means the definition awaiting acceptance is malformed
	// (RuleMalformed: it could not be scanned), so it cannot be accepted.
	ErrMalformed = errors.New("pin: malformed definition")
)

// Definition is what an upstream server declared for one tool (MCP
// 2025-11-25, server/tools: Tool). The schemas and annotations are raw
// JSON; nil, empty and JSON null all mean absent. Icons and _meta are not
// part of it: they do not reach the model.
type Definition struct {
	Name         string          `json:"name"`
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"inputSchema,omitempty"`
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
}

// Status is the state of a pin.
type Status string

// Statuses. A pin is accepted when no definition awaits an admin, and
// pending when one does (first seen but flagged, changed since accepted,
// or newly flagged by the scan); Record.Hash may be set in both.
const (
	Accepted Status = "accepted"
	Pending  Status = "pending"
)

// Record is the pin of one tool of one server.
type Record struct {
	Server string `json:"server"`
	Tool   string `json:"tool"`
	Status Status `json:"status"`
	// Hash is the Fingerprint of the accepted definition, "" if none was
	// ever accepted.
	Hash string `json:"hash,omitempty"`
	// Definition is the accepted definition as canonical JSON (compact,
	// keys sorted; see Fingerprint), nil if none.
	Definition json.RawMessage `json:"definition,omitempty"`
	// Findings are the scan findings of the accepted definition that its
	// acceptor saw (none for a tool trusted on first use).
	Findings []Finding `json:"findings,omitempty"`
	// PendingHash, PendingDefinition and PendingFindings describe the
	// definition awaiting acceptance; all empty when Status is Accepted.
	PendingHash       string          `json:"pending_hash,omitempty"`
	PendingDefinition json.RawMessage `json:"pending_definition,omitempty"`
	PendingFindings   []Finding       `json:"pending_findings,omitempty"`
	FirstSeen         time.Time       `json:"first_seen"`
	UpdatedAt         time.Time       `json:"updated_at"`
	// AcceptedBy is the admin who accepted Definition; "" when it was
	// trusted on first use. AcceptedAt is zero when nothing was accepted.
	AcceptedBy string    `json:"accepted_by,omitempty"`
	AcceptedAt time.Time `json:"accepted_at,omitzero"`
}

// Validate checks the invariants every backend enforces on PutPin: a
// server and tool name, a known Status, a pending definition exactly when
// Pending, an accepted hash when Accepted, and non-zero FirstSeen and
// UpdatedAt. Errors wrap ErrInvalid.
func (r *Record) Validate() error {
	switch {
	case r.Server == "" || r.Tool == "":
		return fmt.Errorf("%w: a pin needs a server and a tool", ErrInvalid)
	case r.Status != Accepted && r.Status != Pending:
		return fmt.Errorf("%w: unknown status %q", ErrInvalid, r.Status)
	case (r.Status == Pending) != (r.PendingHash != ""):
		return fmt.Errorf("%w: a pending definition exactly when the status is pending", ErrInvalid)
	case r.Status == Accepted && r.Hash == "":
		return fmt.Errorf("%w: an accepted pin needs a hash", ErrInvalid)
	case r.FirstSeen.IsZero() || r.UpdatedAt.IsZero():
		return fmt.Errorf("%w: a pin needs its first-seen and update times", ErrInvalid)
	}
	return nil
}

// Backend persists pins (store/sqlite.DB in the app; pintest.Memory in
// tests). PutPin inserts or replaces the record of (Server, Tool) after
// Record.Validate; ListPins returns the pins of server ("" for all),
// ordered by server then tool.
type Backend interface {
	GetPin(ctx context.Context, server, tool string) (Record, error) // ErrNotFound (wrapped)
	PutPin(ctx context.Context, r Record) error                      // ErrInvalid (wrapped)
	ListPins(ctx context.Context, server string) ([]Record, error)
}

// Change says what Observe found for one tool.
type Change string

// Changes. The ones marked "event" are transitions a caller audits and
// alerts on once; the others repeat on every Observe.
const (
	// ChangeNew: first sight, no findings; trusted on first use (event).
	ChangeNew Change = "new"
	// ChangeUnchanged: the accepted definition.
	ChangeUnchanged Change = "unchanged"
	// ChangeChanged: differs from the accepted (or the pending) definition;
	// now pending, withheld (event).
	ChangeChanged Change = "changed"
	// ChangeFlagged: the scan flagged a definition seen for the first time,
	// or found more in an accepted one than its acceptor saw; pending,
	// withheld (event).
	ChangeFlagged Change = "flagged"
	// ChangeStillPending: the definition already awaiting acceptance,
	// observed again; withheld.
	ChangeStillPending Change = "still-pending"
	// ChangeReverted: the server went back to the accepted definition; the
	// pending one is dropped (event).
	ChangeReverted Change = "reverted"
)

// Verdict is Observe's answer for one declared tool.
type Verdict struct {
	Tool string `json:"tool"`
	// Allowed says whether the tool may be offered in tools/list and
	// called. Withheld tools are refused.
	Allowed bool   `json:"allowed"`
	Change  Change `json:"change"`
	// Hash is the Fingerprint of the observed definition, AcceptedHash the
	// accepted one ("" if none).
	Hash         string    `json:"hash"`
	AcceptedHash string    `json:"accepted_hash,omitempty"`
	Findings     []Finding `json:"findings,omitempty"`
}

// Pinner decides which declared tools may be offered, over a Backend.
// Its methods are safe for concurrent use; Observe and Accept of one
// process are serialized. Across processes (an offline `plugins accept`
// beside a running gateway) the last write wins, which can only leave a
// tool pending again, never offer a definition nobody accepted.
type Pinner struct {
	mu  sync.Mutex
	b   Backend
	now func() time.Time
}

// New returns a Pinner over b with clock now (time.Now if nil).
func New(b Backend, now func() time.Time) (*Pinner, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil backend", ErrInvalid)
	}
	if now == nil {
		now = time.Now
	}
	return &Pinner{b: b, now: now}, nil
}

// Observe records the definitions server currently declares and says, in
// the order of defs, which tools may be offered:
//
//   - first sight, clean: pinned as accepted (trust on first use), allowed;
//   - first sight, flagged by Scan: pending, withheld;
//   - the accepted definition: allowed, unless the scan now finds more in
//     it than its acceptor saw (then pending, withheld, ChangeFlagged);
//   - any other definition: the accepted one stays, the new one becomes
//     pending (replacing an older pending one), withheld;
//   - the pending definition again: ChangeStillPending, withheld, no write,
//     so a caller raises one audit event and alert per change, not per
//     restart.
//
// Tools a server stops declaring keep their pins: one that comes back is
// compared with its pin, never trusted afresh. An empty server, an empty or
// non-UTF-8 tool name, or a name declared twice is ErrInvalid and nothing
// is recorded: the caller withholds all of that server's tools. A backend
// error ends Observe: it returns the verdicts already recorded (so their
// transitions can still be audited) with the error, and the caller
// withholds every tool of the server.
func (p *Pinner) Observe(ctx context.Context, server string, defs []Definition) ([]Verdict, error) {
	if server == "" {
		return nil, fmt.Errorf("%w: empty server name", ErrInvalid)
	}
	seen := make(map[string]bool, len(defs))
	for _, d := range defs {
		if d.Name == "" || !utf8.ValidString(d.Name) {
			return nil, fmt.Errorf("%w: server %q declares a tool without a valid name", ErrInvalid, server)
		}
		if seen[d.Name] {
			return nil, fmt.Errorf("%w: server %q declares tool %q twice", ErrInvalid, server, d.Name)
		}
		seen[d.Name] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now().UTC()
	out := make([]Verdict, 0, len(defs))
	for _, d := range defs {
		v, err := p.observeLocked(ctx, server, d, now)
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (p *Pinner) observeLocked(ctx context.Context, server string, d Definition, now time.Time) (Verdict, error) {
	a := analyze(d)
	v := Verdict{Tool: d.Name, Hash: a.hash, Findings: a.findings}
	rec, err := p.b.GetPin(ctx, server, d.Name)
	if errors.Is(err, ErrNotFound) {
		rec = Record{Server: server, Tool: d.Name, FirstSeen: now, UpdatedAt: now}
		if len(a.findings) == 0 {
			rec.Status, rec.Hash, rec.Definition, rec.AcceptedAt = Accepted, a.hash, a.canonical, now
			v.Allowed, v.Change, v.AcceptedHash = true, ChangeNew, a.hash
		} else {
			rec.setPending(a)
			v.Change = ChangeFlagged
		}
		return v, p.put(ctx, rec)
	}
	if err != nil {
		return v, fmt.Errorf("pin: %s/%s: %w", server, d.Name, err)
	}
	v.AcceptedHash = rec.Hash
	rec.UpdatedAt = now
	switch {
	case rec.Status == Pending && a.hash == rec.PendingHash:
		v.Change = ChangeStillPending
		if !sameFindings(a.findings, rec.PendingFindings) { // the rules changed
			rec.PendingFindings = a.findings
			return v, p.put(ctx, rec)
		}
		return v, nil
	case rec.Hash != "" && a.hash == rec.Hash:
		if !covered(a.findings, rec.Findings) {
			rec.setPending(a)
			v.Change = ChangeFlagged
			return v, p.put(ctx, rec)
		}
		v.Allowed = true
		if rec.Status == Accepted {
			v.Change = ChangeUnchanged
			return v, nil
		}
		rec.Status, rec.PendingHash, rec.PendingDefinition, rec.PendingFindings = Accepted, "", nil, nil
		v.Change = ChangeReverted
		return v, p.put(ctx, rec)
	default:
		rec.setPending(a)
		v.Change = ChangeChanged
		return v, p.put(ctx, rec)
	}
}

func (r *Record) setPending(a analysis) {
	r.Status, r.PendingHash, r.PendingDefinition, r.PendingFindings = Pending, a.hash, a.canonical, a.findings
}

func (p *Pinner) put(ctx context.Context, r Record) error {
	if err := p.b.PutPin(ctx, r); err != nil {
		return fmt.Errorf("pin: %s/%s: %w", r.Server, r.Tool, err)
	}
	return nil
}

// Accept makes the pending definition of server/tool the accepted one, by
// admin by, and returns the new record. hash must be the PendingHash the
// admin inspected ("" accepts whatever is pending); another one is ErrStale
// wrapped in ErrInvalid, so nobody accepts a definition they did not see.
// Nothing pending or an empty by is ErrInvalid; a malformed definition
// (RuleMalformed: it could not be scanned) is ErrMalformed wrapped in
// ErrInvalid; an unknown pin, ErrNotFound.
//
// audit, if not nil, is called with the record about to be stored, under
// the Pinner's lock, after every check and before the write: so it sees
// only an acceptance that passed them, and if it returns an error nothing
// is accepted (fail closed) and Accept returns that error. A backend write
// that fails after audit succeeded is returned as is; the caller may record
// that failure too.
func (p *Pinner) Accept(ctx context.Context, server, tool, hash, by string, audit func(Record) error) (Record, error) {
	if server == "" || tool == "" || by == "" {
		return Record{}, fmt.Errorf("%w: accept needs a server, a tool and who accepts", ErrInvalid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rec, err := p.b.GetPin(ctx, server, tool)
	if err != nil {
		return Record{}, fmt.Errorf("pin: %s/%s: %w", server, tool, err)
	}
	switch {
	case rec.Status != Pending:
		return Record{}, fmt.Errorf("%w: %s/%s has no definition awaiting acceptance", ErrInvalid, server, tool)
	case hash != "" && hash != rec.PendingHash:
		return Record{}, fmt.Errorf("%w: %w: %s/%s is now %s", ErrInvalid, ErrStale, server, tool, rec.PendingHash)
	case hasRule(rec.PendingFindings, RuleMalformed):
		return Record{}, fmt.Errorf("%w: %w: %s/%s cannot be accepted", ErrInvalid, ErrMalformed, server, tool)
	}
	now := p.now().UTC()
	rec.Status, rec.Hash, rec.Definition, rec.Findings = Accepted, rec.PendingHash, rec.PendingDefinition, rec.PendingFindings
	rec.PendingHash, rec.PendingDefinition, rec.PendingFindings = "", nil, nil
	rec.AcceptedBy, rec.AcceptedAt, rec.UpdatedAt = by, now, now
	if audit != nil {
		if err := audit(rec); err != nil {
			return Record{}, err
		}
	}
	if err := p.put(ctx, rec); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// Get returns the pin of server/tool (ErrNotFound, wrapped, if none).
func (p *Pinner) Get(ctx context.Context, server, tool string) (Record, error) {
	return p.b.GetPin(ctx, server, tool)
}

// List returns the pins of server ("" for all servers), ordered by server
// then tool.
func (p *Pinner) List(ctx context.Context, server string) ([]Record, error) {
	return p.b.ListPins(ctx, server)
}

func findingKey(f Finding) string { return f.Rule + "\x00" + f.Field }

// covered reports whether every finding of got (by rule and field) is in
// seen.
func covered(got, seen []Finding) bool {
	keys := make(map[string]bool, len(seen))
	for _, f := range seen {
		keys[findingKey(f)] = true
	}
	for _, f := range got {
		if !keys[findingKey(f)] {
			return false
		}
	}
	return true
}

func sameFindings(a, b []Finding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func hasRule(fs []Finding, rule string) bool {
	for _, f := range fs {
		if f.Rule == rule {
			return true
		}
	}
	return false
}

// MarshalFindings is the stored form of a pin's findings, the same in
// every store backend: a JSON array, "[]" for none.
func MarshalFindings(fs []Finding) (string, error) {
	if len(fs) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(fs)
	if err != nil {
		return "", fmt.Errorf("pin findings: %w", err)
	}
	return string(b), nil
}

// ParseFindings reads stored findings back; an empty array is nil.
func ParseFindings(s string) ([]Finding, error) {
	var fs []Finding
	if err := json.Unmarshal([]byte(s), &fs); err != nil {
		return nil, fmt.Errorf("pin findings: %w", err)
	}
	if len(fs) == 0 {
		return nil, nil
	}
	return fs, nil
}
