//go:build linux

package native

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// egressBridge is the gateway side of a sandbox's only way out: a unix
// socket, in a directory only root can enter, whose connections are relayed
// to the egress proxy (which decides what may be reached). Sandboxes
// connect to it through a descriptor of the socket file; they cannot see
// its path.
type egressBridge struct {
	dir    string
	path   string
	ln     *net.UnixListener
	target string
}

func (r *Runtime) bridge(target string) (*egressBridge, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.bridges[target]; b != nil {
		return b, nil
	}
	dir, err := os.MkdirTemp("", "portcullis-egress-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "egress.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: egress bridge: %w", sandbox.ErrSetup, err)
	}
	// The sandbox's ids must be able to connect; the 0700 directory keeps
	// everyone else on the host out.
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	b := &egressBridge{dir: dir, path: path, ln: ln, target: target}
	go b.serve()
	r.bridges[target] = b
	return b, nil
}

func (b *egressBridge) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.DialTimeout("tcp", b.target, 10*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

// socketFile returns an O_PATH descriptor of the socket for an init.
func (b *egressBridge) socketFile() (*os.File, error) {
	fd, err := unix.Open(b.path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), b.path), nil
}

func (b *egressBridge) close() {
	b.ln.Close()
	os.RemoveAll(b.dir)
}
