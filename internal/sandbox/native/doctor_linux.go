//go:build linux

package native

import (
	"bufio"
	"context"

	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// Verdicts of a host check.
const (
	VerdictOK   = "ok"
	VerdictWarn = "warn"
	VerdictFail = "fail"
)

// Check is one host capability as `portcullis doctor` reports it.
type Check struct {
	Name    string
	Verdict string
	Detail  string
}

// Probe checks what this host supports for the native runtime:
// privileges, user namespaces, seccomp, Landlock, cgroups, memfd, the host
// ids the sandbox maps to, and finally a real sandbox run. It never
// changes the host beyond creating and removing one sandbox.
func Probe(ctx context.Context, readOnlyPaths []string) []Check {
	var out []Check
	add := func(name, verdict, format string, args ...any) {
		out = append(out, Check{Name: name, Verdict: verdict, Detail: fmt.Sprintf(format, args...)})
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		add("kernel", VerdictOK, "%s %s", unix.ByteSliceToString(uts.Sysname[:]), unix.ByteSliceToString(uts.Release[:]))
	}
	if os.Geteuid() == 0 {
		add("privileges", VerdictOK, "running as root: sandbox users map onto host ids %d and %d", setupHostID, programHostID)
	} else {
		add("privileges", VerdictFail, "not root (euid %d): the native runtime maps sandbox users onto unused host ids, which needs root", os.Geteuid())
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err != nil {
		add("user namespaces", VerdictFail, "cannot read max_user_namespaces: %v", err)
	} else if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n <= 0 {
		add("user namespaces", VerdictFail, "user.max_user_namespaces is %d", n)
	} else {
		add("user namespaces", VerdictOK, "user.max_user_namespaces %d; user, PID, network, mount, IPC, UTS and cgroup namespaces are created per run", n)
	}
	if err := seccompSupported(); err != nil {
		add("seccomp", VerdictFail, "%v", err)
	} else {
		f, _ := seccompFilter(sandbox.LevelMaximum)
		add("seccomp", VerdictOK, "filters available; maximum-level filter %d instructions, kills foreign-architecture and x32 calls", len(f))
	}
	if abi := landlockABI(); abi > 0 {
		add("landlock", VerdictOK, "ABI %d (file access%s%s)", abi, cond(abi >= 4, ", TCP ports"), cond(abi >= 6, ", signal and abstract-socket scoping"))
	} else {
		add("landlock", VerdictWarn, "not available: file access is still confined by the mount layout (best effort layer)")
	}
	if ci, err := detectCgroups(); err != nil {
		add("cgroups", VerdictFail, "%v", err)
	} else {
		rep := ci.Report()
		var parts []string
		verdict := VerdictOK
		for _, c := range cgroupControllers {
			parts = append(parts, c+"="+rep.Controllers[c])
			if rep.Controllers[c] == "missing" {
				verdict = VerdictFail
			}
		}
		add("cgroups", verdict, "%s (hybrid hosts are detected per controller)", strings.Join(parts, " "))
	}
	if f, err := sealedCopy("/proc/self/exe"); err != nil {
		add("memfd", VerdictFail, "sealed copy of the init: %v", err)
	} else {
		f.Close()
		add("memfd", VerdictOK, "the init is re-executed from a sealed memfd copy (CVE-2019-5736 class)")
	}
	if users := hostIDUsers(); len(users) > 0 {
		add("sandbox host ids", VerdictWarn, "host ids %d/%d are assigned: %s; sandbox processes would share them", setupHostID, programHostID, strings.Join(users, ", "))
	} else {
		add("sandbox host ids", VerdictOK, "%d (setup) and %d (program) are not assigned to any host user or group", setupHostID, programHostID)
	}
	if os.Geteuid() == 0 {
		rt, err := New(Config{ReadOnlyPaths: readOnlyPaths, PoolSize: -1}, slog.New(slog.DiscardHandler))
		if err != nil {
			add("sandbox run", VerdictFail, "%v", err)
		} else {
			start := time.Now()
			res, err := rt.Run(ctx, &sandbox.Spec{Argv: []string{"/bin/true"}, Limits: sandbox.Limits{WallTime: 10 * time.Second}})
			switch {
			case err != nil:
				add("sandbox run", VerdictFail, "/bin/true in a sandbox: %v", err)
			case res.ExitCode != 0:
				add("sandbox run", VerdictFail, "/bin/true in a sandbox exited %d (%v)", res.ExitCode, res.Violations)
			default:
				add("sandbox run", VerdictOK, "/bin/true at the maximum level in %s (cold start)", time.Since(start).Round(time.Millisecond))
			}
			rt.Close()
		}
	}
	return out
}

func cond(b bool, s string) string {
	if b {
		return s
	}
	return ""
}

// hostIDUsers lists /etc/passwd and /etc/group entries using the ids the
// sandbox maps to.
func hostIDUsers() []string {
	var out []string
	for _, file := range []string{"/etc/passwd", "/etc/group"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) < 3 {
				continue
			}
			if id, err := strconv.Atoi(fields[2]); err == nil && (id == setupHostID || id == programHostID) {
				out = append(out, fmt.Sprintf("%s %s", file, fields[0]))
			}
		}
		f.Close()
	}
	return out
}
