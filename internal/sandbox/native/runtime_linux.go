//go:build linux

package native

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// Config configures the native runtime.
type Config struct {
	// ReadOnlyPaths are host paths bind-mounted read-only at the same path
	// in every sandbox (system directories, interpreters). Missing ones
	// are skipped; symlinks are recreated as symlinks.
	ReadOnlyPaths []string
	// Executable is the binary re-executed as init; default /proc/self/exe.
	Executable string
	// Defaults fill zero fields of a Spec.
	DefaultTmpSize  int64 // default 64 MiB
	DefaultWorkSize int64 // default 64 MiB
	DefaultOutput   int64 // default 1 MiB per stream
}

// Runtime runs Specs in fresh namespaces. Safe for concurrent use.
type Runtime struct {
	cfg Config
	log *slog.Logger
}

var _ sandbox.Runtime = (*Runtime)(nil)

// New returns a native runtime. It fails with sandbox.ErrUnavailable when
// the process cannot create the namespaces it needs (it must run as root,
// which maps the sandbox's ids onto host ids that own no files).
func New(cfg Config, log *slog.Logger) (*Runtime, error) {
	if log == nil {
		return nil, errors.New("native: nil logger")
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: the native runtime needs root (to map sandbox users onto unused host ids)", sandbox.ErrUnavailable)
	}
	for _, p := range cfg.ReadOnlyPaths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%w: read-only path %q is not absolute", sandbox.ErrInvalidSpec, p)
		}
	}
	if cfg.Executable == "" {
		cfg.Executable = "/proc/self/exe"
	}
	if cfg.DefaultTmpSize <= 0 {
		cfg.DefaultTmpSize = 64 << 20
	}
	if cfg.DefaultWorkSize <= 0 {
		cfg.DefaultWorkSize = 64 << 20
	}
	if cfg.DefaultOutput <= 0 {
		cfg.DefaultOutput = 1 << 20
	}
	return &Runtime{cfg: cfg, log: log}, nil
}

// Name implements sandbox.Runtime.
func (r *Runtime) Name() string { return "native" }

// killGrace is how long after the wall-clock limit the parent waits for
// the init to report before killing it (and with it the namespace).
const killGrace = 2 * time.Second

func (r *Runtime) initSpec(spec *sandbox.Spec) *initSpec {
	is := &initSpec{
		Argv:     spec.Argv,
		Env:      spec.Env,
		Dir:      spec.Dir,
		TmpSize:  spec.TmpSizeBytes,
		WorkSize: spec.WorkSizeBytes,
		Wall:     spec.Limits.WallTime,
		Hostname: "sandbox",
	}
	if is.Dir == "" {
		is.Dir = "/work"
	}
	if is.TmpSize <= 0 {
		is.TmpSize = r.cfg.DefaultTmpSize
	}
	if is.WorkSize <= 0 {
		is.WorkSize = r.cfg.DefaultWorkSize
	}
	if spec.Limits.CPUTime > 0 {
		is.CPUSecs = uint64((spec.Limits.CPUTime + time.Second - 1) / time.Second)
	}
	if spec.Limits.FileSizeBytes > 0 {
		is.FSize = uint64(spec.Limits.FileSizeBytes)
	}
	if spec.Limits.OpenFiles > 0 {
		is.NoFile = uint64(spec.Limits.OpenFiles)
	}
	for _, f := range spec.Files {
		is.Files = append(is.Files, initFile{Name: f.Name, Data: f.Data, Mode: f.Mode})
	}
	return is
}

// firstMountFD is the init's descriptor number of the first mount source
// (after the spec and status pipes).
const firstMountFD = 5

// openMounts clones every mount source (as the gateway, which
// may read paths the sandbox's ids cannot traverse) and fills is.Mounts.
// System paths that are missing are skipped and symlinks are recreated;
// a missing Spec mount is an error. The caller closes the files.
func (r *Runtime) openMounts(spec *sandbox.Spec, is *initSpec) ([]*os.File, error) {
	var files []*os.File
	add := func(source, target string, writable, system bool) error {
		if system {
			fi, err := os.Lstat(source)
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				link, err := os.Readlink(source)
				if err != nil {
					return err
				}
				is.Mounts = append(is.Mounts, initMount{Target: target, Link: link})
				return nil
			}
		}
		// A detached clone of the source mount (open_tree), made and
		// flagged here where the gateway has its own rights: the init
		// moves it into place (move_mount); a plain bind from a
		// descriptor of another mount namespace is refused by the kernel.
		fd, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return fmt.Errorf("mount source %s: %w", source, err)
		}
		f := os.NewFile(uintptr(fd), source)
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
		if !writable {
			attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
		}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			f.Close()
			return fmt.Errorf("mount source %s: set attributes: %w", source, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			f.Close()
			return err
		}
		files = append(files, f)
		is.Mounts = append(is.Mounts, initMount{Target: target, FD: firstMountFD + len(files) - 1,
			IsDir: st.Mode&unix.S_IFMT == unix.S_IFDIR, Writable: writable})
		return nil
	}
	var err error
	for _, p := range r.cfg.ReadOnlyPaths {
		if err = add(p, p, false, true); err != nil {
			break
		}
	}
	for _, m := range spec.Mounts {
		if err != nil {
			break
		}
		t := m.Target
		if t == "" {
			t = m.Source
		}
		err = add(m.Source, t, m.Writable, false)
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("%w: %w", sandbox.ErrInvalidSpec, err)
	}
	return files, nil
}

// Run implements sandbox.Runtime.
func (r *Runtime) Run(ctx context.Context, spec *sandbox.Spec) (*sandbox.Result, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Limits.MemoryBytes > 0 || spec.Limits.Pids > 0 {
		// Refuse rather than run without a limit the caller asked for.
		return nil, fmt.Errorf("%w: memory and pids limits need cgroups, which this runtime does not set up yet", sandbox.ErrUnavailable)
	}
	is := r.initSpec(spec)
	mountFiles, err := r.openMounts(spec, is)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range mountFiles {
			f.Close()
		}
	}()
	var coverDir *os.File
	if testCoverDir != "" && testInitCoverDir != "" {
		if coverDir, err = os.Open(testInitCoverDir); err != nil {
			return nil, err
		}
		is.CoverFD = firstMountFD + len(mountFiles)
		mountFiles = append(mountFiles, coverDir)
	}
	payload, err := json.Marshal(is)
	if err != nil {
		return nil, fmt.Errorf("%w: encode spec: %w", sandbox.ErrSetup, err)
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrSetup, err)
	}
	defer specR.Close()
	defer specW.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrSetup, err)
	}
	defer statR.Close()
	defer statW.Close()

	outMax := spec.Limits.OutputBytes
	if outMax <= 0 {
		outMax = r.cfg.DefaultOutput
	}
	stdout := &cappedBuffer{max: outMax}
	stderr := &cappedBuffer{max: outMax}
	ids := func(inner, host int) []syscall.SysProcIDMap {
		return []syscall.SysProcIDMap{{ContainerID: 0, HostID: inner, Size: 1}, {ContainerID: SandboxUID, HostID: host, Size: 1}}
	}
	cmd := &exec.Cmd{
		Path:       r.cfg.Executable,
		Args:       []string{"portcullis-sandbox-init", InitArg},
		Env:        []string{}, // nothing of the gateway's environment
		Stdin:      bytes.NewReader(spec.Stdin),
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: append([]*os.File{specR, statW}, mountFiles...),
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
				unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP,
			UidMappings:                ids(setupHostID, programHostID),
			GidMappings:                ids(setupHostID, programHostID),
			GidMappingsEnableSetgroups: true,
			Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
			Pdeathsig:                  syscall.SIGKILL,
		},
		WaitDelay: killGrace,
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start init: %w", sandbox.ErrSetup, err)
	}
	specR.Close()
	statW.Close()
	go func() {
		_, _ = specW.Write(payload)
		specW.Close()
	}()
	statusCh := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(statR, 1<<20))
		statusCh <- b
	}()
	waitCh := make(chan error, 1)
	go func() { waitCh <- cmd.Wait() }()

	res := &sandbox.Result{}
	backstop := time.NewTimer(spec.Limits.WallTime + killGrace)
	defer backstop.Stop()
	var waitErr error
	select {
	case waitErr = <-waitCh:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		waitErr = <-waitCh
		res.Violations = append(res.Violations, sandbox.Violation{Code: sandbox.ViolationCancelled, Detail: ctx.Err().Error()})
	case <-backstop.C:
		_ = cmd.Process.Kill()
		waitErr = <-waitCh
		res.Violations = append(res.Violations, sandbox.Violation{Code: sandbox.ViolationWallTimeout, Detail: "init did not report in time"})
	}
	res.WallTime = time.Since(start)
	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()

	var st initStatus
	raw := <-statusCh
	if len(raw) == 0 || json.Unmarshal(raw, &st) != nil {
		if len(res.Violations) > 0 { // killed by us: a normal outcome
			res.ExitCode, res.Signal = -1, "SIGKILL"
			return res, nil
		}
		return nil, fmt.Errorf("%w: init exited without status (%v)", sandbox.ErrSetup, waitErr)
	}
	if coverDir != nil {
		if err := collectCoverage(cmd.Process.Pid); err != nil {
			r.log.Warn("collecting sandbox init coverage", "err", err)
		}
	}
	if st.SetupError != "" {
		return nil, fmt.Errorf("%w: %s", sandbox.ErrSetup, st.SetupError)
	}
	res.ExitCode = st.ExitCode
	res.CPUTime = time.Duration(st.CPUNanos)
	res.PeakMemoryBytes = st.MaxRSSKB * 1024
	if st.Signal != 0 {
		res.Signal = unix.SignalName(syscall.Signal(st.Signal))
	}
	res.Violations = append(res.Violations, violations(spec, &st, res)...)
	return res, nil
}

// violations derives the limits a finished run hit from its status.
func violations(spec *sandbox.Spec, st *initStatus, res *sandbox.Result) []sandbox.Violation {
	var v []sandbox.Violation
	add := func(c sandbox.ViolationCode, detail string) {
		v = append(v, sandbox.Violation{Code: c, Detail: detail})
	}
	switch {
	case st.TimedOut:
		add(sandbox.ViolationWallTimeout, fmt.Sprintf("wall-clock limit %s", spec.Limits.WallTime))
	case st.Signal == int(syscall.SIGXCPU) || (st.Signal == int(syscall.SIGKILL) && spec.Limits.CPUTime > 0 && res.CPUTime >= spec.Limits.CPUTime):
		add(sandbox.ViolationCPUTimeout, fmt.Sprintf("CPU limit %s", spec.Limits.CPUTime))
	case st.Signal == int(syscall.SIGXFSZ):
		add(sandbox.ViolationFileSize, fmt.Sprintf("file size limit %d bytes", spec.Limits.FileSizeBytes))
	case st.Signal == int(syscall.SIGSYS):
		add(sandbox.ViolationSeccompKill, "blocked system call")
	case st.Signal != 0:
		add(sandbox.ViolationSignalled, res.Signal)
	}
	if res.StdoutTruncated || res.StderrTruncated {
		add(sandbox.ViolationOutputTrunc, fmt.Sprintf("output beyond %d bytes discarded", max(int64(len(res.Stdout)), int64(len(res.Stderr)))))
	}
	if st.Orphans > 0 {
		add(sandbox.ViolationOrphansKilled, fmt.Sprintf("%d processes left running were killed", st.Orphans))
	}
	return v
}
