package policy

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.cedar", `permit (principal, action, resource);`)
	write("notes.txt", "ignored")
	write(".hidden.cedar", "ignored")
	if err := os.Mkdir(filepath.Join(dir, "sub.cedar"), 0o700); err != nil {
		t.Fatal(err)
	}
	files, _, err := ReadDir(dir)
	if err == nil {
		t.Fatalf("a directory named sub.cedar was accepted: %v", files)
	}
	if !strings.Contains(err.Error(), "sub.cedar") {
		t.Errorf("error %q does not name the entry", err)
	}
	os.Remove(filepath.Join(dir, "sub.cedar"))
	files, fp1, err := ReadDir(dir)
	if err != nil || len(files) != 1 || files["a.cedar"] == nil {
		t.Fatalf("ReadDir = %v, %v", files, err)
	}
	// The fingerprint follows content, not timestamps.
	write("a.cedar", `permit (principal, action, resource);`)
	if _, fp, _ := ReadDir(dir); fp != fp1 {
		t.Error("rewriting the same content changed the fingerprint")
	}
	write("a.cedar", `forbid (principal, action, resource);`)
	if _, fp, _ := ReadDir(dir); fp == fp1 {
		t.Error("a content change kept the fingerprint")
	}
	// Symlinks are followed (ConfigMap layout).
	target := filepath.Join(t.TempDir(), "b.cedar")
	os.WriteFile(target, []byte(`forbid (principal, action, resource);`), 0o600)
	if err := os.Symlink(target, filepath.Join(dir, "b.cedar")); err != nil {
		t.Fatal(err)
	}
	if files, _, err := ReadDir(dir); err != nil || len(files) != 2 {
		t.Errorf("symlinked file: %v, %v", files, err)
	}
	// A FIFO must not hang the reader.
	if err := syscall.Mkfifo(filepath.Join(dir, "c.cedar"), 0o600); err == nil {
		if _, _, err := ReadDir(dir); err == nil || !strings.Contains(err.Error(), "c.cedar") {
			t.Errorf("FIFO: %v", err)
		}
		os.Remove(filepath.Join(dir, "c.cedar"))
	}
	// Oversized.
	write("big.cedar", strings.Repeat(" ", MaxPolicyFileBytes+1))
	if _, _, err := ReadDir(dir); err == nil || !strings.Contains(err.Error(), "big.cedar") {
		t.Errorf("oversized file: %v", err)
	}
	if _, _, err := ReadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing directory accepted")
	}
}
