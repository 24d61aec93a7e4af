//go:build linux

package native

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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

	"github.com/portcullis/portcullis/internal/sandbox"
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

// maxSpecLine bounds one control message (a run carries its files).
const maxSpecLine = 64 << 20

func initMain() int {
	status := os.NewFile(statusFD, "status")
	var base baseSpec
	var run runSpec
	report := func(st initStatus) int {
		_ = json.NewEncoder(status).Encode(st)
		status.Close()
		if initExitHook != nil {
			initExitHook(base.CoverFD)
		}
		return 0
	}
	// Signals from inside the sandbox must not stop the init: handle them
	// and drop them (the program's handlers are reset before it execs).
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE, syscall.SIGALRM)
	go func() {
		for range sigs {
		}
	}()

	ctl := bufio.NewReaderSize(os.NewFile(ctlFD, "control"), 64<<10)
	if err := readMessage(ctl, &base); err != nil {
		return report(initStatus{SetupError: "read base spec: " + err.Error()})
	}
	if err := baseSetup(&base); err != nil {
		return report(initStatus{SetupError: err.Error()})
	}
	// A warm init waits here until it is given a run (or killed).
	if err := readMessage(ctl, &run); err != nil {
		return report(initStatus{SetupError: "read run spec: " + err.Error()})
	}
	plan, abi, err := runSetup(&base, &run)
	if err != nil {
		return report(initStatus{SetupError: err.Error()})
	}
	st := supervise(plan, &run)
	st.LandlockABI = abi
	// Every process is gone; close the output pipes before reporting, so
	// that the gateway has the whole output as soon as it has the status
	// and need not wait for this process and its namespaces to be torn
	// down.
	for fd := 0; fd <= 2; fd++ {
		unix.Close(fd)
	}
	return report(st)
}

func readMessage(r *bufio.Reader, v any) error {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxSpecLine {
			return errors.New("message too large")
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
	return json.Unmarshal(line, v)
}

// The new root is a tmpfs built on /tmp (every mount source is an open
// descriptor, so nothing mounted here can hide one) and then pivoted into.
const newRoot = "/tmp"

// baseSetup builds everything that does not depend on the run: mounts,
// /dev, /proc, /etc, the private /tmp and work dir (resized per run), the
// pivot into the new root, host name, no_new_privs, an empty capability
// bounding set, and the Landlock rulesets. A warm init has done all this
// before its run arrives. It runs as uid 0 of the new user namespace,
// which holds capabilities only over the namespaces created with it.
func baseSetup(b *baseSpec) error {
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
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=16m,mode=0755"); err != nil {
		return fmt.Errorf("mount root tmpfs: %w", err)
	}
	// Shallow targets first, so deeper ones land inside them; at equal
	// depth the sandbox's own tmpfs mounts (/tmp, the work dir) go first,
	// so a mount at /work/data lands inside the work dir, not under it.
	for _, m := range sortedMounts(b.Mounts, b.WorkDir) {
		if m.tmpfsMode != 0 {
			// Sized per run (runSetup remounts with the run's size).
			if err := mountTmpfs(m.Target, 1<<20, m.tmpfsMode); err != nil {
				return err
			}
			continue
		}
		target, err := inRoot(m.Target)
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
	if err := setupDev(devices); err != nil {
		return err
	}
	if err := setupProc(); err != nil {
		return err
	}
	if err := writeEtc(hostname); err != nil {
		return err
	}
	lastCap, err := readLastCap()
	if err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(newRoot, b.WorkDir), SandboxUID, SandboxUID); err != nil {
		return fmt.Errorf("chown work dir: %w", err)
	}
	if err := pivot(); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := unix.Setdomainname([]byte(hostname)); err != nil {
		return fmt.Errorf("setdomainname: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("setrlimit core: %w", err)
	}
	for c := 0; c <= lastCap; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// The Landlock rulesets for both kinds of level, ready before the run.
	for i, execute := range []bool{false, true} {
		fd, abi, err := buildLandlock(landlockFor(b, execute))
		if err != nil {
			return err
		}
		rulesets[i], landlockVersion = fd, abi
	}
	return nil
}

// hostname is the sandbox's host and domain name.
const hostname = "sandbox"

// rulesets are the prepared Landlock rulesets: [0] without execute rights
// on mounts (maximum level), [1] with. landlockVersion is the ABI used.
var (
	rulesets        = [2]int{-1, -1}
	landlockVersion int
)

// mountOp is a mount, or (tmpfsMode != 0) the /tmp or work-dir tmpfs.
type mountOp struct {
	initMount
	tmpfsMode os.FileMode
}

// sortedMounts returns the mounts plus the /tmp and work-dir tmpfs mounts
// in mount order: shallow first, tmpfs first at equal depth.
func sortedMounts(mounts []initMount, workDir string) []mountOp {
	ops := []mountOp{
		{initMount: initMount{Target: "/tmp"}, tmpfsMode: 0o1777},
		{initMount: initMount{Target: workDir}, tmpfsMode: 0o700},
	}
	for _, m := range mounts {
		ops = append(ops, mountOp{initMount: m})
	}
	slices.SortStableFunc(ops, func(a, b mountOp) int {
		return strings.Count(filepath.Clean(a.Target), "/") - strings.Count(filepath.Clean(b.Target), "/")
	})
	return ops
}

// runSetup finishes the sandbox for one run (the root is already pivoted)
// and prepares the program's start: sizes of /tmp and the work dir, the
// run's files, the egress bridge, the Landlock ruleset and the seccomp
// filter.
func runSetup(b *baseSpec, r *runSpec) (*execPlan, int, error) {
	workDir := b.WorkDir
	if r.Dir == "" {
		r.Dir = workDir
	}
	for _, t := range []struct {
		path string
		size int64
	}{{"/tmp", r.TmpSize}, {workDir, r.WorkSize}} {
		if t.size <= 0 {
			continue
		}
		if err := unix.Mount("", t.path, "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, "size="+strconv.FormatInt(t.size, 10)); err != nil {
			return nil, 0, fmt.Errorf("size %s: %w", t.path, err)
		}
	}
	for _, f := range r.Files {
		p := filepath.Join(workDir, f.Name)
		if err := os.WriteFile(p, f.Data, os.FileMode(f.Mode&0o777)); err != nil {
			return nil, 0, fmt.Errorf("write %s: %w", f.Name, err)
		}
		if err := os.Chown(p, SandboxUID, SandboxUID); err != nil {
			return nil, 0, fmt.Errorf("chown %s: %w", f.Name, err)
		}
	}
	if b.ProxyFD > 0 {
		if err := startEgressBridge(b.ProxyFD); err != nil {
			return nil, 0, err
		}
	}
	level, err := sandbox.ParseLevel(r.Level)
	if err != nil {
		return nil, 0, err
	}
	llFD := rulesets[1]
	if level == sandbox.LevelMaximum {
		llFD = rulesets[0]
		// Only the program itself and its ELF interpreter may be executed.
		if llFD >= 0 && len(r.Argv) > 0 {
			paths := []string{r.Argv[0]}
			if interp := elfInterpreter(r.Argv[0]); interp != "" {
				paths = append(paths, interp)
			}
			for _, p := range paths {
				if err := addLandlockPath(llFD, landlockVersion, p, unix.LANDLOCK_ACCESS_FS_EXECUTE|unix.LANDLOCK_ACCESS_FS_READ_FILE); err != nil {
					return nil, 0, err
				}
			}
		}
	}
	var filter []unix.SockFilter
	if !r.NoSeccomp {
		if filter, err = decodeFilter(r.Filter); err != nil {
			return nil, 0, err
		}
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		return nil, 0, err
	}
	if b.PidsMaxFD > 0 && r.Pids > 0 {
		if err := setPidsMax(b.PidsMaxFD, r.Pids); err != nil {
			return nil, 0, err
		}
	}
	if err := closeExtraFDs(); err != nil {
		return nil, 0, err
	}
	plan, err := newExecPlan(r.Argv, r.Env, r.Dir, SandboxUID, SandboxUID, llFD, filter, pipe[1])
	if err != nil {
		return nil, 0, err
	}
	plan.errRead = pipe[0]
	plan.rlimits = programRlimits(r)
	return plan, landlockVersion, nil
}

// landlockFor is the program's Landlock policy: read (and, if execute,
// execute) what is mounted read-only; read and write the writable mounts,
// /tmp and the work dir; the devices; nothing else. (At maximum the
// program's own binary and its ELF interpreter are added at run time.)
// TCP: none, or only the egress bridge's port.
func landlockFor(b *baseSpec, execute bool) landlockPolicy {
	exec := uint64(0)
	if execute {
		exec = unix.LANDLOCK_ACCESS_FS_EXECUTE
	}
	var p landlockPolicy
	for _, m := range b.Mounts {
		if m.Link != "" {
			continue
		}
		access := uint64(fsRead) | exec
		if m.Writable {
			access |= fsWrite
		}
		p.rules = append(p.rules, landlockRule{path: m.Target, access: access})
	}
	rw := uint64(fsRead|fsWrite) | exec
	p.rules = append(p.rules,
		landlockRule{path: "/tmp", access: rw},
		landlockRule{path: b.WorkDir, access: rw},
		landlockRule{path: "/etc", access: fsRead},
		landlockRule{path: "/proc", access: fsRead},
		landlockRule{path: "/dev", access: fsRead | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV},
	)
	if b.ProxyFD > 0 {
		p.connectPorts = []uint16{egressPort}
	}
	return p
}

// elfInterpreter returns the PT_INTERP of an ELF executable, if any.
func elfInterpreter(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return ""
			}
			return strings.TrimRight(string(b), "\x00")
		}
	}
	return ""
}

// inRoot returns newRoot+target after checking that no component of
// target below the root is a symlink (so creating it cannot escape the
// new root) and creating missing parents.
func inRoot(target string) (string, error) {
	clean := filepath.Clean(target)
	if !filepath.IsAbs(clean) || clean == "/" {
		return "", fmt.Errorf("bad mount target %q", target)
	}
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	cur := newRoot
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
			return "", fmt.Errorf("mount target %s crosses a symlink at %s", target, strings.TrimPrefix(cur, newRoot))
		case !fi.IsDir():
			return "", fmt.Errorf("mount target %s: %s is not a directory", target, strings.TrimPrefix(cur, newRoot))
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

func mountTmpfs(path string, size int64, mode os.FileMode) error {
	target, err := inRoot(path)
	if err != nil {
		return err
	}
	if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("mkdir %s: %w", path, err)
	}
	data := fmt.Sprintf("size=%d,mode=%s", size, strconv.FormatUint(uint64(mode&0o7777), 8))
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return fmt.Errorf("mount tmpfs %s: %w", path, err)
	}
	return nil
}

func setupDev(devices map[string]int) error {
	dev := filepath.Join(newRoot, "dev")
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
func setupProc() error {
	p := filepath.Join(newRoot, "proc")
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
func writeEtc(hostname string) error {
	etc := filepath.Join(newRoot, "etc")
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
		p, err := inRoot("/etc/" + name)
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

// pivot makes newRoot the new "/" and detaches the old root entirely,
// then makes the root filesystem read-only.
func pivot() error {
	if err := unix.Chdir(newRoot); err != nil {
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

// setPidsMax writes pids.max = the init's own threads + the program's
// budget, so that the program's first task beyond its budget is refused by
// the cgroup (and counted in pids.events). The init's threads are all
// started by now and idle ones are reused; should its runtime still need a
// new thread while the program holds the whole budget, the init fails and
// the run with it (fail closed).
func setPidsMax(fd, budget int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("count init threads: %w", err)
	}
	v := strconv.Itoa(len(tasks) + budget)
	if _, err := unix.Pwrite(fd, []byte(v), 0); err != nil {
		return fmt.Errorf("pids.max: %w", err)
	}
	return nil
}

// nprocSlack puts RLIMIT_NPROC above the budget: the rlimit is checked
// before the cgroup, and only the cgroup counts what it refuses. With a
// slack of 2, a fork bomb racing its own exits was sometimes refused by
// the rlimit first (about 1 run in 60 while other sandboxes ran, seen in
// CI): the run then reported no PIDS_EXHAUSTED. The rlimit only backs the
// cgroup up here; with 32 it stays a bound should the cgroup fail, and
// 200 runs under the same load all reported the violation.
const nprocSlack = 32

// programRlimits returns the resource limits the program sets on itself
// just before exec (see childAfterFork). The init only sets RLIMIT_CORE=0,
// which the program inherits.
func programRlimits(r *runSpec) []rlimitSetting {
	var out []rlimitSetting
	add := func(res int, cur, max uint64) {
		out = append(out, rlimitSetting{resource: uintptr(res), limit: unix.Rlimit{Cur: cur, Max: max}})
	}
	add(unix.RLIMIT_CORE, 0, 0)
	if r.CPUSecs > 0 {
		add(unix.RLIMIT_CPU, r.CPUSecs, r.CPUSecs+1)
	}
	if r.FSize > 0 {
		add(unix.RLIMIT_FSIZE, r.FSize, r.FSize)
	}
	if r.NoFile > 0 {
		add(unix.RLIMIT_NOFILE, r.NoFile, r.NoFile)
	}
	if r.NProc > 0 {
		// A backstop: pids.max (set by setPidsMax) refuses first, counted
		// in pids.events; without cgroups (degraded) this is the limit.
		add(unix.RLIMIT_NPROC, r.NProc, r.NProc)
	}
	if r.ASBytes > 0 {
		add(unix.RLIMIT_AS, r.ASBytes, r.ASBytes)
	}
	return out
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
// (The seccomp filter refuses unshare and clone with namespace flags too.)
func disableNestedUserns() error {
	if err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0\n"), 0); err != nil {
		return fmt.Errorf("disable nested user namespaces: %w", err)
	}
	return nil
}

// readLastCap reads the highest capability number (before pivot_root,
// while the host's /proc with sys/ is still visible).
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

// egressPort is where the egress bridge listens inside the sandbox.
const egressPort = 3128

// startEgressBridge brings the loopback interface up, listens on
// 127.0.0.1:egressPort and relays every connection to the gateway's egress
// proxy through the socket passed as fd (connected via /proc/self/fd/N:
// the host path is not visible in here). Nothing else leaves the sandbox.
func startEgressBridge(fd int) error {
	if err := loopbackUp(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(egressPort))
	if err != nil {
		return fmt.Errorf("egress bridge: %w", err)
	}
	target := "/proc/self/fd/" + strconv.Itoa(fd)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go relay(c, target)
		}
	}()
	return nil
}

func relay(c net.Conn, target string) {
	defer c.Close()
	up, err := net.DialTimeout("unix", target, 10*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// supervise starts the program and reaps every process in the namespace
// until none is left. When the program exits (or the deadline passes)
// everything else is killed: nothing outlives the run.
func supervise(plan *execPlan, r *runSpec) initStatus {
	st := initStatus{}
	start := time.Now()
	pid, errno := forkExec(plan)
	unix.Close(plan.errPipe)
	if errno != 0 {
		st.SetupError = fmt.Sprintf("fork: %v", errno)
		return st
	}
	var report [8]byte
	if n, _ := unix.Read(plan.errRead, report[:]); n == 8 {
		step := uint32(report[0]) | uint32(report[1])<<8 | uint32(report[2])<<16 | uint32(report[3])<<24
		code := syscall.Errno(uint32(report[4]) | uint32(report[5])<<8 | uint32(report[6])<<16 | uint32(report[7])<<24)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
		st.SetupError = fmt.Sprintf("start %s: %s: %v", r.Argv[0], stepName(step), code)
		return st
	}
	unix.Close(plan.errRead)
	st.Started = true
	timedOut := make(chan struct{})
	timer := time.AfterFunc(r.Wall-time.Since(start), func() {
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

func stepName(step uint32) string {
	switch step {
	case stepGroups, stepGID, stepUID:
		return "drop to the sandbox user"
	case stepPdeathsig:
		return "parent-death signal"
	case stepRlimit:
		return "resource limits"
	case stepChdir:
		return "chdir"
	case stepLandlock:
		return "landlock"
	case stepSeccomp:
		return "seccomp"
	case stepExec:
		return "exec"
	default:
		return "step " + strconv.Itoa(int(step))
	}
}
