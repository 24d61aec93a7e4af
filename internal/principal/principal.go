// Package principal defines the authenticated caller of a request and the
// typed context key that carries it. It has no dependencies so that every
// layer (authentication, policy, gateway, audit) can share the type.
package principal

import (
	"context"
	"slices"
)

// Method names how a principal was authenticated.
type Method string

// Authentication methods.
const (
	MethodAPIKey Method = "api_key"
	MethodLocal  Method = "local" // portcullis stdio: the configured local principal
	MethodOIDC   Method = "oidc"
)

// Principal is an authenticated caller: a user, the roles in force for this
// request and how it authenticated. Identity never comes from a
// client-chosen header; only authenticators construct Principals.
type Principal struct {
	// UserID is the store's user id (0 for principals not in the store).
	UserID int64
	// Name is the unique user name, e.g. "alice".
	Name string
	// Roles are the roles in force for this request, sorted, e.g. ["developer"].
	Roles []string
	// KeyID is the public id of the API key used ("key_..."), if any.
	KeyID string
	// Scopes narrow what the credential may do: tool patterns from the API
	// key, or the OAuth scopes of a token (empty: what the roles allow).
	Scopes []string
	// Method is how the principal authenticated.
	Method Method
}

// ID returns the stable identifier used to bind MCP sessions to their
// creator: a session created by one principal is refused to any other.
func (p *Principal) ID() string {
	if p == nil {
		return ""
	}
	return "user:" + p.Name
}

// HasRole reports whether role is among p's roles.
func (p *Principal) HasRole(role string) bool {
	return p != nil && slices.Contains(p.Roles, role)
}

type ctxKey struct{}

// NewContext returns a copy of ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal carried by ctx, if any.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok && p != nil
}
