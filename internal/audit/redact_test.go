package audit_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/audit"
)

var (
	digestRE    = regexp.MustCompile(`^hmac-sha256:[0-9a-f]{64}$`)
	digestAnyRE = regexp.MustCompile(`hmac-sha256:[0-9a-f]{64}`)
)

func unmarshalNumbers(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
}

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func newRedactor(t testing.TB, key []byte) *audit.Redactor {
	t.Helper()
	r, err := audit.NewRedactor(key)
	if err != nil {
		t.Fatalf("NewRedactor: %v", err)
	}
	return r
}

// hmacHex is an independent reference implementation of Digest.
func hmacHex(key, msg []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return audit.DigestPrefix + hex.EncodeToString(m.Sum(nil))
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("redacted output is not JSON: %v\n%s", err, b)
	}
	return v
}

func TestNewRedactorKeyLength(t *testing.T) {
	tests := []struct {
		n    int
		want bool
	}{{0, false}, {1, false}, {31, false}, {32, true}, {64, true}}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.n), func(t *testing.T) {
			r, err := audit.NewRedactor(make([]byte, tt.n))
			if (err == nil) != tt.want || (r != nil) != tt.want {
				t.Errorf("NewRedactor(%d-byte key) = %v, %v; want ok=%v", tt.n, r, err, tt.want)
			}
		})
	}
}

func TestDigestKeyedAndStable(t *testing.T) {
	key := testKey('a')
	r1 := newRedactor(t, key)
	r2 := newRedactor(t, testKey('b'))
	msg := []byte("hunter2")

	d := r1.Digest(msg)
	if !digestRE.MatchString(d) {
		t.Fatalf("Digest = %q, want hmac-sha256:<64 hex>", d)
	}
	if want := hmacHex(key, msg); d != want {
		t.Errorf("Digest = %q, want HMAC-SHA256 %q", d, want)
	}
	if again := newRedactor(t, key).Digest(msg); again != d {
		t.Errorf("Digest not stable across Redactors with one key: %q vs %q", again, d)
	}
	if other := r2.Digest(msg); other == d {
		t.Error("different keys gave the same digest: not keyed")
	}
	if plain := sha256.Sum256(msg); strings.HasSuffix(d, hex.EncodeToString(plain[:])) {
		t.Error("digest is an unkeyed SHA-256")
	}
	// The Redactor owns a copy of its key: the caller zeroing its buffer
	// must not change (or weaken) digests.
	clear(key)
	if got := r1.Digest(msg); got != d {
		t.Error("Redactor shares the caller's key buffer")
	}
}

// TestDigestConcurrent: Digest reuses HMAC states across calls; calls from
// many goroutines must still each get the HMAC of their own message.
func TestDigestConcurrent(t *testing.T) {
	key := testKey('c')
	r := newRedactor(t, key)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				msg := []byte(strconv.Itoa(g) + "/" + strconv.Itoa(i))
				if got, want := r.Digest(msg), hmacHex(key, msg); got != want {
					t.Errorf("Digest(%s) = %s, want %s", msg, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestRedactSensitiveKeys(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	keys := []string{
		"password", "Password", "PASSWORD", "db_password", "passwd", "API-KEY", "api_key", "apiKey",
		"access_token", "refreshToken", "Authorization", "cookie", "Set-Cookie", "client_secret",
		"sessionId", "session_id", "private_key", "credentials", "aws_access_key_id",
	}
	for _, k := range keys {
		t.Run(k, func(t *testing.T) {
			const clearText = "c1earText-value-77"
			shapes := map[string]any{
				"top level":        map[string]any{k: clearText},
				"nested":           map[string]any{"a": map[string]any{"b": map[string]any{k: clearText}}},
				"array of objects": map[string]any{"items": []any{map[string]any{"x": 1}, map[string]any{k: clearText}}},
				"array value":      map[string]any{k: []any{clearText, clearText}},
				"object value":     map[string]any{k: map[string]any{"inner": clearText}},
			}
			for name, shape := range shapes {
				in, _ := json.Marshal(shape)
				out, _ := r.Redact(in)
				if bytes.Contains(out, []byte(clearText)) {
					t.Errorf("%s: clear value survived: %s", name, out)
				}
				want := r.Digest([]byte(clearText))
				if !bytes.Contains(out, []byte(strconv.Quote(want))) {
					t.Errorf("%s: %s does not hold the digest %s", name, out, want)
				}
			}
		})
	}
}

func TestRedactKeepsOrdinaryValues(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	in := json.RawMessage(`{"path":"src/main.go","offset":10,"limit":1.5e3,"recursive":true,"x":null,"list":["a",2]}`)
	out, _ := r.Redact(in)
	if diff := cmp.Diff(decode(t, in), decode(t, out)); diff != "" {
		t.Errorf("ordinary arguments changed (-in +out):\n%s", diff)
	}
	// Big integers keep their exact value (json.Number, not float64).
	out, _ = r.Redact(json.RawMessage(`{"n":12345678901234567890}`))
	if !bytes.Contains(out, []byte("12345678901234567890")) {
		t.Errorf("large integer lost precision: %s", out)
	}
}

func TestRedactSecretLookingValues(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	pcl := "pcl_" + strings.Repeat("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 2) // 52 base32 chars
	tests := []struct{ name, value string }{
		{"PEM private key", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"},
		{"PEM RSA private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX\n-----END RSA PRIVATE KEY-----"},
		{"PEM OpenSSH key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"},
		{"JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"},
		{"JWT inside text", "token was eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig and more"},
		{"AWS access key", "AKIAIOSFODNN7EXAMPLE"},
		{"AWS temporary key", "aws ASIAIOSFODNN7EXAMPLE here"},
		{"Portcullis API key", pcl},
		{"Portcullis API key in a command", "curl -H x:" + pcl},
		{"GitHub token", "ghp_" + strings.Repeat("a1B2", 9)},
		{"GitHub OAuth token", "gho_" + strings.Repeat("Z9y8", 9)},
		{"Slack token", "xoxb-123456789012-abcdefABCDEF"},
		{"Bearer header", "Bearer abcdefghijklmnop.qrstuv"},
		{"bearer lower case", "authorization: bearer abcdefghijklmnopqrstuv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, shape := range []any{
				map[string]any{"content": tt.value},
				map[string]any{"argv": []any{"run", tt.value}},
				tt.value, // a bare string argument
			} {
				in, _ := json.Marshal(shape)
				out, _ := r.Redact(in)
				if bytes.Contains(out, []byte(tt.value)) {
					t.Fatalf("secret-looking value stored in clear: %s", out)
				}
				if want := strconv.Quote(r.Digest([]byte(tt.value))); !bytes.Contains(out, []byte(want)) {
					t.Errorf("output %s lacks the digest of the value", out)
				}
			}
		})
	}
}

func TestRedactNotSecretLooking(t *testing.T) {
	// Near misses must survive: a redactor that digests everything would
	// pass the tests above but make the audit log useless.
	r := newRedactor(t, testKey('k'))
	for _, v := range []string{
		"pcl_short", "BEGIN PRIVATE KEY without dashes", "AKIA-lowercase-akiaiosfodnn7", "eyJhbGci",
		"bearer tok", "the public key is fine", "ghp_short",
	} {
		in, _ := json.Marshal(map[string]string{"text": v})
		out, _ := r.Redact(in)
		if !bytes.Contains(out, []byte(v)) {
			t.Errorf("harmless %q was redacted: %s", v, out)
		}
	}
}

// TestRedactSecretLookingKeys: a credential used as an object key (headers
// maps, token-indexed objects) must not reach the log either.
func TestRedactSecretLookingKeys(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	secret := "AKIAIOSFODNN7EXAMPLE"
	in := json.RawMessage(`{"map":{"` + secret + `":"user-1"}}`)
	out, _ := r.Redact(in)
	if bytes.Contains(out, []byte(secret)) {
		t.Errorf("secret-looking object key stored in clear: %s", out)
	}
	if !bytes.Contains(out, []byte(`"user-1"`)) {
		t.Errorf("value under a redacted key lost: %s", out)
	}
}

func TestRedactNonStringsUnderSensitiveKeys(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	tests := []struct {
		in    string
		clear string
	}{
		{`{"pin_password":918273645}`, "918273645"},
		{`{"token":3.14159265}`, "3.14159265"},
		{`{"secret":true}`, "true"},
		{`{"secret":false}`, "false"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			out, _ := r.Redact(json.RawMessage(tt.in))
			if bytes.Contains(out, []byte(tt.clear)) {
				t.Errorf("Redact(%s) = %s: value in clear", tt.in, out)
			}
			want := r.Digest([]byte(tt.clear))
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("Redact(%s) = %s, want digest %s", tt.in, out, want)
			}
		})
	}
	// null under a sensitive key stays null: there is nothing to hide.
	out, _ := r.Redact(json.RawMessage(`{"password":null}`))
	if string(out) != `{"password":null}` {
		t.Errorf("Redact(password null) = %s", out)
	}
}

func TestRedactLongStrings(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	tests := []struct {
		name  string
		value string
	}{
		{"ascii", strings.Repeat("x", audit.MaxStoredString+1)},
		{"much longer", strings.Repeat("abc", 10000)},
		// A multi-byte rune straddles the cut: the kept prefix must stay valid UTF-8.
		{"utf8 at the cut", strings.Repeat("a", audit.MaxStoredString-1) + strings.Repeat("é", 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, _ := json.Marshal(map[string]string{"content": tt.value})
			out, _ := r.Redact(in)
			var got map[string]string
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("output not JSON: %v", err)
			}
			s := got["content"]
			prefix, _, ok := strings.Cut(s, "…")
			if !ok || len(prefix) > audit.MaxStoredString || len(s) > audit.MaxStoredString+100 {
				t.Errorf("long string kept as %d bytes (prefix %d), want at most %d + a short note",
					len(s), len(prefix), audit.MaxStoredString)
			}
			if !strings.Contains(s, strconv.Itoa(len(tt.value))+" bytes") {
				t.Errorf("truncated value %q… does not state the length %d", s[len(s)-100:], len(tt.value))
			}
			if !strings.Contains(s, r.Digest([]byte(tt.value))) {
				t.Error("truncated value does not carry the digest of the full value")
			}
			if !strings.HasPrefix(tt.value, prefix) || len(prefix) < audit.MaxStoredString-4 {
				t.Error("kept prefix is not a prefix of the value")
			}
		})
	}
	// Exactly MaxStoredString bytes is kept whole.
	v := strings.Repeat("y", audit.MaxStoredString)
	in, _ := json.Marshal(map[string]string{"content": v})
	if out, _ := r.Redact(in); !bytes.Equal(out, in) {
		t.Errorf("a %d-byte string was changed", audit.MaxStoredString)
	}
}

func TestRedactInvalidJSON(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	tests := []string{
		`{"password":"hunter2"`,          // truncated
		`{"password": hunter2}`,          // bare word
		`not json at all: hunter2`,       // text
		`{"a":1} {"password":"hunter2"}`, // trailing second value
		`{"a":1} hunter2`,                // trailing garbage
		"   ",                            // only whitespace
	}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			out, digest := r.Redact(json.RawMessage(in))
			if bytes.Contains(out, []byte("hunter2")) {
				t.Errorf("raw content of invalid JSON stored: %s", out)
			}
			var note string
			if err := json.Unmarshal(out, &note); err != nil {
				t.Fatalf("Redact(invalid) = %s, want a JSON string note: %v", out, err)
			}
			if want := r.Digest([]byte(in)); digest != want || !strings.Contains(note, want) {
				t.Errorf("note %q / digest %q, want digest %q of the raw bytes", note, digest, want)
			}
			if !strings.Contains(note, strconv.Itoa(len(in))+" bytes") {
				t.Errorf("note %q does not state the length %d", note, len(in))
			}
		})
	}
}

func TestRedactEmpty(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	for _, in := range []json.RawMessage{nil, {}} {
		if out, d := r.Redact(in); out != nil || d != "" {
			t.Errorf("Redact(%q) = %q, %q; want nil, \"\"", in, out, d)
		}
	}
}

func TestRedactArgsDigestCanonical(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	digest := func(s string) string {
		_, d := r.Redact(json.RawMessage(s))
		if !strings.HasPrefix(d, audit.DigestPrefix) {
			t.Fatalf("digest of %s = %q", s, d)
		}
		return d
	}
	base := digest(`{"a":1,"b":2}`)
	same := []string{`{"b":2,"a":1}`, ` { "a" : 1 ,  "b":2 } `, "{\n\"b\":2,\n\"a\":1}"}
	for _, s := range same {
		if d := digest(s); d != base {
			t.Errorf("digest(%s) != digest({\"a\":1,\"b\":2}): not canonical", s)
		}
	}
	differ := []string{`{"a":1,"b":3}`, `{"a":1}`, `{"a":1,"b":2,"c":3}`, `{"a":"1","b":2}`, `{"A":1,"b":2}`}
	for _, s := range differ {
		if d := digest(s); d == base {
			t.Errorf("digest(%s) == digest({\"a\":1,\"b\":2})", s)
		}
	}
	// The digest covers the full value, including what Redact hides.
	if digest(`{"password":"x"}`) == digest(`{"password":"y"}`) {
		t.Error("args digest ignores the value of a redacted field")
	}
	// Keyed: another key, another digest.
	_, other := newRedactor(t, testKey('z')).Redact(json.RawMessage(`{"a":1,"b":2}`))
	if other == base {
		t.Error("args digest not keyed")
	}
}

func TestRedactDoesNotMutateInput(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	in := json.RawMessage(`{"password":"hunter2","nested":{"token":"abc"},"content":"` + strings.Repeat("z", 2000) + `"}`)
	orig := bytes.Clone(in)
	out, _ := r.Redact(in)
	if !bytes.Equal(in, orig) {
		t.Error("Redact mutated its input")
	}
	if len(out) > 0 && len(in) > 0 && &out[0] == &in[0] {
		t.Error("Redact returned its input buffer")
	}
}

// FuzzRedact: Redact never panics, always yields JSON, and a secret placed
// under "password" never appears in the output.
func FuzzRedact(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":[true,null,"x"]}`), "hunter2-secret")
	f.Add([]byte(`{"password":"x","nested":{"token":[1,2]}}`), "p@ss<word>&")
	f.Add([]byte(`not json`), "AKIAIOSFODNN7EXAMPLE")
	f.Add([]byte(`"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.x"`), "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9")
	f.Add([]byte(`[1e999]`), "zzzzzzzz")
	f.Add([]byte("{\"a\":\"\xff\xfe\"}"), "\xff\xfe\xfd\xfc\xfb\xfa")
	f.Fuzz(func(t *testing.T, data []byte, secret string) {
		r := newRedactor(t, testKey('f'))
		out, digest := r.Redact(data)
		if len(data) > 0 && (digest == "" || !json.Valid(out)) {
			t.Fatalf("Redact(%q) = %q, %q: want JSON and a digest", data, out, digest)
		}

		// Wrap the fuzzed value next to a password (and a nested API key).
		var rest any = string(data)
		if json.Valid(data) {
			rest = json.RawMessage(data)
		}
		without, err := json.Marshal(map[string]any{"data": rest})
		if err != nil {
			return // e.g. a number too large to re-encode
		}
		with, err := json.Marshal(map[string]any{"data": rest, "password": secret, "deep": []any{map[string]any{"Api-Key": secret}}})
		if err != nil {
			t.Fatal(err)
		}
		base, _ := r.Redact(without)
		got, _ := r.Redact(with)
		if !json.Valid(got) {
			t.Fatalf("output not JSON: %q", got)
		}

		// Structure: the secret's two places hold its digest; the rest is
		// redacted exactly as without it.
		var b, g struct {
			Data     any
			Password string
			Deep     []struct {
				APIKey string `json:"Api-Key"`
			}
		}
		unmarshalNumbers(t, base, &b)
		unmarshalNumbers(t, got, &g)
		var stored string // the secret as JSON carries it (invalid UTF-8 replaced)
		enc, _ := json.Marshal(secret)
		unmarshalNumbers(t, enc, &stored)
		want := r.Digest([]byte(stored))
		if g.Password != want || len(g.Deep) != 1 || g.Deep[0].APIKey != want {
			t.Fatalf("password %q / Api-Key %v, want digest %q", g.Password, g.Deep, want)
		}
		if !cmp.Equal(b.Data, g.Data) {
			t.Fatalf("a password field changed how the rest was redacted:\n%s", cmp.Diff(b.Data, g.Data))
		}

		// Bytes: the clear secret appears nowhere. Skip secrets that could
		// occur by chance: short ones, ones already in the rest of the
		// output, ones in the fixed key names, or ones that could straddle
		// JSON punctuation.
		if len(secret) < 6 || strings.ContainsAny(secret, `",\`) || bytes.Contains(base, []byte(secret)) ||
			strings.Contains(`{"data":"deep":[{"Api-Key":}],"password":}`, secret) {
			return
		}
		if stripped := digestAnyRE.ReplaceAll(got, nil); bytes.Contains(stripped, []byte(secret)) {
			t.Fatalf("secret %q under password leaked: %s", secret, got)
		}
	})
}

// BenchmarkRedact measures Redact on typical tool-call arguments of about
// 200 bytes (ordinary values only, one sensitive key, a credential inside
// free text) and on a 4 KB file write.
func BenchmarkRedact(b *testing.B) {
	key := "AKIA" + strings.Repeat("Q", 16)
	source, _ := json.Marshal(strings.Repeat("\tif err := w.Write(ctx, ev); err != nil {\n\t\treturn fmt.Errorf(\"audit: %w\", err)\n\t}\n", 55))
	cases := []struct{ name, args string }{
		{"ordinary", `{"path":"src/internal/audit/redact_test.go","content":"func main() { fmt.Println(\"hello, world\") }","recursive":true,"limit":100,"options":{"encoding":"utf-8","mode":"0644"},"tags":["build","test"]}`},
		{"sensitive key", `{"url":"https://api.example.com/v1/items?page=2","method":"POST","headers":{"Accept":"application/json","Authorization":"Basic dXNlcjpwYXNz"},"body":{"name":"widget","count":3}}`},
		{"secret in text", `{"command":"aws s3 ls s3://bucket/prefix --region eu-west-1","env":{"AWS_REGION":"eu-west-1","NOTE":"key ` + key + ` rotated"},"cwd":"/home/dev/project","timeout":30}`},
		{"file 4KB", `{"path":"internal/audit/writer.go","content":` + string(source) + `}`},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := newRedactor(b, testKey('b'))
			in := json.RawMessage(c.args)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				r.Redact(in)
			}
		})
	}
}
