package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/config"
)

const (
	smtpMaxAttempts = 5
	smtpTimeout     = 30 * time.Second // one attempt: dial to QUIT
	maxSubjectRunes = 200
)

type smtpSender struct {
	addr, host, from string
	to               []string
	username         string
	password         string
	startTLS         bool
	tls              *tls.Config
	now              func() time.Time
}

func newSMTP(c config.SMTPConfig, tc *tls.Config, now func() time.Time) (*smtpSender, error) {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil || c.From == "" || len(c.To) == 0 {
		return nil, fmt.Errorf("%w: smtp: addr must be host:port, from and to set", ErrConfig)
	}
	s := &smtpSender{addr: c.Addr, host: host, from: c.From, to: c.To, username: c.Username, startTLS: c.StartTLS, now: now}
	if tc != nil {
		s.tls = tc.Clone()
	} else {
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if s.tls.ServerName == "" {
		s.tls.ServerName = host
	}
	if c.Username != "" {
		if c.PasswordFile == "" {
			return nil, fmt.Errorf("%w: smtp: username needs password_file", ErrConfig)
		}
		b, err := readSecret(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: smtp password_file: %w", ErrConfig, err)
		}
		s.password = string(b)
	}
	return s, nil
}

// send delivers one message in one SMTP session (RFC 5321). With StartTLS
// the session is upgraded before anything else is sent and a server not
// offering STARTTLS fails (no fallback to plaintext). PLAIN auth is
// refused by net/smtp over plaintext except to localhost. 5xx replies are
// permanent; everything else is retried.
func (s *smtpSender) send(ctx context.Context, it item) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, smtpTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return 0, fmt.Errorf("smtp %s: %w", s.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		conn.Close()
		return 0, s.wrap(err)
	}
	defer c.Close()
	if s.startTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return 0, fmt.Errorf("%w: smtp %s: server does not offer STARTTLS", errPermanent, s.addr)
		}
		if err := c.StartTLS(s.tls); err != nil {
			return 0, s.wrap(err)
		}
	}
	if s.username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.username, s.password, s.host)); err != nil {
			return 0, s.wrap(err)
		}
	}
	if err := c.Mail(s.from); err != nil {
		return 0, s.wrap(err)
	}
	for _, to := range s.to {
		if err := c.Rcpt(to); err != nil {
			return 0, s.wrap(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return 0, s.wrap(err)
	}
	if _, err := w.Write(s.message(it)); err != nil {
		return 0, s.wrap(err)
	}
	if err := w.Close(); err != nil {
		return 0, s.wrap(err)
	}
	return 0, s.wrap(c.Quit())
}

func (s *smtpSender) wrap(err error) error {
	if err == nil {
		return nil
	}
	if te := (*textproto.Error)(nil); errors.As(err, &te) && te.Code >= 500 {
		return fmt.Errorf("%w: smtp %s: %w", errPermanent, s.addr, err)
	}
	return fmt.Errorf("smtp %s: %w", s.addr, err)
}

// message renders the RFC 5322 message. Every header value passes through
// headerSafe, so no field of the alert can start a new header line.
func (s *smtpSender) message(it item) []byte {
	subj := []rune(headerSafe(fmt.Sprintf("[Portcullis] %s %s: %s", it.Severity, it.Kind, it.Subject)))
	if len(subj) > maxSubjectRunes {
		subj = append(subj[:maxSubjectRunes-1], '…')
	}
	to := make([]string, len(s.to))
	for i, a := range s.to {
		to[i] = headerSafe(a)
	}
	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", headerSafe(s.from))
	hdr("To", strings.Join(to, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", string(subj)))
	hdr("Date", s.now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+it.id+"@portcullis>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")

	var body strings.Builder
	fmt.Fprintf(&body, "Kind: %s\nSeverity: %s\nSubject: %s\nTime: %s\nID: %s\n",
		it.Kind, it.Severity, it.Subject, it.Time.UTC().Format(time.RFC3339), it.id)
	if it.suppressed > 0 {
		fmt.Fprintf(&body, "Suppressed repeats: %d\n", it.suppressed)
	}
	if it.Detail != "" {
		body.WriteString("\n" + it.Detail + "\n")
	}
	body.WriteString("\n-- \nPortcullis\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(body.String(), "\r\n", "\n"), "\r", "")))
	qp.Close()
	return b.Bytes()
}

// headerSafe replaces control characters (CR and LF above all) with
// spaces.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
