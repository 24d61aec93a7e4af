package metrics

import (
	"strings"
	"sync"

	"github.com/portcullis/portcullis/internal/authn"
	"github.com/portcullis/portcullis/internal/authn/oidc"
	"github.com/portcullis/portcullis/internal/tool"
)

// labelSet is a bounded set of label values learned from trusted sources
// (registered tools, configured roles and servers): once max values are
// in it, new ones are refused, so a label never has more than max+1
// series per other label combination. Safe for concurrent use.
type labelSet struct {
	max  int
	mu   sync.RWMutex
	vals map[string]struct{}
}

func newLabelSet(max int) *labelSet {
	return &labelSet{max: max, vals: map[string]struct{}{}}
}

// has reports whether v was learned.
func (s *labelSet) has(v string) bool {
	s.mu.RLock()
	_, ok := s.vals[v]
	s.mu.RUnlock()
	return ok
}

// add learns v unless the set is full; it reports whether v is in the set.
func (s *labelSet) add(v string) bool {
	if s.has(v) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.vals[v]; ok {
		return true
	}
	if len(s.vals) >= s.max {
		return false
	}
	s.vals[v] = struct{}{}
	return true
}

// learnTool records name as a registered tool: the caller knows the
// gateway resolved it (a policy request with tool attributes, a tool.call
// start or end record).
func (m *Metrics) learnTool(name string) {
	if tool.ValidName(name) {
		m.tools.add(name)
	}
}

// toolLabel bounds a tool name: a registered tool keeps its name, a
// malformed one is "invalid", any other name a caller made up is "other"
// (a label per made-up name would let any caller grow the series without
// bound).
func (m *Metrics) toolLabel(name string) string {
	switch {
	case !tool.ValidName(name):
		return invalid
	case m.tools.has(name):
		return name
	}
	return other
}

// roleLabel bounds a role name (roles come from the role table or, with
// OIDC, from the issuer's claims): the first maxRoles distinct well-formed
// names keep theirs.
func (m *Metrics) roleLabel(roles []string) string {
	if len(roles) == 0 || roles[0] == "" {
		return none
	}
	r := roles[0]
	if len(r) > 64 || !tool.ValidName(r) || !m.roles.add(r) {
		return other
	}
	return r
}

// serverLabel bounds an upstream server name (configured names; see
// config's server name rule).
func (m *Metrics) serverLabel(name string) string {
	if name == "" {
		return none
	}
	if !validServerName(name) || !m.servers.add(name) {
		return other
	}
	return name
}

// validServerName accepts the shape of configured server names (at most
// 64 characters of a tool name's alphabet; config is stricter).
func validServerName(name string) bool { return len(name) <= 64 && tool.ValidName(name) }

// authCauses are the authentication failure causes (authn.Failure.Cause;
// OIDC token failures are "token_" + the oidc cause).
var authCauses = func() map[string]struct{} {
	out := map[string]struct{}{}
	for _, c := range []string{authn.CauseMissing, authn.CauseMalformed, authn.CauseUnknown, authn.CauseRevoked,
		authn.CauseExpired, authn.CauseDisabled, authn.CauseNoRoles, authn.CauseBackend,
		authn.CauseInsufficientScope, authn.CauseLocked} {
		out[c] = struct{}{}
	}
	for _, c := range []string{oidc.CauseMalformed, oidc.CauseAlgNotAllowed, oidc.CauseUnknownKey,
		oidc.CauseBadSignature, oidc.CauseWrongIssuer, oidc.CauseWrongAudience, oidc.CauseExpired,
		oidc.CauseNotYetValid, oidc.CauseIssuedInFuture, oidc.CauseTooOld, oidc.CauseNoSubject,
		oidc.CauseInsufficientScope, oidc.CauseKeySetUnavailable} {
		out["token_"+c] = struct{}{}
	}
	return out
}()

// authCause finds the cause in an auth.failure detail, which the server
// writes as "<method> <path>: <cause>[ key <id>][ sub <subject>]". The
// path is the client's, so the cause is taken from the last ": " and must
// be a known cause; anything else is "other".
func authCause(detail string) string {
	i := strings.LastIndex(detail, ": ")
	if i < 0 {
		return other
	}
	c, _, _ := strings.Cut(detail[i+2:], " ")
	if _, ok := authCauses[c]; ok {
		return c
	}
	return other
}

// lockoutKind maps an auth.lockout detail ("<subject> locked out for ...",
// subject "src:<addr>" or "user:<name>", authn.SourceKey/PrincipalKey) to
// source or user; the subject itself is never a label.
func lockoutKind(detail string) string {
	switch {
	case strings.HasPrefix(detail, "src:"):
		return "source"
	case strings.HasPrefix(detail, "user:"):
		return "user"
	}
	return other
}

// quarantineKind takes the kind from a quarantine.create detail, which the
// violation engine writes as "<id> <kind> <subject>: <why>".
func quarantineKind(detail string) string {
	f := strings.Fields(detail)
	if len(f) >= 2 {
		for _, k := range quarantineKinds {
			if f[1] == k {
				return k
			}
		}
	}
	return other
}
