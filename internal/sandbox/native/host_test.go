//go:build linux

package native

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// TestEnvIsExactlySpecEnv checks nothing of the gateway's environment
// reaches the program: the environment is Spec.Env, byte for byte.
func TestEnvIsExactlySpecEnv(t *testing.T) {
	t.Setenv("PORTCULLIS_TEST_CANARY_ENV", "leaked")
	t.Setenv("HOME", "/root/portcullis-canary-home")
	rt := newRuntime(t)
	for _, env := range [][]string{
		{"A=1", "B=two words", "EMPTY="},
		nil,
	} {
		spec := shSpec("")
		spec.Argv = []string{"/usr/bin/env"}
		spec.Env = env
		res := mustSucceed(t, rt, spec)
		want := ""
		for _, kv := range env {
			want += kv + "\n"
		}
		if diff := cmp.Diff(want, string(res.Stdout)); diff != "" {
			t.Errorf("environment for Env=%q (-want +got):\n%s", env, diff)
		}
	}
}

// TestHostIdentityHidden checks the UTS namespace: the program sees the
// sandbox's host and domain names, not the host's.
func TestHostIdentityHidden(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	out := pyJSON(t, rt, pySpec(pyProbe+`
import ctypes
buf = ctypes.create_string_buffer(256)
ctypes.CDLL(None).getdomainname(buf, 256)
print(json.dumps({"nodename": os.uname().nodename, "domainname": buf.value.decode(),
                  "/etc/hostname": try_read("/etc/hostname")}))
`))
	want := map[string]any{"nodename": "sandbox", "domainname": "sandbox", "/etc/hostname": "ok:sandbox\n"}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("host identity (-want +got):\n%s", diff)
	}
	if host == "sandbox" {
		t.Log("the host itself is named sandbox; the nodename check proves nothing here")
	}
}

// TestNoInheritedFDs opens a host file without O_CLOEXEC in the gateway
// (as a careless library might) and checks that neither it nor any of the
// runtime's own descriptors (spec and status pipes, mount sources)
// reaches the program: it holds only stdin, stdout and stderr, plus the
// directory handle ls itself opens to list /proc/self/fd.
func TestNoInheritedFDs(t *testing.T) {
	leaked := filepath.Join(t.TempDir(), "leaked-canary")
	if err := os.WriteFile(leaked, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(leaked, syscall.O_RDONLY, 0) // deliberately inheritable
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC != 0 {
		t.Fatalf("test setup: fd %d flags %d, %v; want inheritable", fd, flags, err)
	}

	rt := newRuntime(t)
	spec := atLevel(sandbox.LevelStrict, shSpec(`ls -l /proc/self/fd/`))
	res := mustSucceed(t, rt, spec)
	fds := map[int]string{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[len(f)-2] != "->" {
			continue
		}
		n, err := strconv.Atoi(f[len(f)-3])
		if err != nil {
			t.Fatalf("unexpected ls line %q", line)
		}
		fds[n] = f[len(f)-1]
	}
	for _, n := range []int{0, 1, 2} {
		if !strings.HasPrefix(fds[n], "pipe:") {
			t.Errorf("fd %d = %q, want a pipe from the runtime", n, fds[n])
		}
	}
	for n, target := range fds {
		switch {
		case n <= 2:
		case n == 3 && strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd"):
			// ls's own handle on the directory it lists
		default:
			t.Errorf("program inherited fd %d -> %s", n, target)
		}
		if strings.Contains(target, "leaked-canary") {
			t.Errorf("the gateway's inheritable fd reached the program as fd %d", n)
		}
	}
}

// TestIPCIsolated creates a world-accessible System V shared memory
// segment on the host; the sandbox's IPC namespace must not know its key
// (at standard, the first level that allows SysV IPC at all).
func TestIPCIsolated(t *testing.T) {
	key := 0x50430000 + os.Getpid()%0xffff
	id, err := unix.SysvShmGet(key, 4096, unix.IPC_CREAT|unix.IPC_EXCL|0o666)
	if err != nil {
		t.Fatalf("host shmget: %v", err)
	}
	defer func() { _, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil) }()
	if _, err := unix.SysvShmGet(key, 0, 0); err != nil { // positive control
		t.Fatalf("host cannot find its own segment: %v", err)
	}
	rt := newRuntime(t)
	spec := atLevel(sandbox.LevelStandard, pySpec(`
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.shmget(int(sys.argv[1]), 0, 0)
print(errno.errorcode.get(ctypes.get_errno(), "none") if r < 0 else "found")
`))
	spec.Argv = append(spec.Argv, strconv.Itoa(key))
	res := mustSucceed(t, rt, spec)
	if got := strings.TrimSpace(string(res.Stdout)); got != "ENOENT" {
		t.Errorf("shmget of the host's key from the sandbox: %s, want ENOENT", got)
	}
}
