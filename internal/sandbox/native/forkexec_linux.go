//go:build linux

package native

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The init starts the program with its own fork and exec, because what
// must happen between them is beyond os/exec: drop to the sandbox user,
// set its resource limits, apply Landlock and the seccomp filter — in the child
// only, so that the init itself (which has to fork) is not bound by a
// filter that forbids forking. The child runs nothing but raw system calls
// on memory prepared before the fork, the same discipline as the standard
// library's forkAndExecInChild: no allocation, no stack growth, no race
// instrumentation, signals blocked until the handlers are reset.

// execPlan is everything the child needs, built before fork.
type execPlan struct {
	path     *byte
	argv     []*byte // nil-terminated
	envv     []*byte // nil-terminated
	dir      *byte
	uid, gid uintptr
	landlock int // ruleset descriptor, -1 for none
	filter   *unix.SockFprog
	errPipe  int // write end; the child reports an errno here and exits
	errRead  int // read end, for the init
	rlimits  []rlimitSetting

	oomPath  *byte   // /proc/self/oom_score_adj
	oomValue [4]byte // "1000": the program, not the init, is the OOM killer's choice
	sigDfl   sigaction
	allSigs  uint64
	noSigs   uint64
}

// rlimitSetting is one resource limit the child sets on itself.
type rlimitSetting struct {
	resource uintptr
	limit    unix.Rlimit
}

// sigaction is the kernel's struct sigaction on amd64 and arm64.
type sigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// childError codes sent on errPipe: step number and errno.
const (
	stepGroups = iota + 1
	stepGID
	stepUID
	stepPdeathsig
	stepRlimit
	stepChdir
	stepLandlock
	stepSeccomp
	stepExec
)

func bytePtrs(ss []string) ([]*byte, error) {
	out := make([]*byte, len(ss)+1)
	for i, s := range ss {
		p, err := syscall.BytePtrFromString(s)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// newExecPlan prepares argv, env and the descriptors.
func newExecPlan(argv, env []string, dir string, uid, gid int, landlock int, filter []unix.SockFilter, errPipe int) (*execPlan, error) {
	p := &execPlan{uid: uintptr(uid), gid: uintptr(gid), landlock: landlock, errPipe: errPipe}
	var err error
	if p.path, err = syscall.BytePtrFromString(argv[0]); err != nil {
		return nil, err
	}
	if p.argv, err = bytePtrs(argv); err != nil {
		return nil, err
	}
	if p.envv, err = bytePtrs(env); err != nil {
		return nil, err
	}
	if p.dir, err = syscall.BytePtrFromString(dir); err != nil {
		return nil, err
	}
	p.allSigs = ^uint64(0)
	if p.oomPath, err = syscall.BytePtrFromString("/proc/self/oom_score_adj"); err != nil {
		return nil, err
	}
	copy(p.oomValue[:], "1000")
	if len(filter) > 0 {
		p.filter = &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	}
	return p, nil
}

// forkExec starts the program. It must run on a locked OS thread. It
// returns the child's pid; failures inside the child arrive on errPipe.
//
//go:norace
//go:nocheckptr
//go:noinline
func forkExec(p *execPlan) (int, syscall.Errno) {
	var old uint64
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&p.allSigs)),
		uintptr(unsafe.Pointer(&old)), 8, 0, 0)
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 || pid != 0 {
		syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
		return int(pid), errno
	}
	childAfterFork(p)
	return 0, 0 // not reached
}

// childAfterFork runs in the child. Every call is a raw system call.
//
//go:norace
//go:nocheckptr
//go:nosplit
func childAfterFork(p *execPlan) {
	// Reset every handler the Go runtime installed (signals stay blocked
	// meanwhile), so that nothing of the init's runtime can run here.
	for sig := uintptr(1); sig <= 64; sig++ {
		if sig == uintptr(syscall.SIGKILL) || sig == uintptr(syscall.SIGSTOP) {
			continue
		}
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, sig, uintptr(unsafe.Pointer(&p.sigDfl)), 0, 8, 0, 0)
	}
	var step uintptr
	var errno syscall.Errno
	// Raising one's own oom_score_adj needs no privilege (best effort).
	atFDCWD := unix.AT_FDCWD
	if fd, _, e := syscall.RawSyscall6(syscall.SYS_OPENAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(p.oomPath)),
		uintptr(syscall.O_WRONLY|syscall.O_CLOEXEC), 0, 0, 0); e == 0 {
		syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p.oomValue[0])), uintptr(len(p.oomValue)))
		syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
	}
	if _, _, errno = syscall.RawSyscall(syscall.SYS_SETGROUPS, 0, 0, 0); errno != 0 {
		step = stepGroups
		goto fail
	}
	if _, _, errno = syscall.RawSyscall(syscall.SYS_SETRESGID, p.gid, p.gid, p.gid); errno != 0 {
		step = stepGID
		goto fail
	}
	if _, _, errno = syscall.RawSyscall(syscall.SYS_SETRESUID, p.uid, p.uid, p.uid); errno != 0 {
		step = stepUID
		goto fail
	}
	if _, _, errno = syscall.RawSyscall6(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0, 0); errno != 0 {
		step = stepPdeathsig
		goto fail
	}
	// Resource limits bind the program only (not the init, which must keep
	// forking and reading /proc). RLIMIT_NPROC is counted per user in this
	// user namespace, and the program holds no capability exempting it.
	for i := 0; i < len(p.rlimits); i++ {
		if _, _, errno = syscall.RawSyscall6(syscall.SYS_PRLIMIT64, 0, p.rlimits[i].resource,
			uintptr(unsafe.Pointer(&p.rlimits[i].limit)), 0, 0, 0); errno != 0 {
			step = stepRlimit
			goto fail
		}
	}
	if _, _, errno = syscall.RawSyscall(syscall.SYS_CHDIR, uintptr(unsafe.Pointer(p.dir)), 0, 0); errno != 0 {
		step = stepChdir
		goto fail
	}
	if p.landlock >= 0 {
		if _, _, errno = syscall.RawSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(p.landlock), 0, 0); errno != 0 {
			step = stepLandlock
			goto fail
		}
	}
	if p.filter != nil {
		if _, _, errno = syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(p.filter))); errno != 0 {
			step = stepSeccomp
			goto fail
		}
	}
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&p.noSigs)), 0, 8, 0, 0)
	_, _, errno = syscall.RawSyscall(syscall.SYS_EXECVE, uintptr(unsafe.Pointer(p.path)),
		uintptr(unsafe.Pointer(&p.argv[0])), uintptr(unsafe.Pointer(&p.envv[0])))
	step = stepExec
fail:
	var report [2]uint32
	report[0], report[1] = uint32(step), uint32(errno)
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(p.errPipe), uintptr(unsafe.Pointer(&report[0])), 8)
	for {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 127, 0, 0)
	}
}
