// Command sysprobe makes one raw system call and prints its outcome. The
// sandbox tests run it (a static binary: no shell, no libc, no ELF
// interpreter) to reach the seccomp filter with exactly the system call
// and arguments they name.
//
//	sysprobe SYSCALL [ARG...]
//
// SYSCALL is a name of this architecture's table (the one the filter is
// built from) or a number (decimal or 0x hex; 0x40000000 and up is the x32
// ABI on amd64), or int80:NR for NR through the 32-bit `int 0x80` entry
// (amd64 only). An ARG is a number, s:TEXT (a pointer to a NUL-terminated
// copy of TEXT) or b:N (a pointer to N zero bytes).
//
// It prints "ret=N" on success or "errno=NAME" on failure and exits 0; a
// call the filter kills ends the process with SIGSYS before it prints.
// A child created by a successful fork or clone exits at once, silently,
// and is reaped. (vfork is safe only where it fails: the child of a Go
// program would run on its parent's stack.)
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 8 {
		fmt.Fprintln(os.Stderr, "usage: sysprobe SYSCALL [ARG...] (at most 6 arguments)")
		os.Exit(2)
	}
	var args [6]uintptr
	var keep [][]byte // pointers handed to the kernel stay reachable
	for i, a := range os.Args[2:] {
		switch {
		case strings.HasPrefix(a, "s:"):
			b := append([]byte(a[2:]), 0)
			keep = append(keep, b)
			args[i] = uintptr(unsafe.Pointer(&b[0]))
		case strings.HasPrefix(a, "b:"):
			n, err := strconv.Atoi(a[2:])
			if err != nil || n <= 0 {
				fatal("bad buffer size %q", a)
			}
			b := make([]byte, n)
			keep = append(keep, b)
			args[i] = uintptr(unsafe.Pointer(&b[0]))
		default:
			v, err := strconv.ParseUint(a, 0, 64)
			if err != nil {
				fatal("bad argument %q", a)
			}
			args[i] = uintptr(v)
		}
	}
	name := os.Args[1]
	pid, _, _ := syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
	var r1 uintptr
	var errno syscall.Errno
	if n, ok := strings.CutPrefix(name, "int80:"); ok {
		nr, err := strconv.ParseUint(n, 0, 32)
		if err != nil {
			fatal("bad number %q", n)
		}
		r := int32(int80(uintptr(nr))) // the 32-bit ABI returns -errno in eax
		if r < 0 && r > -4096 {
			errno = syscall.Errno(-r)
		} else {
			r1 = uintptr(r)
		}
	} else {
		r1, _, errno = syscall.RawSyscall6(number(name), args[0], args[1], args[2], args[3], args[4], args[5])
	}
	if now, _, _ := syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0); now != pid {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0) // a forked child
	}
	if errno == 0 && r1 > 0 && (name == "fork" || name == "clone") {
		// Reap the child, so that the run leaves no orphan behind.
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(int(r1), &ws, syscall.WALL, nil)
	}
	_ = keep
	if errno != 0 {
		fmt.Printf("errno=%s\n", unix.ErrnoName(errno))
		return
	}
	fmt.Printf("ret=%d\n", int64(r1))
}

// number resolves a system call name or number.
func number(s string) uintptr {
	if v, err := strconv.ParseUint(s, 0, 64); err == nil {
		return uintptr(v)
	}
	a, err := arch.GetInfo("")
	if err != nil {
		fatal("%v", err)
	}
	n, ok := a.SyscallNames[s]
	if !ok {
		fatal("no system call %q on %s", s, a.Name)
	}
	return uintptr(n)
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sysprobe: "+format+"\n", args...)
	os.Exit(2)
}
