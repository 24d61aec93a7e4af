//go:build unix

package datadir_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/datadir"
)

// safetyTimeout turns a hang (the bug under test) into a failure; it is not
// a performance bound.
const safetyTimeout = 10 * time.Second

func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// withUmask runs f under umask mask (process-wide: not for parallel tests).
func withUmask(t *testing.T, mask int, f func()) {
	t.Helper()
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	f()
}

func TestEnsureCreatesPrivateDir(t *testing.T) {
	for _, mask := range []int{0o022, 0o000} {
		withUmask(t, mask, func() {
			dir := filepath.Join(t.TempDir(), "a", "b", "data")
			if err := datadir.Ensure(dir); err != nil {
				t.Fatalf("umask %03o: Ensure: %v", mask, err)
			}
			for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
				if got := perm(t, d); got != 0o700 {
					t.Errorf("umask %03o: %s has mode %04o, want 0700", mask, d, got)
				}
			}
			// Idempotent on its own result.
			if err := datadir.Ensure(dir); err != nil {
				t.Errorf("second Ensure: %v", err)
			}
		})
	}
}

func TestEnsureRefusesInsecureDir(t *testing.T) {
	for _, mode := range []fs.FileMode{0o710, 0o701, 0o750, 0o705, 0o755, 0o777, 0o1777} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			err := datadir.Ensure(dir)
			if !errors.Is(err, datadir.ErrInsecure) {
				t.Fatalf("Ensure(dir %04o) = %v, want ErrInsecure", mode, err)
			}
			// Refused, not silently "fixed".
			if got := perm(t, dir); got != mode.Perm() {
				t.Errorf("Ensure changed the mode to %04o", got)
			}
		})
	}
	t.Run("0700 accepted", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		os.Mkdir(dir, 0o700)
		if err := datadir.Ensure(dir); err != nil {
			t.Errorf("Ensure(0700) = %v", err)
		}
	})
}

func TestEnsureRefusesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := datadir.Ensure(path); err == nil {
		t.Error("Ensure accepted a regular file as the data dir")
	}
	if err := datadir.Ensure(filepath.Join(path, "sub")); err == nil {
		t.Error("Ensure accepted a path below a regular file")
	}
}

func privateDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := datadir.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadSecret runs LoadOrCreateSecret and fails the test if it hangs.
func loadSecret(t *testing.T, dir, name string, n int) ([]byte, bool, error) {
	t.Helper()
	type result struct {
		b       []byte
		created bool
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		b, c, err := datadir.LoadOrCreateSecret(dir, name, n)
		ch <- result{b, c, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.created, r.err
	case <-time.After(safetyTimeout):
		t.Fatalf("LoadOrCreateSecret(%s) hung", name)
		return nil, false, nil
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	dir := privateDir(t)
	for _, n := range []int{16, 32, 64} {
		name := datadir.ServerSecret + string(rune('0'+n%10))
		b, created, err := loadSecret(t, dir, name, n)
		if err != nil || !created {
			t.Fatalf("first call = %v, created=%v", err, created)
		}
		if len(b) != n || bytes.Equal(b, make([]byte, n)) {
			t.Fatalf("secret = %x, want %d random bytes", b, n)
		}
		if got := perm(t, filepath.Join(dir, name)); got != 0o600 {
			t.Errorf("secret file mode %04o, want 0600", got)
		}
		onDisk, _ := os.ReadFile(filepath.Join(dir, name))
		if !bytes.Equal(onDisk, b) {
			t.Error("returned secret differs from the file")
		}
		again, created, err := loadSecret(t, dir, name, n)
		if err != nil || created || !bytes.Equal(again, b) {
			t.Errorf("second call = %x, created=%v, %v; want the same bytes, not created", again, created, err)
		}
	}
	a, _, _ := loadSecret(t, dir, "a.key", 32)
	b, _, _ := loadSecret(t, dir, "b.key", 32)
	if bytes.Equal(a, b) {
		t.Error("two secrets are equal: not random")
	}
}

func TestLoadOrCreateSecretRefuses(t *testing.T) {
	const n = 32
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr error  // nil: any error
		wantMsg string // the error says why
	}{
		{"mode 0644", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, n), 0o644)
		}, datadir.ErrInsecure, "mode"},
		{"mode 0640", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, n), 0o640)
		}, datadir.ErrInsecure, "mode"},
		{"mode 0604", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, n), 0o604)
		}, datadir.ErrInsecure, "mode"},
		{"too short", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, n-1), 0o600)
		}, nil, "want 32 bytes"},
		{"too long", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, n+1), 0o600)
		}, nil, ""},
		{"empty (crash between create and write)", func(t *testing.T, path string) {
			writeFile(t, path, nil, 0o600)
		}, nil, "found 0"},
		{"huge", func(t *testing.T, path string) {
			writeFile(t, path, make([]byte, 1<<20), 0o600)
		}, nil, ""},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, nil, ""},
		{"fifo", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}, nil, "not a regular file"},
		{"symlink to a private file elsewhere", func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			writeFile(t, target, make([]byte, n), 0o600)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, nil, "symbolic link"},
		{"dangling symlink", func(t *testing.T, path string) {
			if err := os.Symlink(filepath.Join(t.TempDir(), "nowhere"), path); err != nil {
				t.Fatal(err)
			}
		}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := privateDir(t)
			path := filepath.Join(dir, datadir.AuditKey)
			tt.setup(t, path)
			before, _ := os.Lstat(path)
			b, created, err := loadSecret(t, dir, datadir.AuditKey, n)
			if err == nil {
				t.Fatalf("LoadOrCreateSecret accepted it: %x (created=%v)", b, created)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
			if errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %v claims the file does not exist", err)
			}
			// Refused, not replaced: what was there is still there.
			after, lerr := os.Lstat(path)
			if lerr != nil || after.Mode() != before.Mode() || after.Size() != before.Size() {
				t.Errorf("the existing file was changed or replaced")
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestReadPrivate(t *testing.T) {
	dir := privateDir(t)
	path := filepath.Join(dir, datadir.AdminKeyFile)
	want := []byte("pcl_EXAMPLE\n")
	if err := datadir.WritePrivate(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := datadir.ReadPrivate(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("ReadPrivate = %q, %v; want %q", got, err, want)
	}
	if _, err := datadir.ReadPrivate(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadPrivate(missing) = %v, want fs.ErrNotExist", err)
	}
	os.Chmod(path, 0o660)
	if _, err := datadir.ReadPrivate(path); !errors.Is(err, datadir.ErrInsecure) {
		t.Errorf("ReadPrivate(0660) = %v, want ErrInsecure", err)
	}
}

func TestWritePrivate(t *testing.T) {
	dir := privateDir(t)
	path := filepath.Join(dir, "new")
	withUmask(t, 0, func() {
		if err := datadir.WritePrivate(path, []byte("secret")); err != nil {
			t.Fatal(err)
		}
	})
	if got := perm(t, path); got != 0o600 {
		t.Errorf("mode %04o, want 0600 (even with umask 0)", got)
	}
	if got, _ := os.ReadFile(path); string(got) != "secret" {
		t.Errorf("content %q", got)
	}
}

func TestWritePrivateNeverOverwrites(t *testing.T) {
	dir := privateDir(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, path string) (check func(t *testing.T))
	}{
		{"existing file", func(t *testing.T, path string) func(*testing.T) {
			writeFile(t, path, []byte("original"), 0o600)
			return func(t *testing.T) {
				if got, _ := os.ReadFile(path); string(got) != "original" {
					t.Errorf("existing file now holds %q: truncated or overwritten", got)
				}
			}
		}},
		{"symlink to a file elsewhere", func(t *testing.T, path string) func(*testing.T) {
			target := filepath.Join(t.TempDir(), "victim")
			writeFile(t, target, []byte("victim"), 0o644)
			os.Symlink(target, path)
			return func(t *testing.T) {
				if got, _ := os.ReadFile(target); string(got) != "victim" {
					t.Errorf("write followed the symlink: target holds %q", got)
				}
			}
		}},
		{"dangling symlink", func(t *testing.T, path string) func(*testing.T) {
			target := filepath.Join(t.TempDir(), "created-through-link")
			os.Symlink(target, path)
			return func(t *testing.T) {
				if _, err := os.Lstat(target); err == nil {
					t.Error("write created the symlink's target")
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			check := tt.setup(t, path)
			if err := datadir.WritePrivate(path, []byte("attacker")); !errors.Is(err, fs.ErrExist) {
				t.Errorf("WritePrivate = %v, want fs.ErrExist", err)
			}
			check(t)
		})
	}
}

func TestWritePrivateMissingDir(t *testing.T) {
	err := datadir.WritePrivate(filepath.Join(t.TempDir(), "no", "file"), []byte("x"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WritePrivate into a missing dir = %v, want fs.ErrNotExist", err)
	}
}
