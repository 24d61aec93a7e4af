//go:build !linux

package sqlquery

import "os"

// Without open file description locks the copy is taken unlocked: a
// concurrent writer may make it inconsistent, which SQLite reports as a
// damaged database (a failed call, never a write).

func lockReader(*os.File) error { return nil }

func lockWAL(*os.File) error { return nil }
