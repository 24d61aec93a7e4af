package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Bounds on a policy directory.
const (
	MaxPolicyFileBytes = 1 << 20  // one .cedar file
	MaxPolicyDirBytes  = 16 << 20 // all of them
	MaxPolicyFiles     = 1000
)

// ReadDir reads the *.cedar files directly in dir (not in
// subdirectories; hidden files are skipped) and returns them by base name
// with a fingerprint of names and contents (hex SHA-256), which changes
// exactly when a reload could change something. Symbolic links are
// followed (Kubernetes mounts ConfigMaps through them). Errors name the
// file: unreadable, not a regular file, or over the size bounds.
func ReadDir(dir string) (files map[string][]byte, fingerprint string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, "", fmt.Errorf("policy directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || filepath.Ext(n) != ".cedar" {
			continue
		}
		names = append(names, n)
	}
	if len(names) > MaxPolicyFiles {
		return nil, "", fmt.Errorf("policy directory %s: %d .cedar files, at most %d", dir, len(names), MaxPolicyFiles)
	}
	slices.Sort(names)
	h := sha256.New()
	files = make(map[string][]byte, len(names))
	total := 0
	for _, n := range names {
		b, err := readPolicyFile(filepath.Join(dir, n))
		if err != nil {
			return nil, "", err
		}
		total += len(b)
		if total > MaxPolicyDirBytes {
			return nil, "", fmt.Errorf("policy directory %s: more than %d bytes of policies", dir, MaxPolicyDirBytes)
		}
		files[n] = b
		fmt.Fprintf(h, "%d:%s\x00%d:", len(n), n, len(b))
		h.Write(b)
	}
	return files, hex.EncodeToString(h.Sum(nil)), nil
}

func readPolicyFile(path string) ([]byte, error) {
	// Stat first: opening a FIFO would block until a writer appears.
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("policy file %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("policy file %s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxPolicyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	if len(b) > MaxPolicyFileBytes {
		return nil, fmt.Errorf("policy file %s: larger than %d bytes", path, MaxPolicyFileBytes)
	}
	return b, nil
}
