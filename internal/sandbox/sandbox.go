// Package sandbox defines how Portcullis runs untrusted programs: a Spec
// (what to run, what it may see, how much it may use) goes to a Runtime,
// which returns a Result (exit status, captured output, resource use and
// the limits or rules that were hit). Isolation comes from the kernel
// (internal/sandbox/native), never from inspecting the program.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"
)

// Error categories.
var (
	// ErrInvalidSpec means the Spec cannot be run as given.
	ErrInvalidSpec = errors.New("invalid sandbox spec")
	// ErrUnavailable means a required isolation mechanism is missing on
	// this host; the runtime refuses rather than run with less isolation.
	ErrUnavailable = errors.New("sandbox unavailable")
	// ErrSetup means building the sandbox failed at run time.
	ErrSetup = errors.New("sandbox setup failed")
)

// Level is a named isolation preset (DESIGN §5, seed 004): it sets the
// default limits, the system-call filter, what may be executed and how
// many violations a plugin may commit before quarantine.
//
//	level     processes             syscalls                    quarantine after
//	maximum   no fork or exec       minimal allow-list          1 violation
//	strict    limited               allow-list                  3
//	standard  limited               larger allow-list           5
//	minimal   allowed               deny dangerous only         10
type Level string

// Security levels, strictest first.
const (
	LevelMaximum  Level = "maximum"
	LevelStrict   Level = "strict"
	LevelStandard Level = "standard"
	LevelMinimal  Level = "minimal"
)

// Levels lists the levels, strictest first.
var Levels = []Level{LevelMaximum, LevelStrict, LevelStandard, LevelMinimal}

// ParseLevel parses a level name; "" means maximum.
func ParseLevel(s string) (Level, error) {
	if s == "" {
		return LevelMaximum, nil
	}
	for _, l := range Levels {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("%w: unknown security level %q (want maximum, strict, standard or minimal)", ErrInvalidSpec, s)
}

// Defaults returns the level's default limits.
func (l Level) Defaults() Limits {
	const MiB, GiB = 1 << 20, 1 << 30
	switch l {
	case LevelStrict:
		return Limits{WallTime: time.Minute, CPUTime: time.Minute, MemoryBytes: GiB, Pids: 64,
			FileSizeBytes: 256 * MiB, OpenFiles: 1024, OutputBytes: 4 * MiB, CPUs: 1}
	case LevelStandard:
		return Limits{WallTime: 5 * time.Minute, CPUTime: 5 * time.Minute, MemoryBytes: 2 * GiB, Pids: 256,
			FileSizeBytes: GiB, OpenFiles: 4096, OutputBytes: 16 * MiB, CPUs: 2}
	case LevelMinimal:
		return Limits{WallTime: time.Hour, CPUTime: time.Hour, MemoryBytes: 4 * GiB, Pids: 1024,
			FileSizeBytes: 4 * GiB, OpenFiles: 16384, OutputBytes: 64 * MiB, CPUs: 2}
	default: // maximum: the seed's execute_python limits
		return Limits{WallTime: 30 * time.Second, CPUTime: 30 * time.Second, MemoryBytes: 512 * MiB, Pids: 10,
			FileSizeBytes: 64 * MiB, OpenFiles: 256, OutputBytes: MiB, CPUs: 1}
	}
}

// QuarantineAfter is how many violations a plugin at this level may
// commit before it is quarantined (DESIGN §5).
func (l Level) QuarantineAfter() int {
	switch l {
	case LevelStrict:
		return 3
	case LevelStandard:
		return 5
	case LevelMinimal:
		return 10
	default:
		return 1
	}
}

// Mount makes a host path visible inside the sandbox.
type Mount struct {
	// Source is an absolute host path (file or directory).
	Source string
	// Target is the absolute path inside the sandbox (defaults to Source).
	Target string
	// Writable mounts read-write; the default is read-only.
	Writable bool
}

// File is created inside the sandbox's work directory before the program
// starts, owned by the sandbox user.
type File struct {
	Name string // base name, no '/'
	Data []byte
	Mode uint32 // permission bits, e.g. 0o600
}

// Limits bound one run. Zero fields take the runtime's defaults.
type Limits struct {
	WallTime      time.Duration // from start to kill
	CPUTime       time.Duration // RLIMIT_CPU, whole seconds (rounded up)
	MemoryBytes   int64         // cgroup memory.max / RLIMIT_AS fallback
	Pids          int           // cgroup pids.max
	FileSizeBytes int64         // RLIMIT_FSIZE
	OpenFiles     int           // RLIMIT_NOFILE
	OutputBytes   int64         // cap on stdout and on stderr, each
	CPUs          float64       // CPU bandwidth in cores (cgroup cpu quota)
}

// WithDefaults returns l with every zero field taken from d.
func (l Limits) WithDefaults(d Limits) Limits {
	if l.WallTime <= 0 {
		l.WallTime = d.WallTime
	}
	if l.CPUTime <= 0 {
		l.CPUTime = d.CPUTime
	}
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = d.MemoryBytes
	}
	if l.Pids <= 0 {
		l.Pids = d.Pids
	}
	if l.FileSizeBytes <= 0 {
		l.FileSizeBytes = d.FileSizeBytes
	}
	if l.OpenFiles <= 0 {
		l.OpenFiles = d.OpenFiles
	}
	if l.OutputBytes <= 0 {
		l.OutputBytes = d.OutputBytes
	}
	if l.CPUs <= 0 {
		l.CPUs = d.CPUs
	}
	return l
}

// NetworkMode selects the sandbox's network.
type NetworkMode string

// Network modes.
const (
	// NetworkNone is an empty network namespace (not even loopback up).
	NetworkNone NetworkMode = "none"
	// NetworkProxy reaches the outside only through the gateway's
	// allow-listing egress proxy.
	NetworkProxy NetworkMode = "proxy"
)

// Network configures networking.
type Network struct {
	Mode      NetworkMode
	ProxyAddr string // host:port of the egress proxy (NetworkProxy)
}

// Spec describes one run.
type Spec struct {
	// Argv is the program and its arguments; Argv[0] is an absolute path
	// inside the sandbox.
	Argv []string
	// Env is the complete environment ("KEY=value"); nothing is inherited.
	Env []string
	// Stdin is fed to the program's standard input.
	Stdin []byte
	// Dir is the working directory inside the sandbox; it is a fresh
	// size-capped tmpfs owned by the sandbox user. Default "/work".
	Dir string
	// Files are created in Dir before the program starts.
	Files []File
	// Mounts are extra host paths, in addition to the runtime's read-only
	// system paths.
	Mounts []Mount
	// TmpSizeBytes caps /tmp; WorkSizeBytes caps Dir.
	TmpSizeBytes  int64
	WorkSizeBytes int64
	Limits        Limits
	Network       Network
	Level         Level
	// Stdio, when set, connects the program's standard streams to the
	// caller for the whole run, for long-lived programs that talk over them
	// (an upstream MCP server on stdio): Stdin is copied to the program
	// until it returns io.EOF (then the program's stdin is closed), and
	// the program's stdout and stderr are copied to Stdout and Stderr
	// unbuffered and uncapped (the caller bounds what it keeps). Spec.Stdin
	// must be empty and Result.Stdout/Stderr stay empty.
	Stdio *Stdio
}

// Stdio is a run's standard streams, see Spec.Stdio. Stdout and Stderr
// must be set; Stdin may be nil (an empty input).
type Stdio struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// ViolationCode names a limit or rule that a run hit.
type ViolationCode string

// Violation codes (stable; they appear in tool results and audit records).
const (
	ViolationWallTimeout    ViolationCode = "WALL_TIMEOUT"
	ViolationCPUTimeout     ViolationCode = "CPU_TIMEOUT"
	ViolationOOM            ViolationCode = "OOM_KILL"
	ViolationPidsExhausted  ViolationCode = "PIDS_EXHAUSTED"
	ViolationOutputTrunc    ViolationCode = "OUTPUT_TRUNCATED"
	ViolationSeccompKill    ViolationCode = "SECCOMP_KILL"
	ViolationFileSize       ViolationCode = "FILE_SIZE_EXCEEDED"
	ViolationCancelled      ViolationCode = "CANCELLED"
	ViolationOrphansKilled  ViolationCode = "ORPHANS_KILLED"
	ViolationSetupFailed    ViolationCode = "SETUP_FAILED"
	ViolationSignalled      ViolationCode = "KILLED_BY_SIGNAL"
	ViolationMemoryExceeded ViolationCode = "MEMORY_LIMIT"
)

// Violation is one limit or rule that was hit.
type Violation struct {
	Code   ViolationCode `json:"code"`
	Detail string        `json:"detail,omitempty"`
}

// Result is the outcome of a run.
type Result struct {
	// ExitCode is the program's exit status, or -1 if it was killed by a signal.
	ExitCode int
	// Signal is the name of the signal that killed the program ("SIGKILL"), if any.
	Signal          string
	Stdout, Stderr  []byte
	StdoutTruncated bool
	StderrTruncated bool
	WallTime        time.Duration
	CPUTime         time.Duration // user + system of all processes in the sandbox
	PeakMemoryBytes int64         // largest resident set seen
	Violations      []Violation
}

// Has reports whether r has a violation with code c.
func (r *Result) Has(c ViolationCode) bool {
	for _, v := range r.Violations {
		if v.Code == c {
			return true
		}
	}
	return false
}

// Runtime runs Specs. Run returns a Result for every run that started,
// including programs that failed or were killed; the error is for runs
// that could not be set up (ErrInvalidSpec, ErrUnavailable, ErrSetup).
// Cancelling ctx kills the run (violation CANCELLED).
type Runtime interface {
	Name() string
	Run(ctx context.Context, spec *Spec) (*Result, error)
}

// Validate checks the parts of a Spec every runtime relies on.
func (s *Spec) Validate() error {
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return fmt.Errorf("%w: empty argv", ErrInvalidSpec)
	}
	if s.Argv[0][0] != '/' {
		return fmt.Errorf("%w: argv[0] %q must be absolute", ErrInvalidSpec, s.Argv[0])
	}
	if s.Dir != "" && (s.Dir[0] != '/' || s.Dir == "/" || path.Clean(s.Dir) != s.Dir) {
		return fmt.Errorf("%w: working directory %q must be a clean absolute path other than /", ErrInvalidSpec, s.Dir)
	}
	for _, f := range s.Files {
		if f.Name == "" || f.Name == "." || f.Name == ".." || containsByte(f.Name, '/') || containsByte(f.Name, 0) {
			return fmt.Errorf("%w: bad file name %q", ErrInvalidSpec, f.Name)
		}
	}
	for _, m := range s.Mounts {
		if m.Source == "" || m.Source[0] != '/' || (m.Target != "" && m.Target[0] != '/') {
			return fmt.Errorf("%w: mount paths must be absolute: %q -> %q", ErrInvalidSpec, m.Source, m.Target)
		}
	}
	if s.Stdio != nil && (s.Stdio.Stdout == nil || s.Stdio.Stderr == nil || len(s.Stdin) > 0) {
		return fmt.Errorf("%w: streamed stdio needs Stdout and Stderr writers and no Spec.Stdin", ErrInvalidSpec)
	}
	switch s.Network.Mode {
	case "", NetworkNone:
	case NetworkProxy:
		if s.Network.ProxyAddr == "" {
			return fmt.Errorf("%w: network mode proxy needs a proxy address", ErrInvalidSpec)
		}
	default:
		return fmt.Errorf("%w: unknown network mode %q", ErrInvalidSpec, s.Network.Mode)
	}
	if s.Limits.WallTime < 0 || s.Limits.CPUTime < 0 || s.Limits.MemoryBytes < 0 || s.Limits.Pids < 0 ||
		s.Limits.FileSizeBytes < 0 || s.Limits.OpenFiles < 0 || s.Limits.OutputBytes < 0 || s.Limits.CPUs < 0 {
		return fmt.Errorf("%w: negative limit", ErrInvalidSpec)
	}
	if _, err := ParseLevel(string(s.Level)); err != nil {
		return err
	}
	return nil
}

func containsByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}
