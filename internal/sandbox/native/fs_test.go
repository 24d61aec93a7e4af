//go:build linux

package native

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// TestFilesystemWrites attacks every part of the tree: the root, system
// mounts, /etc, /dev and /proc must refuse writes (EROFS where the mount
// is read-only, so the refusal does not rest on file permissions alone);
// only /tmp, the work dir and the null device take them.
func TestFilesystemWrites(t *testing.T) {
	rt := newRuntime(t)
	out := pyJSON(t, rt, pySpec(pyProbe+`
res = {}
for p in ["/x", "/usr/x", "/usr/bin/x", "/etc/x", "/etc/passwd", "/dev/x", "/dev/null",
          "/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/tmp/x", "/work/x"]:
    res["write " + p] = try_write(p)
def attempt(name, fn):
    try:
        fn()
        res[name] = "ok"
    except OSError as e:
        res[name] = _err(e)
attempt("mkdir /newdir", lambda: os.mkdir("/newdir"))
attempt("mkdir /usr/newdir", lambda: os.mkdir("/usr/newdir"))
attempt("symlink /etc/link", lambda: os.symlink("/tmp", "/etc/link"))
attempt("rename /etc/passwd", lambda: os.rename("/etc/passwd", "/etc/passwd2"))
attempt("unlink /etc/hosts", lambda: os.unlink("/etc/hosts"))
attempt("mkdir /tmp/d", lambda: os.mkdir("/tmp/d"))
attempt("mkdir /work/d", lambda: os.mkdir("/work/d"))
print(json.dumps(res))
`))
	want := map[string]any{
		"write /x":                            "EROFS",
		"write /usr/x":                        "EROFS",
		"write /usr/bin/x":                    "EROFS",
		"write /etc/x":                        "EROFS",
		"write /etc/passwd":                   "EROFS",
		"write /dev/x":                        "EROFS",
		"write /dev/null":                     "ok",
		"write /proc/sys/kernel/core_pattern": "ENOENT",
		"write /proc/sysrq-trigger":           "ENOENT",
		"write /tmp/x":                        "ok",
		"write /work/x":                       "ok",
		"mkdir /newdir":                       "EROFS",
		"mkdir /usr/newdir":                   "EROFS",
		"symlink /etc/link":                   "EROFS",
		"rename /etc/passwd":                  "EROFS",
		"unlink /etc/hosts":                   "EROFS",
		"mkdir /tmp/d":                        "ok",
		"mkdir /work/d":                       "ok",
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("write outcomes (-want +got):\n%s", diff)
	}
}

// TestFilesystemSizeCaps fills /tmp and the work dir past their caps:
// the write fails with ENOSPC having stored no more than the cap.
func TestFilesystemSizeCaps(t *testing.T) {
	const capBytes = 1 << 20
	rt := newRuntime(t)
	for _, dir := range []string{"/tmp", "/work"} {
		t.Run(dir, func(t *testing.T) {
			spec := pySpec(pyProbe + `
written, outcome = 0, "no error"
try:
    with open(sys.argv[1] + "/fill", "wb") as f:
        chunk = b"x" * 65536
        while written < 8 * 1048576:
            f.write(chunk)
            f.flush()
            written += len(chunk)
except OSError as e:
    outcome = _err(e)
print(json.dumps({"outcome": outcome, "written": written}))
`)
			spec.Argv = append(spec.Argv, dir)
			spec.TmpSizeBytes, spec.WorkSizeBytes = capBytes, capBytes
			out := pyJSON(t, rt, spec)
			if out["outcome"] != "ENOSPC" {
				t.Errorf("filling %s: outcome %v, want ENOSPC", dir, out["outcome"])
			}
			if w := out["written"].(float64); w > capBytes {
				t.Errorf("filling %s stored %v bytes, more than the %d-byte cap", dir, w, capBytes)
			}
		})
	}
}

// TestFilesystemHostSecretsAbsent looks for host files a program should
// never see: shadow files, root's and users' home directories, the host's
// /var, /run and /sys, host devices. /etc holds only the sandbox's own
// minimal files and /dev only the harmless character devices.
func TestFilesystemHostSecretsAbsent(t *testing.T) {
	rt := newRuntime(t)
	out := pyJSON(t, rt, pySpec(pyProbe+`
res = {}
for p in ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/.ssh/id_rsa", "/root/.bashrc",
          "/root/.gitconfig", "/home", "/var/log/syslog", "/run", "/sys/kernel", "/boot",
          "/dev/vda", "/dev/mem", "/dev/kmsg", "/dev/shm", "/dev/tty"]:
    res[p] = try_read(p)
res["ls /etc"] = try_list("/etc")
res["ls /"] = try_list("/")
res["ls /dev"] = try_list("/dev")
res["passwd"] = try_read("/etc/passwd")
res["group"] = try_read("/etc/group")
print(json.dumps(res))
`))
	want := map[string]any{
		"/etc/shadow":       "ENOENT",
		"/etc/gshadow":      "ENOENT",
		"/etc/sudoers":      "ENOENT",
		"/root/.ssh/id_rsa": "ENOENT",
		"/root/.bashrc":     "ENOENT",
		"/root/.gitconfig":  "ENOENT",
		"/home":             "ENOENT",
		"/var/log/syslog":   "ENOENT",
		"/run":              "ENOENT",
		"/sys/kernel":       "ENOENT",
		"/boot":             "ENOENT",
		"/dev/vda":          "ENOENT",
		"/dev/mem":          "ENOENT",
		"/dev/kmsg":         "ENOENT",
		"/dev/shm":          "ENOENT",
		"/dev/tty":          "ENOENT",
		"ls /dev":           []any{"fd", "null", "random", "stderr", "stdin", "stdout", "urandom", "zero"},
		"ls /etc":           []any{"group", "hostname", "hosts", "ld.so.cache", "passwd"},
		// Landlock grants nothing on the root directory itself; which
		// mounts exist there is pinned by TestEscapeHostFiles/mountinfo.
		"ls /":   "EACCES",
		"passwd": "ok:root:x:0:0:root:/:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n",
		"group":  "ok:root:x:0:\nnogroup:x:65534:\n",
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("host files seen from the sandbox (-want +got):\n%s", diff)
	}
}

// TestFilesystemCanaryUnreachable plants a world-readable file on the host
// next to a directory that is mounted into the sandbox, then tries every
// way out of the mount namespace to read it: its absolute path, the
// init's root, the program's own root and cwd, ".." past the root, ".."
// out of the mounted directory (by path and by directory descriptor).
func TestFilesystemCanaryUnreachable(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(base, "secret")
	shared := filepath.Join(base, "shared")
	for _, d := range []string{secret, shared} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	canary := filepath.Join(secret, "canary.txt")
	const content = "PORTCULLIS-CANARY-7f3a"
	if err := os.WriteFile(canary, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shared, "visible.txt"), []byte("visible"), 0o644); err != nil {
		t.Fatal(err)
	}

	rt := newRuntime(t)
	spec := pySpec(pyProbe + `
canary, shared = sys.argv[1], sys.argv[2]
res = {}
for name, p in [("absolute", canary),
                ("init root", "/proc/1/root" + canary),
                ("own root", "/proc/self/root" + canary),
                ("cwd dotdot", "/proc/self/cwd/../../../../.." + canary),
                ("root dotdot", "/../../../.." + canary),
                ("mount dotdot", "/mnt/shared/../../secret/canary.txt"),
                ("same-path mount dotdot", shared + "/../secret/canary.txt"),
                ("mounted file", "/mnt/shared/visible.txt")]:
    res[name] = try_read(p)
# Out of the mount by descriptor: ".." is the sandbox's /mnt, which
# holds no host directory (stat needs no Landlock right).
fd = os.open("/mnt/shared", os.O_PATH)
up = os.open("..", os.O_PATH, dir_fd=fd)
res["dirfd dotdot"] = [os.readlink("/proc/self/fd/%d" % up), os.path.exists("/proc/self/fd/%d/secret" % up)]
print(json.dumps(res))
`)
	spec.Argv = append(spec.Argv, canary, shared)
	spec.Mounts = []sandbox.Mount{{Source: shared, Target: "/mnt/shared"}, {Source: shared}}
	res := mustSucceed(t, rt, spec)
	if strings.Contains(string(res.Stdout), content) || strings.Contains(string(res.Stderr), content) {
		t.Fatalf("the sandbox read the host canary:\n%s", res.Stdout)
	}
	var out map[string]any
	if err := json.Unmarshal(res.Stdout, &out); err != nil {
		t.Fatalf("decode %q: %v", res.Stdout, err)
	}
	want := map[string]any{
		"absolute":               "ENOENT",
		"init root":              "EACCES",
		"own root":               "ENOENT",
		"cwd dotdot":             "ENOENT",
		"root dotdot":            "ENOENT",
		"mount dotdot":           "ENOENT",
		"same-path mount dotdot": "ENOENT",
		"mounted file":           "ok:visible",
		"dirfd dotdot":           []any{"/mnt", false},
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("canary attempts (-want +got):\n%s", diff)
	}
}

// TestProcShowsOnlyProcesses checks /proc is mounted with subset=pid: no
// sysctl tree, no sysrq trigger, no kernel memory or symbols.
func TestProcShowsOnlyProcesses(t *testing.T) {
	rt := newRuntime(t)
	out := pyJSON(t, rt, pySpec(pyProbe+`
names = os.listdir("/proc")
res = {"non-pid entries": sorted(n for n in names if not n.isdigit())}
for p in ["/proc/sys", "/proc/sysrq-trigger", "/proc/kcore", "/proc/kallsyms", "/proc/kmsg",
          "/proc/modules", "/proc/mounts", "/proc/net", "/proc/config.gz", "/proc/keys"]:
    res[p] = os.path.lexists(p)
print(json.dumps(res))
`))
	want := map[string]any{
		"non-pid entries":     []any{"self", "thread-self"},
		"/proc/sys":           false,
		"/proc/sysrq-trigger": false,
		"/proc/kcore":         false,
		"/proc/kallsyms":      false,
		"/proc/kmsg":          false,
		"/proc/modules":       false,
		"/proc/mounts":        false,
		"/proc/net":           false,
		"/proc/config.gz":     false,
		"/proc/keys":          false,
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("/proc contents (-want +got):\n%s", diff)
	}
}

// TestMountReadOnly mounts a world-writable host directory without
// Writable: reads work, every kind of write fails with EROFS (the mount
// flag, not file permissions, stops it), and the host copy is unchanged.
func TestMountReadOnly(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(file, []byte("original"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o666); err != nil { // undo the umask
		t.Fatal(err)
	}
	rt := newRuntime(t)
	spec := pySpec(pyProbe + `
res = {"read": try_read("/data/in.txt"), "overwrite": try_write("/data/in.txt"), "create": try_write("/data/new.txt")}
for name, fn in [("chmod", lambda: os.chmod("/data/in.txt", 0o777)),
                 ("unlink", lambda: os.unlink("/data/in.txt")),
                 ("mkdir", lambda: os.mkdir("/data/d"))]:
    try:
        fn()
        res[name] = "ok"
    except OSError as e:
        res[name] = _err(e)
print(json.dumps(res))
`)
	spec.Mounts = []sandbox.Mount{{Source: dir, Target: "/data"}}
	out := pyJSON(t, rt, spec)
	want := map[string]any{
		"read": "ok:original", "overwrite": "EROFS", "create": "EROFS",
		"chmod": "EROFS", "unlink": "EROFS", "mkdir": "EROFS",
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("read-only mount (-want +got):\n%s", diff)
	}
	got, err := os.ReadFile(file)
	if err != nil || string(got) != "original" {
		t.Errorf("host file after the run: %q, %v; want unchanged", got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("host directory now holds %d entries, want only in.txt", len(entries))
	}
}

// TestMountTargets checks a mount is visible wherever it is placed,
// including below the sandbox's own tmpfs mounts (/work/..., and the
// default target, which for a t.TempDir is under /tmp): these used to be
// hidden under the tmpfs mounted after them.
func TestMountTargets(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte("mounted"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"", "/data", "/work/data", "/tmp/data", "/opt/a/b/c"} {
		t.Run("target="+target, func(t *testing.T) {
			where := target
			if where == "" {
				where = dir
			}
			rt := newRuntime(t)
			spec := atLevel(sandbox.LevelStrict, shSpec(`cat "$1"/f.txt && touch /work/ok /tmp/ok && ls /work /tmp >/dev/null`))
			spec.Argv = append(spec.Argv, "sh", where)
			spec.Mounts = []sandbox.Mount{{Source: dir, Target: target}}
			res := mustSucceed(t, rt, spec)
			if string(res.Stdout) != "mounted" {
				t.Errorf("reading %s/f.txt gave %q, want %q", where, res.Stdout, "mounted")
			}
		})
	}
}

// TestMountWritable writes through a Writable mount: the file appears on
// the host, owned by the sandbox user's host id (not root).
func TestMountWritable(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chown(dir, programHostID, programHostID); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	spec := shSpec("echo hello > /out/result.txt")
	spec.Mounts = []sandbox.Mount{{Source: dir, Target: "/out", Writable: true}}
	mustSucceed(t, rt, spec)
	p := filepath.Join(dir, "result.txt")
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("host file: %q, %v; want %q", got, err, "hello\n")
	}
	uid, gid := fileOwner(t, p)
	if uid != programHostID || gid != programHostID {
		t.Errorf("host file owned by %d:%d, want %d:%d", uid, gid, programHostID, programHostID)
	}
}

// TestMountMissingSource refuses a Spec mount whose source does not exist.
func TestMountMissingSource(t *testing.T) {
	rt := newRuntime(t)
	spec := shSpec("true")
	spec.Mounts = []sandbox.Mount{{Source: filepath.Join(t.TempDir(), "missing")}}
	_, err := rt.Run(t.Context(), spec)
	if !errors.Is(err, sandbox.ErrInvalidSpec) {
		t.Fatalf("Run with a missing mount source: err = %v, want ErrInvalidSpec", err)
	}
}

// TestMountSourceBehindPrivateDir mounts a directory whose host path
// crosses a root-only (0700) directory, like a pyenv under /root: the
// gateway opens it, so it is mountable though the sandbox user could
// never traverse the host path.
func TestMountSourceBehindPrivateDir(t *testing.T) {
	base := t.TempDir()
	private := filepath.Join(base, "private")
	pub := filepath.Join(private, "pub")
	if err := os.MkdirAll(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pub, "lib.txt"), []byte("library"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	spec := atLevel(sandbox.LevelStrict, shSpec(`cat "$1/lib.txt"; ls -ld "$1" >/dev/null`))
	spec.Argv = append(spec.Argv, "sh", pub)
	spec.Mounts = []sandbox.Mount{{Source: pub}}
	res := mustSucceed(t, rt, spec)
	if string(res.Stdout) != "library" {
		t.Errorf("mounted file read as %q, want %q", res.Stdout, "library")
	}
}

// TestFilesCreatedInWorkDir checks Spec.Files land in the work dir with
// their mode (setuid and sticky bits stripped), owned by the sandbox user.
func TestFilesCreatedInWorkDir(t *testing.T) {
	rt := newRuntime(t)
	spec := atLevel(sandbox.LevelStrict, shSpec(`stat -c '%n %a %u %g' /work/*; cat /work/data.txt; /work/run.sh`))
	spec.Files = []sandbox.File{
		{Name: "data.txt", Data: []byte("alpha\n"), Mode: 0o600},
		{Name: "run.sh", Data: []byte("#!/bin/sh\necho ran\n"), Mode: 0o755},
		{Name: "suid", Data: []byte("x"), Mode: 0o4755},
		{Name: "ro", Data: []byte("x"), Mode: 0o400},
	}
	res := mustSucceed(t, rt, spec)
	want := "/work/data.txt 600 65534 65534\n/work/ro 400 65534 65534\n/work/run.sh 755 65534 65534\n/work/suid 755 65534 65534\nalpha\nran\n"
	if diff := cmp.Diff(want, string(res.Stdout)); diff != "" {
		t.Errorf("files in /work (-want +got):\n%s", diff)
	}
}

// TestWorkDir runs the program in a custom Dir: it is the cwd, private
// to the sandbox user and writable.
func TestWorkDir(t *testing.T) {
	rt := newRuntime(t)
	spec := atLevel(sandbox.LevelStrict, shSpec(`pwd; stat -c '%a %u' .; echo x > f && cat f`))
	spec.Dir = "/home/sandbox/job"
	res := mustSucceed(t, rt, spec)
	if diff := cmp.Diff("/home/sandbox/job\n700 65534\nx\n", string(res.Stdout)); diff != "" {
		t.Errorf("custom work dir (-want +got):\n%s", diff)
	}
}

// TestFilesLargerThanWorkDir refuses a run whose Files do not fit the
// work dir's cap: setup fails rather than run with missing input.
func TestFilesLargerThanWorkDir(t *testing.T) {
	rt := newRuntime(t)
	spec := shSpec("true")
	spec.WorkSizeBytes = 1 << 20
	spec.Files = []sandbox.File{{Name: "big", Data: make([]byte, 2<<20), Mode: 0o600}}
	if _, err := rt.Run(t.Context(), spec); !errors.Is(err, sandbox.ErrSetup) {
		t.Errorf("Run: err %v, want ErrSetup", err)
	}
}
