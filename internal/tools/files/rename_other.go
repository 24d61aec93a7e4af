//go:build !linux

package files

// renameNoReplace has no atomic implementation here; rename falls back to
// an lstat and os.Root.Rename (see moveFile).
func (w *Workspace) renameNoReplace(src, dst string) error { return errNoReplaceUnsupported }
