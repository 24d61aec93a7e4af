//go:build linux

package native

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// hostListeners are services of the host a sandbox must not reach: TCP
// on loopback and on every address, UDP on every address, an abstract
// unix socket. They count what reaches them.
type hostListeners struct {
	tcpLoop, tcpAny, udpAny int // ports
	abstract                string
	mu                      sync.Mutex
	accepted                int
	datagrams               int
	closers                 []io.Closer
	wg                      sync.WaitGroup
}

func startHostListeners(t *testing.T) *hostListeners {
	t.Helper()
	h := &hostListeners{abstract: "@portcullis-test-" + token(t)}
	listen := func(network, addr string) net.Listener {
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		h.closers = append(h.closers, l)
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				h.mu.Lock()
				h.accepted++
				h.mu.Unlock()
				c.Close()
			}
		}()
		return l
	}
	h.tcpLoop = listen("tcp4", "127.0.0.1:0").Addr().(*net.TCPAddr).Port
	h.tcpAny = listen("tcp4", "0.0.0.0:0").Addr().(*net.TCPAddr).Port
	listen("unix", h.abstract)
	pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	h.closers = append(h.closers, pc)
	h.udpAny = pc.LocalAddr().(*net.UDPAddr).Port
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			h.mu.Lock()
			h.datagrams++
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		for _, c := range h.closers {
			c.Close()
		}
		h.wg.Wait()
	})
	// Positive control: each answers the host itself.
	for _, a := range [][2]string{{"tcp4", fmt.Sprintf("127.0.0.1:%d", h.tcpLoop)}, {"tcp4", fmt.Sprintf("127.0.0.1:%d", h.tcpAny)}, {"unix", h.abstract}} {
		c, err := net.Dial(a[0], a[1])
		if err != nil {
			t.Fatalf("host dial %s: %v", a[1], err)
		}
		c.Close()
	}
	u, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", h.udpAny))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Write([]byte("control")); err != nil {
		t.Fatal(err)
	}
	u.Close()
	waitFor(t, "the host's own connections", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.accepted == 3 && h.datagrams == 1
	})
	return h
}

// reached returns what reached the listeners beyond the controls.
func (h *hostListeners) reached() (conns, datagrams int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.accepted - 3, h.datagrams - 1
}

// pyNet is a python prelude of network attempts that report "connected",
// "sent", or the errno name.
const pyNet = `
import socket, fcntl, struct
def tcp(ip, port, family=socket.AF_INET):
    s = socket.socket(family)
    s.settimeout(5)
    try:
        s.connect((ip, port))
        return "connected"
    except OSError as e:
        return _err(e) if e.errno else type(e).__name__
    finally:
        s.close()
def udp(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"escape", (ip, port))
        return "sent"
    except OSError as e:
        return _err(e)
    finally:
        s.close()
def bind(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        s.listen()
        return "listening"
    except OSError as e:
        return _err(e)
    finally:
        s.close()
def abstract(name):
    u = socket.socket(socket.AF_UNIX)
    try:
        u.connect("\0" + name[1:])
        return "connected"
    except OSError as e:
        return _err(e)
def dns(name):
    try:
        socket.getaddrinfo(name, 443)
        return "resolved"
    except socket.gaierror:
        return "failed"
def lo_up():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
    return bool(flags & 1)
`

// TestEscapeNetworkNone attacks the empty network namespace (the
// default): host services on loopback, on the host's own address and
// behind an abstract unix socket; DNS; UDP; a listener of its own.
// Landlock refuses every TCP connect and bind (EACCES, before routing),
// the loopback device is down (UDP: ENETUNREACH), abstract sockets are
// per network namespace (ECONNREFUSED), and nothing reaches the host.
func TestEscapeNetworkNone(t *testing.T) {
	h := startHostListeners(t)
	hostIP := hostIPv4(t)
	rt := newRuntime(t)
	for _, level := range []sandbox.Level{sandbox.LevelMaximum, sandbox.LevelMinimal} {
		spec := atLevel(level, pySpec(pyProbe+pyNet+`
loop, anyp, udpp, abst, hostip = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
res = {
    "tcp host loopback": tcp("127.0.0.1", loop),
    "tcp host any via loopback": tcp("127.0.0.1", anyp),
    "tcp host address": tcp(hostip, anyp) if hostip else "ENETUNREACH",
    "tcp ipv6 loopback": tcp("::1", anyp, socket.AF_INET6),
    "udp host loopback": udp("127.0.0.1", udpp),
    "udp host address": udp(hostip, udpp) if hostip else "ENETUNREACH",
    "bind own listener": bind(8080),
    "abstract unix": abstract(abst),
    "dns": dns("example.com"),
    "interfaces": sorted(n for _, n in socket.if_nameindex()),
    "lo up": lo_up(),
}
print(json.dumps(res))
`))
		spec.Argv = append(spec.Argv, strconv.Itoa(h.tcpLoop), strconv.Itoa(h.tcpAny), strconv.Itoa(h.udpAny), h.abstract, hostIP)
		out := decode(t, mustSucceed(t, rt, spec))
		for name, want := range map[string]any{
			"tcp host loopback":         "EACCES",
			"tcp host any via loopback": "EACCES",
			"tcp host address":          "EACCES",
			"tcp ipv6 loopback":         "EACCES",
			"udp host loopback":         "ENETUNREACH",
			"udp host address":          "ENETUNREACH",
			"bind own listener":         "EACCES",
			"abstract unix":             "ECONNREFUSED",
			"dns":                       "failed",
			"interfaces":                []any{"lo"},
			"lo up":                     false,
		} {
			t.Run(string(level)+"/"+name, func(t *testing.T) {
				if diff := cmp.Diff(want, out[name]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", name, diff)
				}
			})
		}
	}
	if hostIP == "" {
		t.Log("the host has no non-loopback IPv4 address; the host-address cases were not run")
	}
	if conns, grams := h.reached(); conns != 0 || grams != 0 {
		t.Errorf("the host's listeners got %d connections and %d datagrams from the sandbox", conns, grams)
	}
}

// echoServer stands in for the egress proxy: it echoes each connection's
// bytes back and counts connections.
type echoServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	wg    sync.WaitGroup
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns++
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.wg.Wait()
	})
	return e
}

func (e *echoServer) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conns
}

// TestEscapeNetworkProxy runs with the egress proxy: the program reaches
// the proxy (here an echo server) through 127.0.0.1:3128 inside, and
// nothing else — not the host's other services (directly or by the
// host's address), not other ports on its own loopback, not a listener
// of its own, not the outside by UDP.
func TestEscapeNetworkProxy(t *testing.T) {
	h := startHostListeners(t)
	proxy := startEcho(t)
	hostIP := hostIPv4(t)
	rt := newRuntime(t)
	payload := "through-the-proxy-" + token(t)
	for _, level := range []sandbox.Level{sandbox.LevelStrict, sandbox.LevelMinimal} {
		spec := atLevel(level, pySpec(pyProbe+pyNet+`
loop, anyp, udpp, abst, hostip, proxyport, payload = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7]
def through_proxy():
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(payload.encode())
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        got += b
    s.close()
    return got.decode()
res = {
    "proxy round trip": through_proxy(),
    "HTTP_PROXY": os.environ.get("HTTP_PROXY"),
    "HTTPS_PROXY": os.environ.get("HTTPS_PROXY"),
    "tcp host loopback": tcp("127.0.0.1", loop),
    "tcp proxy's real port": tcp("127.0.0.1", proxyport),
    "tcp host address": tcp(hostip, anyp) if hostip else "EACCES",
    "tcp own loopback port 80": tcp("127.0.0.1", 80),
    "tcp ipv6 loopback 3128": tcp("::1", 3128, socket.AF_INET6),
    "udp host address": udp(hostip, udpp) if hostip else "ENETUNREACH",
    "udp own loopback": udp("127.0.0.1", udpp),
    "bind own listener": bind(8080),
    "bind the proxy port": bind(3128),
    "abstract unix": abstract(abst),
    "dns": dns("example.com"),
    "lo up": lo_up(),
}
print(json.dumps(res))
`))
		spec.Argv = append(spec.Argv, strconv.Itoa(h.tcpLoop), strconv.Itoa(h.tcpAny), strconv.Itoa(h.udpAny), h.abstract,
			hostIP, strconv.Itoa(proxy.ln.Addr().(*net.TCPAddr).Port), payload)
		spec.Network = sandbox.Network{Mode: sandbox.NetworkProxy, ProxyAddr: proxy.ln.Addr().String()}
		before := proxy.count()
		out := decode(t, mustSucceed(t, rt, spec))
		for name, want := range map[string]any{
			"proxy round trip":         payload,
			"HTTP_PROXY":               "http://127.0.0.1:3128",
			"HTTPS_PROXY":              "http://127.0.0.1:3128",
			"tcp host loopback":        "EACCES",
			"tcp proxy's real port":    "EACCES",
			"tcp host address":         "EACCES",
			"tcp own loopback port 80": "EACCES",
			"tcp ipv6 loopback 3128":   "ECONNREFUSED", // allowed port, nothing listens on ::1
			"udp host address":         "ENETUNREACH",
			"udp own loopback":         "sent", // to the sandbox's own loopback, not the host's
			"bind own listener":        "EACCES",
			"bind the proxy port":      "EACCES",
			"abstract unix":            "ECONNREFUSED",
			"dns":                      "failed",
			"lo up":                    true,
		} {
			t.Run(string(level)+"/"+name, func(t *testing.T) {
				if diff := cmp.Diff(want, out[name]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", name, diff)
				}
			})
		}
		if got := proxy.count() - before; got != 1 {
			t.Errorf("at %s the proxy saw %d connections, want exactly the program's one", level, got)
		}
	}
	if conns, grams := h.reached(); conns != 0 || grams != 0 {
		t.Errorf("the host's listeners got %d connections and %d datagrams from the sandbox", conns, grams)
	}
}

// hostIPv4 returns a non-loopback IPv4 address of this host, or "".
func hostIPv4(t testing.TB) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}
