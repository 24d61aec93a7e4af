package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"
)

// DigestPrefix marks a redacted value: "hmac-sha256:<64 hex>".
const DigestPrefix = "hmac-sha256:"

// MaxStoredString caps a string value kept in the redacted arguments;
// longer values are replaced by their length and digest.
const MaxStoredString = 1024

// Redactor computes keyed digests of values so that the audit log can be
// searched for a known value (compute its digest) without storing it.
type Redactor struct {
	key []byte
}

// NewRedactor returns a Redactor keyed with key (at least 32 bytes).
func NewRedactor(key []byte) (*Redactor, error) {
	if len(key) < 32 {
		return nil, errors.New("audit: redaction key shorter than 32 bytes")
	}
	return &Redactor{key: bytes.Clone(key)}, nil
}

// Digest returns "hmac-sha256:<hex>" of b under the redaction key.
func (r *Redactor) Digest(b []byte) string {
	m := hmac.New(sha256.New, r.key)
	m.Write(b)
	return DigestPrefix + hex.EncodeToString(m.Sum(nil))
}

// sensitiveKeys are substrings of argument names whose values are never
// stored in clear (compared case-insensitively, '-' treated as '_').
var sensitiveKeys = []string{
	"password", "passwd", "secret", "token", "api_key", "apikey",
	"authorization", "cookie", "private_key", "credential", "access_key",
	"session",
}

// secretLooking matches strings that look like credentials wherever they
// appear: PEM blocks, JWTs, AWS access keys, Portcullis API keys, GitHub
// and Slack tokens, bearer headers.
var secretLooking = regexp.MustCompile(
	`-----BEGIN [A-Z ]*PRIVATE KEY-----` +
		`|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*` +
		`|\b(AKIA|ASIA)[0-9A-Z]{16}\b` +
		`|\bpcl_[A-Za-z0-9]{20,}` +
		`|\bgh[pousr]_[A-Za-z0-9]{30,}` +
		`|\bxox[abpr]-[A-Za-z0-9-]{10,}` +
		`|(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}`)

func isSensitiveKey(k string) bool {
	k = strings.ReplaceAll(strings.ToLower(k), "-", "_")
	for _, s := range sensitiveKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// Redact returns a copy of the JSON value args with sensitive values
// replaced by digests and long strings shortened, plus the digest of the
// canonical form of the full value. Invalid JSON is not stored: the result
// is a JSON string noting its length and digest.
func (r *Redactor) Redact(args json.RawMessage) (redacted json.RawMessage, digest string) {
	if len(args) == 0 {
		return nil, ""
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.UseNumber()
	err := dec.Decode(&v)
	if err == nil {
		// Decode reads one value; anything after it (a second value,
		// garbage) makes the input invalid rather than silently dropped
		// from the stored copy and the digest.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON value")
		}
	}
	if err != nil {
		d := r.Digest(args)
		s, _ := json.Marshal(fmt.Sprintf("[unparseable %d bytes %s]", len(args), d))
		return s, d
	}
	canonical, err := json.Marshal(v) // map keys sorted
	if err != nil {
		canonical = args
	}
	digest = r.Digest(canonical)
	out, err := json.Marshal(r.redactValue(v, false))
	if err != nil {
		return nil, digest
	}
	return out, digest
}

func (r *Redactor) redactValue(v any, sensitive bool) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			val = r.redactValue(val, sensitive || isSensitiveKey(k))
			if secretLooking.MatchString(k) { // a credential used as a key
				k = r.Digest([]byte(k))
			}
			out[k] = val
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, val := range t {
			out[i] = r.redactValue(val, sensitive)
		}
		return out
	case string:
		if sensitive || secretLooking.MatchString(t) {
			return r.Digest([]byte(t))
		}
		if len(t) > MaxStoredString {
			cut := MaxStoredString
			for cut > 0 && !utf8.RuneStart(t[cut]) {
				cut--
			}
			return fmt.Sprintf("%s…[%d bytes, %s]", t[:cut], len(t), r.Digest([]byte(t)))
		}
		return t
	case nil, bool, json.Number:
		if sensitive && v != nil {
			return r.Digest([]byte(fmt.Sprint(v)))
		}
		return t
	default:
		return t
	}
}
