package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/datadir"
)

// Webhook signature headers. The signature is "sha256=" and the hex
// HMAC-SHA256, keyed with the webhook's secret file, of the timestamp, a
// "." and the raw request body; binding the timestamp lets receivers refuse
// replays (the scheme of Stripe and Slack request signing).
const (
	HeaderTimestamp = "X-Portcullis-Timestamp" // Unix seconds
	HeaderSignature = "X-Portcullis-Signature" // "sha256=<hex>"
)

// ErrSignature means a webhook signature is missing, malformed, wrong, or
// its timestamp is outside the tolerance.
var ErrSignature = errors.New("alert: invalid webhook signature")

// webhookPayload is the "generic" JSON body.
type webhookPayload struct {
	Kind       string `json:"kind"`
	Severity   string `json:"severity"`
	Subject    string `json:"subject"`
	Detail     string `json:"detail"`
	Time       string `json:"time"` // RFC 3339, UTC
	ID         string `json:"id"`
	Suppressed int    `json:"suppressed,omitempty"`
	Source     string `json:"source"` // always "portcullis"
}

type webhook struct {
	url, host, format string
	secret            []byte
	timeout           time.Duration
	client            *http.Client
	now               func() time.Time
}

func newWebhook(c config.WebhookConfig, client *http.Client, now func() time.Time) (*webhook, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		// The URL itself is not echoed: its path or query may hold a token.
		return nil, fmt.Errorf("%w: webhook %q: url must be http(s) without credentials", ErrConfig, c.Name)
	}
	if c.Format != "generic" && c.Format != "slack" {
		return nil, fmt.Errorf("%w: webhook %q: format must be generic or slack", ErrConfig, c.Name)
	}
	if c.Timeout <= 0 || c.MaxAttempts < 1 {
		return nil, fmt.Errorf("%w: webhook %q: timeout and max_attempts must be positive", ErrConfig, c.Name)
	}
	h := &webhook{url: c.URL, host: u.Host, format: c.Format, timeout: c.Timeout, client: client, now: now}
	if c.SecretFile != "" {
		if h.secret, err = readSecret(c.SecretFile); err != nil {
			return nil, fmt.Errorf("%w: webhook %q secret_file: %w", ErrConfig, c.Name, err)
		}
	}
	return h, nil
}

// readSecret reads a 0600 secret file, trimming surrounding whitespace (a
// trailing newline from an editor or echo); empty is an error.
func readSecret(path string) ([]byte, error) {
	b, err := datadir.ReadPrivate(path)
	if err != nil {
		return nil, err
	}
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return b, nil
}

func (h *webhook) body(it item) ([]byte, error) {
	if h.format == "slack" {
		return json.Marshal(map[string]string{"text": slackText(it)})
	}
	return json.Marshal(webhookPayload{Kind: it.Kind, Severity: it.Severity, Subject: it.Subject, Detail: it.Detail,
		Time: it.Time.UTC().Format(time.RFC3339), ID: it.id, Suppressed: it.suppressed, Source: "portcullis"})
}

// slackText is "[HIGH] auth.lockout: src:192.0.2.1 — locked 1m", escaped
// as Slack message text requires (&, <, >; api.slack.com "Formatting text").
func slackText(it item) string {
	s := "[" + it.Severity + "] " + it.Kind + ": " + it.Subject
	if it.Detail != "" {
		s += " — " + it.Detail
	}
	if it.suppressed > 0 {
		s += fmt.Sprintf(" (%d repeats suppressed)", it.suppressed)
	}
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func (h *webhook) send(ctx context.Context, it item) (time.Duration, error) {
	body, err := h.body(it)
	if err != nil {
		return 0, fmt.Errorf("%w: encoding: %w", errPermanent, err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: host %s: bad request", errPermanent, h.host)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Portcullis-Alerts")
	if h.secret != nil {
		ts := strconv.FormatInt(h.now().Unix(), 10)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, sign(h.secret, ts, body))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		// *url.Error quotes the whole URL; keep only the cause.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("host %s: %w", h.host, err)
	}
	// Drain (bounded) so the connection is reused; never log the body.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return 0, nil
	case code == http.StatusTooManyRequests || code >= 500:
		return retryAfter(resp.Header.Get("Retry-After"), h.now()), fmt.Errorf("host %s: status %d", h.host, code)
	default: // 3xx (redirects are not followed) and other 4xx
		return 0, fmt.Errorf("%w: host %s: status %d", errPermanent, h.host, code)
	}
}

// retryAfter parses a Retry-After value (RFC 9110 §10.2.3: seconds or an
// HTTP date); 0 when absent or invalid. The caller caps it.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(maxBackoff/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a Portcullis webhook request: timestamp and header
// are the values of HeaderTimestamp and HeaderSignature, body the raw
// request body. It fails with an error wrapping ErrSignature unless the
// header is the HMAC-SHA256 of timestamp + "." + body under secret
// (compared in constant time) and the timestamp is within tolerance of now
// in either direction (replay protection; 5 minutes is usual).
func VerifySignature(secret []byte, timestamp string, body []byte, header string, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp", ErrSignature)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp outside tolerance", ErrSignature)
	}
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return fmt.Errorf("%w: want sha256=<hex>", ErrSignature)
	}
	mac, err := hex.DecodeString(got)
	if err != nil {
		return fmt.Errorf("%w: want sha256=<hex>", ErrSignature)
	}
	want, _ := hex.DecodeString(strings.TrimPrefix(sign(secret, timestamp, body), "sha256="))
	if !hmac.Equal(mac, want) {
		return fmt.Errorf("%w: mismatch", ErrSignature)
	}
	return nil
}
