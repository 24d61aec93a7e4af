//go:build linux

package native

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// Live system-call attacks: the filter's verdicts (seccomp_decisions_test.go
// checks them in a BPF VM) as the kernel applies them to a real program,
// reached two ways — from python through ctypes (libc's syscall(2)) and
// from sysprobe, a static Go program that makes exactly the raw call it is
// told (testdata/sysprobe).

// cloneNSFlags are the namespace flags clone(2) accepts (CLONE_NEWTIME
// only through clone3 and unshare, and clone3 is refused with ENOSYS).
var cloneNSFlags = []struct {
	name string
	flag uint64
}{
	{"CLONE_NEWNS", unix.CLONE_NEWNS},
	{"CLONE_NEWUTS", unix.CLONE_NEWUTS},
	{"CLONE_NEWIPC", unix.CLONE_NEWIPC},
	{"CLONE_NEWUSER", unix.CLONE_NEWUSER},
	{"CLONE_NEWPID", unix.CLONE_NEWPID},
	{"CLONE_NEWNET", unix.CLONE_NEWNET},
	{"CLONE_NEWCGROUP", unix.CLONE_NEWCGROUP},
}

// pyCall returns a python program that makes one raw system call (numbers
// and bytes arguments) through ctypes and prints what it returned; a
// killed program prints nothing.
func pyCall(nr uint32, args ...string) string {
	return pyLibc + fmt.Sprintf("print(sys_call(%d%s))\n", nr, func() string {
		var b strings.Builder
		for _, a := range args {
			b.WriteString(", " + a)
		}
		return b.String()
	}())
}

// TestEscapeKillListPython calls every kill-list system call of this
// architecture from python at the most permissive level (minimal: every
// other call is allowed there): each one kills the program (SIGSYS,
// SECCOMP_KILL) before it returns. All arguments are zero, which the
// kernel would refuse or ignore anyway: nothing here depends on the
// call doing harm to be stopped.
func TestEscapeKillListPython(t *testing.T) {
	needAMD64(t)
	a, err := archInfo()
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	names := allKilled(a)
	if len(names) < 50 {
		t.Fatalf("only %d kill-list calls on %s", len(names), a.Name)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			spec := atLevel(sandbox.LevelMinimal, pySpec(pyCall(sysNR(t, name), "0", "0", "0", "0", "0", "0")))
			wantSeccompKill(t, mustRun(t, rt, spec))
		})
	}
}

// TestEscapeKillListSysprobe makes every kill-list call again from the
// static probe, cycling through the levels: killed at each one.
func TestEscapeKillListSysprobe(t *testing.T) {
	needAMD64(t)
	a, err := archInfo()
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	for i, name := range allKilled(a) {
		level := sandbox.Levels[i%len(sandbox.Levels)]
		t.Run(name+"@"+string(level), func(t *testing.T) {
			t.Parallel()
			wantSeccompKill(t, mustRun(t, rt, probeSpec(t, level, name)))
		})
	}
}

// TestEscapeSyscallArgs attacks the argument checks live: clone with each
// namespace flag, the socket families and types, terminal injection
// ioctls; and the calls answered with an errno instead of a kill.
func TestEscapeSyscallArgs(t *testing.T) {
	needAMD64(t)
	rt := newRuntime(t)
	clone, socket, ioctl := sysNR(t, "clone"), sysNR(t, "socket"), sysNR(t, "ioctl")
	const sigchld = uint64(unix.SIGCHLD)

	killed := func(name string, spec *sandbox.Spec) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			wantSeccompKill(t, mustRun(t, rt, spec))
		})
	}
	returns := func(name, want string, spec *sandbox.Spec) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res := mustSucceed(t, rt, spec)
			if got := strings.TrimSpace(string(res.Stdout)); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
	num := func(v uint64) string { return strconv.FormatUint(v, 10) }

	for _, f := range cloneNSFlags {
		// At strict and minimal a plain fork is allowed: only the
		// namespace flag kills.
		killed("python clone "+f.name+" at strict", atLevel(sandbox.LevelStrict, pySpec(pyCall(clone, num(f.flag|sigchld), "0", "0", "0", "0"))))
		killed("sysprobe clone "+f.name+" at minimal", probeSpec(t, sandbox.LevelMinimal, "clone", num(f.flag|sigchld), "0", "0", "0", "0"))
		killed("sysprobe unshare "+f.name+" at minimal", probeSpec(t, sandbox.LevelMinimal, "unshare", num(f.flag)))
	}
	killed("sysprobe unshare CLONE_NEWTIME at minimal", probeSpec(t, sandbox.LevelMinimal, "unshare", num(unix.CLONE_NEWTIME)))
	killed("sysprobe setns at strict", probeSpec(t, sandbox.LevelStrict, "setns", "0", num(unix.CLONE_NEWUSER)))

	for _, s := range []struct {
		name         string
		family, kind uint64
	}{
		{"AF_PACKET SOCK_RAW", unix.AF_PACKET, unix.SOCK_RAW},
		{"AF_PACKET SOCK_DGRAM", unix.AF_PACKET, unix.SOCK_DGRAM},
		{"AF_VSOCK SOCK_STREAM", unix.AF_VSOCK, unix.SOCK_STREAM},
		{"AF_INET SOCK_RAW", unix.AF_INET, unix.SOCK_RAW},
		{"AF_INET6 SOCK_RAW", unix.AF_INET6, unix.SOCK_RAW},
		{"AF_INET SOCK_RAW|SOCK_CLOEXEC", unix.AF_INET, unix.SOCK_RAW | unix.SOCK_CLOEXEC},
	} {
		killed("python socket "+s.name, pySpec(pyCall(socket, num(s.family), num(s.kind), "0")))
		killed("sysprobe socket "+s.name+" at minimal", probeSpec(t, sandbox.LevelMinimal, "socket", num(s.family), num(s.kind), "0"))
	}
	// socket returns the lowest free descriptor: 3 for python -I -c.
	returns("python socket AF_NETLINK SOCK_RAW (allowed)", "3", pySpec(pyCall(socket, num(unix.AF_NETLINK), num(unix.SOCK_RAW), "0")))
	returns("python socket AF_UNIX (allowed)", "3", pySpec(pyCall(socket, num(unix.AF_UNIX), num(unix.SOCK_STREAM), "0")))
	returns("python socket AF_INET UDP (allowed)", "3", pySpec(pyCall(socket, num(unix.AF_INET), num(unix.SOCK_DGRAM), "0")))
	returns("python socket AF_BLUETOOTH", "EAFNOSUPPORT", pySpec(pyCall(socket, num(unix.AF_BLUETOOTH), num(unix.SOCK_STREAM), "0")))
	returns("python socket AF_ALG", "EAFNOSUPPORT", pySpec(pyCall(socket, num(unix.AF_ALG), num(unix.SOCK_SEQPACKET), "0")))
	returns("sysprobe socket AF_BLUETOOTH at minimal", "errno=EAFNOSUPPORT", probeSpec(t, sandbox.LevelMinimal, "socket", num(unix.AF_BLUETOOTH), num(unix.SOCK_STREAM), "0"))
	returns("sysprobe socket AF_CAN at minimal", "errno=EAFNOSUPPORT", probeSpec(t, sandbox.LevelMinimal, "socket", num(unix.AF_CAN), num(unix.SOCK_RAW), "1"))

	for _, r := range []struct {
		name string
		req  uint64
	}{{"TIOCSTI", unix.TIOCSTI}, {"TIOCLINUX", unix.TIOCLINUX}} {
		killed("python ioctl(0, "+r.name+")", pySpec(pyCall(ioctl, "0", num(r.req), `b"x"`)))
		killed("sysprobe ioctl(0, "+r.name+") at minimal", probeSpec(t, sandbox.LevelMinimal, "ioctl", "0", num(r.req), "s:x"))
	}
	killed("sysprobe ioctl(1, TIOCSTI with high bits) at minimal", probeSpec(t, sandbox.LevelMinimal, "ioctl", "1", num(0xffffffff_00000000|unix.TIOCSTI), "s:x"))
	// ioctl is otherwise allowed: TCGETS on a pipe is simply not a tty.
	returns("sysprobe ioctl(0, TCGETS)", "errno=ENOTTY", probeSpec(t, sandbox.LevelMaximum, "ioctl", "0", num(unix.TCGETS), "b:64"))

	for _, name := range mustENOSYS {
		returns("python "+name, "ENOSYS", pySpec(pyCall(sysNR(t, name), "0", "0", "0", "0", "0", "0")))
		returns("sysprobe "+name+" at minimal", "errno=ENOSYS", probeSpec(t, sandbox.LevelMinimal, name, "0", "0", "0", "0", "0", "0"))
	}
}

// TestEscapeForeignABIsLive makes calls through the two other system-call
// ABIs an amd64 process can reach: the 32-bit `int 0x80` entry (seccomp
// sees AUDIT_ARCH_I386) and the x32 ABI (the number with bit 30 set).
// Both kill at every level, whatever the call (here a harmless getpid).
// The native getpid is the control.
func TestEscapeForeignABIsLive(t *testing.T) {
	needAMD64(t)
	rt := newRuntime(t)
	getpid := strconv.Itoa(arch.I386.SyscallNames["getpid"])
	x32nr := uint32(arch.X32.SeccompMask) | uint32(arch.X32.SyscallNames["getpid"]&^arch.X32.SeccompMask)
	x32getpid := fmt.Sprintf("%#x", x32nr)
	for _, level := range sandbox.Levels {
		t.Run("int 0x80 getpid at "+string(level), func(t *testing.T) {
			t.Parallel()
			wantSeccompKill(t, mustRun(t, rt, probeSpec(t, level, "int80:"+getpid)))
		})
		t.Run("x32 getpid at "+string(level), func(t *testing.T) {
			t.Parallel()
			wantSeccompKill(t, mustRun(t, rt, probeSpec(t, level, x32getpid)))
		})
		t.Run("native getpid at "+string(level), func(t *testing.T) {
			t.Parallel()
			if got := probeOutput(t, rt, level, "getpid"); !strings.HasPrefix(got, "ret=") || got == "ret=1" {
				t.Errorf("getpid: %q, want the program's pid (not the init's 1)", got)
			}
		})
	}
	t.Run("python x32 getpid", func(t *testing.T) {
		wantSeccompKill(t, mustRun(t, rt, pySpec(pyCall(x32nr))))
	})
}

// TestEscapeLevelSyscalls checks the calls that differ between levels,
// live: new processes at maximum, IPC and memory policy below standard,
// AIO below minimal.
func TestEscapeLevelSyscalls(t *testing.T) {
	needAMD64(t)
	rt := newRuntime(t)
	for _, tc := range []struct {
		level sandbox.Level
		args  []string
		want  string // "ret" for any success
	}{
		{sandbox.LevelMaximum, []string{"fork"}, "errno=EPERM"},
		{sandbox.LevelMaximum, []string{"vfork"}, "errno=EPERM"},
		{sandbox.LevelMaximum, []string{"clone", strconv.Itoa(int(unix.SIGCHLD)), "0", "0", "0", "0"}, "errno=EPERM"},
		{sandbox.LevelStrict, []string{"fork"}, "ret"},
		{sandbox.LevelStrict, []string{"clone", strconv.Itoa(int(unix.SIGCHLD)), "0", "0", "0", "0"}, "ret"},
		{sandbox.LevelMaximum, []string{"shmget", "0", "4096", "0x380"}, "errno=EPERM"},
		{sandbox.LevelStrict, []string{"shmget", "0", "4096", "0x380"}, "errno=EPERM"},
		{sandbox.LevelStandard, []string{"shmget", "0", "4096", "0x380"}, "ret"},
		{sandbox.LevelStrict, []string{"msgget", "0", "0x380"}, "errno=EPERM"},
		{sandbox.LevelStandard, []string{"msgget", "0", "0x380"}, "ret"},
		{sandbox.LevelStrict, []string{"get_mempolicy", "0", "0", "0", "0", "0"}, "errno=EPERM"},
		{sandbox.LevelStandard, []string{"get_mempolicy", "0", "0", "0", "0", "0"}, "ret"},
		{sandbox.LevelStandard, []string{"io_setup", "1", "b:8"}, "errno=EPERM"},
		{sandbox.LevelMinimal, []string{"io_setup", "1", "b:8"}, "ret"},
		{sandbox.LevelMaximum, []string{"memfd_secret", "0"}, "killed"},
	} {
		t.Run(fmt.Sprintf("%s at %s", strings.Join(tc.args, " "), tc.level), func(t *testing.T) {
			t.Parallel()
			if tc.want == "killed" {
				wantSeccompKill(t, mustRun(t, rt, probeSpec(t, tc.level, tc.args...)))
				return
			}
			got := probeOutput(t, rt, tc.level, tc.args...)
			if tc.want == "ret" && strings.HasPrefix(got, "ret=") {
				return
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestEscapeMountCgroupfs tries to reach a cgroup release_agent (the
// classic container escape): no cgroupfs is visible, and mounting one is
// killed, from python and from sysprobe, at every level.
func TestEscapeMountCgroupfs(t *testing.T) {
	needAMD64(t)
	rt := newRuntime(t)
	for _, level := range sandbox.Levels {
		t.Run("python mount cgroup at "+string(level), func(t *testing.T) {
			spec := atLevel(level, pySpec(pyLibc+`
os.makedirs("/tmp/cg", exist_ok=True)
print(libc.mount(b"cgroup", b"/tmp/cg", b"cgroup", 0, b"memory"))
`))
			wantSeccompKill(t, mustRun(t, rt, spec))
		})
		t.Run("sysprobe fsopen cgroup2 at "+string(level), func(t *testing.T) {
			wantSeccompKill(t, mustRun(t, rt, probeSpec(t, level, "fsopen", "s:cgroup2", "0")))
		})
	}
}
