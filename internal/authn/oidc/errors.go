package oidc

import (
	"errors"
	"fmt"
)

// Error categories. Token failures are *Failure values that unwrap to
// exactly one of ErrInvalidToken or ErrInsufficientScope; the HTTP edge
// maps the first to 401 invalid_token and the second to 403
// insufficient_scope (RFC 6750 §3.1).
var (
	// ErrInvalidToken is the category of every token failure except a
	// missing required scope.
	ErrInvalidToken = errors.New("invalid token")
	// ErrInsufficientScope means the token verified but lacks one of
	// Config.RequiredScopes.
	ErrInsufficientScope = errors.New("insufficient scope")
	// ErrConfig means a Config or a static JWK Set was rejected by New or
	// NewWithKeys; the message names the field.
	ErrConfig = errors.New("oidc: invalid config")
	// ErrDiscovery means New could not load the issuer's metadata
	// (OpenID Connect Discovery 1.0 §4, RFC 8414 §3) or its JWK Set.
	ErrDiscovery = errors.New("oidc: discovery failed")
)

// Failure causes, recorded in auth.failure audit events. They are stable
// strings: dashboards and alerts match on them.
const (
	CauseMalformed         = "malformed"          // size, shape, encoding, JSON, header or claim types
	CauseAlgNotAllowed     = "alg_not_allowed"    // header alg not in Config.Algorithms (incl. "none")
	CauseUnknownKey        = "unknown_key"        // no key in the set fits the header's kid and alg
	CauseBadSignature      = "bad_signature"      // a fitting key exists but the signature does not verify
	CauseWrongIssuer       = "wrong_issuer"       // iss is not byte-for-byte Config.Issuer
	CauseWrongAudience     = "wrong_audience"     // aud missing or without Config.Audience
	CauseExpired           = "expired"            // exp missing or now > exp + skew
	CauseNotYetValid       = "not_yet_valid"      // now + skew < nbf
	CauseIssuedInFuture    = "issued_in_future"   // iat > now + skew
	CauseTooOld            = "too_old"            // now - iat > MaxAge (or iat missing while MaxAge is set)
	CauseNoSubject         = "no_subject"         // sub or the username claim missing or empty
	CauseInsufficientScope = "insufficient_scope" // a RequiredScopes entry is missing
	CauseKeySetUnavailable = "keyset_unavailable" // the JWK Set had to be (re)fetched and could not be
)

// Failure is a token verification failure. Cause is one of the Cause
// constants. Subject is the token's sub, set only when the signature
// verified (so it is attested by the issuer, not chosen by an attacker).
// Err, if set, is an internal detail built from constant text and
// configuration (for example the JWKS URL and HTTP status); it never holds
// token content.
//
// Failure unwraps to ErrInsufficientScope when Cause is
// CauseInsufficientScope and to ErrInvalidToken otherwise. Error never
// contains the token or any part of it.
type Failure struct {
	Cause   string
	Subject string
	Err     error
}

func (f *Failure) category() error {
	if f.Cause == CauseInsufficientScope {
		return ErrInsufficientScope
	}
	return ErrInvalidToken
}

// Error returns "<category>: <cause>" and, if Err is set, ": <detail>".
func (f *Failure) Error() string {
	if f.Err != nil {
		return fmt.Sprintf("%v: %s: %v", f.category(), f.Cause, f.Err)
	}
	return fmt.Sprintf("%v: %s", f.category(), f.Cause)
}

// Unwrap returns the category sentinel and, if set, Err.
func (f *Failure) Unwrap() []error {
	if f.Err != nil {
		return []error{f.category(), f.Err}
	}
	return []error{f.category()}
}

// fail builds a *Failure with an optional constant detail.
func fail(cause, detail string) *Failure {
	f := &Failure{Cause: cause}
	if detail != "" {
		f.Err = errors.New(detail)
	}
	return f
}

// configErr names the offending Config field.
func configErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}
