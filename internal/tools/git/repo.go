package git

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// The gateway's side of git_commit: it reads HEAD, the branch and the
// index of the workspace's repository and installs what the sandboxed git
// built. Every access goes through an os.Root opened on .git from an
// os.Root on the workspace, so nothing outside .git is read or written
// whatever symbolic links the repository holds. Files are never written in
// place: new content goes to a freshly created file (O_EXCL) that is
// renamed over the old name, as git does with its lock files, and reflogs
// are appended only to regular files with one link.

// Size limits for what the gateway reads from the repository.
const (
	maxSmallFile  = 4 << 10   // HEAD, loose refs
	maxPackedRefs = 64 << 20  // packed-refs
	maxIndex      = 512 << 20 // .git/index and the new index
)

// branchRE is the branch names git_commit accepts under refs/heads/: a
// conservative subset of git-check-ref-format.
var branchRE = regexp.MustCompile(`^[A-Za-z0-9_+-][A-Za-z0-9._+-]*(/[A-Za-z0-9_+-][A-Za-z0-9._+-]*)*$`)

// Object and pack file names in an object directory.
var (
	fanoutRE = regexp.MustCompile(`^[0-9a-f]{2}$`)
	looseRE  = regexp.MustCompile(`^[0-9a-f]{38}([0-9a-f]{24})?$`)
	packRE   = regexp.MustCompile(`^pack-[0-9a-f]{40}([0-9a-f]{24})?\.(pack|rev|idx)$`)
)

var errRepoState = errors.New("unsupported repository state")

// repoError is a refusal caused by the repository's state.
func repoError(cause error, format string, args ...any) error {
	return tool.Errorf(reason.ToolFailed, fmt.Errorf("%w: %w", errRepoState, cause), format, args...)
}

type repo struct {
	ws  *os.Root
	git *os.Root
}

// openRepo opens the workspace and its .git directory (which must stay
// inside the workspace). Linked worktrees (commondir) and the reftable ref
// backend are refused.
func openRepo(ws string) (*repo, error) {
	w, err := os.OpenRoot(ws)
	if err != nil {
		return nil, tool.Errorf(reason.ToolFailed, err, "")
	}
	fi, err := w.Lstat(".git")
	if err != nil || !fi.IsDir() {
		w.Close()
		if err == nil {
			err = errNotRepo
		}
		return nil, notRepo(err)
	}
	g, err := w.OpenRoot(".git")
	if err != nil {
		w.Close()
		return nil, notRepo(err)
	}
	r := &repo{ws: w, git: g}
	for _, name := range []string{"commondir", "reftable"} {
		if _, err := g.Lstat(name); err == nil {
			r.close()
			return nil, repoError(fmt.Errorf(".git/%s exists", name), "git_commit does not support linked worktrees or the reftable ref format")
		}
	}
	return r, nil
}

func (r *repo) close() {
	r.git.Close()
	r.ws.Close()
}

// readRegular reads name (relative to .git) if it is a regular file with
// one link and at most limit bytes. A missing file is fs.ErrNotExist.
func (r *repo) readRegular(name string, limit int64) ([]byte, error) {
	f, err := r.git.OpenFile(name, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkFile(f); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}

// checkFile requires an open file to be a regular file with one link (a
// second link may be the name of a file outside the workspace).
func checkFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", f.Name())
	}
	if n, ok := linkCount(fi); !ok || n != 1 {
		return fmt.Errorf("%s has %d links", f.Name(), n)
	}
	return nil
}

// head is what HEAD names: a branch (ref, e.g. "refs/heads/main") or, when
// detached, nothing (the commit is in HEAD itself).
type head struct {
	ref string
}

// target is the file that the commit updates: the branch, or HEAD.
func (h head) target() string {
	if h.ref == "" {
		return "HEAD"
	}
	return h.ref
}

func (r *repo) readHead() (head, error) {
	b, err := r.readRegular("HEAD", maxSmallFile)
	if err != nil {
		return head{}, notRepo(err)
	}
	s := strings.TrimSpace(string(b))
	if ref, ok := strings.CutPrefix(s, "ref:"); ok {
		ref = strings.TrimSpace(ref)
		name, ok := strings.CutPrefix(ref, "refs/heads/")
		if !ok || !validBranch(name) {
			return head{}, repoError(fmt.Errorf("HEAD is %q", clip(ref)), "HEAD does not name a branch git_commit can update")
		}
		return head{ref: ref}, nil
	}
	if !hashRE.MatchString(s) {
		return head{}, notRepo(fmt.Errorf("HEAD is %q", clip(s)))
	}
	return head{}, nil
}

func validBranch(name string) bool {
	if len(name) > 200 || !branchRE.MatchString(name) || strings.Contains(name, "..") {
		return false
	}
	for _, c := range strings.Split(name, "/") {
		if strings.HasSuffix(c, ".lock") || strings.HasSuffix(c, ".") {
			return false
		}
	}
	return true
}

// resolve returns the commit the target currently holds, "" for a branch
// that does not exist yet (unborn).
func (r *repo) resolve(h head) (string, error) {
	v, err := r.refValue(h.target())
	if err != nil {
		return "", repoError(err, "cannot read the current branch")
	}
	return v, nil
}

// refValue reads a loose ref, else packed-refs; "" if neither has it.
func (r *repo) refValue(name string) (string, error) {
	b, err := r.readRegular(name, maxSmallFile)
	switch {
	case err == nil:
		s := strings.TrimSpace(string(b))
		if !hashRE.MatchString(s) { // a symbolic ref, or garbage
			return "", fmt.Errorf("%s holds %q, not an object id", name, clip(s))
		}
		return s, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	b, err = r.readRegular("packed-refs", maxPackedRefs)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '^' {
			continue
		}
		id, ref, ok := strings.Cut(line, " ")
		if ok && ref == name {
			if !hashRE.MatchString(id) {
				return "", fmt.Errorf("packed-refs: bad id for %s", name)
			}
			return id, nil
		}
	}
	return "", sc.Err()
}

// indexSnapshot is the index the commit started from.
type indexSnapshot struct {
	exists bool
	digest [sha256.Size]byte
}

// snapshotIndex copies .git/index into the scratch directory (where the
// sandboxed git stages into it) and remembers its digest.
func (r *repo) snapshotIndex(scratch string) (indexSnapshot, error) {
	b, err := r.readRegular("index", maxIndex)
	if errors.Is(err, fs.ErrNotExist) {
		return indexSnapshot{}, nil
	}
	if err != nil {
		return indexSnapshot{}, repoError(err, "cannot read the index")
	}
	s, err := os.OpenRoot(scratch)
	if err != nil {
		return indexSnapshot{}, tool.Errorf(reason.ToolFailed, err, "")
	}
	defer s.Close()
	f, err := s.OpenFile("index", os.O_WRONLY|os.O_CREATE|os.O_EXCL|oNoFollow, 0o644)
	if err == nil {
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return indexSnapshot{}, tool.Errorf(reason.ToolFailed, err, "")
	}
	return indexSnapshot{exists: true, digest: sha256.Sum256(b)}, nil
}

// installation is what install needs.
type installation struct {
	head   head
	parent string // "" for an unborn branch
	commit string
	index  indexSnapshot
	reflog string // "<ident> <time> <tz>\t<message>"
}

// install makes the commit built in the scratch directory part of the
// repository: under <target>.lock and index.lock it checks that branch and
// index are still what the commit started from, copies the new objects,
// moves the branch (the commit point), then the index, then appends the
// reflogs. Failures before the branch moves change nothing but unused
// objects; failures after it are returned as warnings.
func (r *repo) install(scratch string, in installation) (warnings []string, err error) {
	s, err := os.OpenRoot(scratch)
	if err != nil {
		return nil, tool.Errorf(reason.ToolFailed, err, "")
	}
	defer s.Close()
	target := in.head.target()
	if dir := path.Dir(target); dir != "." {
		if err := r.git.MkdirAll(dir, 0o755); err != nil {
			return nil, repoError(err, "cannot create the branch")
		}
	}
	refLock, err := r.lock(target)
	if err != nil {
		return nil, err
	}
	defer refLock.release()
	idxLock, err := r.lock("index")
	if err != nil {
		return nil, err
	}
	defer idxLock.release()

	cur, err := r.refValue(target)
	if err != nil {
		return nil, repoError(err, "cannot read the current branch")
	}
	if cur != in.parent {
		return nil, conflict(fmt.Errorf("%s moved from %q to %q", target, in.parent, cur))
	}
	b, err := r.readRegular("index", maxIndex)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if in.index.exists {
			return nil, conflict(errors.New("index was removed"))
		}
	case err != nil:
		return nil, repoError(err, "cannot read the index")
	case !in.index.exists || sha256.Sum256(b) != in.index.digest:
		return nil, conflict(errors.New("index changed"))
	}

	if err := r.copyObjects(s); err != nil {
		return nil, repoError(err, "cannot store the new objects")
	}
	newIndex, err := readScratchFile(s, "index", maxIndex)
	if err != nil {
		return nil, repoError(err, "cannot read the new index")
	}
	if err := idxLock.write(newIndex); err != nil {
		return nil, repoError(err, "cannot write the index")
	}
	if err := refLock.write([]byte(in.commit + "\n")); err != nil {
		return nil, repoError(err, "cannot write the branch")
	}
	if err := refLock.commit(); err != nil {
		return nil, repoError(err, "cannot update the branch")
	}
	// The commit is recorded; what follows cannot undo it.
	if err := idxLock.commit(); err != nil {
		warnings = append(warnings, "index not updated: "+err.Error())
	}
	old := in.parent
	if old == "" {
		old = strings.Repeat("0", len(in.commit))
	}
	entry := old + " " + in.commit + " " + in.reflog + "\n"
	logs := []string{"logs/" + target}
	if in.head.ref != "" {
		logs = append(logs, "logs/HEAD")
	}
	for _, l := range logs {
		if err := r.appendLog(l, entry); err != nil {
			warnings = append(warnings, "reflog "+l+" not updated: "+err.Error())
		}
	}
	return warnings, nil
}

func conflict(cause error) error {
	return tool.Errorf(reason.ToolFailed, cause, "the repository changed while committing; nothing was committed, try again")
}

// lockFile is a git lock file (<name>.lock, created O_EXCL).
type lockFile struct {
	r    *repo
	name string
	f    *os.File
	done bool
}

func (r *repo) lock(name string) (*lockFile, error) {
	f, err := r.git.OpenFile(name+".lock", os.O_WRONLY|os.O_CREATE|os.O_EXCL|oNoFollow, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, tool.Errorf(reason.ToolFailed, err, "the repository is locked by another git process (%s.lock exists)", name)
		}
		return nil, repoError(err, "cannot lock the repository")
	}
	return &lockFile{r: r, name: name, f: f}, nil
}

func (l *lockFile) write(b []byte) error {
	if _, err := l.f.Write(b); err != nil {
		return err
	}
	return l.f.Sync()
}

// commit closes the lock file and renames it over name.
func (l *lockFile) commit() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	l.f = nil
	if err := l.r.git.Rename(l.name+".lock", l.name); err != nil {
		return err
	}
	l.done = true
	return nil
}

// release removes the lock file unless it was committed.
func (l *lockFile) release() {
	if l.done {
		return
	}
	if l.f != nil {
		l.f.Close()
	}
	_ = l.r.git.Remove(l.name + ".lock")
}

// readScratchFile reads a regular file the sandboxed git wrote.
func readScratchFile(s *os.Root, name string, limit int64) ([]byte, error) {
	f, err := s.OpenFile(name, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkFile(f); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, err
}

// copyObjects copies the loose objects and packs the sandboxed git wrote
// into .git/objects; anything else in the scratch object directory is
// ignored. An object that is already there is kept.
func (r *repo) copyObjects(s *os.Root) error {
	dirs, err := readDirNames(s, "objects")
	if err != nil {
		return err
	}
	for _, d := range dirs {
		switch {
		case fanoutRE.MatchString(d):
			names, err := readDirNames(s, "objects/"+d)
			if err != nil {
				return err
			}
			for _, n := range names {
				if looseRE.MatchString(n) {
					if err := r.copyObject(s, "objects/"+d+"/"+n, 0o444); err != nil {
						return err
					}
				}
			}
		case d == "pack":
			names, err := readDirNames(s, "objects/pack")
			if err != nil {
				return err
			}
			// .idx last: git sees a pack once its index exists.
			slices.SortFunc(names, func(a, b string) int {
				return boolInt(strings.HasSuffix(a, ".idx")) - boolInt(strings.HasSuffix(b, ".idx"))
			})
			for _, n := range names {
				if packRE.MatchString(n) {
					if err := r.copyObject(s, "objects/pack/"+n, 0o444); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func readDirNames(s *os.Root, dir string) ([]string, error) {
	fi, err := s.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	f, err := s.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

// copyObject copies scratch file name to the same name under .git: a
// temporary file created O_EXCL next to it, synced, then renamed.
func (r *repo) copyObject(s *os.Root, name string, perm os.FileMode) error {
	if _, err := r.git.Lstat(name); err == nil {
		return nil
	}
	src, err := s.OpenFile(name, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := checkFile(src); err != nil {
		return err
	}
	dir := path.Dir(name)
	if err := r.git.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := dir + "/tmp_obj_portcullis_" + hex.EncodeToString(rnd[:])
	dst, err := r.git.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|oNoFollow, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.git.Rename(tmp, name)
	}
	if err != nil {
		_ = r.git.Remove(tmp)
	}
	return err
}

// appendLog appends entry to the reflog name, creating it (and its
// directories) if needed; an existing reflog must be a regular file with
// one link.
func (r *repo) appendLog(name, entry string) error {
	if err := r.git.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := r.git.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE|oNoFollow|oNonBlock, 0o644)
	if err != nil {
		return err
	}
	if err := checkFile(f); err != nil {
		f.Close()
		return err
	}
	_, err = f.WriteString(entry)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
