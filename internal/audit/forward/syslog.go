package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
)

// Syslog message constants (RFC 5424).
const (
	// Facility of every message: 10, security/authorization messages
	// ("authpriv", RFC 5424 §6.2.1), kept apart from the general system log.
	Facility = 10
	// SDID is the structured-data element of every message; 32473 is the
	// private enterprise number reserved for examples (RFC 5612).
	SDID = "portcullis@32473"
	// MaxDatagram caps, in bytes, a message sent as one datagram (UDP, a
	// Unix datagram socket): a longer one has its JSON cut and
	// TruncatedMarker appended, so that it is shortened but never dropped
	// (RFC 5426 §3.2 only guarantees 480 bytes; 8 KiB is what common
	// collectors accept by default).
	MaxDatagram = 8 << 10
	// TruncatedMarker ends a message whose JSON was cut.
	TruncatedMarker = "...[truncated]"

	appName     = "portcullis"
	sevWarning  = 4
	sevInfo     = 6
	timeFormat  = "2006-01-02T15:04:05.000000Z07:00" // RFC 5424 §6.2.3: at most 6 fraction digits
	maxHostname = 255
	maxMsgID    = 32
)

// framing of messages on a connection.
type framing int

const (
	framingDatagram framing = iota // one message per datagram
	framingOctet                   // "LEN SP MSG", RFC 6587 §3.4.1
	framingLF                      // "MSG LF", a Unix stream socket (as log/syslog does)
)

// syslogSender writes one RFC 5424 message per record. It dials on first
// use and after any write error.
type syslogSender struct {
	network, addr string
	host          string
	pid           int
	conn          net.Conn
	frame         framing
}

var _ sender = (*syslogSender)(nil)

func newSyslog(cfg config.AuditSinkConfig, host string) (*syslogSender, error) {
	switch cfg.Network {
	case "udp", "tcp":
		if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
			return nil, fmt.Errorf("%w: sink %q: address: %w", ErrConfig, cfg.Name, err)
		}
	case "unix":
		if cfg.Address == "" {
			return nil, fmt.Errorf("%w: sink %q: empty socket path", ErrConfig, cfg.Name)
		}
	default:
		return nil, fmt.Errorf("%w: sink %q: network must be udp, tcp or unix, got %q", ErrConfig, cfg.Name, cfg.Network)
	}
	return &syslogSender{network: cfg.Network, addr: cfg.Address, host: printable(host, maxHostname), pid: os.Getpid()}, nil
}

func (s *syslogSender) dial(ctx context.Context) error {
	var d net.Dialer
	var err error
	switch s.network {
	case "udp":
		s.conn, err = d.DialContext(ctx, "udp", s.addr)
		s.frame = framingDatagram
	case "tcp":
		s.conn, err = d.DialContext(ctx, "tcp", s.addr)
		s.frame = framingOctet
	case "unix": // a datagram socket like /dev/log, else a stream one
		if s.conn, err = d.DialContext(ctx, "unixgram", s.addr); err == nil {
			s.frame = framingDatagram
		} else if s.conn, err = d.DialContext(ctx, "unix", s.addr); err == nil {
			s.frame = framingLF
		}
	}
	if err != nil {
		s.conn = nil
		return fmt.Errorf("%w: syslog: %w", ErrDelivery, err)
	}
	return nil
}

func (s *syslogSender) send(ctx context.Context, events []audit.Event) error {
	if s.conn != nil && s.frame != framingDatagram && !alive(s.conn) {
		s.close()
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return err
		}
	}
	conn := s.conn
	if dl, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	limit := 0
	if s.frame == framingDatagram {
		limit = MaxDatagram
	}
	var buf []byte
	for _, e := range events {
		msg := s.format(e, limit)
		buf = buf[:0]
		switch s.frame {
		case framingOctet:
			buf = append(strconv.AppendInt(buf, int64(len(msg)), 10), ' ')
			buf = append(buf, msg...)
		case framingLF:
			buf = append(append(buf, msg...), '\n')
		default:
			buf = msg
		}
		if _, err := conn.Write(buf); err != nil {
			s.close()
			return fmt.Errorf("%w: syslog: %w", ErrDelivery, err)
		}
	}
	return nil
}

// alive reports whether a stream connection is still open: syslog
// collectors never write, so a read that does not time out at once means
// the peer closed or reset it, and writing there would lose the batch.
// (A deadline already past would fail the read without trying it.)
func alive(c net.Conn) bool {
	var one [1]byte
	c.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.Read(one[:])
	c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *syslogSender) close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// format renders e as an RFC 5424 message:
//
//	<PRI>1 TIMESTAMP HOSTNAME portcullis PROCID MSGID [portcullis@32473 seq="…" type="…" code="…"] JSON
//
// PRI is Facility*8 + severity (warning for refusals and failures, else
// info), MSGID the event type, JSON the event (see encodeEvent) without a
// BOM (MSG-ANY, §6.4). If limit > 0 the message is cut to limit bytes.
func (s *syslogSender) format(e audit.Event, limit int) []byte {
	ts := "-"
	if !e.Time.IsZero() {
		ts = e.Time.UTC().Format(timeFormat)
	}
	b := fmt.Appendf(nil, "<%d>1 %s %s %s %d %s [%s seq=\"%d\" type=\"%s\" code=\"%d\"] ",
		Facility*8+severity(e), ts, s.host, appName, s.pid, printable(string(e.Type), maxMsgID),
		SDID, e.Seq, sdEscape(string(e.Type)), e.Type.Code())
	body := encodeEvent(e)
	if limit > 0 && len(b)+len(body) > limit {
		keep := max(limit-len(b)-len(TruncatedMarker), 0)
		for keep > 0 && !utf8.RuneStart(body[keep]) {
			keep--
		}
		body = append(body[:keep], TruncatedMarker...)
	}
	return append(b, body...)
}

// severity is warning (4) for refusals, denials and failures, else info (6).
func severity(e audit.Event) int {
	switch e.Type {
	case audit.ToolCallRefused, audit.PolicyDeny, audit.PolicyWouldDeny, audit.AuthFailure,
		audit.AuthLockout, audit.RequestInvalid, audit.AdminDenied, audit.PolicyReloadFailed:
		return sevWarning
	}
	if e.Status == audit.StatusError || e.Status == audit.StatusRefused || e.Decision == audit.DecisionDeny {
		return sevWarning
	}
	return sevInfo
}

// sdEscape escapes an SD-PARAM value: '"', '\' and ']' get a backslash
// (RFC 5424 §6.3.3).
func sdEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(v)
}

// printable makes v a header field: PRINTUSASCII (33-126) only, other
// bytes replaced by '_', at most n bytes, "-" (the NILVALUE) if empty
// (RFC 5424 §6.2).
func printable(v string, n int) string {
	if v == "" {
		return "-"
	}
	b := []byte(v[:min(len(v), n)])
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}
