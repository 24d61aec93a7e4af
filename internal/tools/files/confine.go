package files

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// DefaultDeny returns the deny-list used when Config.Deny is nil, a new
// slice on each call: secrets, and files whose modification leads to code
// execution on the host (git configuration and hooks, run by a human's
// git in the workspace). The first four entries are the ones issue 8
// names; the others are the same kinds of file under other common names.
func DefaultDeny() []string {
	return []string{
		".env", ".env.*",
		"*.pem", "*.key",
		"id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
		".netrc", ".git-credentials",
		".git/config", ".git/hooks",
	}
}

// maxSymlinkHops bounds the symbolic links resolve follows for one path,
// like the kernel's MAXSYMLINKS (40 on Linux).
const maxSymlinkHops = 40

// errDenied is the audit-only cause of a deny-list refusal.
var errDenied = errors.New("path matches the deny-list")

// denyRule is one compiled Config.Deny pattern, lower-cased and split on
// '/'. A rule with one part matches any path component (so "*.pem" matches
// "a/b/key.pem" and everything under a directory "certs.pem/"); a rule with
// several parts matches a path whose leading components match them, part
// by part (".git/config" matches ".git/config" and anything below it).
type denyRule struct {
	pattern string
	parts   []string
}

// compileDeny validates and compiles deny patterns. A pattern must be
// non-empty, relative, free of NUL, empty, "." and ".." components and of
// "**" (a one-part pattern already matches at any depth), and each
// component must be a valid path.Match pattern.
func compileDeny(patterns []string) ([]denyRule, error) {
	rules := make([]denyRule, 0, len(patterns))
	for _, p := range patterns {
		if p == "" || strings.IndexByte(p, 0) >= 0 || strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("deny pattern %q: must be a non-empty relative pattern", p)
		}
		parts := strings.Split(strings.ToLower(p), "/")
		for _, c := range parts {
			switch {
			case c == "" || c == "." || c == "..":
				return nil, fmt.Errorf("deny pattern %q: empty, \".\" or \"..\" component", p)
			case c == "**":
				return nil, fmt.Errorf("deny pattern %q: \"**\" is not supported; a pattern without '/' matches at any depth", p)
			}
			if _, err := path.Match(c, ""); err != nil {
				return nil, fmt.Errorf("deny pattern %q: %w", p, err)
			}
		}
		rules = append(rules, denyRule{pattern: p, parts: parts})
	}
	return rules, nil
}

// matchFold reports whether name matches the lower-cased glob pattern,
// ignoring case. Patterns were validated by compileDeny.
func matchFold(pattern, name string) bool {
	ok, _ := path.Match(pattern, strings.ToLower(name))
	return ok
}

// deniedBy returns the deny rule matching the clean workspace-relative
// path rel ("." is the root), if any. Matching ignores case, so a
// case-insensitive file system cannot be used to reach ".ENV".
func (w *Workspace) deniedBy(rel string) (string, bool) {
	if len(w.deny) == 0 || rel == "." {
		return "", false
	}
	comps := strings.Split(rel, "/")
	for _, r := range w.deny {
		if len(r.parts) == 1 {
			for _, c := range comps {
				if matchFold(r.parts[0], c) {
					return r.pattern, true
				}
			}
			continue
		}
		if len(comps) >= len(r.parts) && prefixMatches(r.parts, comps) {
			return r.pattern, true
		}
	}
	return "", false
}

// deniedBelow returns a multi-part deny rule that could match a path
// strictly below directory rel: moving rel would move that denied path to
// a name the rule no longer covers (".git" -> "g" exposes "g/config"), and
// moving a directory to rel could create one. One-part rules match names,
// which a move keeps, so they are not considered.
func (w *Workspace) deniedBelow(rel string) (string, bool) {
	var comps []string
	if rel != "." {
		comps = strings.Split(rel, "/")
	}
	for _, r := range w.deny {
		if len(r.parts) > len(comps) && prefixMatches(r.parts[:len(comps)], comps) {
			return r.pattern, true
		}
	}
	return "", false
}

// prefixMatches reports whether parts[i] matches comps[i] for every part.
func prefixMatches(parts, comps []string) bool {
	for i, p := range parts {
		if !matchFold(p, comps[i]) {
			return false
		}
	}
	return true
}

// deniedError is the refusal of a deny-listed path: PATH_FORBIDDEN with
// the generic message; the matching pattern goes to the audit log only.
func deniedError(clientPath, pattern string) *tool.Error {
	return tool.Errorf(reason.PathForbidden, fmt.Errorf("%w (pattern %q)", errDenied, pattern),
		"%q: %s", clip(clientPath), reason.Message(reason.PathForbidden))
}

// checkPath validates the client path p (cleanPath) and applies the
// deny-list. It returns the clean path rel, which every operation uses
// through the root, and canon, rel with the symbolic links among its
// components resolved inside the root as os.Root follows them (the last
// component only if followFinal). Both are checked against the deny-list,
// so a link "alias -> .env" or a directory link "g -> .git" does not reach
// a denied file. canon is rel when the deny-list is empty: confinement
// itself never depends on it (os.Root enforces that on every call), it only
// names what a call would reach.
func (w *Workspace) checkPath(p string, followFinal bool) (rel, canon string, te *tool.Error) {
	rel, te = cleanPath(p)
	if te != nil {
		return "", "", te
	}
	if len(w.deny) == 0 {
		return rel, rel, nil
	}
	if pat, bad := w.deniedBy(rel); bad {
		return "", "", deniedError(p, pat)
	}
	canon, te = w.resolve(rel, followFinal)
	if te != nil {
		return "", "", te
	}
	if pat, bad := w.deniedBy(canon); bad {
		return "", "", deniedError(p, pat)
	}
	return rel, canon, nil
}

// resolve returns rel with every symbolic link among its components
// replaced by its target, evaluated the way os.Root evaluates it: relative
// targets are followed component by component, ".." pops one component,
// and a target that is absolute or climbs above the root is an escape
// (PATH_OUTSIDE_WORKSPACE). The last component is followed only if
// followFinal. Components from the first missing one on are appended as
// they are (a call may create them). More than maxSymlinkHops links is
// PATH_FORBIDDEN (ELOOP). Every lookup is an lstat through the root.
//
// The answer describes the tree at the moment of the call; a concurrent
// writer that swaps a component for a link afterwards is not seen here
// (reads re-check the opened file with sameFile).
func (w *Workspace) resolve(rel string, followFinal bool) (string, *tool.Error) {
	if rel == "." {
		return ".", nil
	}
	todo := strings.Split(rel, "/")
	var done []string
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", w.fsError(rel, fmt.Errorf("%w: symbolic link climbs above the root", w.escapeErr))
			}
			done = done[:len(done)-1]
			continue
		}
		cand := path.Join(append(done, c)...)
		if len(todo) == 0 && !followFinal {
			done = append(done, c)
			continue
		}
		li, err := w.root.Lstat(cand)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p := path.Join(append(append(done, c), todo...)...)
			if p == ".." || strings.HasPrefix(p, "../") {
				return "", w.fsError(rel, fmt.Errorf("%w: symbolic link climbs above the root", w.escapeErr))
			}
			return p, nil
		case err != nil:
			return "", w.fsError(rel, err)
		case li.Mode()&fs.ModeSymlink == 0:
			done = append(done, c)
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return "", w.fsError(rel, &fs.PathError{Op: "resolve", Path: rel, Err: syscall.ELOOP})
		}
		target, err := w.root.Readlink(cand)
		if err != nil {
			return "", w.fsError(rel, err)
		}
		if target == "" || strings.HasPrefix(target, "/") || strings.IndexByte(target, 0) >= 0 {
			return "", w.fsError(rel, fmt.Errorf("%w: absolute symbolic link", w.escapeErr))
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

// sameFile checks, when a deny-list is in force, that the file opened as
// rel (fi from fstat of the open descriptor) is the entry at canon, the
// name checkPath approved. It closes the window between resolving and
// opening: if a component was swapped for a link to a denied file in
// between, the opened file is not the one at canon and the call is refused
// (PATH_FORBIDDEN). A regular file here has one link, so its only name is
// canon.
func (w *Workspace) sameFile(clientPath, canon string, fi fs.FileInfo) *tool.Error {
	if len(w.deny) == 0 {
		return nil
	}
	li, err := w.root.Lstat(canon)
	if err != nil || !os.SameFile(li, fi) {
		return tool.Errorf(reason.PathForbidden, fmt.Errorf("opened file is not %q (changed during the call): %v", canon, err),
			"%q: changed during the call", clip(clientPath))
	}
	return nil
}
