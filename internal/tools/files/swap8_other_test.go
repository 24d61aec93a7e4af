//go:build !linux

package files_test

import "errors"

// exchange is unavailable here; TestRaceDirSwap8 falls back to remove and
// rename.
func exchange(a, b string) error { return errors.ErrUnsupported }
