// Package native is the Linux sandbox runtime: each run gets fresh user,
// PID, network, mount, IPC, UTS and cgroup namespaces created at clone
// time, with a re-executed portcullis init as PID 1 that builds a tmpfs
// root holding read-only bind mounts of allowed host paths, pivots into
// it, drops every capability, sets no_new_privs and resource limits, runs
// the program as an unprivileged user, reaps everything, enforces the
// deadline and kills whatever is left when the program ends.
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

// initSpec is what the parent sends the init on fd 3 (JSON).
type initSpec struct {
	Argv     []string      `json:"argv"`
	Env      []string      `json:"env"`
	Dir      string        `json:"dir"`
	Files    []initFile    `json:"files,omitempty"`
	Mounts   []initMount   `json:"mounts"`
	TmpSize  int64         `json:"tmp_size"`
	WorkSize int64         `json:"work_size"`
	Wall     time.Duration `json:"wall"`
	CPUSecs  uint64        `json:"cpu_secs,omitempty"`
	FSize    uint64        `json:"fsize,omitempty"`
	NoFile   uint64        `json:"nofile,omitempty"`
	Hostname string        `json:"hostname"`
	// CoverFD is a directory descriptor for coverage data (this
	// package's tests only; see coverage.go). Zero otherwise.
	CoverFD int `json:"cover_fd,omitempty"`
}

type initFile struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
	Mode uint32 `json:"mode"`
}

// initMount is one mount, prepared by the parent: the parent (which may
// read paths the sandbox's ids cannot, such as a Python under /root)
// opens the source with O_PATH and passes the descriptor, or, for a
// system path that is a symlink, passes the link text to recreate.
type initMount struct {
	Target   string `json:"target"`
	FD       int    `json:"fd,omitempty"`   // O_PATH descriptor of the source in the init
	Link     string `json:"link,omitempty"` // recreate as this symlink instead
	IsDir    bool   `json:"is_dir,omitempty"`
	Writable bool   `json:"writable,omitempty"`
}

// initStatus is what the init reports on fd 4 (JSON) before exiting.
type initStatus struct {
	SetupError string `json:"setup_error,omitempty"`
	Started    bool   `json:"started"`
	ExitCode   int    `json:"exit_code"`
	Signal     int    `json:"signal,omitempty"`
	TimedOut   bool   `json:"timed_out,omitempty"`
	Orphans    int    `json:"orphans,omitempty"`
	CPUNanos   int64  `json:"cpu_ns"`
	MaxRSSKB   int64  `json:"maxrss_kb"`
}
