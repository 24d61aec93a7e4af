//go:build linux

package git_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/internal/reason"
)

// The attacks: a repository that tries to make git run a program. Each
// one plants .git/evil.sh, which appends to a marker file outside the
// workspace (a host path the sandbox cannot see) and to PWNED in the
// current directory, and wires it into one of git's execution vectors.
//
// Every attack is first checked to be live: a plain git on the host
// (no hardening, no sandbox) runs the script. Then all four tools run on
// the repository, in the sandbox; afterwards no marker may exist, git must
// not have mentioned the script (it did not even try to run it: the
// hardening worked, not only the sandbox), the work tree must be unchanged
// and git_commit must have committed the work-tree bytes unfiltered.

// evilScript is the planted program.
func evilScript(marker string) string {
	return "#!/bin/sh\necho \"ran: $0 $*\" >> " + marker + "\necho pwned >> PWNED\nexit 0\n"
}

type attack struct {
	name string
	// plant wires .git/evil.sh (relative command ".git/evil.sh", absolute
	// host path script) into the repository.
	plant func(t *testing.T, f *fixture, script string)
	// control triggers the vector with a plain host git (cwd: the
	// workspace); nil when the vector cannot be triggered without the
	// commands under test.
	control []string
}

// plainGit runs git on the host without any hardening (except the
// isolation from the host's own configuration): the control that shows a
// planted attack is live.
func plainGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(gitBinary(t), append([]string{"-c", "user.name=Control", "-c", "user.email=control@example.com"}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "LC_ALL=C"}
	out, _ := cmd.CombinedOutput() // several controls make git fail after running the script
	return string(out)
}

func setConfig(t *testing.T, f *fixture, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		hostGit(t, f.ws, "config", "--local", kv[i], kv[i+1])
	}
}

func attacks() []attack {
	return []attack{
		{
			name: "hooks in .git/hooks",
			plant: func(t *testing.T, f *fixture, script string) {
				for _, h := range []string{"pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "post-index-change",
					"reference-transaction", "pre-auto-gc", "post-rewrite", "fsmonitor-watchman"} {
					writeFile(t, f.ws, ".git/hooks/"+h, evilScript(f.marker()), 0o755)
				}
			},
			control: []string{"commit", "--allow-empty", "-q", "-m", "control"},
		},
		{
			name: "core.hooksPath",
			plant: func(t *testing.T, f *fixture, script string) {
				for _, h := range []string{"pre-commit", "post-commit", "post-index-change", "reference-transaction"} {
					writeFile(t, f.ws, ".git/evil-hooks/"+h, evilScript(f.marker()), 0o755)
				}
				setConfig(t, f, "core.hooksPath", ".git/evil-hooks")
			},
			control: []string{"commit", "--allow-empty", "-q", "-m", "control"},
		},
		{
			name:    "core.fsmonitor",
			plant:   func(t *testing.T, f *fixture, script string) { setConfig(t, f, "core.fsmonitor", script) },
			control: []string{"status"},
		},
		{
			name: "filter driver",
			plant: func(t *testing.T, f *fixture, script string) {
				setConfig(t, f, "filter.evil.clean", script, "filter.evil.smudge", script,
					"filter.evil.process", script, "filter.evil.required", "true",
					// a subsection that cannot be written as -c name=value
					"filter.e=v.il.clean", script)
				writeFile(t, f.ws, ".gitattributes", "* filter=evil\n*.md filter=e=v.il\n", 0o644)
			},
			control: []string{"add", "a.txt"},
		},
		{
			name:    "diff.external",
			plant:   func(t *testing.T, f *fixture, script string) { setConfig(t, f, "diff.external", script) },
			control: []string{"diff"},
		},
		{
			name: "textconv and diff driver command",
			plant: func(t *testing.T, f *fixture, script string) {
				setConfig(t, f, "diff.evil.textconv", script, "diff.evil.command", script)
				writeFile(t, f.ws, ".gitattributes", "*.txt diff=evil\n", 0o644)
			},
			control: []string{"log", "-p", "--ext-diff"},
		},
		{
			name: "pager",
			plant: func(t *testing.T, f *fixture, script string) {
				setConfig(t, f, "core.pager", script, "pager.log", script, "pager.diff", script, "pager.status", script)
			},
			control: nil, // git pages only to a terminal
		},
		{
			name: "signing and signature verification",
			plant: func(t *testing.T, f *fixture, script string) {
				// A commit with a (fake) signature, so that log.showSignature
				// has something to verify.
				tree := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "HEAD^{tree}"))
				obj := fmt.Sprintf("tree %s\nparent %s\nauthor A <a@example.com> 1700000000 +0000\ncommitter A <a@example.com> 1700000000 +0000\n"+
					"gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nsigned\n", tree, f.second)
				id, err := hostGitErr(t, f.ws, []byte(obj), "hash-object", "-t", "commit", "-w", "--stdin")
				if err != nil {
					t.Fatalf("hash-object: %v %s", err, id)
				}
				hostGit(t, f.ws, "update-ref", "refs/heads/main", strings.TrimSpace(id))
				f.second = strings.TrimSpace(id)
				setConfig(t, f, "gpg.program", script, "commit.gpgSign", "true", "log.showSignature", "true")
			},
			control: []string{"log", "-1"},
		},
		{
			name: "network: remote, ssh command, credential helper",
			plant: func(t *testing.T, f *fixture, script string) {
				setConfig(t, f, "remote.origin.url", "http://"+f.listen+"/repo.git",
					"remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*",
					"url.http://"+f.listen+"/.insteadOf", "https://github.com/",
					"core.sshCommand", script, "credential.helper", "!"+script,
					"branch.main.remote", "origin", "branch.main.merge", "refs/heads/main")
			},
			control: []string{"ls-remote", "origin"}, // connects (the listener counts it)
		},
		{
			name: "include.path outside the workspace",
			plant: func(t *testing.T, f *fixture, script string) {
				cfg := filepath.Join(f.outside, "evil.cfg")
				writeFile(t, f.outside, "evil.cfg", "[core]\n\tfsmonitor = "+script+"\n[log]\n\tdate = raw\n"+
					"[filter \"inc\"]\n\tclean = "+script+"\n", 0o644)
				setConfig(t, f, "include.path", cfg, "includeIf.gitdir:/.path", cfg)
				writeFile(t, f.ws, ".gitattributes", "* filter=inc\n", 0o644)
			},
			control: []string{"status"},
		},
		{
			name: "core.worktree outside the workspace",
			plant: func(t *testing.T, f *fixture, script string) {
				writeFile(t, f.outside, "foreign.txt", "outside the workspace\n", 0o644)
				setConfig(t, f, "core.worktree", f.outside, "core.fsmonitor", script)
			},
			control: []string{"status"},
		},
	}
}

// marker is the host path the planted script writes.
func (f *fixture) marker() string { return filepath.Join(f.outside, "marker") }

// TestAttacksDoNotExecute runs every attack twice: in the native sandbox
// (the boundary plus the hardening), and on the host without any sandbox,
// where a program that ran would write its marker: the hardening alone
// must stop every vector. Only the include of a file outside the workspace
// is stopped by the sandbox alone (the host has that file).
func TestAttacksDoNotExecute(t *testing.T) {
	for _, sandboxed := range []bool{true, false} {
		layer := "sandbox+hardening"
		if !sandboxed {
			layer = "hardening only"
		}
		for _, a := range attacks() {
			t.Run(layer+"/"+a.name, func(t *testing.T) { runAttack(t, a, sandboxed) })
		}
	}
}

func runAttack(t *testing.T, a attack, sandboxed bool) {
	f := setup(t)
	workDir := t.TempDir()
	if !sandboxed {
		f.tools = newToolsOn(t, f.ws, &hostRuntime{Dir: workDir}, nil)
		f.byName = byName(f.tools)
	}
	if err := os.Chmod(f.outside, 0o777); err != nil { // writable, were it visible
		t.Fatal(err)
	}
	ln, conns := listen(t)
	f.listen = ln
	script := filepath.Join(f.ws, ".git", "evil.sh")
	writeFile(t, f.ws, ".git/evil.sh", evilScript(f.marker()), 0o755)
	a.plant(t, f, script)
	writeFile(t, f.ws, "a.txt", "tampered\n", 0o644)
	writeFile(t, f.ws, "notes.md", "notes\n", 0o644)

	if a.control != nil {
		plainGit(t, f.ws, a.control...)
		if _, err := os.Stat(f.marker()); err != nil && conns.Load() == 0 {
			t.Fatalf("control: plain git %v did not trigger the attack: %v", a.control, err)
		}
		for _, p := range []string{f.marker(), filepath.Join(f.ws, "PWNED"), filepath.Join(f.outside, "PWNED")} {
			os.Remove(p)
		}
		conns.Store(0)
	}
	// The control may have left git state behind (a commit, an
	// index refresh): the snapshot is taken after it.
	head := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", "HEAD"))
	before := snapshot(t, f.ws)

	calls := []struct {
		tool string
		args map[string]any
	}{
		{"git_status", nil},
		{"git_status", map[string]any{"ref": f.initial}},
		{"git_diff", nil},
		{"git_diff", map[string]any{"ref": "HEAD"}},
		{"git_diff", map[string]any{"ref": f.initial + "..HEAD"}},
		{"git_log", map[string]any{"limit": 5}},
		{"git_commit", map[string]any{"message": "commit a.txt", "paths": []string{"a.txt", "notes.md"}}},
		{"git_log", map[string]any{"limit": 1}},
	}
	var committed string
	for _, c := range calls {
		res, err := f.call(t, c.tool, c.args)
		if err != nil || res.IsError {
			t.Fatalf("%s %v: %v %v", c.tool, c.args, err, res)
		}
		out := res.Text + structured(res, "stderr")
		if strings.Contains(out, "evil") || strings.Contains(out, "cannot fork") || strings.Contains(out, "cannot run") {
			t.Errorf("%s %v: git tried to run something:\n%s", c.tool, c.args, out)
		}
		if v, ok := res.Structured["violations"].([]map[string]any); ok && len(v) > 0 {
			t.Errorf("%s %v: sandbox violations %v", c.tool, c.args, v)
		}
		switch {
		case c.tool == "git_commit":
			committed = structured(res, "commit")
		case sandboxed && c.tool == "git_log" && strings.Contains(res.Text, "Date:   1700000000 +0000"):
			t.Errorf("git_log used log.date=raw from the included file outside the workspace:\n%s", res.Text)
		case c.tool == "git_status" && strings.Contains(res.Text, "foreign"):
			t.Errorf("git_status used core.worktree outside the workspace:\n%s", res.Text)
		}
	}

	for _, p := range []string{f.marker(), filepath.Join(f.ws, "PWNED"), filepath.Join(f.outside, "PWNED"), filepath.Join(workDir, "PWNED")} {
		if b, err := os.ReadFile(p); err == nil {
			t.Errorf("the planted program ran: %s = %q", p, b)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("%d network connections to the remote", n)
	}
	if d := diffSnapshots(before, snapshot(t, f.ws)); len(d) > 0 {
		t.Errorf("work tree changed: %v", d)
	}
	// The commit holds the work-tree bytes: no filter ran.
	if got := hostGit(t, f.ws, "cat-file", "blob", committed+":a.txt"); got != "tampered\n" {
		t.Errorf("committed a.txt = %q, want the work-tree content", got)
	}
	if got := strings.TrimSpace(hostGit(t, f.ws, "rev-parse", committed+"^")); got != head {
		t.Errorf("commit parent %s, want %s", got, head)
	}
	if got := hostGit(t, f.ws, "cat-file", "commit", committed); strings.Contains(got, "gpgsig") {
		t.Errorf("the commit was signed:\n%s", got)
	}
}

// listen starts a TCP listener on loopback that counts connections; it is
// closed when the test ends.
func listen(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), &n
}

// TestOptionLikeArguments: paths that look like options are file names;
// refs that look like options are refused before anything runs.
func TestOptionLikeArguments(t *testing.T) {
	f := setup(t)
	names := []string{"--output=out.txt", "-c", "--exec=touch pwned", ":(top)a.txt", "*.txt"}
	for _, n := range names {
		writeFile(t, f.ws, n, "v1\n", 0o644)
	}
	hostGit(t, f.ws, "add", "--", "--output=out.txt", "-c", "--exec=touch pwned")
	hostGit(t, f.ws, "commit", "-q", "-m", "odd names")
	for _, n := range names[:3] {
		writeFile(t, f.ws, n, "v2\n", 0o644)
	}
	writeFile(t, f.ws, "a.txt", "modified\n", 0o644)
	before := snapshot(t, f.ws)

	for _, n := range names[:3] {
		res := f.ok(t, "git_diff", map[string]any{"path": n})
		if !strings.Contains(res.Text, "+++ b/"+n) || !strings.Contains(res.Text, "+v2") || strings.Contains(res.Text, "a.txt") {
			t.Errorf("git_diff path %q is not that file:\n%s", n, res.Text)
		}
	}
	// Pathspec magic and globs are literal.
	for _, n := range []string{":(top)a.txt", "*.txt"} {
		res := f.ok(t, "git_status", map[string]any{"path": n})
		if strings.Contains(res.Text, " M a.txt") {
			t.Errorf("git_status path %q matched a.txt:\n%s", n, res.Text)
		}
	}
	for _, ref := range []string{"--output=out.txt", "-c", "--exec=touch pwned", "../a.txt", "/etc/passwd", ".git", "~1", "a//b", "refs/.hidden", "main/"} {
		for _, name := range []string{"git_status", "git_diff", "git_log"} {
			if code := codeOf(f.call(t, name, map[string]any{"ref": ref})); code != reason.InvalidArguments {
				t.Errorf("%s ref %q: %s, want INVALID_ARGUMENTS", name, ref, code)
			}
		}
	}
	res := f.ok(t, "git_commit", map[string]any{"message": "option-like paths", "paths": []string{"--output=out.txt", "-c"}})
	if got := hostGit(t, f.ws, "diff-tree", "--no-commit-id", "--name-only", "-r", structured(res, "commit")); got != "--output=out.txt\n-c\n" {
		t.Errorf("committed %q", got)
	}
	for _, p := range []string{"out.txt", "pwned"} {
		if _, err := os.Lstat(filepath.Join(f.ws, p)); err == nil {
			t.Errorf("%s was created: an argument was read as an option", p)
		}
	}
	if d := diffSnapshots(before, snapshot(t, f.ws)); len(d) > 0 {
		t.Errorf("work tree changed: %v", d)
	}
}

// TestSymlinksAndHardLinks: a symbolic link to a file outside the
// workspace is committed as a link and never read through; a hard link to
// an outside file is refused.
func TestSymlinksAndHardLinks(t *testing.T) {
	f := setup(t)
	secret := "TOPSECRET-" + strings.Repeat("7f", 2) // fake, built at run time (secret scan)
	writeFile(t, f.outside, "secret.txt", secret+"\n", 0o644)
	target := filepath.Join(f.outside, "secret.txt")
	if err := os.Symlink(target, filepath.Join(f.ws, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.outside, filepath.Join(f.ws, "dirlink")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, f.ws)
	var outputs []string
	collect := func(name string, args map[string]any) (reason.Code, string) {
		res, err := f.call(t, name, args)
		if res != nil {
			outputs = append(outputs, res.Text, structured(res, "stdout"), structured(res, "stderr"))
		}
		return codeOf(res, err), structured(res, "commit")
	}
	collect("git_status", nil)
	collect("git_diff", map[string]any{"path": "link"})
	if code, _ := collect("git_commit", map[string]any{"message": "through the link", "paths": []string{"dirlink/secret.txt"}}); code != reason.NonZeroExit {
		t.Errorf("committing a path beyond a symbolic link: %s, want NON_ZERO_EXIT", code)
	}
	code, commit := collect("git_commit", map[string]any{"message": "links", "paths": []string{"link", "dirlink"}})
	if code != reason.OK {
		t.Fatalf("commit of the links: %s", code)
	}
	collect("git_diff", map[string]any{"ref": f.initial})
	collect("git_log", nil)
	if got := hostGit(t, f.ws, "ls-tree", commit, "link", "dirlink"); !strings.Contains(got, "120000 blob") || strings.Count(got, "120000") != 2 {
		t.Errorf("links not committed as links:\n%s", got)
	}
	if got := hostGit(t, f.ws, "cat-file", "blob", commit+":link"); got != target {
		t.Errorf("link blob %q, want the link text %q", got, target)
	}
	for _, o := range outputs {
		if strings.Contains(o, secret) {
			t.Errorf("the outside file's content reached a result:\n%s", o)
		}
	}
	if all := hostGit(t, f.ws, "cat-file", "--batch-all-objects", "--batch"); strings.Contains(all, secret) {
		t.Error("the outside file's content is in the object store")
	}
	if d := diffSnapshots(before, snapshot(t, f.ws)); len(d) > 0 {
		t.Errorf("work tree changed: %v", d)
	}

	// A hard link to the outside file: refused by git_diff and
	// git_commit (which would print or store its content).
	if err := os.Link(target, filepath.Join(f.ws, "hard.txt")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"git_diff", nil},
		{"git_diff", map[string]any{"path": "hard.txt"}},
		{"git_commit", map[string]any{"message": "hard", "paths": []string{"hard.txt"}}},
		{"git_commit", map[string]any{"message": "hard", "paths": []string{"."}}},
		{"git_commit", map[string]any{"message": "hard"}},
	} {
		res, err := f.call(t, c.tool, c.args)
		if code := codeOf(res, err); code != reason.PathForbidden {
			t.Errorf("%s %v with a hard link: %s, want PATH_FORBIDDEN", c.tool, c.args, code)
		}
	}
	if all := hostGit(t, f.ws, "cat-file", "--batch-all-objects", "--batch"); strings.Contains(all, secret) {
		t.Error("the hard-linked file's content is in the object store")
	}
}
