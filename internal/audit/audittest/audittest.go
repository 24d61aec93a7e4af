// Package audittest provides audit fixtures for tests in other packages.
package audittest

import (
	"bytes"
	"crypto/ed25519"

	"github.com/portcullis/portcullis/internal/audit"
)

// ChainKey is the fixed chain key of Chain (test-only, not a secret).
var ChainKey = bytes.Repeat([]byte{0xc4}, 32)

// signingSeed is the fixed Ed25519 seed of Chain's checkpoint key.
var signingSeed = bytes.Repeat([]byte{0x5e}, ed25519.SeedSize)

// Chain returns a chain with ChainKey and a fixed signing key, so that
// records sealed in one test process verify in another.
func Chain() *audit.Chain {
	c, err := audit.NewChain(ChainKey, ed25519.NewKeyFromSeed(signingSeed))
	if err != nil {
		panic(err)
	}
	return c
}
