//go:build linux

package native

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Main runs the sandbox init and exits if this process was started as
// one (os.Args[1] == InitArg); otherwise it returns immediately. Call it
// first thing in main and in TestMain of packages that run sandboxes.
func Main() {
	if len(os.Args) < 2 || os.Args[1] != InitArg {
		return
	}
	// prctl(NO_NEW_PRIVS) and the capability bounding set are per thread;
	// the program is forked from this same thread.
	runtime.LockOSThread()
	// Exit directly: the init has nothing to flush, and os.Exit's exit
	// hooks would, in a -race build, sleep a second (GORACE
	// atexit_sleep_ms) in every sandbox.
	unix.Exit(initMain())
}

const (
	specFD   = 3
	statusFD = 4
)

func initMain() int {
	status := os.NewFile(statusFD, "status")
	var spec initSpec
	report := func(st initStatus) int {
		_ = json.NewEncoder(status).Encode(st)
		status.Close()
		if initExitHook != nil {
			initExitHook(&spec)
		}
		return 0
	}
	// Signals from inside the sandbox must not stop the init: handle them
	// (a handled signal resets to default in the exec'd program, unlike an
	// ignored one) and drop them.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE, syscall.SIGALRM)
	go func() {
		for range sigs {
		}
	}()

	specFile := os.NewFile(specFD, "spec")
	if err := json.NewDecoder(io.LimitReader(specFile, 64<<20)).Decode(&spec); err != nil {
		return report(initStatus{SetupError: "read spec: " + err.Error()})
	}
	specFile.Close()
	if err := setup(&spec); err != nil {
		return report(initStatus{SetupError: err.Error()})
	}
	return report(supervise(&spec))
}

// setup builds the sandbox's filesystem and drops privileges. It runs as
// uid 0 of the new user namespace, which holds capabilities only over the
// namespaces created with it.
func setup(spec *initSpec) error {
	lastCap, err := readLastCap()
	if err != nil {
		return err
	}
	if err := disableNestedUserns(); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	devices := map[string]int{}
	for _, d := range []string{"null", "zero", "random", "urandom"} {
		fd, err := unix.Open("/dev/"+d, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/%s: %w", d, err)
		}
		devices[d] = fd
	}

	// The new root is built on /tmp; mount sources are already open
	// descriptors, so nothing mounted here can hide one.
	const root = "/tmp"
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=16m,mode=0755"); err != nil {
		return fmt.Errorf("mount root tmpfs: %w", err)
	}
	// Shallow targets first, so deeper ones land inside them. At equal
	// depth the sandbox's own tmpfs mounts (/tmp, the work dir) go first:
	// a mount at /work/data or /tmp/x must land inside them, not be
	// hidden under them.
	type mountOp struct {
		initMount
		tmpfs   bool
		tmpSize int64
		tmpMode os.FileMode
	}
	ops := []mountOp{
		{initMount: initMount{Target: "/tmp"}, tmpfs: true, tmpSize: spec.TmpSize, tmpMode: 0o1777},
		{initMount: initMount{Target: spec.Dir}, tmpfs: true, tmpSize: spec.WorkSize, tmpMode: 0o700},
	}
	for _, m := range spec.Mounts {
		ops = append(ops, mountOp{initMount: m})
	}
	slices.SortStableFunc(ops, func(a, b mountOp) int {
		return strings.Count(filepath.Clean(a.Target), "/") - strings.Count(filepath.Clean(b.Target), "/")
	})
	for _, m := range ops {
		if m.tmpfs {
			if err := mountTmpfs(root, m.Target, m.tmpSize, m.tmpMode); err != nil {
				return err
			}
			continue
		}
		target, err := inRoot(root, m.Target)
		if err != nil {
			return err
		}
		if m.Link != "" {
			if err := os.Symlink(m.Link, target); err != nil {
				return fmt.Errorf("symlink %s: %w", m.Target, err)
			}
			continue
		}
		if err := attachFD(m.FD, target, m.IsDir); err != nil {
			return fmt.Errorf("mount %s: %w", m.Target, err)
		}
		unix.Close(m.FD)
	}
	if err := setupDev(root, devices); err != nil {
		return err
	}
	if err := setupProc(root); err != nil {
		return err
	}
	work := filepath.Join(root, spec.Dir)
	if err := os.Chown(work, SandboxUID, SandboxUID); err != nil {
		return fmt.Errorf("chown work dir: %w", err)
	}
	for _, f := range spec.Files {
		p := filepath.Join(work, f.Name)
		if err := os.WriteFile(p, f.Data, os.FileMode(f.Mode&0o777)); err != nil {
			return fmt.Errorf("write %s: %w", f.Name, err)
		}
		if err := os.Chown(p, SandboxUID, SandboxUID); err != nil {
			return fmt.Errorf("chown %s: %w", f.Name, err)
		}
	}
	if err := writeEtc(root, spec.Hostname); err != nil {
		return err
	}
	if err := pivot(root); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := unix.Setdomainname([]byte(spec.Hostname)); err != nil {
		return fmt.Errorf("setdomainname: %w", err)
	}
	if err := setRlimits(spec); err != nil {
		return err
	}
	for c := 0; c <= lastCap; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return closeExtraFDs()
}

// inRoot returns root+target after checking that no component of target
// below root is a symlink (so creating it cannot escape the new root) and
// creating missing parents.
func inRoot(root, target string) (string, error) {
	clean := filepath.Clean(target)
	if !filepath.IsAbs(clean) || clean == "/" {
		return "", fmt.Errorf("bad mount target %q", target)
	}
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	cur := root
	for _, p := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, p)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return "", fmt.Errorf("mkdir %s: %w", cur, err)
			}
		case err != nil:
			return "", err
		case fi.Mode()&os.ModeSymlink != 0:
			return "", fmt.Errorf("mount target %s crosses a symlink at %s", target, strings.TrimPrefix(cur, root))
		case !fi.IsDir():
			return "", fmt.Errorf("mount target %s: %s is not a directory", target, strings.TrimPrefix(cur, root))
		}
	}
	return filepath.Join(cur, parts[len(parts)-1]), nil
}

// attachFD moves the detached mount tree fd (prepared by the parent with
// its flags already set: read-only unless writable, nosuid, nodev) onto
// target, created as an empty dir or file. Once inside this user
// namespace's mount namespace its flags are locked: the sandbox cannot
// remount it writable.
func attachFD(fd int, target string, isDir bool) error {
	if isDir {
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	} else {
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	return unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

func mountTmpfs(root, path string, size int64, mode os.FileMode) error {
	target, err := inRoot(root, path)
	if err != nil {
		return err
	}
	if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("mkdir %s: %w", path, err)
	}
	data := fmt.Sprintf("size=%d,mode=%s", size, tmpfsMode(mode))
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return fmt.Errorf("mount tmpfs %s: %w", path, err)
	}
	return nil
}

// tmpfsMode renders mode as the octal string tmpfs expects ("1777").
func tmpfsMode(mode os.FileMode) string {
	m := uint32(mode & 0o7777)
	return strconv.FormatUint(uint64(m), 8)
}

func setupDev(root string, devices map[string]int) error {
	dev := filepath.Join(root, "dev")
	if err := os.Mkdir(dev, 0o755); err != nil {
		return fmt.Errorf("mkdir /dev: %w", err)
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,mode=0755"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for name, fd := range devices {
		target := filepath.Join(dev, name)
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount("/proc/self/fd/"+strconv.Itoa(fd), target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", name, err)
		}
		unix.Close(fd)
	}
	for name, link := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(link, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return unix.Mount("", dev, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "")
}

// setupProc mounts a fresh procfs for the sandbox's PID namespace, showing
// only process directories (subset=pid: no /proc/sys, /proc/sysrq-trigger,
// /proc/kcore ...) where the kernel supports it.
func setupProc(root string) error {
	p := filepath.Join(root, "proc")
	if err := os.Mkdir(p, 0o555); err != nil {
		return fmt.Errorf("mkdir /proc: %w", err)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount("proc", p, "proc", flags, "subset=pid"); err == nil {
		return nil
	}
	if err := unix.Mount("proc", p, "proc", flags, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return nil
}

// writeEtc creates a minimal /etc: no host users, groups, hostname or
// resolver configuration reach the sandbox.
func writeEtc(root, hostname string) error {
	etc := filepath.Join(root, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	files := map[string]string{
		"passwd":   "root:x:0:0:root:/:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n",
		"group":    "root:x:0:\nnogroup:x:65534:\n",
		"hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
		"hostname": hostname + "\n",
	}
	for name, content := range files {
		p, err := inRoot(root, "/etc/"+name)
		if err != nil {
			return err
		}
		if _, err := os.Lstat(p); err == nil {
			continue // mounted from the host on purpose
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pivot makes root the new "/" and detaches the old root entirely, then
// makes the root filesystem read-only.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("remount / read-only: %w", err)
	}
	return nil
}

func setRlimits(spec *initSpec) error {
	set := func(res int, cur, max uint64) error {
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: cur, Max: max}); err != nil {
			return fmt.Errorf("setrlimit %d: %w", res, err)
		}
		return nil
	}
	if err := set(unix.RLIMIT_CORE, 0, 0); err != nil {
		return err
	}
	if spec.CPUSecs > 0 {
		if err := set(unix.RLIMIT_CPU, spec.CPUSecs, spec.CPUSecs+1); err != nil {
			return err
		}
	}
	if spec.FSize > 0 {
		if err := set(unix.RLIMIT_FSIZE, spec.FSize, spec.FSize); err != nil {
			return err
		}
	}
	if spec.NoFile > 0 {
		if err := set(unix.RLIMIT_NOFILE, spec.NoFile, spec.NoFile); err != nil {
			return err
		}
	}
	return nil
}

// closeExtraFDs marks every descriptor above stderr close-on-exec so that
// nothing the init inherited or opened reaches the program.
func closeExtraFDs() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list fds: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}

// disableNestedUserns sets this user namespace's user.max_user_namespaces
// to 0, so the program cannot create user namespaces of its own (as
// bubblewrap's --disable-userns does). In one it would hold every
// capability over new mount and PID namespaces, mount a full procfs
// (the kernel counts the sandbox's subset=pid /proc as fully visible)
// and reach kernel interfaces the sandbox hides. The limit belongs to
// this namespace (the host's is untouched) and binds every process in it;
// it is written while the host's /proc, which has sys/, is still mounted.
func disableNestedUserns() error {
	if err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0\n"), 0); err != nil {
		return fmt.Errorf("disable nested user namespaces: %w", err)
	}
	return nil
}

func readLastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse cap_last_cap: %w", err)
	}
	return n, nil
}

// supervise starts the program and reaps every process in the namespace
// until none is left. When the program exits (or the deadline passes)
// everything else is killed: nothing outlives the run.
func supervise(spec *initSpec) initStatus {
	st := initStatus{}
	attr := &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: SandboxUID, Gid: SandboxUID, Groups: []uint32{}},
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	start := time.Now()
	pid, err := syscall.ForkExec(spec.Argv[0], spec.Argv, attr)
	if err != nil {
		st.SetupError = fmt.Sprintf("start %s: %v", spec.Argv[0], err)
		return st
	}
	st.Started = true
	timedOut := make(chan struct{})
	timer := time.AfterFunc(spec.Wall-time.Since(start), func() {
		close(timedOut)
		_ = unix.Kill(-1, unix.SIGKILL) // PID 1 of the namespace: kills all but itself
	})
	defer timer.Stop()
	mainDone := false
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		wpid, err := unix.Wait4(-1, &ws, 0, &ru)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil { // ECHILD: nothing left
			break
		}
		st.CPUNanos += ru.Utime.Nano() + ru.Stime.Nano()
		st.MaxRSSKB = max(st.MaxRSSKB, ru.Maxrss)
		if wpid == pid {
			mainDone = true
			if ws.Signaled() {
				st.ExitCode, st.Signal = -1, int(ws.Signal())
			} else {
				st.ExitCode = ws.ExitStatus()
			}
			_ = unix.Kill(-1, unix.SIGKILL)
		} else if mainDone {
			st.Orphans++
		}
	}
	select {
	case <-timedOut:
		st.TimedOut = true
	default:
	}
	return st
}
