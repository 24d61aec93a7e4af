// Package secrets keeps the credentials Portcullis hands to upstream MCP
// servers (`${secret:NAME}`): encrypted at rest with AES-256-GCM under a
// key kept in the data directory, the secret's name and user bound as
// authenticated data (a ciphertext copied to another name or user does not
// decrypt). Values never appear in logs, errors or audit records.
package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

// MaxValueBytes bounds one secret value.
const MaxValueBytes = 64 << 10

// Errors.
var (
	ErrNotFound = errors.New("secrets: not found")
	ErrInvalid  = errors.New("secrets: invalid")
	// ErrCorrupt means a stored value does not decrypt under the key: the
	// wrong key, or a tampered or moved ciphertext.
	ErrCorrupt = errors.New("secrets: stored value does not decrypt")
)

// Name is the form of a secret name (and of a user name in this store).
var Name = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

// Record is one stored secret, encrypted.
type Record struct {
	Name       string
	User       string // "" for the shared value
	Nonce      []byte
	Ciphertext []byte
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Info describes a secret without its value.
type Info struct {
	Name      string    `json:"name"`
	User      string    `json:"user,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Backend persists encrypted records (store.Store in the app).
type Backend interface {
	PutSecret(ctx context.Context, r Record) error
	GetSecret(ctx context.Context, name, user string) (Record, error) // ErrNotFound (wrapped)
	ListSecrets(ctx context.Context) ([]Info, error)
	DeleteSecret(ctx context.Context, name, user string) error // ErrNotFound (wrapped)
}

// Store encrypts and decrypts secrets over a Backend.
type Store struct {
	aead    cipher.AEAD
	backend Backend
	now     func() time.Time
}

// New returns a Store with key (KeySize bytes).
func New(key []byte, b Backend, now func() time.Time) (*Store, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: key must be %d bytes", ErrInvalid, KeySize)
	}
	if b == nil {
		return nil, errors.New("secrets: nil backend")
	}
	if now == nil {
		now = time.Now
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Store{aead: aead, backend: b, now: now}, nil
}

func aad(name, user string) []byte {
	return []byte("portcullis-secret-v1\x00" + name + "\x00" + user)
}

func check(name, user string) error {
	if !Name.MatchString(name) {
		return fmt.Errorf("%w: name must match %s", ErrInvalid, Name)
	}
	if user != "" && !Name.MatchString(user) {
		return fmt.Errorf("%w: user must match %s", ErrInvalid, Name)
	}
	return nil
}

// Set stores value under name (and user: "" for the shared value),
// replacing an earlier one. Empty or oversized values are ErrInvalid.
func (s *Store) Set(ctx context.Context, name, user string, value []byte) error {
	if err := check(name, user); err != nil {
		return err
	}
	if len(value) == 0 || len(value) > MaxValueBytes {
		return fmt.Errorf("%w: value must be 1-%d bytes", ErrInvalid, MaxValueBytes)
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	now := s.now().UTC()
	return s.backend.PutSecret(ctx, Record{Name: name, User: user, Nonce: nonce,
		Ciphertext: s.aead.Seal(nil, nonce, value, aad(name, user)), CreatedAt: now, UpdatedAt: now})
}

// Get returns the value of name for user, falling back to the shared
// value when user has none of its own.
func (s *Store) Get(ctx context.Context, name, user string) ([]byte, error) {
	return s.get(ctx, name, user, true)
}

// GetOwn returns user's own value of name, never the shared one:
// ErrNotFound when user has none. For credentials that must be the
// caller's own (an upstream with auth.per_user), where falling back to
// the shared value would hand every user the gateway's credential.
func (s *Store) GetOwn(ctx context.Context, name, user string) ([]byte, error) {
	return s.get(ctx, name, user, false)
}

func (s *Store) get(ctx context.Context, name, user string, shared bool) ([]byte, error) {
	if err := check(name, user); err != nil {
		return nil, err
	}
	r, err := s.backend.GetSecret(ctx, name, user)
	if errors.Is(err, ErrNotFound) && user != "" && shared {
		r, err = s.backend.GetSecret(ctx, name, "")
	}
	if err != nil {
		return nil, err
	}
	v, err := s.aead.Open(nil, r.Nonce, r.Ciphertext, aad(r.Name, r.User))
	if err != nil {
		return nil, ErrCorrupt
	}
	return v, nil
}

// List returns the names (never values) of stored secrets.
func (s *Store) List(ctx context.Context) ([]Info, error) { return s.backend.ListSecrets(ctx) }

// Delete removes a secret.
func (s *Store) Delete(ctx context.Context, name, user string) error {
	if err := check(name, user); err != nil {
		return err
	}
	return s.backend.DeleteSecret(ctx, name, user)
}
