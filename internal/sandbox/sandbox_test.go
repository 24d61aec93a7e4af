package sandbox

import (
	"errors"
	"testing"
	"time"
)

func validSpec() *Spec {
	return &Spec{
		Argv:   []string{"/bin/true"},
		Files:  []File{{Name: "main.py", Data: []byte("pass"), Mode: 0o400}},
		Mounts: []Mount{{Source: "/opt/python"}, {Source: "/srv/data", Target: "/data", Writable: true}},
		Limits: Limits{WallTime: time.Second},
	}
}

// TestValidate accepts a well-formed Spec and refuses each malformed part
// with ErrInvalidSpec.
func TestValidate(t *testing.T) {
	if err := validSpec().Validate(); err != nil {
		t.Fatalf("valid spec refused: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Spec)
	}{
		{"nil argv", func(s *Spec) { s.Argv = nil }},
		{"empty argv[0]", func(s *Spec) { s.Argv = []string{""} }},
		{"relative argv[0]", func(s *Spec) { s.Argv = []string{"bin/true"} }},
		{"bare program name", func(s *Spec) { s.Argv = []string{"python3", "-c", "pass"} }},
		{"dot-relative argv[0]", func(s *Spec) { s.Argv = []string{"./true"} }},
		{"relative dir", func(s *Spec) { s.Dir = "work" }},
		{"root dir", func(s *Spec) { s.Dir = "/" }},
		{"unclean dir", func(s *Spec) { s.Dir = "/work/../etc" }},
		{"empty file name", func(s *Spec) { s.Files = []File{{Name: ""}} }},
		{"file name .", func(s *Spec) { s.Files = []File{{Name: "."}} }},
		{"file name ..", func(s *Spec) { s.Files = []File{{Name: ".."}} }},
		{"file name with slash", func(s *Spec) { s.Files = []File{{Name: "a/b"}} }},
		{"file name escaping", func(s *Spec) { s.Files = []File{{Name: "../../etc/passwd"}} }},
		{"absolute file name", func(s *Spec) { s.Files = []File{{Name: "/etc/passwd"}} }},
		{"file name with NUL", func(s *Spec) { s.Files = []File{{Name: "a\x00"}} }},
		{"bad name after a good one", func(s *Spec) { s.Files = append(s.Files, File{Name: "x/y"}) }},
		{"empty mount source", func(s *Spec) { s.Mounts = []Mount{{Source: ""}} }},
		{"relative mount source", func(s *Spec) { s.Mounts = []Mount{{Source: "data"}} }},
		{"relative mount target", func(s *Spec) { s.Mounts = []Mount{{Source: "/data", Target: "data"}} }},
		{"unknown network mode", func(s *Spec) { s.Network.Mode = "host" }},
		{"proxy network (not supported yet)", func(s *Spec) { s.Network = Network{Mode: NetworkProxy, ProxyAddr: "127.0.0.1:3128"} }},
		{"zero wall time", func(s *Spec) { s.Limits.WallTime = 0 }},
		{"negative wall time", func(s *Spec) { s.Limits.WallTime = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.mutate(s)
			if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("Validate() = %v, want ErrInvalidSpec", err)
			}
		})
	}
}

// TestValidateAcceptsNetworkNone accepts both spellings of "no network".
func TestValidateAcceptsNetworkNone(t *testing.T) {
	for _, m := range []NetworkMode{"", NetworkNone} {
		s := validSpec()
		s.Network.Mode = m
		if err := s.Validate(); err != nil {
			t.Errorf("network mode %q refused: %v", m, err)
		}
	}
}

// TestResultHas finds a violation by code and only that code.
func TestResultHas(t *testing.T) {
	r := &Result{Violations: []Violation{{Code: ViolationOutputTrunc}, {Code: ViolationOrphansKilled, Detail: "2"}}}
	if !r.Has(ViolationOutputTrunc) || !r.Has(ViolationOrphansKilled) {
		t.Errorf("Has misses a violation in %v", r.Violations)
	}
	if r.Has(ViolationWallTimeout) {
		t.Errorf("Has(WALL_TIMEOUT) true for %v", r.Violations)
	}
	if (&Result{}).Has(ViolationCancelled) {
		t.Errorf("Has on an empty result is true")
	}
}
