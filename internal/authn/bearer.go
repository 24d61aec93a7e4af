package authn

import (
	"context"
	"errors"
	"slices"
	"strings"
	"unicode"

	"github.com/portcullis/portcullis/internal/authn/oidc"
	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/store"
)

// OIDCPrefix starts the name of every principal authenticated by an OIDC
// token ("oidc:alice"). API key users cannot hold a ':' in their name, so
// an identity provider can never mint a token for an API key user.
const OIDCPrefix = "oidc:"

// maxOIDCUsername bounds the username claim (an e-mail address fits).
const maxOIDCUsername = 256

// TokenVerifier verifies OAuth access tokens (implemented by
// *oidc.Verifier); failures are *oidc.Failure.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*oidc.Claims, error)
}

// UserStore is what OIDC principals need from the store.
type UserStore interface {
	UserByName(ctx context.Context, name string) (store.User, error)
	EnsureUser(ctx context.Context, name string, roles []string) (store.User, bool, error)
}

// Bearer authenticates the bearer credential of a request: a Portcullis
// API key, or — when OIDC is configured — a JWT access token from the
// configured issuer (MCP authorization spec 2025-11-25; OAuth 2.1
// resource server).
//
// An OIDC principal is "oidc:" + the username claim. On first sight a
// user of that name is created in the store without roles (audited
// through OnUserCreated), so that an administrator can disable it or
// grant it roles; a disabled user's tokens are refused. Its roles are the
// token's roles (after the verifier's role map) plus the roles the store
// grants that user. The token itself is never kept or forwarded.
type Bearer struct {
	Keys *Authenticator
	// OIDC verifies JWTs; nil turns OIDC off (JWTs are then malformed keys).
	OIDC  TokenVerifier
	Users UserStore
	// RequiredScopes are reported in insufficient_scope challenges.
	RequiredScopes []string
	// OnUserCreated is called after a just-in-time user was created.
	OnUserCreated func(ctx context.Context, name string)
}

// Authenticate implements the server's Authenticator.
func (b *Bearer) Authenticate(ctx context.Context, token string) (*principal.Principal, error) {
	if b.OIDC == nil || !oidc.LooksLikeJWT(token) {
		return b.Keys.Authenticate(ctx, token)
	}
	claims, err := b.OIDC.Verify(ctx, token)
	if err != nil {
		var of *oidc.Failure
		f := &Failure{Cause: "token_invalid"}
		if errors.As(err, &of) {
			f.Cause, f.Subject = "token_"+of.Cause, of.Subject
			if of.Cause == oidc.CauseKeySetUnavailable {
				f.Cause, f.Err = CauseBackend, err
			}
		}
		if errors.Is(err, oidc.ErrInsufficientScope) {
			f.Cause, f.Scope = CauseInsufficientScope, strings.Join(b.RequiredScopes, " ")
		}
		return nil, f
	}
	if !validUsername(claims.Username) {
		return nil, &Failure{Cause: "token_" + oidc.CauseMalformed, Subject: claims.Subject}
	}
	name := OIDCPrefix + claims.Username
	u, err := b.Users.UserByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		var created bool
		u, created, err = b.Users.EnsureUser(ctx, name, nil)
		if err == nil && created && b.OnUserCreated != nil {
			b.OnUserCreated(ctx, name)
		}
	}
	if err != nil {
		return nil, &Failure{Cause: CauseBackend, User: name, Err: err}
	}
	if u.Disabled {
		return nil, &Failure{Cause: CauseDisabled, User: name}
	}
	roles := slices.Concat(claims.Roles, u.Roles)
	slices.Sort(roles)
	roles = slices.Compact(roles)
	if len(roles) == 0 {
		return nil, &Failure{Cause: CauseNoRoles, User: name}
	}
	return &principal.Principal{UserID: u.ID, Name: name, Roles: roles, Method: principal.MethodOIDC}, nil
}

// validUsername refuses empty, over-long and control- or space-carrying
// usernames (they end up in audit records and admin commands).
func validUsername(s string) bool {
	if s == "" || len(s) > maxOIDCUsername {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return true
}
