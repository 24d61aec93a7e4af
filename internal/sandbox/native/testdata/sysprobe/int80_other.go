//go:build !amd64

package main

// int80 exists on amd64 only.
func int80(uintptr) uintptr {
	fatal("int80 needs amd64")
	return 0
}
