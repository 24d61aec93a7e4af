//go:build linux

package native

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// TestIdentityUnprivilegedUser checks the program runs as the sandbox's
// nobody, not as root of its user namespace.
func TestIdentityUnprivilegedUser(t *testing.T) {
	rt := newRuntime(t)
	res := mustSucceed(t, rt, atLevel(sandbox.LevelStrict, shSpec("id -u; id -g; id -G")))
	if diff := cmp.Diff("65534\n65534\n65534\n", string(res.Stdout)); diff != "" {
		t.Errorf("id -u/-g/-G (-want +got):\n%s", diff)
	}
}

// TestIdentityNoCapabilities reads the program's own status at every
// level: every capability set is empty, no_new_privs is on, the seccomp
// filter is installed (mode 2, one filter), all uids and gids are nobody
// and there are no supplementary groups.
func TestIdentityNoCapabilities(t *testing.T) {
	rt := newRuntime(t)
	for _, level := range sandbox.Levels {
		t.Run(string(level), func(t *testing.T) {
			spec := atLevel(level, pySpec(`import sys; sys.stdout.write(open("/proc/self/status").read())`))
			checkStatus(t, string(mustSucceed(t, rt, spec).Stdout))
		})
	}
}

func checkStatus(t *testing.T, status string) {
	t.Helper()
	got := map[string]string{}
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			got[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	want := map[string]string{
		"CapInh":     "0000000000000000",
		"CapPrm":     "0000000000000000",
		"CapEff":     "0000000000000000",
		"CapBnd":     "0000000000000000",
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1",
		"Seccomp":    "2",
		// One filter: the program's. The init, which forks it, runs
		// unfiltered, and nothing is inherited from the gateway.
		"Seccomp_filters": "1",
		"Uid":             "65534 65534 65534 65534",
		"Gid":             "65534 65534 65534 65534",
		"Groups":          "",
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("/proc/self/status has no %s line", k)
			continue
		}
		if g != w {
			t.Errorf("%s = %q, want %q", k, g, w)
		}
	}
}

// TestIdentityUIDMap checks the user namespace maps exactly the two
// sandbox ids onto the unused host ids, and host root onto nothing.
func TestIdentityUIDMap(t *testing.T) {
	rt := newRuntime(t)
	res := mustSucceed(t, rt, atLevel(sandbox.LevelStrict, shSpec("cat /proc/self/uid_map; echo --; cat /proc/self/gid_map")))
	norm := func(s string) []string {
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
		return out
	}
	uidMap, gidMap, ok := strings.Cut(string(res.Stdout), "--")
	if !ok {
		t.Fatalf("unexpected output %q", res.Stdout)
	}
	want := []string{"0 1000000 1", "65534 1065534 1"}
	if diff := cmp.Diff(want, norm(uidMap)); diff != "" {
		t.Errorf("uid_map (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, norm(gidMap)); diff != "" {
		t.Errorf("gid_map (-want +got):\n%s", diff)
	}
	for _, line := range append(norm(uidMap), norm(gidMap)...) {
		if f := strings.Fields(line); len(f) == 3 && f[1] == "0" {
			t.Errorf("a sandbox id maps onto host root: %q", line)
		}
	}
}

// TestIdentityCannotBecomeRoot tries to switch to uid 0 (the init's id
// inside the namespace) and to gain groups; both must fail and leave the
// program's ids unchanged.
func TestIdentityCannotBecomeRoot(t *testing.T) {
	rt := newRuntime(t)
	out := pyJSON(t, rt, pySpec(pyProbe+`
res = {}
for name, fn in [("setuid", lambda: os.setuid(0)), ("setgid", lambda: os.setgid(0)),
                 ("setresuid", lambda: os.setresuid(0, 0, 0)), ("setgroups", lambda: os.setgroups([0]))]:
    try:
        fn()
        res[name] = "ok"
    except OSError as e:
        res[name] = _err(e)
res["uid"] = list(os.getresuid())
res["gid"] = list(os.getresgid())
print(json.dumps(res))
`))
	for _, k := range []string{"setuid", "setgid", "setresuid", "setgroups"} {
		if out[k] == "ok" {
			t.Errorf("%s(0) succeeded inside the sandbox", k)
		}
	}
	want := []any{65534.0, 65534.0, 65534.0}
	if diff := cmp.Diff(want, out["uid"]); diff != "" {
		t.Errorf("uids after the attempts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, out["gid"]); diff != "" {
		t.Errorf("gids after the attempts (-want +got):\n%s", diff)
	}
}

// TestNestedUserNamespaceRefused tries to become root of a new user
// namespace, from which a program could mount a full procfs past the
// sandbox's subset=pid /proc (the kernel counts that mount as fully
// visible). Two layers stop it:
//
//   - the seccomp filter kills the program on unshare (and on clone with
//     a namespace flag, see escape_syscalls_test.go), at every level;
//   - behind it, user.max_user_namespaces is 0 in the sandbox's user
//     namespace. The program cannot read that (/proc/sys is not in its
//     subset=pid /proc), so the test reads it from the host, entering the
//     init's user namespace with a single-threaded helper (the host
//     python: setns into a user namespace is refused to threaded
//     processes such as this test); the host's own limit is untouched.
func TestNestedUserNamespaceRefused(t *testing.T) {
	hostLimit := func() string {
		b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	before := hostLimit()
	if before == "0" {
		t.Fatal("the host itself disallows user namespaces; the sandbox could not run")
	}
	rt := newRuntime(t)
	for _, level := range sandbox.Levels {
		t.Run("unshare CLONE_NEWUSER at "+string(level), func(t *testing.T) {
			spec := atLevel(level, pySpec(pyLibc+`
r = libc.unshare(0x10000000)
print("unshare returned", r, ctypes.get_errno())
`))
			wantSeccompKill(t, mustRun(t, rt, spec))
		})
	}
	t.Run("util-linux unshare at strict", func(t *testing.T) {
		// The escape itself: a nested user and PID namespace mounting a
		// fresh procfs. unshare(1) is killed at its first unshare(2).
		res := mustRun(t, rt, atLevel(sandbox.LevelStrict,
			shSpec(`exec unshare -U -r -m -p -f sh -c 'mount -t proc proc /proc && ls /proc/sys'`)))
		wantSeccompKill(t, res)
	})
	t.Run("max_user_namespaces inside", func(t *testing.T) {
		tok := token(t)
		stop := background(t, rt, pySpec(`import time, sys; time.sleep(100)`+"\n#"+tok))
		prog := hostPID(t, tok)
		init, err := strconv.Atoi(hostStatusField(t, prog, "PPid"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("/usr/bin/python3", "-I", "-c", `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/proc/%s/ns/user" % sys.argv[1], os.O_RDONLY)
if libc.setns(fd, 0x10000000) != 0:
    sys.exit("setns: errno %d" % ctypes.get_errno())
print(open("/proc/sys/user/max_user_namespaces").read().strip())
`, strconv.Itoa(init))
		out, err := cmd.CombinedOutput()
		stop()
		if err != nil {
			t.Fatalf("reading the sandbox's limit from the host: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != "0" {
			t.Errorf("user.max_user_namespaces in the sandbox's user namespace = %q, want 0", got)
		}
	})
	if after := hostLimit(); after != before {
		t.Errorf("the host's user.max_user_namespaces changed from %s to %s", before, after)
	}
}
