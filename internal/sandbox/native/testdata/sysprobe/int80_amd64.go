package main

// int80 makes system call nr (of the i386 table) through the 32-bit
// `int 0x80` entry, which the kernel reports to seccomp as
// AUDIT_ARCH_I386. It returns eax: the result or -errno.
func int80(nr uintptr) uintptr
