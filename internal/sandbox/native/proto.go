// Package native is the Linux sandbox runtime. Each run gets fresh user,
// PID, network, mount, IPC, UTS and cgroup namespaces created at clone
// time, with the portcullis binary — re-executed from a sealed memfd copy —
// as PID 1 inside. That init builds a tmpfs root holding read-only mounts
// of allowed host paths, pivots into it, and starts the program with a
// fork of its own that joins the run's cgroups (memory, pids, cpu), drops
// to an unprivileged user with no capabilities, applies Landlock and a
// default-deny seccomp filter, then execs. The init reaps everything,
// enforces the deadline and kills whatever is left when the program ends.
// A warm pool keeps inits whose namespaces and base mounts are ready.
//
// Binaries that use this package must call Main first thing in main (and
// in TestMain): the init is the same binary re-executed with InitArg.
package native

import "time"

// InitArg is argv[1] of a re-executed sandbox init.
const InitArg = "__portcullis_sandbox_init__"

// User and group ids. Inside the sandbox the init is uid 0 (of the
// sandbox's own user namespace, with no rights on the host) and the
// program runs as SandboxUID. On the host these map to ids that own no
// files: setupHostID and programHostID.
const (
	SandboxUID    = 65534
	setupHostID   = 1000000
	programHostID = 1065534
)

// Descriptors in the init.
const (
	ctlFD        = 3 // control pipe (read): a baseSpec line, then a runSpec line
	statusFD     = 4 // status pipe (write): one initStatus line at the end
	firstExtraFD = 5 // then mount trees, proxy socket, coverage dir
)

// baseSpec is what an init needs before it knows what it will run: the
// mounts (detached mount trees, or symlinks to recreate), the run's
// cgroup.procs descriptors and the egress proxy socket. A warm init gets it
// when started.
type baseSpec struct {
	Mounts []initMount `json:"mounts"`
	// WorkDir is the program's private tmpfs work directory.
	WorkDir string `json:"work_dir"`
	Cgroups []int  `json:"cgroups,omitempty"`
	// ProxyFD is an O_PATH descriptor of the gateway's proxy socket; 0 means
	// no network at all.
	ProxyFD int `json:"proxy_fd,omitempty"`
	// PidsMaxFD is the run's pids.max, open for writing (0: no cgroup).
	// Just before it forks the program, the init sets it to its own thread
	// count plus the program's budget (runSpec.Pids), so that pids.max
	// bounds the program exactly and a refused fork is counted in
	// pids.events (reported as PIDS_EXHAUSTED).
	PidsMaxFD int `json:"pids_max_fd,omitempty"`
	// CoverFD is a directory for coverage data (this package's tests only).
	CoverFD int `json:"cover_fd,omitempty"`
}

// initMount is one mount, prepared by the parent: a detached mount tree
// (open_tree, flags already set) or, for a system path that is a symlink
// on the host, the link text to recreate.
type initMount struct {
	Target   string `json:"target"`
	FD       int    `json:"fd,omitempty"`
	Link     string `json:"link,omitempty"`
	IsDir    bool   `json:"is_dir,omitempty"`
	Writable bool   `json:"writable,omitempty"`
}

// runSpec is the run itself.
type runSpec struct {
	Argv     []string      `json:"argv"`
	Env      []string      `json:"env"`
	Dir      string        `json:"dir"`
	Files    []initFile    `json:"files,omitempty"`
	TmpSize  int64         `json:"tmp_size"`
	WorkSize int64         `json:"work_size"`
	Wall     time.Duration `json:"wall"`
	CPUSecs  uint64        `json:"cpu_secs,omitempty"`
	FSize    uint64        `json:"fsize,omitempty"`
	NoFile   uint64        `json:"nofile,omitempty"`
	NProc    uint64        `json:"nproc,omitempty"`
	Pids     int           `json:"pids,omitempty"` // the program's process and thread budget
	Level    string        `json:"level"`
	// Filter is the level's seccomp filter, assembled once by the gateway:
	// struct sock_filter entries, 8 bytes each, native byte order.
	Filter []byte `json:"filter"`
	// NoSeccomp runs without a filter (degraded mode only); an empty Filter
	// without it is refused.
	NoSeccomp bool `json:"no_seccomp,omitempty"`
	// ASBytes is an RLIMIT_AS fallback for the memory limit when cgroups
	// are missing (degraded mode only).
	ASBytes uint64 `json:"as_bytes,omitempty"`
}

type initFile struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
	Mode uint32 `json:"mode"`
}

// initStatus is what the init reports on the status pipe before exiting.
type initStatus struct {
	SetupError string `json:"setup_error,omitempty"`
	Started    bool   `json:"started"`
	ExitCode   int    `json:"exit_code"`
	Signal     int    `json:"signal,omitempty"`
	TimedOut   bool   `json:"timed_out,omitempty"`
	Orphans    int    `json:"orphans,omitempty"`
	CPUNanos   int64  `json:"cpu_ns"`
	MaxRSSKB   int64  `json:"maxrss_kb"`
	// LandlockABI is the Landlock ABI applied to the program (0: none).
	LandlockABI int `json:"landlock_abi,omitempty"`
}
