package git

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/portcullis/portcullis/internal/principal"
	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// hashRE matches an object id (SHA-1 or SHA-256), lower-case hex.
var hashRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// emptyTrees are the ids of the empty tree (SHA-1, SHA-256).
var emptyTrees = map[string]bool{
	"4b825dc642cb6eb9a060e54bf8d69288fbee4904":                         true,
	"6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321": true,
}

var errNothing = errors.New("nothing to commit")

func (t *Tools) commit(ctx context.Context, raw json.RawMessage) (*tool.Result, error) {
	var a commitArgs
	if err := decodeArgs(raw, &a, "message", "paths"); err != nil {
		return nil, err
	}
	if err := checkMessage(a.Message); err != nil {
		return nil, err
	}
	if len(a.Paths) > MaxPaths {
		return nil, tool.Errorf(reason.InvalidArguments, fmt.Errorf("%d paths", len(a.Paths)), "at most %d paths", MaxPaths)
	}
	pathspecs := make([]string, 0, len(a.Paths))
	for _, p := range a.Paths {
		if p == "" {
			return nil, tool.Errorf(reason.InvalidArguments, errors.New("empty path"), "paths must not contain an empty string")
		}
		c, err := cleanPath(p)
		if err != nil {
			return nil, err
		}
		if c == "" {
			c = "." // the workspace root
		}
		pathspecs = append(pathspecs, c)
	}
	msg := commitMessage(ctx, a.Message)
	if err := t.repoCheck(); err != nil {
		return nil, err
	}
	// git add reads the files into objects: no file with a second name.
	if err := t.checkHardLinks(ctx, pathspecs); err != nil {
		return nil, err
	}

	select {
	case t.commitMu <- struct{}{}:
		defer func() { <-t.commitMu }()
	case <-ctx.Done():
		return nil, ctxError(ctx)
	}
	if err := t.resetScratch(); err != nil {
		return nil, tool.Errorf(reason.ToolFailed, err, "")
	}
	defer t.resetScratch()

	r, err := openRepo(t.ws)
	if err != nil {
		return nil, err
	}
	defer r.close()
	head, err := r.readHead()
	if err != nil {
		return nil, err
	}
	parent, err := r.resolve(head)
	if err != nil {
		return nil, err
	}
	idx, err := r.snapshotIndex(t.scratch)
	if err != nil {
		return nil, err
	}

	c := t.newCall(true)
	env := []string{
		"GIT_INDEX_FILE=" + scratchDir + "/index",
		"GIT_OBJECT_DIRECTORY=" + scratchDir + "/objects",
		"GIT_ALTERNATE_OBJECT_DIRECTORIES=" + gitDir + "/objects",
	}
	if failed, err := c.neutraliseDrivers(ctx); err != nil || failed != nil {
		return failed, err
	}
	add := []string{"add", "-u"}
	if len(pathspecs) > 0 {
		add = append([]string{"add", "-A", "--"}, pathspecs...)
	}
	if _, failed, err := c.mustRun(ctx, invocation{step: "add", args: add, env: env, commit: true}); err != nil || failed != nil {
		return failed, err
	}
	res, failed, err := c.mustRun(ctx, invocation{step: "write-tree", args: []string{"write-tree"}, env: env, commit: true})
	if err != nil || failed != nil {
		return failed, err
	}
	tree := firstLine(res.Stdout)
	if !hashRE.MatchString(tree) {
		return nil, tool.Errorf(reason.ToolFailed, fmt.Errorf("write-tree printed %q", clip(tree)), "")
	}
	if parent == "" {
		if emptyTrees[tree] {
			return nothingToCommit(c), nil
		}
	} else {
		res, failed, err := c.mustRun(ctx, invocation{step: "rev-parse", args: []string{"rev-parse", "--verify", "--end-of-options", parent + "^{tree}"}, env: env, commit: true})
		if err != nil || failed != nil {
			return failed, err
		}
		if firstLine(res.Stdout) == tree {
			return nothingToCommit(c), nil
		}
	}
	now := t.cfg.Now()
	date := fmt.Sprintf("%d +0000", now.Unix())
	ctArgs := []string{"commit-tree", "--no-gpg-sign"}
	if parent != "" {
		ctArgs = append(ctArgs, "-p", parent)
	}
	ctArgs = append(ctArgs, "-F", "-", tree)
	res, failed, err = c.mustRun(ctx, invocation{step: "commit-tree", args: ctArgs, stdin: []byte(msg), commit: true,
		env: append(env,
			"GIT_AUTHOR_NAME="+AuthorName, "GIT_AUTHOR_EMAIL="+AuthorEmail, "GIT_AUTHOR_DATE="+date,
			"GIT_COMMITTER_NAME="+AuthorName, "GIT_COMMITTER_EMAIL="+AuthorEmail, "GIT_COMMITTER_DATE="+date)})
	if err != nil || failed != nil {
		return failed, err
	}
	commit := firstLine(res.Stdout)
	if !hashRE.MatchString(commit) || len(commit) != len(tree) {
		return nil, tool.Errorf(reason.ToolFailed, fmt.Errorf("commit-tree printed %q", clip(commit)), "")
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxError(ctx)
	}

	subject := reflogSubject(a.Message)
	kind := "commit"
	if parent == "" {
		kind = "commit (initial)"
	}
	warnings, err := r.install(t.scratch, installation{
		head: head, parent: parent, commit: commit, index: idx,
		reflog: fmt.Sprintf("%s <%s> %d +0000\t%s: %s", AuthorName, AuthorEmail, now.Unix(), kind, subject),
	})
	if err != nil {
		return nil, err
	}
	branch := strings.TrimPrefix(head.ref, "refs/heads/")
	where := branch
	if head.ref == "" {
		where = "detached HEAD"
	}
	out := &tool.Result{
		Text: fmt.Sprintf("[%s %s] %s", where, commit[:12], subject),
		Structured: map[string]any{
			"exit_code": 0,
			"commit":    commit,
			"tree":      tree,
			"parent":    parent,
			"branch":    branch,
			"detached":  head.ref == "",
			"author":    AuthorName + " <" + AuthorEmail + ">",
		},
		CPUTime: c.cpu,
	}
	if len(warnings) > 0 {
		out.Structured["warnings"] = warnings
		out.Detail = strings.Join(warnings, "; ")
	}
	return out, nil
}

// commitMessage returns the message as committed: the client's text with
// one trailing newline, plus the principal trailer when ctx carries a
// principal.
func commitMessage(ctx context.Context, m string) string {
	m = strings.TrimRight(m, "\n") + "\n"
	if p, ok := principal.FromContext(ctx); ok && p.Name != "" {
		name := strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return '?'
			}
			return r
		}, p.Name)
		m += "\n" + PrincipalTrailer + ": " + name + "\n"
	}
	return m
}

// reflogSubject is the first non-empty line of the message, with control
// characters replaced, at most 200 bytes.
func reflogSubject(m string) string {
	for _, line := range strings.Split(m, "\n") {
		if s := strings.TrimSpace(line); s != "" {
			return clip(strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return ' '
				}
				return r
			}, s))
		}
	}
	return ""
}

func nothingToCommit(c *call) *tool.Result {
	return &tool.Result{
		Text:       reason.Message(reason.NonZeroExit) + "\nnothing to commit",
		IsError:    true,
		Code:       reason.NonZeroExit,
		Detail:     errNothing.Error(),
		CPUTime:    c.cpu,
		Structured: map[string]any{"exit_code": 1, "stdout": "nothing to commit\n", "code": string(reason.NonZeroExit)},
	}
}

// resetScratch empties the scratch directory (its entries were created by
// the sandbox user; RemoveAll never follows a symbolic link).
func (t *Tools) resetScratch() error {
	entries, err := os.ReadDir(t.scratch)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(t.scratch, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The object directory git writes into.
	obj := filepath.Join(t.scratch, "objects")
	if err := os.Mkdir(obj, 0o700); err != nil {
		return err
	}
	return os.Chmod(obj, 0o777)
}
