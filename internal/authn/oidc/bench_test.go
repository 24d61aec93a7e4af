package oidc

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/portcullis/portcullis/internal/authn/oidctest"
)

func readTestdata(name string) ([]byte, error) { return os.ReadFile("testdata/" + name) }

func asFailure(err error, f **Failure) bool { return errors.As(err, f) }

// BenchmarkVerify measures a full Verify (parse, cached key lookup,
// signature, claims) per algorithm, against a remote key set whose cache
// is warm.
func BenchmarkVerify(b *testing.B) {
	iss := oidctest.NewIssuer(b, oidctest.WithoutJWKAlg())
	v := newRemote(b, iss, func(c *Config) {
		c.Algorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}
		c.RolesClaim = "realm_access.roles"
	})
	claims := iss.ValidClaims(testAudience, t0)
	claims["realm_access"] = map[string]any{"roles": []string{"developer", "reader"}}
	claims["scope"] = "openid mcp:tools"
	for _, alg := range []string{"RS256", "PS256", "ES256", "EdDSA"} {
		tok := iss.Token(claims, oidctest.WithAlg(alg))
		b.Run(alg, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("RS256-rejected-unknown-kid", func(b *testing.B) {
		tok := iss.Token(claims, oidctest.WithKID("nope"))
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err == nil {
				b.Fatal("accepted")
			}
		}
	})
}
