package sandbox

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
		{"proxy network without address", func(s *Spec) { s.Network = Network{Mode: NetworkProxy} }},
		{"negative wall time", func(s *Spec) { s.Limits.WallTime = -time.Second }},
		{"negative CPU time", func(s *Spec) { s.Limits.CPUTime = -1 }},
		{"negative memory", func(s *Spec) { s.Limits.MemoryBytes = -1 }},
		{"negative pids", func(s *Spec) { s.Limits.Pids = -1 }},
		{"negative file size", func(s *Spec) { s.Limits.FileSizeBytes = -1 }},
		{"negative open files", func(s *Spec) { s.Limits.OpenFiles = -1 }},
		{"negative output", func(s *Spec) { s.Limits.OutputBytes = -1 }},
		{"negative CPUs", func(s *Spec) { s.Limits.CPUs = -0.5 }},
		{"unknown level", func(s *Spec) { s.Level = "paranoid" }},
		{"level in upper case", func(s *Spec) { s.Level = "STRICT" }},
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

// TestValidateAcceptsOptionalParts accepts Specs that leave limits to the
// level's defaults, name a level, or use the egress proxy with an address.
func TestValidateAcceptsOptionalParts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Spec)
	}{
		{"zero limits", func(s *Spec) { s.Limits = Limits{} }},
		{"zero wall time only", func(s *Spec) { s.Limits.WallTime = 0 }},
		{"proxy network with address", func(s *Spec) { s.Network = Network{Mode: NetworkProxy, ProxyAddr: "127.0.0.1:3128"} }},
		{"level maximum", func(s *Spec) { s.Level = LevelMaximum }},
		{"level strict", func(s *Spec) { s.Level = LevelStrict }},
		{"level standard", func(s *Spec) { s.Level = LevelStandard }},
		{"level minimal", func(s *Spec) { s.Level = LevelMinimal }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.mutate(s)
			if err := s.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
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

// TestParseLevel maps "" to maximum, accepts each level by its exact name
// and refuses anything else with ErrInvalidSpec.
func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Level
	}{
		{"", LevelMaximum},
		{"maximum", LevelMaximum},
		{"strict", LevelStrict},
		{"standard", LevelStandard},
		{"minimal", LevelMinimal},
	} {
		got, err := ParseLevel(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLevel(%q) = %q, %v; want %q, nil", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"none", "Maximum", " strict", "strict ", "max", "unconfined", "minimal\x00"} {
		got, err := ParseLevel(in)
		if !errors.Is(err, ErrInvalidSpec) || got != "" {
			t.Errorf("ParseLevel(%q) = %q, %v; want \"\", ErrInvalidSpec", in, got, err)
		}
	}
}

// TestLevelsOrder pins the level list, strictest first.
func TestLevelsOrder(t *testing.T) {
	want := []Level{LevelMaximum, LevelStrict, LevelStandard, LevelMinimal}
	if diff := cmp.Diff(want, Levels); diff != "" {
		t.Errorf("Levels (-want +got):\n%s", diff)
	}
}

// TestLevelDefaults pins each level's default limits: maximum carries the
// seed's execute_python limits (512 MiB, 10 processes, 30 s), and every
// limit is complete (no zero field) and no looser at a stricter level.
// An unknown level gets maximum's defaults (fail closed).
func TestLevelDefaults(t *testing.T) {
	const MiB, GiB = 1 << 20, 1 << 30
	want := map[Level]Limits{
		LevelMaximum: {WallTime: 30 * time.Second, CPUTime: 30 * time.Second, MemoryBytes: 512 * MiB, Pids: 10,
			FileSizeBytes: 64 * MiB, OpenFiles: 256, OutputBytes: MiB, CPUs: 1},
		LevelStrict: {WallTime: time.Minute, CPUTime: time.Minute, MemoryBytes: GiB, Pids: 64,
			FileSizeBytes: 256 * MiB, OpenFiles: 1024, OutputBytes: 4 * MiB, CPUs: 1},
		LevelStandard: {WallTime: 5 * time.Minute, CPUTime: 5 * time.Minute, MemoryBytes: 2 * GiB, Pids: 256,
			FileSizeBytes: GiB, OpenFiles: 4096, OutputBytes: 16 * MiB, CPUs: 2},
		LevelMinimal: {WallTime: time.Hour, CPUTime: time.Hour, MemoryBytes: 4 * GiB, Pids: 1024,
			FileSizeBytes: 4 * GiB, OpenFiles: 16384, OutputBytes: 64 * MiB, CPUs: 2},
	}
	for _, l := range Levels {
		if diff := cmp.Diff(want[l], l.Defaults()); diff != "" {
			t.Errorf("%s.Defaults() (-want +got):\n%s", l, diff)
		}
		if d := l.Defaults(); d.WithDefaults(Limits{}) != d {
			t.Errorf("%s.Defaults() has a zero field: %+v", l, d)
		}
	}
	for i := 1; i < len(Levels); i++ {
		stricter, looser := Levels[i-1].Defaults(), Levels[i].Defaults()
		if stricter.WallTime > looser.WallTime || stricter.CPUTime > looser.CPUTime ||
			stricter.MemoryBytes > looser.MemoryBytes || stricter.Pids > looser.Pids ||
			stricter.FileSizeBytes > looser.FileSizeBytes || stricter.OpenFiles > looser.OpenFiles ||
			stricter.OutputBytes > looser.OutputBytes || stricter.CPUs > looser.CPUs {
			t.Errorf("%s allows more than %s: %+v vs %+v", Levels[i-1], Levels[i], stricter, looser)
		}
	}
	if diff := cmp.Diff(LevelMaximum.Defaults(), Level("bogus").Defaults()); diff != "" {
		t.Errorf("an unknown level's defaults differ from maximum's (-want +got):\n%s", diff)
	}
}

// TestLimitsWithDefaults fills zero (and negative) fields from the
// defaults and keeps every field that is set, including ones larger than
// the default.
func TestLimitsWithDefaults(t *testing.T) {
	d := Limits{WallTime: 1, CPUTime: 2, MemoryBytes: 3, Pids: 4, FileSizeBytes: 5, OpenFiles: 6, OutputBytes: 7, CPUs: 8}
	set := Limits{WallTime: 10, CPUTime: 20, MemoryBytes: 30, Pids: 40, FileSizeBytes: 50, OpenFiles: 60, OutputBytes: 70, CPUs: 0.5}
	for _, tc := range []struct {
		name string
		in   Limits
		want Limits
	}{
		{"all zero", Limits{}, d},
		{"all set", set, set},
		{"negative", Limits{WallTime: -1, CPUTime: -1, MemoryBytes: -1, Pids: -1, FileSizeBytes: -1, OpenFiles: -1, OutputBytes: -1, CPUs: -1}, d},
		{"some set", Limits{MemoryBytes: 64 << 20, CPUs: 0.25},
			Limits{WallTime: 1, CPUTime: 2, MemoryBytes: 64 << 20, Pids: 4, FileSizeBytes: 5, OpenFiles: 6, OutputBytes: 7, CPUs: 0.25}},
		{"above the default", Limits{Pids: 1 << 20}, Limits{WallTime: 1, CPUTime: 2, MemoryBytes: 3, Pids: 1 << 20, FileSizeBytes: 5, OpenFiles: 6, OutputBytes: 7, CPUs: 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.in.WithDefaults(d)); diff != "" {
				t.Errorf("WithDefaults (-want +got):\n%s", diff)
			}
		})
	}
}

// TestQuarantineAfter pins DESIGN §5's violations-before-quarantine
// column; an unknown level quarantines after one (fail closed).
func TestQuarantineAfter(t *testing.T) {
	want := map[Level]int{LevelMaximum: 1, LevelStrict: 3, LevelStandard: 5, LevelMinimal: 10, "": 1, "bogus": 1}
	for l, n := range want {
		if got := l.QuarantineAfter(); got != n {
			t.Errorf("Level(%q).QuarantineAfter() = %d, want %d", l, got, n)
		}
	}
}
