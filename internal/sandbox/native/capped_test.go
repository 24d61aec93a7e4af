package native

import (
	"strings"
	"sync"
	"testing"
)

// TestCappedBuffer keeps the first max bytes, reports every write as
// fully accepted (so the writer never blocks or errors) and marks
// truncation only when bytes were actually dropped.
func TestCappedBuffer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max       int64
		writes    []string
		want      string
		truncated bool
	}{
		{"under", 10, []string{"abc", "de"}, "abcde", false},
		{"exact fit", 5, []string{"abc", "de"}, "abcde", false},
		{"exact fit then empty write", 5, []string{"abcde", ""}, "abcde", false},
		{"split write", 5, []string{"abc", "defg"}, "abcde", true},
		{"one big write", 3, []string{"abcdef"}, "abc", true},
		{"write after full", 3, []string{"abc", "d"}, "abc", true},
		{"zero cap", 0, []string{"a"}, "", true},
		{"no writes", 3, nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cappedBuffer{max: tc.max}
			for _, w := range tc.writes {
				n, err := c.Write([]byte(w))
				if n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			got, truncated := c.result()
			if string(got) != tc.want || truncated != tc.truncated {
				t.Errorf("result = %q, %v; want %q, %v", got, truncated, tc.want, tc.truncated)
			}
		})
	}
}

// TestCappedBufferConcurrent writes from many goroutines (as exec's copy
// goroutines may): the buffer never exceeds its cap.
func TestCappedBufferConcurrent(t *testing.T) {
	c := &cappedBuffer{max: 1000}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = c.Write([]byte(strings.Repeat("x", 7)))
			}
		}()
	}
	wg.Wait()
	got, truncated := c.result()
	if len(got) != 1000 || !truncated {
		t.Errorf("len %d truncated %v, want 1000 true", len(got), truncated)
	}
}
