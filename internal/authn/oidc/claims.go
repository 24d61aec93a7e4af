package oidc

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"
)

// maxNumericDate is 9999-12-31T23:59:59Z; larger NumericDates are refused
// as malformed rather than converted with overflow.
const maxNumericDate = 253402300799

// checkClaims validates a verified payload (RFC 7519 §4.1, RFC 9068 §4)
// and extracts Claims. Every Failure carries the token's sub, which the
// signature has just attested.
func (v *Verifier) checkClaims(payload []byte) (*Claims, *Failure) {
	m, err := parseObject(payload)
	if err != nil {
		return nil, fail(CauseMalformed, "claims are not a JSON object")
	}
	c := &Claims{}
	if !stringMember(m, "sub", &c.Subject) {
		return nil, fail(CauseMalformed, "sub is not a string")
	}
	bad := func(cause, detail string) (*Claims, *Failure) {
		f := fail(cause, detail)
		f.Subject = c.Subject
		return nil, f
	}

	if _, ok := m["iss"]; !ok {
		return bad(CauseWrongIssuer, "iss missing")
	}
	if !stringMember(m, "iss", &c.Issuer) {
		return bad(CauseMalformed, "iss is not a string")
	}
	if c.Issuer != v.cfg.Issuer {
		return bad(CauseWrongIssuer, "")
	}

	aud, ok := stringOrArray(m["aud"])
	if !ok {
		return bad(CauseMalformed, "aud is not a string or array of strings")
	}
	if !slices.Contains(aud, v.cfg.Audience) {
		return bad(CauseWrongAudience, "")
	}

	now := v.cfg.Now()
	skew := v.cfg.Skew
	exp, present, ok := numericDate(m, "exp")
	switch {
	case !ok:
		return bad(CauseMalformed, "exp is not a NumericDate")
	case !present:
		return bad(CauseMalformed, "exp missing (RFC 9068 §2.2)")
	case now.After(exp.Add(skew)):
		return bad(CauseExpired, "")
	}
	c.Expiry = exp

	nbf, present, ok := numericDate(m, "nbf")
	switch {
	case !ok:
		return bad(CauseMalformed, "nbf is not a NumericDate")
	case present && now.Add(skew).Before(nbf):
		return bad(CauseNotYetValid, "")
	}

	iat, present, ok := numericDate(m, "iat")
	switch {
	case !ok:
		return bad(CauseMalformed, "iat is not a NumericDate")
	case present && iat.After(now.Add(skew)):
		return bad(CauseIssuedInFuture, "")
	case v.cfg.MaxAge > 0 && !present:
		return bad(CauseTooOld, "iat missing and MaxAge is set")
	case v.cfg.MaxAge > 0 && now.Sub(iat) > v.cfg.MaxAge+skew:
		return bad(CauseTooOld, "")
	}
	if present {
		c.IssuedAt = iat
	}

	if c.Subject == "" {
		return bad(CauseNoSubject, "sub missing or empty")
	}
	if !stringMember(m, v.cfg.UsernameClaim, &c.Username) {
		return bad(CauseMalformed, "username claim is not a string")
	}
	if c.Username == "" {
		return bad(CauseNoSubject, "username claim missing or empty")
	}
	if !stringMember(m, "jti", &c.TokenID) {
		return bad(CauseMalformed, "jti is not a string")
	}

	roles, ok := v.roles(m)
	if !ok {
		return bad(CauseMalformed, "roles claim is not a string or array of strings")
	}
	c.Roles = roles
	scopes, ok := v.scopes(m)
	if !ok {
		return bad(CauseMalformed, "scope claim is not a string or array of strings")
	}
	c.Scopes = scopes
	for _, s := range v.cfg.RequiredScopes {
		if !slices.Contains(c.Scopes, s) {
			return bad(CauseInsufficientScope, "")
		}
	}
	c.Issuer = v.cfg.Issuer
	return c, nil
}

// numericDate reads a NumericDate claim (RFC 7519 §2: seconds since the
// epoch, possibly fractional). ok is false if the claim is present but not
// a number in [0, maxNumericDate].
func numericDate(m map[string]json.RawMessage, name string) (t time.Time, present, ok bool) {
	raw, present := m[name]
	if !present {
		return time.Time{}, false, true
	}
	// A float64 target refuses strings; a json.Number would accept the
	// string "4102444800".
	var f float64
	if string(raw) == "null" || json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, true, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, true
}

// stringOrArray reads a claim that is a string or an array of strings;
// a string is one value (aud, RFC 7519 §4.1.3). A missing claim is
// (nil, true).
func stringOrArray(raw json.RawMessage) ([]string, bool) {
	if raw == nil {
		return nil, true
	}
	if isJSONString(raw) {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return []string{s}, true
	}
	return stringArray(raw)
}

// stringArray decodes an array of strings; null elements are refused.
func stringArray(raw json.RawMessage) ([]string, bool) {
	var a []*string
	if json.Unmarshal(raw, &a) != nil || a == nil {
		return nil, false
	}
	out := make([]string, 0, len(a))
	for _, p := range a {
		if p == nil {
			return nil, false
		}
		out = append(out, *p)
	}
	return out, true
}

// spaceList reads a claim that is a space-separated string (RFC 6749
// §3.3 scope syntax) or an array of strings. Empty items are dropped. A
// JSON null or a missing claim is (nil, true).
func spaceList(raw json.RawMessage) ([]string, bool) {
	if raw == nil || string(raw) == "null" {
		return nil, true
	}
	if isJSONString(raw) {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return dropEmpty(strings.Split(s, " ")), true
	}
	a, ok := stringArray(raw)
	if !ok {
		return nil, false
	}
	return dropEmpty(a), true
}

// isJSONString reports whether raw (a decoded member value, so without
// leading space) is a JSON string.
func isJSONString(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '"' }

func dropEmpty(in []string) []string {
	return slices.DeleteFunc(in, func(s string) bool { return s == "" })
}

// sortedSet sorts and deduplicates in place; empty becomes nil.
func sortedSet(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	slices.Sort(in)
	return slices.Compact(in)
}

// roles extracts Config.RolesClaim: the top-level claim of that literal
// name if present, otherwise the dotted path through nested objects. A
// missing claim or path is no roles; a claim of the wrong type is
// malformed (ok false). With a RoleMap only mapped values survive,
// renamed.
func (v *Verifier) roles(m map[string]json.RawMessage) ([]string, bool) {
	raw, found := m[v.cfg.RolesClaim]
	if !found && strings.Contains(v.cfg.RolesClaim, ".") {
		raw = lookupPath(m, strings.Split(v.cfg.RolesClaim, "."))
	}
	vals, ok := spaceList(raw)
	if !ok {
		return nil, false
	}
	if len(v.cfg.RoleMap) > 0 {
		mapped := vals[:0]
		for _, r := range vals {
			if p, ok := v.cfg.RoleMap[r]; ok {
				mapped = append(mapped, p)
			}
		}
		vals = mapped
	}
	return sortedSet(vals), true
}

// lookupPath follows path through nested JSON objects; nil if any step is
// missing or not an object.
func lookupPath(m map[string]json.RawMessage, path []string) json.RawMessage {
	for i, name := range path {
		raw, ok := m[name]
		if !ok {
			return nil
		}
		if i == len(path)-1 {
			return raw
		}
		if m, _ = parseObject(raw); m == nil {
			return nil
		}
	}
	return nil
}

// scopes extracts Config.ScopesClaim and, when that is the default
// "scope", also "scp".
func (v *Verifier) scopes(m map[string]json.RawMessage) ([]string, bool) {
	vals, ok := spaceList(m[v.cfg.ScopesClaim])
	if !ok {
		return nil, false
	}
	if v.cfg.ScopesClaim == "scope" {
		scp, ok := spaceList(m["scp"])
		if !ok {
			return nil, false
		}
		vals = append(vals, scp...)
	}
	return sortedSet(vals), true
}
