//go:build linux

package native

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// The seccomp filters, one per security level (DESIGN §5). Every level
// kills the process (SIGSYS, reported as SECCOMP_KILL) on:
//   - a system call of another architecture or the x32 ABI;
//   - escape-class calls no sandboxed tool needs: namespaces (unshare,
//     setns, clone with CLONE_NEW* flags), the mount family, ptrace, bpf,
//     perf_event_open, userfaultfd, the keyring, kexec, reboot, module
//     loading, process_vm_*, open_by_handle_at, ioperm/iopl, swap, acct,
//     quotactl, syslog, clock setting, TIOCSTI/TIOCLINUX ioctls, and
//     AF_PACKET, AF_VSOCK or raw sockets.
// It answers ENOSYS for clone3 (libc then falls back to clone, whose flags
// the filter can inspect) and io_uring (runtimes fall back to epoll), and
// EAFNOSUPPORT for socket families other than unix, inet, inet6, netlink.
//
// maximum and strict allow only the base list below, and everything else
// fails with EPERM; maximum also refuses fork (clone without
// CLONE_THREAD, fork, vfork). standard allows the base list plus SysV/POSIX
// IPC and memory-policy calls. minimal allows everything not killed.

// nsFlags are the CLONE_NEW* flags (plus CLONE_NEWTIME).
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

var killList = []string{
	"unshare", "setns",
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
	"move_mount", "open_tree", "open_tree_attr", "mount_setattr",
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
	"bpf", "perf_event_open", "userfaultfd",
	"keyctl", "add_key", "request_key",
	"kexec_load", "kexec_file_load", "reboot",
	"init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms",
	"ioperm", "iopl", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog",
	"open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "nfsservctl", "vhangup",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime",
	"sethostname", "setdomainname", "uselib", "vm86", "vm86old", "_sysctl",
	"fanotify_init", "memfd_secret", "lsm_set_self_attr",
}

var enosysList = []string{"clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"}

// baseList is what maximum and strict allow (with clone, socket and ioctl
// handled by argument).
var baseList = []string{
	// files and directories
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
	"open", "openat", "openat2", "creat", "close", "close_range", "lseek", "_llseek",
	"stat", "fstat", "lstat", "newfstatat", "statx", "fstatfs", "statfs", "stat64", "fstat64", "lstat64", "fstatat64", "statfs64", "fstatfs64",
	"access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64", "getcwd", "chdir", "fchdir",
	"mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
	"chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "umask",
	"truncate", "ftruncate", "fallocate", "fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "fadvise64", "readahead",
	"utime", "utimes", "utimensat", "futimesat", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock",
	"pipe", "pipe2", "select", "_newselect", "pselect6", "poll", "ppoll",
	"epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
	"eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create", "timerfd_settime", "timerfd_gettime",
	"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
	"sendfile", "sendfile64", "splice", "tee", "vmsplice", "copy_file_range", "memfd_create",
	"getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
	"setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
	"getxattrat", "listxattrat", "setxattrat", "removexattrat", "cachestat",
	// memory
	"mmap", "mmap2", "munmap", "mprotect", "mremap", "brk", "madvise", "mlock", "mlock2", "munlock",
	"mlockall", "munlockall", "mincore", "membarrier", "msync", "pkey_alloc", "pkey_free", "pkey_mprotect",
	"map_shadow_stack", "mseal",
	// processes, threads, signals
	"execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill", "tgkill", "tkill",
	"getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid", "getresgid",
	"getuid32", "geteuid32", "getgid32", "getegid32", "getgroups32", "getresuid32", "getresgid32",
	"setsid", "setpgid", "getpgid", "getpgrp", "getsid", "set_tid_address", "set_robust_list", "get_robust_list",
	"rseq", "futex", "futex_time64", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
	"arch_prctl", "prctl", "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
	"sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
	"sched_rr_get_interval", "sched_getattr", "sched_setattr", "getpriority", "setpriority", "ioprio_get", "ioprio_set",
	"getrlimit", "ugetrlimit", "setrlimit", "prlimit64", "getrusage", "times", "sysinfo", "uname", "capget", "capset",
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending", "rt_sigtimedwait",
	"rt_sigtimedwait_time64", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "pause", "alarm",
	"pidfd_open", "pidfd_send_signal", "restart_syscall", "getcpu", "personality",
	// time
	"nanosleep", "clock_nanosleep", "clock_nanosleep_time64", "clock_gettime", "clock_gettime64", "clock_getres",
	"clock_getres_time64", "gettimeofday", "time", "getitimer", "setitimer", "timer_create", "timer_settime",
	"timer_settime64", "timer_gettime", "timer_gettime64", "timer_getoverrun", "timer_delete", "getrandom",
	// sockets (socket itself is filtered by family above)
	"socketpair", "connect", "bind", "listen", "accept", "accept4", "getsockname", "getpeername",
	"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "setsockopt", "getsockopt",
	// further restriction is always allowed
	"seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	"lsm_get_self_attr", "lsm_list_modules",
}

// standardExtra is added at the standard level: IPC within the sandbox's
// own IPC namespace and NUMA memory policy.
var standardExtra = []string{
	"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd", "msgrcv", "msgctl",
	"mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
	"mbind", "set_mempolicy", "get_mempolicy", "set_mempolicy_home_node", "migrate_pages", "move_pages",
	"process_madvise", "process_mrelease", "fork", "vfork", "ipc", "socketcall",
}

// archInfo is the architecture the filters are built for.
var archInfo = sync.OnceValues(func() (*arch.Info, error) { return arch.GetInfo("") })

// present keeps the names this architecture has (arm64 has no open, fork, ...).
func present(a *arch.Info, names []string) []string {
	var out []string
	for _, n := range names {
		if _, ok := a.SyscallNames[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// actions returns, for level, the verdict of every syscall number with a
// rule of its own, and the default verdict for all others.
func actions(a *arch.Info, level sandbox.Level) (map[uint32]uint32, uint32, error) {
	const (
		kill  = unix.SECCOMP_RET_KILL_PROCESS
		allow = unix.SECCOMP_RET_ALLOW
		eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enos  = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	m := map[uint32]uint32{}
	set := func(names []string, action uint32) {
		for _, n := range present(a, names) {
			m[uint32(a.SyscallNames[n])] = action
		}
	}
	def := uint32(eperm)
	switch level {
	case sandbox.LevelMinimal:
		def = allow
	case sandbox.LevelMaximum:
		set(baseList, allow)
	case sandbox.LevelStrict:
		set(baseList, allow)
		set([]string{"fork", "vfork"}, allow)
	case sandbox.LevelStandard:
		set(baseList, allow)
		set(standardExtra, allow)
	default:
		return nil, 0, fmt.Errorf("%w: unknown security level %q", sandbox.ErrInvalidSpec, level)
	}
	// Refusals last: they win over any list above.
	set(enosysList, enos)
	set(killList, kill)
	return m, def, nil
}

// nrRange is a run of consecutive syscall numbers with one verdict.
type nrRange struct{ lo, hi, action uint32 }

// ranges groups the verdicts into runs, dropping runs that equal def.
func ranges(m map[uint32]uint32, def uint32) []nrRange {
	nrs := make([]uint32, 0, len(m))
	for nr := range m {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)
	var out []nrRange
	for _, nr := range nrs {
		act := m[nr]
		if act == def {
			continue
		}
		if n := len(out); n > 0 && out[n-1].hi+1 == nr && out[n-1].action == act {
			out[n-1].hi = nr
			continue
		}
		out = append(out, nrRange{lo: nr, hi: nr, action: act})
	}
	return out
}

// searchTree emits a binary search over the ranges on the syscall number
// in the accumulator, ending every path in a verdict. The kernel emulates
// the whole filter for every syscall number when it is attached (to cache
// arg-independent verdicts) and at each call that is not cached: a tree
// costs O(log n) per number where a list of comparisons costs O(n).
func searchTree(rs []nrRange, def uint32) []bpf.Instruction {
	if len(rs) <= 3 {
		var p []bpf.Instruction
		for _, r := range rs {
			if r.lo == r.hi {
				p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: r.lo, SkipFalse: 1}, bpf.RetConstant{Val: r.action})
				continue
			}
			p = append(p,
				bpf.JumpIf{Cond: bpf.JumpLessThan, Val: r.lo, SkipTrue: 2},
				bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: r.hi, SkipTrue: 1},
				bpf.RetConstant{Val: r.action})
		}
		return append(p, bpf.RetConstant{Val: def})
	}
	mid := len(rs) / 2
	left, right := searchTree(rs[:mid], def), searchTree(rs[mid:], def)
	// A >= rs[mid].lo: fall onto the jump over the left subtree.
	p := []bpf.Instruction{
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: rs[mid].lo, SkipFalse: 1},
		bpf.Jump{Skip: uint32(len(left))},
	}
	p = append(p, left...)
	return append(p, right...)
}

// argFilter returns the prefix: architecture and x32 checks, then the
// argument checks, each ending in a verdict, so that only syscalls without
// argument rules reach the search tree. (go-seccomp-bpf's own assembler is
// not used: v1.6.0 leaves an argument in the accumulator after a failed
// argument condition, so later comparisons in its program would compare
// that argument instead of the syscall number; and its linear list of
// comparisons is slow for the kernel to cache.)
//
// seccomp_data: nr at 0, arch at 4, args[i] at 16+8i (little endian: the
// low word first; clone flags, socket family and type and ioctl requests
// are 32-bit values the kernel truncates to).
func argFilter(a *arch.Info, level sandbox.Level) []bpf.Instruction {
	const (
		kill  = unix.SECCOMP_RET_KILL_PROCESS
		allow = unix.SECCOMP_RET_ALLOW
		eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		eafns = unix.SECCOMP_RET_ERRNO | uint32(unix.EAFNOSUPPORT)
	)
	ldNR := bpf.LoadAbsolute{Off: 0, Size: 4}
	ldArg := func(i uint32) bpf.Instruction { return bpf.LoadAbsolute{Off: 16 + 8*i, Size: 4} }
	ret := func(v uint32) bpf.Instruction { return bpf.RetConstant{Val: v} }
	var p []bpf.Instruction
	p = append(p,
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(a.ID), SkipTrue: 1},
		ret(kill),
		ldNR,
	)
	if a.ID == arch.X86_64.ID {
		p = append(p,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(arch.X32.SeccompMask), SkipFalse: 1},
			ret(kill),
		)
	}
	// block appends "if nr == name { body }" where body ends in a return.
	block := func(name string, body ...bpf.Instruction) {
		n, ok := a.SyscallNames[name]
		if !ok {
			return
		}
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(n), SkipFalse: uint8(len(body))})
		p = append(p, body...)
	}
	// clone: namespace flags kill; at maximum only threads may be created.
	cloneOK := []bpf.Instruction{ret(allow)}
	if level == sandbox.LevelMaximum {
		cloneOK = []bpf.Instruction{
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: unix.CLONE_THREAD, SkipFalse: 1},
			ret(allow),
			ret(eperm),
		}
	}
	block("clone", append([]bpf.Instruction{
		ldArg(0),
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: nsFlags, SkipFalse: 1},
		ret(kill),
	}, cloneOK...)...)
	// socket: AF_PACKET and AF_VSOCK kill; families other than unix,
	// inet, inet6 and netlink are not supported; raw IP sockets kill
	// (netlink sockets are SOCK_RAW by design and stay allowed).
	block("socket",
		ldArg(0),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_PACKET, SkipFalse: 1},
		ret(kill),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_VSOCK, SkipFalse: 1},
		ret(kill),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_UNIX, SkipFalse: 1},
		ret(allow),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_NETLINK, SkipFalse: 1},
		ret(allow),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET6, SkipTrue: 1},
		ret(eafns),
		ldArg(1),
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SOCK_RAW, SkipFalse: 1},
		ret(kill),
		ret(allow),
	)
	// ioctl: injecting input into a terminal (TIOCSTI, TIOCLINUX) kills.
	block("ioctl",
		ldArg(1),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCSTI, SkipFalse: 1},
		ret(kill),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.TIOCLINUX, SkipFalse: 1},
		ret(kill),
		ret(allow),
	)
	return p
}

var (
	filterMu    sync.Mutex
	filterCache = map[sandbox.Level][]unix.SockFilter{}
)

// seccompFilter returns the assembled filter for level: the prefix
// (foreign architecture and x32 ABI kill; argument checks), then a binary
// search over the syscall numbers of the level's lists. The lists name
// syscalls; go-seccomp-bpf's tables give their numbers per architecture.
func seccompFilter(level sandbox.Level) ([]unix.SockFilter, error) {
	filterMu.Lock()
	defer filterMu.Unlock()
	if f, ok := filterCache[level]; ok {
		return f, nil
	}
	a, err := archInfo()
	if err != nil {
		return nil, fmt.Errorf("%w: seccomp: %w", sandbox.ErrUnavailable, err)
	}
	m, def, err := actions(a, level)
	if err != nil {
		return nil, err
	}
	// Syscalls with argument rules are decided in argFilter already.
	for _, name := range []string{"clone", "socket", "ioctl"} {
		delete(m, uint32(a.SyscallNames[name]))
	}
	prog := append(argFilter(a, level), bpf.LoadAbsolute{Off: 0, Size: 4})
	prog = append(prog, searchTree(ranges(m, def), def)...)
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	if len(raw) > 4096 {
		return nil, fmt.Errorf("seccomp: %s filter has %d instructions, over the kernel's 4096", level, len(raw))
	}
	out := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		out[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	filterCache[level] = out
	return out, nil
}

// SeccompFilter returns the assembled filter of a level (raw BPF), e.g.
// to hand the same filter to another sandbox for comparison; nil if it
// cannot be built here.
func SeccompFilter(level sandbox.Level) []unix.SockFilter {
	f, err := seccompFilter(level)
	if err != nil {
		return nil
	}
	return f
}

// encodeFilter renders a filter as the raw struct sock_filter array.
func encodeFilter(f []unix.SockFilter) []byte {
	out := make([]byte, 0, 8*len(f))
	for _, ins := range f {
		out = binary.NativeEndian.AppendUint16(out, ins.Code)
		out = append(out, ins.Jt, ins.Jf)
		out = binary.NativeEndian.AppendUint32(out, ins.K)
	}
	return out
}

// decodeFilter parses encodeFilter's output. An empty filter is refused:
// every program runs under one.
func decodeFilter(b []byte) ([]unix.SockFilter, error) {
	if len(b) == 0 || len(b)%8 != 0 || len(b)/8 > 4096 {
		return nil, fmt.Errorf("seccomp filter of %d bytes is malformed", len(b))
	}
	out := make([]unix.SockFilter, len(b)/8)
	for i := range out {
		c := b[8*i:]
		out[i] = unix.SockFilter{Code: binary.NativeEndian.Uint16(c), Jt: c[2], Jf: c[3], K: binary.NativeEndian.Uint32(c[4:])}
	}
	return out, nil
}

var encodedCache sync.Map // sandbox.Level -> []byte

// encodedFilter returns the level's filter in the init's wire form.
func encodedFilter(level sandbox.Level) ([]byte, error) {
	if b, ok := encodedCache.Load(level); ok {
		return b.([]byte), nil
	}
	f, err := seccompFilter(level)
	if err != nil {
		return nil, err
	}
	b := encodeFilter(f)
	encodedCache.Store(level, b)
	return b, nil
}
