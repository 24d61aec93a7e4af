package sqlquery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/tool"
)

// snapshotName is the database's name in the snapshot directory; its WAL
// is snapshotName+"-wal".
const snapshotName = "db"

// sqliteHeader starts every SQLite 3 database file (fileformat2.html).
var sqliteHeader = []byte("SQLite format 3\x00")

// snapshot copies the database at rel (and its WAL, for a WAL-mode
// database) into a fresh private directory under TempDir and returns the
// directory; the caller removes it. Every workspace file is opened
// through the root and checked on its descriptor; the copy is made under
// a reader's shared locks (see the package comment).
func (t *Tool) snapshot(ctx context.Context, rel, client string) (dir string, err error) {
	li, err := t.root.Lstat(rel)
	if err != nil {
		return "", t.fsError(client, err)
	}
	if li.Mode()&fs.ModeSymlink != 0 {
		// SQLite would look for the WAL next to the link's target; keep
		// one name for all of them.
		return "", tool.Errorf(reason.PathForbidden, fmt.Errorf("%w: symbolic link", errNotRegular),
			"%q: the database must not be a symbolic link; name the file itself", clip(client, 200))
	}
	db, fi, err := t.openChecked(rel, false)
	if err != nil {
		return "", t.fsError(client, err)
	}
	defer db.Close()
	if !os.SameFile(li, fi) {
		return "", tool.Errorf(reason.PathForbidden, errors.New("file changed between lstat and open"),
			"%q: changed during the call", clip(client, 200))
	}
	if err := t.retryLock(ctx, func() error { return lockReader(db) }); err != nil {
		return "", err
	}
	// Under the shared lock no writer can change the database file (nor
	// its journal mode), so the header read now stays true for the copy.
	header := make([]byte, 100)
	n, err := db.ReadAt(header, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", tool.Errorf(reason.ToolFailed, err, "")
	}
	if n > 0 && (n < len(header) || !bytes.HasPrefix(header, sqliteHeader)) {
		return "", tool.Errorf(reason.InvalidArguments, errNotSQLite, "%q is not a SQLite 3 database", clip(client, 200))
	}
	var wal *os.File
	if n == len(header) && header[18] == 2 && header[19] == 2 { // WAL mode
		shm, _, err := t.openChecked(rel+"-shm", true)
		if err != nil {
			return "", t.fsError(client+"-shm", err)
		}
		if shm != nil {
			defer shm.Close()
			if err := t.retryLock(ctx, func() error { return lockWAL(shm) }); err != nil {
				return "", err
			}
		}
		if wal, _, err = t.openChecked(rel+"-wal", true); err != nil {
			return "", t.fsError(client+"-wal", err)
		}
		if wal != nil {
			defer wal.Close()
		}
	}
	size, err := fileSize(db)
	if err != nil {
		return "", tool.Errorf(reason.ToolFailed, err, "")
	}
	walSize := int64(0)
	if wal != nil {
		if walSize, err = fileSize(wal); err != nil {
			return "", tool.Errorf(reason.ToolFailed, err, "")
		}
	}
	if size+walSize > t.cfg.MaxDatabaseBytes {
		return "", tool.Errorf(reason.TooLarge, fmt.Errorf("%w: %d bytes", errTooLarge, size+walSize),
			"%q is larger than %d bytes", clip(client, 200), t.cfg.MaxDatabaseBytes)
	}
	dir, err = os.MkdirTemp(t.cfg.TempDir, "portcullis-sql-")
	if err != nil {
		return "", tool.Errorf(reason.ToolFailed, err, "")
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := copyFile(filepath.Join(dir, snapshotName), db, size); err != nil {
		return "", tool.Errorf(reason.ToolFailed, err, "")
	}
	if wal != nil {
		if err := copyFile(filepath.Join(dir, snapshotName+"-wal"), wal, walSize); err != nil {
			return "", tool.Errorf(reason.ToolFailed, err, "")
		}
	}
	if err := ctx.Err(); err != nil {
		return "", t.sqlError(ctx, err)
	}
	return dir, nil
}

// openChecked opens rel through the root for reading without side
// effects and requires a regular file with exactly one link. With
// optional, a missing file is (nil, nil, nil).
func (t *Tool) openChecked(rel string, optional bool) (*os.File, fs.FileInfo, error) {
	f, err := t.root.OpenFile(rel, openReadFlags, 0)
	if optional && errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%w: %s", errNotRegular, fi.Mode().Type())
	}
	if err == nil {
		if n, ok := linkCount(fi); !ok || n != 1 {
			err = fmt.Errorf("%w: %d links", errHardLink, n)
		}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// retryLock calls lock until it succeeds, BusyTimeout passes (the
// database is locked by a writer) or ctx ends.
func (t *Tool) retryLock(ctx context.Context, lock func() error) error {
	deadline := time.Now().Add(t.cfg.BusyTimeout)
	wait := 5 * time.Millisecond
	for {
		err := lock()
		if err == nil {
			return nil
		}
		if !isBusy(err) {
			return tool.Errorf(reason.ToolFailed, err, "")
		}
		if time.Now().After(deadline) {
			return tool.Errorf(reason.ToolFailed, fmt.Errorf("%w: %w", errLocked, err), "the database is locked by a writer; retry later")
		}
		select {
		case <-ctx.Done():
			return t.sqlError(ctx, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

func fileSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// copyFile copies size bytes from the start of src to a new file dst
// (mode 0600). On Linux the copy stays in the kernel (copy_file_range).
func copyFile(dst string, src *os.File, size int64) error {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.CopyN(out, src, size)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("copied %d of %d bytes", n, size)
	}
	return err
}
