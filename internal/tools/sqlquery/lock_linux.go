//go:build linux

package sqlquery

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// SQLite's lock bytes (os_unix.c, wal.c). A reader holds a read lock on
// the SHARED range of the database file; a writer needs a write lock on it
// to change the file. In WAL mode a writer locks the WRITE byte and a
// checkpointer the CKPT byte of the -shm file exclusively.
const (
	pendingByte = 0x40000000
	sharedFirst = pendingByte + 2
	sharedSize  = 510
	shmWrite    = 120 // WALINDEX_LOCK_OFFSET + WAL_WRITE_LOCK; CKPT follows
)

// setLock places an open file description lock: it conflicts with
// SQLite's POSIX locks of other processes, and it belongs to this
// descriptor only, so closing another descriptor of the same file (the
// POSIX-lock pitfall) does not drop it. It is released on close.
func setLock(f *os.File, typ int16, start, length int64) error {
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: start, Len: length}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

// lockReader takes the lock of a SQLite reader on the database file, the
// way SQLite does: a read lock on the PENDING byte first (so that a writer
// waiting for readers to leave is not starved), then on the SHARED range,
// then the PENDING byte is released.
func lockReader(db *os.File) error {
	if err := setLock(db, unix.F_RDLCK, pendingByte, 1); err != nil {
		return err
	}
	err := setLock(db, unix.F_RDLCK, sharedFirst, sharedSize)
	if uerr := setLock(db, unix.F_UNLCK, pendingByte, 1); err == nil {
		err = uerr
	}
	return err
}

// lockWAL holds off WAL writers and checkpointers (read locks on the
// WRITE and CKPT bytes of the -shm file) while the database and its WAL
// are copied.
func lockWAL(shm *os.File) error { return setLock(shm, unix.F_RDLCK, shmWrite, 2) }
