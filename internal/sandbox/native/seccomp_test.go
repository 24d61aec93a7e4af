//go:build linux

package native

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// evalFilter runs the assembled filter in a BPF VM on a seccomp_data for
// (arch, nr, args) and returns the action (SECCOMP_RET_* | data).
func evalFilter(t *testing.T, level sandbox.Level, auditArch uint32, nr uint32, args ...uint64) uint32 {
	t.Helper()
	prog, err := seccompFilter(level)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]bpf.RawInstruction, len(prog))
	for i, f := range prog {
		raw[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	ins, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	// struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], nr)
	binary.LittleEndian.PutUint32(data[4:], auditArch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	// The VM loads words big-endian; seccomp_data is native (little) endian.
	for i := 0; i+4 <= len(data); i += 4 {
		binary.BigEndian.PutUint32(data[i:], binary.LittleEndian.Uint32(data[i:]))
	}
	out, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(out)
}

// Verdicts of the filter (SECCOMP_RET_* | data).
const (
	retKill   = unix.SECCOMP_RET_KILL_PROCESS
	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retEAFNO  = unix.SECCOMP_RET_ERRNO | uint32(unix.EAFNOSUPPORT)
)

func verdictName(v uint32) string {
	switch v {
	case retKill:
		return "KILL_PROCESS"
	case retAllow:
		return "ALLOW"
	case retEPERM:
		return "ERRNO(EPERM)"
	case retENOSYS:
		return "ERRNO(ENOSYS)"
	case retEAFNO:
		return "ERRNO(EAFNOSUPPORT)"
	}
	return fmt.Sprintf("%#x", v)
}

// nativeArch is the running architecture's table and audit id.
func nativeArch(t *testing.T) (*arch.Info, uint32) {
	t.Helper()
	a, err := archInfo()
	if err != nil {
		t.Fatal(err)
	}
	return a, uint32(a.ID)
}

// mustKill and mustENOSYS pin, independently of seccomp_linux.go, the
// calls DESIGN §5 and the filter's documentation promise to kill or to
// answer with ENOSYS at every level. Removing one from the filter's
// lists fails TestFilterListsPinned and every decision test below (they
// use mustBeKilled and mustBeENOSYS, which include these). Additions to
// the filter's lists are fine.
var (
	mustKill = []string{
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
	mustENOSYS = []string{"clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"}
)

// mustBeKilled and mustBeENOSYS: the pinned lists plus what the filter adds.
func mustBeKilled(name string) bool {
	return slices.Contains(mustKill, name) || slices.Contains(killList, name)
}
func mustBeENOSYS(name string) bool {
	return slices.Contains(mustENOSYS, name) || slices.Contains(enosysList, name)
}

// allKilled lists every kill-list call of the architecture a.
func allKilled(a *arch.Info) []string {
	names := present(a, mustKill)
	for _, n := range present(a, killList) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// TestFilterListsPinned fails when a promised call leaves the filter's
// lists, or lands in an allow list as well.
func TestFilterListsPinned(t *testing.T) {
	for _, n := range mustKill {
		if !slices.Contains(killList, n) {
			t.Errorf("%s is no longer in killList", n)
		}
	}
	for _, n := range mustENOSYS {
		if !slices.Contains(enosysList, n) {
			t.Errorf("%s is no longer in enosysList", n)
		}
	}
	for _, n := range append(slices.Clone(mustKill), mustENOSYS...) {
		if slices.Contains(baseList, n) || slices.Contains(standardExtra, n) {
			t.Errorf("%s is in an allow list", n)
		}
	}
	for _, n := range []string{"fork", "vfork", "clone", "socket", "ioctl", "shmget", "mbind"} {
		if slices.Contains(baseList, n) {
			t.Errorf("%s is in the base list (maximum would allow it unconditionally)", n)
		}
	}
}

// modelVerdict is the filter's specification (DESIGN §5, seccomp_linux.go's
// doc comment), written independently of the filter's assembly: what a
// call of syscall name with args must get at level on the native
// architecture. Argument checks look at the low 32 bits, as the kernel
// does for clone flags, socket family and type, and ioctl requests.
func modelVerdict(level sandbox.Level, name string, args [6]uint64) uint32 {
	lo := func(i int) uint32 { return uint32(args[i]) }
	switch {
	case mustBeKilled(name):
		return retKill
	case mustBeENOSYS(name):
		return retENOSYS
	}
	switch name {
	case "clone":
		switch {
		case lo(0)&nsFlags != 0:
			return retKill
		case level == sandbox.LevelMaximum && lo(0)&unix.CLONE_THREAD == 0:
			return retEPERM
		}
		return retAllow
	case "socket":
		switch lo(0) {
		case unix.AF_PACKET, unix.AF_VSOCK:
			return retKill
		case unix.AF_UNIX, unix.AF_NETLINK:
			return retAllow
		case unix.AF_INET, unix.AF_INET6:
			if lo(1)&0xf == unix.SOCK_RAW {
				return retKill
			}
			return retAllow
		}
		return retEAFNO
	case "ioctl":
		if lo(1) == unix.TIOCSTI || lo(1) == unix.TIOCLINUX {
			return retKill
		}
		return retAllow
	}
	switch {
	case level == sandbox.LevelMinimal:
		return retAllow
	case slices.Contains(baseList, name):
		return retAllow
	case level == sandbox.LevelStrict && (name == "fork" || name == "vfork"):
		return retAllow
	case level == sandbox.LevelStandard && slices.Contains(standardExtra, name):
		return retAllow
	}
	return retEPERM
}

// TestFilterDecisionsExhaustive runs every system call number of the
// native table (and every other number up to 1024, which no table
// names) through each level's assembled filter with zero arguments and
// compares the verdict with modelVerdict. This pins the whole program,
// however it is laid out (lists, a search tree), including the
// go-seccomp-bpf v1.6.0 accumulator bug the filter works around.
func TestFilterDecisionsExhaustive(t *testing.T) {
	a, native := nativeArch(t)
	for _, level := range sandbox.Levels {
		t.Run(string(level), func(t *testing.T) {
			mismatches := 0
			for nr := 0; nr < 1024; nr++ {
				name, known := a.SyscallNumbers[nr]
				want := uint32(retEPERM)
				if known {
					want = modelVerdict(level, name, [6]uint64{})
				} else if level == sandbox.LevelMinimal {
					want = retAllow
				}
				if got := evalFilter(t, level, native, uint32(nr)); got != want {
					mismatches++
					if mismatches <= 20 {
						t.Errorf("%s (nr %d): %s, want %s", name, nr, verdictName(got), verdictName(want))
					}
				}
			}
			if mismatches > 20 {
				t.Errorf("... %d mismatches in all", mismatches)
			}
		})
	}
}

// TestFilterDecisions pins the verdicts by name: a sample of allowed
// calls, every kill-list and ENOSYS name at every level, and the calls
// each level adds or refuses.
func TestFilterDecisions(t *testing.T) {
	a, native := nativeArch(t)
	type row struct {
		name string
		want map[sandbox.Level]uint32
	}
	all := func(v uint32) map[sandbox.Level]uint32 {
		return map[sandbox.Level]uint32{sandbox.LevelMaximum: v, sandbox.LevelStrict: v, sandbox.LevelStandard: v, sandbox.LevelMinimal: v}
	}
	per := func(max, strict, std, min uint32) map[sandbox.Level]uint32 {
		return map[sandbox.Level]uint32{sandbox.LevelMaximum: max, sandbox.LevelStrict: strict, sandbox.LevelStandard: std, sandbox.LevelMinimal: min}
	}
	var rows []row
	for _, n := range []string{"read", "write", "openat", "close", "mmap", "mprotect", "brk", "futex", "exit_group",
		"rt_sigaction", "rt_sigreturn", "getpid", "execve", "wait4", "kill", "connect", "sendto", "memfd_create",
		"getrandom", "clock_gettime", "prctl", "seccomp", "landlock_restrict_self", "setuid", "capset"} {
		rows = append(rows, row{n, all(retAllow)})
	}
	for _, n := range allKilled(a) {
		rows = append(rows, row{n, all(retKill)})
	}
	for _, n := range present(a, mustENOSYS) {
		rows = append(rows, row{n, all(retENOSYS)})
	}
	rows = append(rows,
		row{"fork", per(retEPERM, retAllow, retAllow, retAllow)},
		row{"vfork", per(retEPERM, retAllow, retAllow, retAllow)},
		row{"shmget", per(retEPERM, retEPERM, retAllow, retAllow)},
		row{"semget", per(retEPERM, retEPERM, retAllow, retAllow)},
		row{"msgget", per(retEPERM, retEPERM, retAllow, retAllow)},
		row{"mq_open", per(retEPERM, retEPERM, retAllow, retAllow)},
		row{"mbind", per(retEPERM, retEPERM, retAllow, retAllow)},
		row{"set_mempolicy", per(retEPERM, retEPERM, retAllow, retAllow)},
		row{"io_setup", per(retEPERM, retEPERM, retEPERM, retAllow)},
		row{"mknodat", per(retEPERM, retEPERM, retEPERM, retAllow)},
		row{"fanotify_mark", per(retEPERM, retEPERM, retEPERM, retAllow)},
		row{"pidfd_open", all(retAllow)},
	)
	if len(allKilled(a)) < 50 {
		t.Fatalf("only %d kill-list calls exist on %s", len(allKilled(a)), a.Name)
	}
	for _, r := range rows {
		if _, ok := a.SyscallNames[r.name]; !ok {
			continue // not on this architecture (arm64 has no fork)
		}
		for _, level := range sandbox.Levels {
			if got := evalFilter(t, level, native, sysNR(t, r.name)); got != r.want[level] {
				t.Errorf("%s at %s: %s, want %s", r.name, level, verdictName(got), verdictName(r.want[level]))
			}
		}
	}
}

// TestFilterClone checks clone's flags: every namespace flag kills at
// every level, alone or mixed with thread or fork flags; threads are
// allowed everywhere; a new process is refused (EPERM) at maximum only.
// Only the low 32 bits count, as in the kernel.
func TestFilterClone(t *testing.T) {
	_, native := nativeArch(t)
	clone := sysNR(t, "clone")
	const (
		thread = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD |
			unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
		fork  = uint64(unix.SIGCHLD) | unix.CLONE_CHILD_SETTID | unix.CLONE_CHILD_CLEARTID
		spawn = uint64(unix.SIGCHLD) | unix.CLONE_VM | unix.CLONE_VFORK
	)
	ns := map[string]uint64{
		"CLONE_NEWNS": unix.CLONE_NEWNS, "CLONE_NEWUTS": unix.CLONE_NEWUTS, "CLONE_NEWIPC": unix.CLONE_NEWIPC,
		"CLONE_NEWUSER": unix.CLONE_NEWUSER, "CLONE_NEWPID": unix.CLONE_NEWPID, "CLONE_NEWNET": unix.CLONE_NEWNET,
		"CLONE_NEWCGROUP": unix.CLONE_NEWCGROUP, "CLONE_NEWTIME": unix.CLONE_NEWTIME,
	}
	type tc struct {
		name  string
		flags uint64
		want  map[sandbox.Level]uint32
	}
	forkVerdict := map[sandbox.Level]uint32{sandbox.LevelMaximum: retEPERM, sandbox.LevelStrict: retAllow,
		sandbox.LevelStandard: retAllow, sandbox.LevelMinimal: retAllow}
	allKill := map[sandbox.Level]uint32{}
	allAllow := map[sandbox.Level]uint32{}
	for _, l := range sandbox.Levels {
		allKill[l], allAllow[l] = retKill, retAllow
	}
	cases := []tc{
		{"thread", thread, allAllow},
		{"fork", fork, forkVerdict},
		{"posix_spawn (CLONE_VM|CLONE_VFORK)", spawn, forkVerdict},
		{"no flags", 0, forkVerdict},
		{"fork with high bits (ignored by the kernel)", 0xffffffff_00000000 | fork, forkVerdict},
		{"thread with high bits", 0xffffffff_00000000 | thread, allAllow},
		{"all namespace flags", nsFlags, allKill},
	}
	for name, f := range ns {
		cases = append(cases,
			tc{name, f, allKill},
			tc{name + " with fork flags", fork | f, allKill},
			tc{name + " with thread flags", thread | f, allKill},
			tc{name + " with high bits", 0xffffffff_00000000 | f, allKill})
	}
	for _, c := range cases {
		for _, level := range sandbox.Levels {
			if got := evalFilter(t, level, native, clone, c.flags); got != c.want[level] {
				t.Errorf("clone(%s = %#x) at %s: %s, want %s", c.name, c.flags, level, verdictName(got), verdictName(c.want[level]))
			}
		}
	}
}

// TestFilterSocket checks socket's family and type at every level:
// packet and vsock sockets and raw IP sockets kill; unix, netlink (raw
// by design), TCP and UDP are allowed; every other family is not
// supported.
func TestFilterSocket(t *testing.T) {
	_, native := nativeArch(t)
	socket := sysNR(t, "socket")
	const hi = 0xffffffff_00000000
	for _, c := range []struct {
		name         string
		family, kind uint64
		want         uint32
	}{
		{"AF_UNIX stream", unix.AF_UNIX, unix.SOCK_STREAM, retAllow},
		{"AF_UNIX dgram cloexec", unix.AF_UNIX, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, retAllow},
		{"AF_INET stream", unix.AF_INET, unix.SOCK_STREAM, retAllow},
		{"AF_INET dgram", unix.AF_INET, unix.SOCK_DGRAM, retAllow},
		{"AF_INET6 stream nonblock", unix.AF_INET6, unix.SOCK_STREAM | unix.SOCK_NONBLOCK, retAllow},
		{"AF_NETLINK raw", unix.AF_NETLINK, unix.SOCK_RAW, retAllow},
		{"AF_NETLINK dgram", unix.AF_NETLINK, unix.SOCK_DGRAM, retAllow},
		{"AF_INET raw", unix.AF_INET, unix.SOCK_RAW, retKill},
		{"AF_INET raw cloexec nonblock", unix.AF_INET, unix.SOCK_RAW | unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK, retKill},
		{"AF_INET6 raw", unix.AF_INET6, unix.SOCK_RAW, retKill},
		{"AF_INET raw, high bits in type", unix.AF_INET, hi | unix.SOCK_RAW, retKill},
		{"AF_PACKET raw", unix.AF_PACKET, unix.SOCK_RAW, retKill},
		{"AF_PACKET dgram", unix.AF_PACKET, unix.SOCK_DGRAM, retKill},
		{"AF_PACKET, high bits in family", hi | unix.AF_PACKET, unix.SOCK_RAW, retKill},
		{"AF_VSOCK stream", unix.AF_VSOCK, unix.SOCK_STREAM, retKill},
		{"AF_UNSPEC", unix.AF_UNSPEC, unix.SOCK_STREAM, retEAFNO},
		{"AF_BLUETOOTH", unix.AF_BLUETOOTH, unix.SOCK_STREAM, retEAFNO},
		{"AF_ALG", unix.AF_ALG, unix.SOCK_SEQPACKET, retEAFNO},
		{"AF_KEY", unix.AF_KEY, unix.SOCK_RAW, retEAFNO},
		{"AF_CAN", unix.AF_CAN, unix.SOCK_RAW, retEAFNO},
		{"AF_XDP", unix.AF_XDP, unix.SOCK_RAW, retEAFNO},
		{"AF_TIPC", unix.AF_TIPC, unix.SOCK_RDM, retEAFNO},
		{"AF_RDS", unix.AF_RDS, unix.SOCK_SEQPACKET, retEAFNO},
		{"AF_QIPCRTR", unix.AF_QIPCRTR, unix.SOCK_DGRAM, retEAFNO},
		{"AF_UNIX, high bits in family", hi | unix.AF_UNIX, unix.SOCK_STREAM, retAllow},
	} {
		for _, level := range sandbox.Levels {
			if got := evalFilter(t, level, native, socket, c.family, c.kind); got != c.want {
				t.Errorf("socket(%s) at %s: %s, want %s", c.name, level, verdictName(got), verdictName(c.want))
			}
		}
	}
}

// TestFilterIoctl: terminal input injection (TIOCSTI) and the Linux
// console's TIOCLINUX kill at every level, also with high bits set (the
// kernel takes the request as 32 bits); other requests are allowed.
func TestFilterIoctl(t *testing.T) {
	_, native := nativeArch(t)
	ioctl := sysNR(t, "ioctl")
	for _, c := range []struct {
		name string
		req  uint64
		want uint32
	}{
		{"TIOCSTI", unix.TIOCSTI, retKill},
		{"TIOCLINUX", unix.TIOCLINUX, retKill},
		{"TIOCSTI with high bits", 0xffffffff_00000000 | unix.TIOCSTI, retKill},
		{"TCGETS", unix.TCGETS, retAllow},
		{"FIONREAD", 0x541B, retAllow},
		{"FIOCLEX", 0x5451, retAllow},
		{"SIOCGIFFLAGS", unix.SIOCGIFFLAGS, retAllow},
		{"TIOCSCTTY", unix.TIOCSCTTY, retAllow},
	} {
		for _, level := range sandbox.Levels {
			for _, fd := range []uint64{0, 1, 1 << 40} {
				if got := evalFilter(t, level, native, ioctl, fd, c.req); got != c.want {
					t.Errorf("ioctl(%d, %s) at %s: %s, want %s", fd, c.name, level, verdictName(got), verdictName(c.want))
				}
			}
		}
	}
}

// TestFilterForeignABIs: a system call of another architecture (the
// 32-bit int 0x80 entry reports AUDIT_ARCH_I386) or of the x32 ABI (the
// number with bit 30 set) kills at every level, whatever the number —
// including numbers that are harmless on the native table.
func TestFilterForeignABIs(t *testing.T) {
	a, native := nativeArch(t)
	foreign := []uint32{uint32(arch.I386.ID), uint32(arch.ARM.ID), uint32(arch.AARCH64.ID), uint32(arch.X32.ID), 0}
	foreign = slices.DeleteFunc(foreign, func(id uint32) bool { return id == native && a != arch.X32 })
	for _, level := range sandbox.Levels {
		for _, id := range foreign {
			for _, name := range []string{"getpid", "read", "exit_group", "write"} {
				nr := uint32(arch.I386.SyscallNames[name])
				if got := evalFilter(t, level, id, nr); got != retKill {
					t.Errorf("%s (nr %d) of arch %#x at %s: %s, want KILL_PROCESS", name, nr, id, level, verdictName(got))
				}
			}
		}
		if a.ID != arch.X86_64.ID {
			continue
		}
		for _, name := range []string{"getpid", "read", "write", "exit_group", "rt_sigreturn"} {
			nr := uint32(arch.X32.SeccompMask) | uint32(arch.X32.SyscallNames[name]&^arch.X32.SeccompMask)
			if got := evalFilter(t, level, native, nr); got != retKill {
				t.Errorf("x32 %s (nr %#x) at %s: %s, want KILL_PROCESS", name, nr, level, verdictName(got))
			}
		}
		for _, nr := range []uint32{0x40000000, 0x40000027, 0x7fffffff, 0x80000000, 0xffffffff} {
			if got := evalFilter(t, level, native, nr); got != retKill {
				t.Errorf("nr %#x at %s: %s, want KILL_PROCESS", nr, level, verdictName(got))
			}
		}
	}
}

// TestFilterIgnoresUncheckedArgs pins the accumulator: for calls whose
// verdict does not depend on arguments, no argument value changes the
// verdict — not even values equal to the numbers of killed, refused or
// allowed calls (go-seccomp-bpf v1.6.0 compared a leftover argument with
// later syscall numbers).
func TestFilterIgnoresUncheckedArgs(t *testing.T) {
	a, native := nativeArch(t)
	var values []uint64
	for _, n := range []string{"ptrace", "mount", "unshare", "read", "getpid", "clone", "socket", "ioctl", "clone3", "shmget"} {
		values = append(values, uint64(sysNR(t, n)))
	}
	values = append(values, unix.CLONE_NEWUSER, unix.AF_PACKET, unix.TIOCSTI, 0xffffffff)
	for _, level := range sandbox.Levels {
		for _, name := range []string{"read", "getpid", "ptrace", "mount", "shmget", "mbind", "io_setup", "clone3", "fork"} {
			if _, ok := a.SyscallNames[name]; !ok {
				continue
			}
			want := modelVerdict(level, name, [6]uint64{})
			for _, v := range values {
				for i := 0; i < 6; i++ {
					args := make([]uint64, 6)
					args[i] = v
					if got := evalFilter(t, level, native, sysNR(t, name), args...); got != want {
						t.Errorf("%s with arg%d=%#x at %s: %s, want %s", name, i, v, level, verdictName(got), verdictName(want))
					}
				}
			}
		}
	}
}

// TestFilterAssembly checks the programs themselves: each level has one,
// within the kernel's 4096-instruction limit, and an unknown level has
// none (ErrInvalidSpec) rather than some default.
func TestFilterAssembly(t *testing.T) {
	seen := map[string]sandbox.Level{}
	for _, level := range sandbox.Levels {
		f, err := seccompFilter(level)
		if err != nil {
			t.Fatalf("%s: %v", level, err)
		}
		if len(f) == 0 || len(f) > 4096 {
			t.Errorf("%s filter has %d instructions", level, len(f))
		}
		key := fmt.Sprint(f)
		if other, dup := seen[key]; dup {
			t.Errorf("%s and %s have the same filter", level, other)
		}
		seen[key] = level
	}
	if f, err := seccompFilter("bogus"); err == nil {
		t.Errorf("seccompFilter(bogus) = %d instructions, want an error", len(f))
	}
}
