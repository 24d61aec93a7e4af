package config_test

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/config"
)

// fakeDSN builds a DSN with a password made at run time (no literal
// credential in the repository).
func fakeDSN() (dsn, password string) {
	password = rand.Text()
	return "postgres://portcullis:" + password + "@127.0.0.1:5432/portcullis?sslmode=disable", password
}

func TestStorageValidate(t *testing.T) {
	dsn, pw := fakeDSN()
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     []string
		wantKey string // "" = valid
	}{
		{name: "default is sqlite"},
		{name: "postgres with dsn from env", env: []string{"PORTCULLIS_STORAGE_DRIVER=postgres", "PORTCULLIS_STORAGE_DSN=" + dsn}},
		{name: "postgres with dsn file", env: []string{"PORTCULLIS_STORAGE_DRIVER=postgres", "PORTCULLIS_STORAGE_DSN_FILE=" + dsnFile}},
		{name: "driver case-insensitive", env: []string{"PORTCULLIS_STORAGE_DRIVER=PostgreS", "PORTCULLIS_STORAGE_DSN=" + dsn}},
		{name: "postgres without dsn fails fast", env: []string{"PORTCULLIS_STORAGE_DRIVER=postgres"}, wantKey: "storage.dsn"},
		{name: "both dsn and dsn file", env: []string{"PORTCULLIS_STORAGE_DRIVER=postgres", "PORTCULLIS_STORAGE_DSN=" + dsn, "PORTCULLIS_STORAGE_DSN_FILE=" + dsnFile}, wantKey: "storage.dsn"},
		{name: "dsn with sqlite", env: []string{"PORTCULLIS_STORAGE_DSN=" + dsn}, wantKey: "storage.dsn"},
		{name: "unknown driver", env: []string{"PORTCULLIS_STORAGE_DRIVER=mysql"}, wantKey: "storage.driver"},
		{name: "bad replica id", env: []string{"PORTCULLIS_STORAGE_REPLICA_ID=a/b"}, wantKey: "storage.replica_id"},
		{name: "replica id too long", env: []string{"PORTCULLIS_STORAGE_REPLICA_ID=" + strings.Repeat("r", 65)}, wantKey: "storage.replica_id"},
		{name: "replica id", env: []string{"PORTCULLIS_STORAGE_REPLICA_ID=gw-a.1_x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Load("", tt.env)
			if err == nil {
				err = cfg.Validate()
			}
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tt.wantKey) {
				t.Fatalf("err = %v, want ErrInvalid naming %s", err, tt.wantKey)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestPostgresDSNFile(t *testing.T) {
	dsn, pw := fakeDSN()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  "+dsn+"\n\n", 0o600)
	s := config.StorageConfig{Driver: config.DriverPostgres, DSNFile: good}
	got, err := s.PostgresDSN()
	if err != nil || got != dsn {
		t.Fatalf("PostgresDSN = %q, %v; want the trimmed DSN", got, err)
	}
	if got, err := (&config.StorageConfig{DSN: dsn}).PostgresDSN(); err != nil || got != dsn {
		t.Fatalf("PostgresDSN from dsn = %q, %v", got, err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"group-readable": write("group", dsn, 0o640),
		"world-readable": write("world", dsn, 0o604),
		"empty":          write("empty", " \n", 0o600),
		"missing":        filepath.Join(dir, "nope"),
		"directory":      dir,
		"symbolic link":  link,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := (&config.StorageConfig{Driver: config.DriverPostgres, DSNFile: path}).PostgresDSN()
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "storage.dsn_file") {
				t.Fatalf("err = %v, want ErrInvalid naming storage.dsn_file", err)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	if _, err := (&config.StorageConfig{}).PostgresDSN(); err == nil {
		t.Error("no DSN at all was accepted")
	}
}
