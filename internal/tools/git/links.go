package git

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// errHardLink is the audit cause of a refused hard link.
var errHardLink = errors.New("regular file with more than one hard link")

// checkHardLinks refuses (PATH_FORBIDDEN) when a regular file in the work
// tree under one of rels ("" is the whole tree) has more than one hard
// link: the other name may be a file outside the workspace (DESIGN §2),
// and git_diff would print it or git_commit store it. The walk goes
// through an os.Root on the workspace and never follows a symbolic link
// (git does not either); .git directories are skipped. A path that does
// not exist is fine (a deletion to commit).
func (t *Tools) checkHardLinks(ctx context.Context, rels []string) error {
	root, err := os.OpenRoot(t.ws)
	if err != nil {
		return tool.Errorf(reason.ToolFailed, err, "")
	}
	defer root.Close()
	fsys := root.FS()
	if len(rels) == 0 {
		rels = []string{""}
	}
	n := 0
	for _, rel := range rels {
		start := rel
		if start == "" {
			start = "."
		}
		fi, err := root.Lstat(start)
		if err != nil {
			continue // missing, or resolving outside: git does not follow either
		}
		if !fi.IsDir() {
			if err := checkEntry(rel, fi); err != nil {
				return err
			}
			continue
		}
		err = fs.WalkDir(fsys, start, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable: git reports it itself
			}
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctxError(ctx)
			}
			if d.IsDir() {
				if d.Name() == ".git" {
					return fs.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			return checkEntry(p, info)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func checkEntry(rel string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return nil
	}
	if n, ok := linkCount(fi); !ok || n > 1 {
		return tool.Errorf(reason.PathForbidden, fmt.Errorf("%w: %q has %d links", errHardLink, rel, n),
			"%q: files with more than one hard link are not allowed", clip(rel))
	}
	return nil
}
