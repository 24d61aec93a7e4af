// Package toolstest holds fixtures shared by the built-in tools' tests:
// the path-traversal corpus (../shared/testdata/traversal, copied into
// internal/tools/files/testdata/traversal).
package toolstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Payload is one corpus line with {FILE} substituted.
type Payload struct {
	List string // corpus file name
	Line int    // 1-based line in it
	Path string
}

// Corpus returns the payloads of dir/*.txt in file and line order, each
// line once per name substituted for {FILE}, without duplicates within a
// file. A missing corpus fails the test: it is part of the repository.
func Corpus(tb testing.TB, dir string, names ...string) []Payload {
	tb.Helper()
	lists, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil || len(lists) == 0 {
		tb.Fatalf("traversal corpus missing in %s (%v); it is part of the repository", dir, err)
	}
	var out []Payload
	for _, file := range lists {
		b, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		seen := map[string]bool{}
		for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			line = strings.TrimSuffix(line, "\r")
			for _, name := range names {
				p := strings.ReplaceAll(line, "{FILE}", name)
				if p != "" && !seen[p] {
					seen[p] = true
					out = append(out, Payload{List: filepath.Base(file), Line: i + 1, Path: p})
				}
			}
		}
	}
	return out
}
