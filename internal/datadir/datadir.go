// Package datadir manages the gateway's data directory: created with mode
// 0700, holding the database and secret files with mode 0600. It refuses
// to use a directory or secret file that other users can read, rather than
// silently "fixing" it.
package datadir

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrInsecure means a directory or file is accessible to group or others.
var ErrInsecure = errors.New("insecure permissions")

// File names inside the data directory.
const (
	DatabaseFile = "portcullis.db"
	ServerSecret = "server.secret" // HMAC key for API key digests
	AuditKey     = "audit.key"     // HMAC key for audit redaction digests
	AdminKeyFile = "admin.key"     // the first admin API key, printed once

	AuditChainKey       = "audit-chain.key"       // HMAC key of the audit hash chain
	AuditSigningKey     = "audit-signing.key"     // Ed25519 seed that signs audit checkpoints
	AuditCheckpointFile = "audit-checkpoint.json" // the latest signed checkpoint
	SecretsKey          = "secrets.key"           // AES-256 key of the secrets store
)

// KeyFiles are the key files that belong to a store rather than to one
// gateway: backups are useless without them, and every replica sharing a
// database needs the same ones.
var KeyFiles = []string{ServerSecret, AuditKey, AuditChainKey, AuditSigningKey, SecretsKey}

// Ensure creates dir (and parents) with mode 0700 if missing and checks
// that an existing dir is not accessible to group or others.
func Ensure(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s: not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: data dir %s has mode %04o; run `chmod 700 %s`", ErrInsecure, dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// LoadOrCreateSecret returns the n random bytes stored in file name inside
// dir, creating the file (mode 0600, O_EXCL) on first use. created reports
// whether it was created now. An existing file with group/other access,
// the wrong length, or that is not a regular file (symlink, FIFO,
// directory) is an error.
func LoadOrCreateSecret(dir, name string, n int) (secret []byte, created bool, err error) {
	return loadOrCreateSecret(dir, name, n, true)
}

func loadOrCreateSecret(dir, name string, n int, retry bool) (secret []byte, created bool, err error) {
	path := filepath.Join(dir, name)
	b, err := readPrivate(path)
	if err == nil {
		if len(b) != n {
			return nil, false, fmt.Errorf("secret %s: want %d bytes, found %d", path, n, len(b))
		}
		return b, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	b = make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, false, err
	}
	if err := WritePrivate(path, b); err != nil {
		// Lost a race with another process: read its secret, once. (An
		// unbounded retry loops forever on a path that reads as missing
		// but cannot be created, such as a dangling symlink.)
		if errors.Is(err, fs.ErrExist) && retry {
			return loadOrCreateSecret(dir, name, n, false)
		}
		return nil, false, err
	}
	return b, true, nil
}

// WritePrivate creates path with mode 0600 and writes data; it fails with
// fs.ErrExist if the file exists. The file is fsynced before returning.
func WritePrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// ReadPrivate reads a secret file (at most 64 KiB), refusing one accessible
// to group or others, a symbolic link (on Unix, O_NOFOLLOW) and anything
// that is not a regular file (a FIFO is refused, not waited on).
func ReadPrivate(path string) ([]byte, error) { return readPrivate(path) }

func readPrivate(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s: is a symbolic link; refusing to follow it", path)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run `chmod 600 %s`", ErrInsecure, path, fi.Mode().Perm(), path)
	}
	const maxSecret = 64 << 10
	b := make([]byte, min(fi.Size(), maxSecret)+1)
	n, err := f.Read(b)
	if err != nil && err != io.EOF { // an empty file reads as 0 bytes, not an error
		return nil, err
	}
	if n > maxSecret {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSecret)
	}
	return b[:n], nil
}

// LockFile is the lock a serving gateway holds on its data directory.
const LockFile = "serve.lock"

// ErrLocked means another process holds the data directory's lock.
var ErrLocked = errors.New("data dir in use")

// Lock takes an exclusive lock on dir (flock on <dir>/serve.lock, released
// when the returned file is closed or the process dies): one gateway per
// data directory, and `portcullis restore` refuses to replace the database
// under a running one. Held by someone else: ErrLocked.
func Lock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE|openFlags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s is locked by another portcullis process (a running `portcullis serve` or `stdio`?)", ErrLocked, dir)
	}
	return f, nil
}
