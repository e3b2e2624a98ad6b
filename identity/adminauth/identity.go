package adminauth

import (
	"context"
	"slices"

	"github.com/interlock-dev/interlock/identity"
)

// How an admin caller proved who it is: Identity.Method.
const (
	MethodToken = "token" // a static bearer token from the tokens file
	MethodOIDC  = "oidc"  // a token from a configured OIDC issuer
)

// Identity is an authenticated admin caller. It embeds the project's
// identity.Identity (Subject, Groups, Issuer — Issuer is "" for a static
// token), so the same value can name a human in approvals and events, and
// adds how the caller proved it.
type Identity struct {
	identity.Identity
	Method string // MethodToken or MethodOIDC
}

// InGroup reports whether the caller is a member of group.
func (id Identity) InGroup(group string) bool {
	return slices.Contains(id.Groups, group)
}

func (id Identity) clone() Identity {
	id.Groups = slices.Clone(id.Groups)
	return id
}

type contextKey struct{}

// NewContext returns ctx carrying id; Require does this for every request it
// lets through.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id.clone())
}

// FromContext returns the caller Require authenticated, and false on a
// request that did not pass through Require (a public path).
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(contextKey{}).(Identity)
	if !ok {
		return Identity{}, false
	}
	return id.clone(), true
}
