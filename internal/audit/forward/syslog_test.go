package forward

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/audit"
)

// syslogRE matches a message of this package: PRI, TIMESTAMP, HOSTNAME,
// PROCID, MSGID, the SD-PARAM values (escaped) and MSG.
var syslogRE = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) portcullis (\d+) (\S+) \[portcullis@32473 seq="(\d+)" type="((?:[^"\\\]]|\\["\\\]])*)" code="(\d+)"\] (.*)$`)

// parsed is one syslog message taken apart.
type parsed struct {
	pri, seq, code     int
	ts, host, msgid, t string
	msg                string
}

func parseSyslog(t *testing.T, m string) parsed {
	t.Helper()
	g := syslogRE.FindStringSubmatch(m)
	if g == nil {
		t.Fatalf("not an RFC 5424 message of ours: %q", m)
	}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	return parsed{pri: atoi(g[1]), ts: g[2], host: g[3], msgid: g[5], seq: atoi(g[6]), t: g[7], code: atoi(g[8]), msg: g[9]}
}

// checkMessages parses msgs and compares them with want.
func checkMessages(t *testing.T, msgs []string, want []audit.Event) {
	t.Helper()
	if len(msgs) != len(want) {
		t.Fatalf("%d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		p := parseSyslog(t, m)
		w := want[i]
		pri := Facility*8 + 6
		if w.Type == audit.PolicyDeny {
			pri = Facility*8 + 4
		}
		wantHdr := parsed{pri: pri, seq: int(w.Seq), code: w.Type.Code(), ts: w.Time.UTC().Format("2006-01-02T15:04:05.000000Z"),
			host: "gw1", msgid: string(w.Type), t: string(w.Type), msg: p.msg}
		if diff := cmp.Diff(wantHdr, p, cmp.AllowUnexported(parsed{})); diff != "" {
			t.Errorf("message %d header (-want +got):\n%s", i, diff)
		}
		var got audit.Event
		if err := json.Unmarshal([]byte(p.msg), &got); err != nil {
			t.Fatalf("message %d MSG not JSON: %v", i, err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("message %d record (-want +got):\n%s", i, diff)
		}
	}
}

// readDatagrams reads n datagrams from pc, failing after a safety timeout.
func readDatagrams(t *testing.T, pc net.PacketConn, n int) []string {
	t.Helper()
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out []string
	buf := make([]byte, 64<<10)
	for range n {
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read datagram %d: %v", len(out)+1, err)
		}
		out = append(out, string(buf[:k]))
	}
	return out
}

func TestSyslogFormat(t *testing.T) {
	s := &syslogSender{host: "gw1", pid: 4242}
	e := audit.Event{Seq: 7, ID: "x", Time: time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.FixedZone("CET", 3600)), Type: audit.PolicyDeny}
	want := `<84>1 2026-01-02T02:04:05.678901Z gw1 portcullis 4242 policy.deny [portcullis@32473 seq="7" type="policy.deny" code="300"] ` +
		`{"seq":7,"id":"x","time":"2026-01-02T03:04:05.678901234+01:00","type":"policy.deny"}`
	if diff := cmp.Diff(want, string(s.format(e, 0))); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		e    audit.Event
		want int
	}{
		{audit.Event{Type: audit.ToolCallStart}, 86},
		{audit.Event{Type: audit.ToolCallEnd, Status: audit.StatusOK}, 86},
		{audit.Event{Type: audit.ToolCallEnd, Status: audit.StatusError}, 84},
		{audit.Event{Type: audit.AuthFailure}, 84},
		{audit.Event{Type: audit.ToolCallRefused}, 84},
		{audit.Event{Type: audit.AdminDenied}, 84},
	} {
		if got := Facility*8 + severity(tc.e); got != tc.want {
			t.Errorf("PRI of %s/%s = %d, want %d", tc.e.Type, tc.e.Status, got, tc.want)
		}
	}
	// Zero time, empty type, odd host: NILVALUE and '_' per RFC 5424 §6.2.
	s.host = printable("gw 1\n", maxHostname)
	got := string(s.format(audit.Event{Seq: 1}, 0))
	if !strings.HasPrefix(got, `<86>1 - gw_1_ portcullis 4242 - [portcullis@32473 seq="1" type="" code="0"] {`) {
		t.Errorf("message = %q", got)
	}
}

func TestSDEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tool.call.start", "tool.call.start"},
		{`a"b`, `a\"b`},
		{`a\b`, `a\\b`},
		{`a]b`, `a\]b`},
		{`"\]`, `\"\\\]`},
		{`[x=y]`, `[x=y\]`},
	} {
		if got := sdEscape(tc.in); got != tc.want {
			t.Errorf("sdEscape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	s := &syslogSender{host: "h", pid: 1}
	p := parseSyslog(t, string(s.format(audit.Event{Seq: 3, Type: `evil"] x="1`}, 0)))
	if p.t != `evil\"\] x=\"1` || p.seq != 3 {
		t.Errorf("type param = %q, seq %d", p.t, p.seq)
	}
}

// FuzzSyslogFormat: any type and detail give one well-formed message
// that fits a datagram when capped.
func FuzzSyslogFormat(f *testing.F) {
	f.Add("tool.call.start", "detail", 10)
	f.Add(`a"]\`, strings.Repeat("é", 5000), 100000)
	f.Fuzz(func(t *testing.T, typ, detail string, n int) {
		s := &syslogSender{host: "h", pid: 1}
		m := s.format(audit.Event{Seq: 9, Type: audit.Type(typ), Detail: detail}, MaxDatagram)
		if len(m) > MaxDatagram {
			t.Fatalf("message of %d bytes", len(m))
		}
		if strings.ContainsAny(typ, "\r\n") {
			return // MSGID is sanitised but the regexp's (.*) stops at a newline in MSG
		}
		p := parseSyslog(t, string(m))
		if p.seq != 9 || p.t != sdEscape(typ) {
			t.Fatalf("seq %d type %q", p.seq, p.t)
		}
	})
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	src := newSource()
	src.add(3)
	run(t, mustNew(t, syslogSink("s", "udp", pc.LocalAddr().String()), src, discard, fastOpts))
	checkMessages(t, readDatagrams(t, pc, 3), src.all())
	waitFor(t, "cursor", func() bool { return src.cursor("s") == 3 })
}

func TestSyslogUDPTruncates(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	src := newSource()
	src.add(2)
	src.mu.Lock()
	src.events[0].Detail = strings.Repeat("x", 20000)
	src.mu.Unlock()
	run(t, mustNew(t, syslogSink("s", "udp", pc.LocalAddr().String()), src, discard, fastOpts))
	msgs := readDatagrams(t, pc, 2)
	if len(msgs[0]) != MaxDatagram || !strings.HasSuffix(msgs[0], TruncatedMarker) {
		t.Errorf("oversized message: %d bytes, suffix %q; want %d bytes ending in the marker", len(msgs[0]), msgs[0][len(msgs[0])-20:], MaxDatagram)
	}
	if p := parseSyslog(t, msgs[0]); p.seq != 1 || !strings.HasPrefix(p.msg, `{"seq":1,"id":"ev-1"`) {
		t.Errorf("truncated message lost its header or record start: seq %d msg %.40q", p.seq, p.msg)
	}
	checkMessages(t, msgs[1:], src.all()[1:])
}

// readOctetCounted reads n RFC 6587 §3.4.1 frames ("LEN SP MSG").
func readOctetCounted(t *testing.T, r *bufio.Reader, n int) []string {
	t.Helper()
	var out []string
	for range n {
		lenStr, err := r.ReadString(' ')
		if err != nil {
			t.Fatalf("frame %d length: %v", len(out)+1, err)
		}
		k, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
		if err != nil || k <= 0 {
			t.Fatalf("frame %d: bad length %q", len(out)+1, lenStr)
		}
		msg := make([]byte, k)
		if _, err := io.ReadFull(r, msg); err != nil {
			t.Fatalf("frame %d body: %v", len(out)+1, err)
		}
		out = append(out, string(msg))
	}
	return out
}

// acceptOne accepts one connection on l within the safety timeout.
func acceptOne(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(10 * time.Second):
		l.Close()
		<-ch
		t.Fatal("no connection")
		return nil
	}
}

func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestSyslogTCP checks octet counting and that a collector restart
// (connection closed) costs no record.
func TestSyslogTCP(t *testing.T) {
	l := listen(t, "tcp", "127.0.0.1:0")
	src := newSource()
	src.add(3)
	cfg := syslogSink("s", "tcp", l.Addr().String())
	f := mustNew(t, cfg, src, discard, fastOpts)
	run(t, f)
	conn := acceptOne(t, l)
	checkMessages(t, readOctetCounted(t, bufio.NewReader(conn), 3), src.all())
	waitFor(t, "cursor", func() bool { return src.cursor("s") == 3 })
	conn.Close()
	src.add(1) // one message: its write alone would not notice the close
	f.Notify()
	conn = acceptOne(t, l)
	checkMessages(t, readOctetCounted(t, bufio.NewReader(conn), 1), src.all()[3:])
	waitFor(t, "cursor", func() bool { return src.cursor("s") == 4 })
}

func TestSyslogUnixDatagram(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.sock")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	src := newSource()
	src.add(3)
	run(t, mustNew(t, syslogSink("s", "unix", path), src, discard, fastOpts))
	checkMessages(t, readDatagrams(t, pc, 3), src.all())
	waitFor(t, "cursor", func() bool { return src.cursor("s") == 3 })
}

// TestSyslogUnixStream: a stream socket gets LF-terminated messages.
func TestSyslogUnixStream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.sock")
	l := listen(t, "unix", path)
	src := newSource()
	src.add(3)
	run(t, mustNew(t, syslogSink("s", "unix", path), src, discard, fastOpts))
	r := bufio.NewReader(acceptOne(t, l))
	var msgs []string
	for range 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, strings.TrimSuffix(line, "\n"))
	}
	checkMessages(t, msgs, src.all())
}

// TestSyslogCollectorDown: a TCP collector that is not listening holds the
// cursor; once it listens, everything arrives.
func TestSyslogCollectorDown(t *testing.T) {
	l0 := listen(t, "tcp", "127.0.0.1:0")
	addr := l0.Addr().String()
	l0.Close()
	src := newSource()
	src.add(2)
	f := mustNew(t, syslogSink("s", "tcp", addr), src, discard, fastOpts)
	run(t, f)
	waitFor(t, "failures", func() bool { return f.Stats().Failures >= 2 })
	if c := src.cursor("s"); c != 0 {
		t.Fatalf("cursor = %d while collector down", c)
	}
	l := listen(t, "tcp", addr)
	conn := acceptOne(t, l)
	checkMessages(t, readOctetCounted(t, bufio.NewReader(conn), 2), src.all())
	waitFor(t, "cursor", func() bool { return src.cursor("s") == 2 })
	if st := f.Stats(); !strings.Contains(st.LastError, "send: ") {
		t.Errorf("LastError = %q", st.LastError)
	}
}
