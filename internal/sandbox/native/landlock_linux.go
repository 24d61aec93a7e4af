//go:build linux

package native

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock (Linux 5.13+) restricts what the program may do with files,
// TCP ports and signals, on top of the mount layout: defence in depth if
// a mount were ever wrong. It is best effort: the rights the running
// kernel knows (its ABI version) are used, and hosts without Landlock
// still get every other layer (doctor reports which).

// landlockABI returns the kernel's Landlock ABI version, 0 if unsupported.
func landlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// rulesetAttr is struct landlock_ruleset_attr up to ABI 6 (scoped).
type rulesetAttr struct {
	handledFS  uint64
	handledNet uint64
	scoped     uint64
}

type pathBeneathAttr struct { // packed in the kernel: 12 bytes
	allowed  uint64
	parentFD int32
}

type netPortAttr struct {
	allowed uint64
	port    uint64
}

// Access rights by ABI version.
const (
	fsV1 = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	fsRead  = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	fsWrite = unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SYM |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_REFER |
		unix.LANDLOCK_ACCESS_FS_TRUNCATE
)

// fsHandled returns the file-system rights an ABI version handles.
func fsHandled(abi int) uint64 {
	h := uint64(fsV1)
	if abi >= 2 {
		h |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		h |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		h |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	return h
}

// landlockRule grants rights beneath a path.
type landlockRule struct {
	path   string
	access uint64
}

// landlockPolicy describes a ruleset: file rules, the TCP ports the
// program may connect to (none means no TCP at all), and whether to scope
// signals and abstract unix sockets to the sandbox.
type landlockPolicy struct {
	rules        []landlockRule
	connectPorts []uint16
}

// buildLandlock creates the ruleset and returns its descriptor, to be
// applied with landlock_restrict_self in the program just before exec.
// It returns -1 and the ABI when Landlock is unavailable. Paths that do
// not exist are skipped.
func buildLandlock(p landlockPolicy) (fd int, abi int, err error) {
	abi = landlockABI()
	if abi < 1 {
		return -1, 0, nil
	}
	handled := fsHandled(abi)
	attr := rulesetAttr{handledFS: handled}
	size := unsafe.Sizeof(attr.handledFS)
	if abi >= 4 {
		attr.handledNet = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
		size += unsafe.Sizeof(attr.handledNet)
	}
	if abi >= 6 {
		attr.scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
		size += unsafe.Sizeof(attr.scoped)
	}
	r, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if errno != 0 {
		return -1, abi, fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
	fd = int(r)
	for _, rule := range p.rules {
		if err := addLandlockPath(fd, abi, rule.path, rule.access); err != nil {
			unix.Close(fd)
			return -1, abi, err
		}
	}
	if abi >= 4 {
		for _, port := range p.connectPorts {
			np := netPortAttr{allowed: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP, port: uint64(port)}
			const ruleNetPort = 2 // LANDLOCK_RULE_NET_PORT
			if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(fd), ruleNetPort,
				uintptr(unsafe.Pointer(&np)), 0, 0, 0); errno != 0 {
				unix.Close(fd)
				return -1, abi, fmt.Errorf("landlock_add_rule port %d: %w", port, errno)
			}
		}
	}
	unix.CloseOnExec(fd)
	return fd, abi, nil
}

// addLandlockPath grants access beneath path (skipped if path does not
// exist); on a file only the rights that apply to files are kept.
func addLandlockPath(fd, abi int, path string, access uint64) error {
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("landlock rule %s: %w", path, err)
	}
	defer unix.Close(pfd)
	access &= fsHandled(abi)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		access &= unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
			unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	pb := pathBeneathAttr{allowed: access, parentFD: int32(pfd)}
	if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(fd), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&pb)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("landlock_add_rule %s: %w", path, errno)
	}
	return nil
}
