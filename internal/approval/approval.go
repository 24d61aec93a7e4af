// Package approval holds dangerous calls until a human approves the exact
// call: an approval request binds principal, tool and the SHA-256 of the
// canonical JSON of the validated arguments, expires, and is consumed by
// exactly one run (single use). States: pending → approved | denied |
// expired; approved → consumed | expired. Requests live in the store, so
// they survive restarts and are shared by replicas; every transition is
// audited (approval.request, .grant, .deny, .expire, .consume).
package approval

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/alert"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
)

// Errors of Decide.
var (
	// ErrSelfApproval: nobody approves their own request.
	ErrSelfApproval = errors.New("approval: you cannot decide your own request")
	// ErrNotApprover: the principal lacks the approve permission for the tool.
	ErrNotApprover = errors.New("approval: not permitted to decide requests for this tool")
)

// KindRequest is the alert kind sent to approvers (signed webhooks).
const KindRequest = "approval.request"

// Permission decides whether p may approve calls to tool (the store's
// "approve" grants; *policy.Engine in the app).
type Permission func(p *principal.Principal, tool string) bool

// Emitter records audit events.
type Emitter interface {
	Emit(ctx context.Context, e *audit.Event) error
}

// Deps are the service's collaborators; Now is optional.
type Deps struct {
	Store      store.ApprovalStore
	Audit      Emitter
	Alerts     alert.Sink
	MayApprove Permission
	Logger     *slog.Logger
	Now        func() time.Time
}

// Service decides which calls need approval and runs the approval flow.
type Service struct {
	cfg config.ApprovalConfig
	d   Deps

	mu      sync.Mutex
	waiters map[string][]chan struct{} // approval id → calls waiting in this process
}

// New returns a Service.
func New(cfg config.ApprovalConfig, d Deps) (*Service, error) {
	if d.Store == nil || d.Audit == nil || d.Alerts == nil || d.MayApprove == nil || d.Logger == nil {
		return nil, errors.New("approval: missing dependency")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Service{cfg: cfg, d: d, waiters: map[string][]chan struct{}{}}, nil
}

// Required reports whether configuration holds a call by p to the tool for
// approval: CRITICAL tools unless p has an exempt role (default admin), and
// tools listed in approval.tools for one of p's roles ("*": anyone not
// exempt). Cedar policies add conditions of their own (the gateway asks
// the policy whether the call is allowed once approved).
func (s *Service) Required(p *principal.Principal, def *tool.Definition) bool {
	for _, r := range p.Roles {
		if slices.Contains(s.cfg.ExemptRoles, r) {
			return false
		}
	}
	if def.Sensitivity >= tool.Critical {
		return true
	}
	roles := s.cfg.Tools[def.Name]
	if slices.Contains(roles, "*") {
		return true
	}
	for _, r := range p.Roles {
		if slices.Contains(roles, r) {
			return true
		}
	}
	return false
}

// Canonical returns the canonical JSON of args (object keys sorted, no
// insignificant whitespace; numbers as written).
func Canonical(args map[string]any) ([]byte, error) {
	if args == nil {
		args = map[string]any{}
	}
	return json.Marshal(args) // encoding/json sorts map keys
}

// Digest is the hex HMAC-SHA256 of the canonical JSON of args under key.
// Keyed, not a bare SHA-256: arguments can hold passwords, and a bare hash
// in the store and audit log would let anyone who reads them confirm a
// guessed value offline. key is the audit redaction key in the gateway.
func Digest(key []byte, args map[string]any) (string, error) {
	b, err := Canonical(args)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil)), nil
}

// Call is a call held at the approval gate.
type Call struct {
	Principal *principal.Principal
	Tool      string
	Digest    string          // Digest of the validated arguments
	Args      json.RawMessage // redacted arguments, shown to approvers
	RequestID string
	Session   string
	// Justification is the caller's optional reason, shown to approvers.
	Justification string
}

// Outcome of Gate.
type Outcome struct {
	// Run is true when an approval for this exact call was consumed now:
	// the call may run, once.
	Run bool
	// Approval is the request involved (pending, denied, ...).
	Approval store.Approval
}

// Gate lets a call run only with an approval for exactly this call: an
// approved one is consumed (single use) and Run is true. Otherwise the
// pending request for the same call is reused, or a new one is created
// (audited, approvers notified), and Gate waits up to approval.wait for a
// decision. Waiting ends early when ctx ends.
func (s *Service) Gate(ctx context.Context, c Call) (Outcome, error) {
	now := s.d.Now()
	if out, ok, err := s.consumeApproved(ctx, c, now); ok || err != nil {
		return out, err
	}
	// A pending request for this call is reused; a denied one stands until
	// it expires (retrying does not ask the approvers again).
	a, err := s.d.Store.FindApproval(ctx, c.Principal.Name, c.Tool, c.Digest,
		[]string{store.ApprovalPending, store.ApprovalDenied}, now)
	switch {
	case err == nil && a.State == store.ApprovalDenied:
		return Outcome{Approval: a}, nil
	case errors.Is(err, store.ErrNotFound):
		if a, err = s.create(ctx, c, now); errors.Is(err, store.ErrConflict) {
			// An identical call created it first (or a stale pending one
			// awaits the expiry sweep): use that one.
			if _, xerr := s.Expire(ctx); xerr != nil {
				return Outcome{}, xerr
			}
			a, err = s.d.Store.FindApproval(ctx, c.Principal.Name, c.Tool, c.Digest, []string{store.ApprovalPending}, now)
			if errors.Is(err, store.ErrNotFound) {
				a, err = s.create(ctx, c, now)
			}
		}
		if err != nil {
			return Outcome{}, err
		}
	case err != nil:
		return Outcome{}, err
	}
	if s.cfg.Wait <= 0 {
		return Outcome{Approval: a}, nil
	}
	wake := s.subscribe(a.ID)
	defer s.unsubscribe(a.ID, wake)
	timer := time.NewTimer(s.cfg.Wait)
	defer timer.Stop()
	poll := time.NewTicker(500 * time.Millisecond) // decisions made by another replica
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return Outcome{Approval: a}, nil
		case <-timer.C:
			return Outcome{Approval: a}, nil
		case <-wake:
		case <-poll.C:
		}
		cur, err := s.d.Store.GetApproval(ctx, a.ID)
		if err != nil {
			return Outcome{Approval: a}, err
		}
		switch cur.State {
		case store.ApprovalPending:
			continue
		case store.ApprovalApproved:
			if out, ok, err := s.consumeApproved(ctx, c, s.d.Now()); ok || err != nil {
				return out, err
			}
			// Consumed by an identical call that raced us: ours waits anew.
			return Outcome{Approval: cur}, nil
		default:
			return Outcome{Approval: cur}, nil
		}
	}
}

// consumeApproved consumes an approved, unexpired request for c (ok true).
func (s *Service) consumeApproved(ctx context.Context, c Call, now time.Time) (Outcome, bool, error) {
	for range 3 { // another identical call may consume the same one first
		a, err := s.d.Store.FindApproval(ctx, c.Principal.Name, c.Tool, c.Digest, []string{store.ApprovalApproved}, now)
		if errors.Is(err, store.ErrNotFound) {
			return Outcome{}, false, nil
		}
		if err != nil {
			return Outcome{}, false, err
		}
		a, err = s.d.Store.ConsumeApproval(ctx, a.ID, now)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return Outcome{}, false, err
		}
		used := a
		used.RequestID = c.RequestID // the call that runs, for correlation
		s.emit(ctx, audit.ApprovalConsume, c.Principal, used, "requested by "+a.RequestID)
		return Outcome{Run: true, Approval: a}, true, nil
	}
	return Outcome{}, false, nil
}

func (s *Service) create(ctx context.Context, c Call, now time.Time) (store.Approval, error) {
	a := store.Approval{ID: "apr_" + strings.ToLower(rand.Text()), Principal: c.Principal.Name, Tool: c.Tool,
		ArgsSHA256: c.Digest, Args: c.Args, Justification: c.Justification, State: store.ApprovalPending,
		CreatedAt: now.UTC(), ExpiresAt: now.Add(s.cfg.TTL).UTC(), RequestID: c.RequestID, Session: c.Session}
	// Audited first: an unrecorded request must not exist.
	if err := s.emit(ctx, audit.ApprovalRequest, c.Principal, a, ""); err != nil {
		return a, err
	}
	if err := s.d.Store.CreateApproval(ctx, a); err != nil {
		return a, err
	}
	s.d.Alerts.Alert(ctx, alert.Alert{Kind: KindRequest, Severity: alert.Medium, Subject: a.ID,
		Detail: fmt.Sprintf("%s asks to run %s (args sha256 %s…); approve with `portcullis approvals approve %s`",
			a.Principal, a.Tool, a.ArgsSHA256[:12], a.ID), Time: now})
	return a, nil
}

// Decide approves or denies a pending request as approver p. Nobody
// decides their own request (ErrSelfApproval); p needs the approve
// permission for the request's tool (ErrNotApprover). A request that is
// not pending (decided, expired, consumed): store.ErrConflict.
func (s *Service) Decide(ctx context.Context, p *principal.Principal, id string, approve bool, comment string) (store.Approval, error) {
	a, err := s.d.Store.GetApproval(ctx, id)
	if err != nil {
		return a, err
	}
	if a.Principal == p.Name {
		return a, ErrSelfApproval
	}
	if !s.d.MayApprove(p, a.Tool) {
		return a, ErrNotApprover
	}
	state, typ := store.ApprovalDenied, audit.ApprovalDeny
	if approve {
		state, typ = store.ApprovalApproved, audit.ApprovalGrant
	}
	if a.State == store.ApprovalPending && !s.d.Now().Before(a.ExpiresAt) {
		a.State = store.ApprovalExpired // not yet swept, but past its expiry
	}
	if a.State != store.ApprovalPending {
		return a, fmt.Errorf("%w: approval %s is %s", store.ErrConflict, a.ID, a.State)
	}
	// Audited before it takes effect (fail closed): a grant that cannot
	// be recorded is not given.
	planned := a
	planned.State, planned.DecidedBy = state, p.Name
	if err := s.emit(ctx, typ, p, planned, comment); err != nil {
		return a, err
	}
	a, err = s.d.Store.DecideApproval(ctx, id, state, p.Name, comment, s.d.Now())
	if err != nil {
		s.d.Logger.Error("approval decision recorded but not applied (decided concurrently?)", "id", id, "err", err)
		return a, err
	}
	s.notify(id)
	return a, nil
}

// Expire marks requests past their expiry expired (audited); run it
// periodically.
func (s *Service) Expire(ctx context.Context) (int, error) {
	as, err := s.d.Store.ExpireApprovals(ctx, s.d.Now())
	for _, a := range as {
		if err := s.emit(ctx, audit.ApprovalExpire, nil, a, ""); err != nil {
			s.d.Logger.Error("approval expiry not audited", "id", a.ID, "err", err)
		}
		s.notify(a.ID)
	}
	return len(as), err
}

func (s *Service) emit(ctx context.Context, typ audit.Type, p *principal.Principal, a store.Approval, note string) error {
	e := &audit.Event{Type: typ, Tool: a.Tool, Session: a.Session, Status: audit.StatusOK, ArgsDigest: audit.DigestPrefix + a.ArgsSHA256,
		Args: a.Args, Detail: fmt.Sprintf("%s for %s, state %s, expires %s", a.ID, a.Principal, a.State,
			a.ExpiresAt.Format(time.RFC3339))}
	if note != "" {
		e.Detail += "; " + note
	}
	if p != nil {
		e.Principal, e.Roles = p.Name, p.Roles
	} else {
		e.Principal = audit.SystemPrincipal
	}
	if typ == audit.ApprovalRequest || typ == audit.ApprovalConsume {
		e.RequestID = a.RequestID
	}
	return s.d.Audit.Emit(context.WithoutCancel(ctx), e)
}

func (s *Service) subscribe(id string) chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.waiters[id] = append(s.waiters[id], ch)
	s.mu.Unlock()
	return ch
}

func (s *Service) unsubscribe(id string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, id)
	} else {
		s.waiters[id] = ws
	}
}

func (s *Service) notify(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.waiters[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
