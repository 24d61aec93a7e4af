package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"strings"
	"sync"
	"unicode/utf8"
)

// DigestPrefix marks a redacted value: "hmac-sha256:<64 hex>".
const DigestPrefix = "hmac-sha256:"

// MaxStoredString caps a string value kept in the redacted arguments;
// longer values are replaced by their length and digest.
const MaxStoredString = 1024

// Redactor computes keyed digests of values so that the audit log can be
// searched for a known value (compute its digest) without storing it. It
// is safe for concurrent use.
type Redactor struct {
	key  []byte
	macs sync.Pool // hash.Hash, HMAC-SHA256 under key
}

// NewRedactor returns a Redactor keyed with key (at least 32 bytes).
func NewRedactor(key []byte) (*Redactor, error) {
	if len(key) < 32 {
		return nil, errors.New("audit: redaction key shorter than 32 bytes")
	}
	r := &Redactor{key: bytes.Clone(key)}
	r.macs.New = func() any { return hmac.New(sha256.New, r.key) }
	return r, nil
}

// Digest returns "hmac-sha256:<hex>" of b under the redaction key.
func (r *Redactor) Digest(b []byte) string {
	m := r.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(b)
	var sum [sha256.Size]byte
	var out [len(DigestPrefix) + 2*sha256.Size]byte
	copy(out[:], DigestPrefix)
	hex.Encode(out[len(DigestPrefix):], m.Sum(sum[:0]))
	r.macs.Put(m)
	return string(out[:])
}

// Sensitive argument names, matched by isSensitiveKey: compactKeys inside
// a name, wordKeys as one of its words, "token" unless the name counts
// tokens (tokenQuantityWords); none when the name ends with one of
// descriptorWords.
var (
	compactKeys = [][]byte{
		[]byte("password"), []byte("passwd"), []byte("passphrase"), []byte("passcode"),
		[]byte("secret"), []byte("apikey"), []byte("authorization"), []byte("cookie"),
		[]byte("credential"), []byte("privatekey"), []byte("privkey"), []byte("accesskey"),
		[]byte("accountkey"), []byte("signingkey"), []byte("encryptionkey"), []byte("masterkey"),
		[]byte("sshkey"), []byte("session"), []byte("connectionstring"), []byte("connstr"),
	}
	wordKeys           = []string{"auth", "bearer", "dsn", "jwt"}
	tokenQuantityWords = []string{
		"max", "min", "num", "number", "count", "total", "limit", "budget", "usage", "used",
		"remaining", "input", "output", "prompt", "completion", "reasoning", "cached", "estimated",
	}
	descriptorWords = []string{
		"type", "kind", "method", "mode", "scheme", "url", "uri", "endpoint", "file", "path", "dir",
		"name", "ttl", "expiry", "expires", "timeout", "enabled", "required",
	}
)

// wordStart reports whether a word of name k starts at k[i], a letter or
// digit: after a byte that is neither, at a lower-case letter or digit to
// upper-case step ("refresh|Token"), and at the last capital of two or
// more before a lower-case letter ("API|Key"; but "OAuth").
func wordStart(k string, i int) bool {
	if i == 0 {
		return true
	}
	c, p := byteClass[k[i]], byteClass[k[i-1]]
	switch {
	case p&cAlnum == 0:
		return true
	case c&cUpper == 0:
		return false
	case p&(cLower|cDigit) != 0:
		return true
	}
	return i >= 2 && byteClass[k[i-2]]&cUpper != 0 && i+1 < len(k) && byteClass[k[i+1]]&cLower != 0
}

// lastWords returns the last n words of name k (from the start of the
// n-th last word on), split as isSensitiveKey splits.
func lastWords(k string, n int) string {
	for i := len(k) - 1; i > 0; i-- {
		if byteClass[k[i]]&cAlnum != 0 && wordStart(k, i) {
			if n--; n == 0 {
				return k[i:]
			}
		}
	}
	return k
}

// keyTrigrams has a bit for the first three letters of every pattern that
// isSensitiveKey looks for: a name with none of them cannot match, and most
// names are rejected on this alone.
var keyTrigrams = func() (t [26 * 26 * 26 / 8]byte) {
	set := func(p string) {
		i := trigram(p[0], p[1], p[2])
		t[i/8] |= 1 << (i % 8)
	}
	for _, p := range compactKeys {
		set(string(p))
	}
	for _, p := range wordKeys {
		set(p)
	}
	set("pwd")
	set("token")
	return t
}()

// trigram numbers three lower-case letters; anything else gives -1.
func trigram(a, b, c byte) int {
	a, b, c = a-'a', b-'a', c-'a'
	if a >= 26 || b >= 26 || c >= 26 {
		return -1
	}
	return (int(a)*26+int(b))*26 + int(c)
}

func hasKeyTrigram(w []byte) bool {
	for i := 0; i+2 < len(w); i++ {
		if t := trigram(w[i], w[i+1], w[i+2]); t >= 0 && keyTrigrams[t/8]&(1<<(t%8)) != 0 {
			return true
		}
	}
	return false
}

// maxKeyWords bounds the words of a name that isSensitiveKey matches one
// by one; a name of more words is matched by substrings only, the word
// rules included (failing closed).
const maxKeyWords = 16

// isSensitiveKey reports whether an argument named k holds a credential,
// so that its value, whatever its type, is stored as a digest. It splits
// k into lower-case words at every byte that is not an ASCII letter or
// digit ('_', '-', '.', ' ', ...) and at camelCase boundaries:
// "refreshToken" is refresh|token, "APIKey" is api|key, and a single
// capital stays with its word, so "OAuth" is one word, oauth. Then:
//
//   - a compactKeys entry anywhere in the words written together matches,
//     so "db_password", "API-KEY", "x-api-key", "apiKey", "aws_access_key_id"
//     and "sessionId" do (the substring rule of the first version, kept);
//   - a wordKeys entry matches only as a whole word, because as a substring
//     it is part of ordinary names: "auth" of "author" and "authority",
//     "jwt" and "dsn" of anything;
//   - "pwd" matches as a word of a longer name ("MYSQL_PWD", "db-pwd"), not
//     alone: "PWD" and "OLDPWD" are the shell's working directories, paths
//     that shell tools pass in their environment;
//   - "token" matches inside a word ("accesstoken", "X-Auth-Token") except
//     in the tokenize family ("tokenizer", "detokenize"), and except when
//     another word of the name is a quantity (tokenQuantityWords):
//     "max_tokens", "input_tokens", "token_count" are numbers of tokens, not
//     credentials. The first version redacted those; running the words
//     together ("maxtokens") still does;
//   - nothing matches when the last of two or more words is one of
//     descriptorWords: "token_url", "auth_type", "password_file",
//     "secret_name", "session_timeout" name where a credential is, what
//     kind it is or how long it lasts, not the credential; the first
//     version redacted those. "secret_file_contents" is still sensitive.
//
// Not sensitive on purpose: "key" alone (map, cache and object keys),
// "signature" (e-mail signatures; signature values are public), "pin",
// "otp".
func isSensitiveKey(k string) bool {
	var bufArr [64]byte
	var endsArr [maxKeyWords + 1]int
	buf, ends := bufArr[:0], endsArr[:0]
	endWord := func() {
		if n := len(buf); n > 0 && (len(ends) == 0 || ends[len(ends)-1] != n) && len(ends) <= maxKeyWords {
			ends = append(ends, n)
		}
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if byteClass[c]&cAlnum == 0 {
			endWord()
			continue
		}
		if wordStart(k, i) {
			endWord()
		}
		if byteClass[c]&cUpper != 0 {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	endWord()
	if !hasKeyTrigram(buf) {
		return false
	}
	if len(ends) > 1 && len(ends) <= maxKeyWords {
		last := buf[ends[len(ends)-2]:]
		for _, s := range descriptorWords {
			if string(last) == s {
				return false
			}
		}
	}
	for _, p := range compactKeys {
		if bytes.Contains(buf, p) {
			return true
		}
	}
	if len(ends) > maxKeyWords {
		for _, s := range wordKeys {
			if bytes.Contains(buf, []byte(s)) {
				return true
			}
		}
		return bytes.Contains(buf, []byte("pwd")) || bytes.Contains(buf, []byte("token"))
	}
	token, quantity := false, false
	start := 0
	for _, end := range ends {
		w := buf[start:end]
		start = end
		for _, s := range wordKeys {
			if string(w) == s {
				return true
			}
		}
		if string(w) == "pwd" && len(ends) > 1 {
			return true
		}
		for _, s := range tokenQuantityWords {
			if string(w) == s {
				quantity = true
			}
		}
		if i := bytes.Index(w, []byte("token")); i >= 0 {
			rest := w[i+len("token"):]
			if !bytes.HasPrefix(rest, []byte("iz")) && !bytes.HasPrefix(rest, []byte("is")) {
				token = true
			}
		}
	}
	return token && !quantity
}

// Byte classes for the scanners below.
const (
	cUpper = 1 << iota
	cLower
	cDigit
	cUnderscore
	cDash
	cDot
	cSlash
	cPlus

	cAlnum = cUpper | cLower | cDigit
	// cRun are the bytes of a candidate high-entropy token: base64 and
	// base64url without the '=' padding.
	cRun = cAlnum | cUnderscore | cDash | cSlash | cPlus
)

var byteClass = func() (t [256]uint8) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = cUpper
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = cLower
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = cDigit
	}
	t['_'], t['-'], t['.'], t['/'], t['+'] = cUnderscore, cDash, cDot, cSlash, cPlus
	return t
}()

// A tokenRule is a credential format with a fixed prefix: the prefix,
// then at least min (and, when max is set, at most max, followed by no
// letter or digit) bytes of the classes in tail. mixed asks the tail to
// hold an upper-case letter, a lower-case letter and a digit.
type tokenRule struct {
	prefix   string
	tail     uint8
	min, max int
	mixed    bool
}

// tokenRules are the prefixed credential formats, found where the prefix
// starts a word (after a byte that is not a letter or digit). Formats from
// the vendors' documentation; lengths are the documented ones or lower.
var tokenRules = []tokenRule{
	{prefix: "AKIA", tail: cUpper | cDigit, min: 16, max: 16},              // AWS access key ID
	{prefix: "ASIA", tail: cUpper | cDigit, min: 16, max: 16},              // AWS temporary (STS) access key ID
	{prefix: "AIza", tail: cAlnum | cUnderscore | cDash, min: 35},          // Google API key
	{prefix: "pcl_", tail: cAlnum, min: 20},                                // Portcullis API key
	{prefix: "ghp_", tail: cAlnum, min: 30},                                // GitHub personal access token
	{prefix: "gho_", tail: cAlnum, min: 30},                                // GitHub OAuth token
	{prefix: "ghu_", tail: cAlnum, min: 30},                                // GitHub user-to-server token
	{prefix: "ghs_", tail: cAlnum, min: 30},                                // GitHub server-to-server token
	{prefix: "ghr_", tail: cAlnum, min: 30},                                // GitHub refresh token
	{prefix: "github_pat_", tail: cAlnum | cUnderscore, min: 22},           // GitHub fine-grained token
	{prefix: "glpat-", tail: cAlnum | cUnderscore | cDash | cDot, min: 20}, // GitLab personal access token
	{prefix: "gldt-", tail: cAlnum | cUnderscore | cDash | cDot, min: 20},  // GitLab deploy token
	{prefix: "glrt-", tail: cAlnum | cUnderscore | cDash | cDot, min: 20},  // GitLab runner token
	{prefix: "glptt-", tail: cAlnum | cUnderscore | cDash | cDot, min: 20}, // GitLab pipeline trigger token
	{prefix: "xoxa-", tail: cAlnum | cDash, min: 10},                       // Slack tokens
	{prefix: "xoxb-", tail: cAlnum | cDash, min: 10},
	{prefix: "xoxp-", tail: cAlnum | cDash, min: 10},
	{prefix: "xoxr-", tail: cAlnum | cDash, min: 10},
	{prefix: "xoxs-", tail: cAlnum | cDash, min: 10},
	{prefix: "xoxe-", tail: cAlnum | cDash, min: 10},
	{prefix: "hooks.slack.com/services/", tail: cAlnum | cUnderscore | cDash | cSlash, min: 20}, // Slack webhooks
	{prefix: "hooks.slack.com/workflows/", tail: cAlnum | cUnderscore | cDash | cSlash, min: 20},
	{prefix: "hooks.slack.com/triggers/", tail: cAlnum | cUnderscore | cDash | cSlash, min: 20},
	{prefix: "sk-ant-", tail: cAlnum | cUnderscore | cDash, min: 20},     // Anthropic API key
	{prefix: "sk-proj-", tail: cAlnum | cUnderscore | cDash, min: 20},    // OpenAI project key
	{prefix: "sk-svcacct-", tail: cAlnum | cUnderscore | cDash, min: 20}, // OpenAI service-account key
	{prefix: "sk-admin-", tail: cAlnum | cUnderscore | cDash, min: 20},   // OpenAI admin key
	{prefix: "sk-None-", tail: cAlnum | cUnderscore | cDash, min: 20},    // OpenAI user key
	{prefix: "sk-", tail: cAlnum, min: 20, mixed: true},                  // OpenAI legacy key and look-alikes
	{prefix: "sk_live_", tail: cAlnum, min: 16},                          // Stripe secret and restricted keys
	{prefix: "sk_test_", tail: cAlnum, min: 16},
	{prefix: "rk_live_", tail: cAlnum, min: 16},
	{prefix: "rk_test_", tail: cAlnum, min: 16},
	{prefix: "whsec_", tail: cAlnum, min: 24},       // Stripe webhook signing secret
	{prefix: "npm_", tail: cAlnum, min: 36},         // npm access token
	{prefix: "hf_", tail: cUpper | cLower, min: 30}, // Hugging Face token
}

// tokenRulesByFirst indexes tokenRules by the first byte of the prefix.
var tokenRulesByFirst = func() (t [256][]tokenRule) {
	for _, r := range tokenRules {
		t[r.prefix[0]] = append(t[r.prefix[0]], r)
	}
	return t
}()

// maxScan bounds how far past a prefix or separator the scanners read for
// its token or value, so that their cost stays linear in the string.
const maxScan = 128

// Thresholds of the high-entropy rule (see highEntropy).
const (
	minEntropyRun = 24  // bytes
	minEntropy    = 3.8 // bits per byte, Shannon
	maxWordLen    = 2.5 // mean bytes per camelCase word or digit group
)

// looksSecret reports whether s holds something shaped like a credential
// anywhere in it:
//
//   - a PEM private key of any kind ("-----BEGIN ... PRIVATE KEY-----",
//     RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ... PRIVATE KEY BLOCK) or a
//     PuTTY key file; a service-account JSON holds one;
//   - a JWT (eyJ<header>.eyJ<payload>.<signature>);
//   - a prefixed credential (tokenRules): cloud, forge, chat, payment,
//     registry and model-provider keys, Portcullis API keys;
//   - "Bearer <token>";
//   - a URL with a password (scheme://user:password@host);
//   - an assignment of a non-trivial value to a sensitive name:
//     "password=...", "token: ...", `"client_secret": "..."`,
//     "AccountKey=..." (Azure connection strings),
//     "aws_secret_access_key = ..." (see assignsSecret);
//   - a high-entropy token (see highEntropy).
//
// The scan is one pass over the bytes plus two substring searches, with no
// allocation.
func looksSecret(s string) bool {
	if len(s) < 8 {
		return false
	}
	if hasPrivateKeyBlock(s) || strings.Contains(s, "PuTTY-User-Key-File-") {
		return true
	}
	run := -1   // start of the current run of cRun bytes
	noJWT := -1 // no JWT starts before this index
	for i := 0; i < len(s); i++ {
		c := s[i]
		cl := byteClass[c]
		if cl&cRun != 0 {
			if run < 0 {
				run = i
			}
		} else if run >= 0 {
			if highEntropy(s, run, i) {
				return true
			}
			run = -1
		}
		switch {
		case c == ':' || c == '=':
			if c == ':' && strings.HasPrefix(s[i+1:], "//") {
				if urlHasPassword(s[i+3:]) {
					return true
				}
			} else if assignsSecret(s, i) {
				return true
			}
		case c == 'e' && i >= noJWT && strings.HasPrefix(s[i:], "eyJ"):
			ok, end := isJWT(s[i:])
			if ok {
				return true
			}
			noJWT = i + end
		}
		if cl&cAlnum != 0 && (i == 0 || byteClass[s[i-1]]&cAlnum == 0) {
			if tokenRulesByFirst[c] != nil && prefixedToken(s[i:]) {
				return true
			}
			if (c == 'b' || c == 'B') && bearerToken(s[i:]) {
				return true
			}
		}
	}
	return run >= 0 && highEntropy(s, run, len(s))
}

// hasPrivateKeyBlock reports whether s holds a PEM private key header.
func hasPrivateKeyBlock(s string) bool {
	const begin = "-----BEGIN "
	for {
		i := strings.Index(s, begin)
		if i < 0 {
			return false
		}
		s = s[i+len(begin):]
		j := 0
		for j < len(s) && (byteClass[s[j]]&(cUpper|cDigit) != 0 || s[j] == ' ') {
			j++
		}
		label := s[:j]
		if strings.HasPrefix(s[j:], "-----") &&
			(strings.HasSuffix(label, "PRIVATE KEY") || strings.HasSuffix(label, "PRIVATE KEY BLOCK")) {
			return true
		}
	}
}

// prefixedToken reports whether s starts with a tokenRules format. It
// reads at most maxScan bytes of the tail, so that a string of many
// prefixes costs linear time.
func prefixedToken(s string) bool {
	for _, r := range tokenRulesByFirst[s[0]] {
		if !strings.HasPrefix(s, r.prefix) {
			continue
		}
		t := s[len(r.prefix):]
		var seen uint8
		for n := 0; n < len(t) && n < maxScan && byteClass[t[n]]&r.tail != 0; n++ {
			seen |= byteClass[t[n]]
			if n+1 < r.min {
				continue
			}
			if r.max > 0 {
				if n+1 == r.max && (n+1 == len(t) || byteClass[t[n+1]]&cAlnum == 0) {
					return true
				}
				continue
			}
			if !r.mixed || seen&cAlnum == cAlnum {
				return true
			}
		}
	}
	return false
}

// isJWT reports whether s starts with a JSON Web Token (RFC 7519) in
// compact form: base64url JSON header and payload, both "eyJ" ("{\""),
// then a signature that may be empty. When not, end is the length of the
// header's base64url run: no JWT starts inside it either, since its
// header would end at the same byte.
func isJWT(s string) (ok bool, end int) {
	p := 0
	for part := 0; part < 2; part++ {
		if !strings.HasPrefix(s[p:], "eyJ") {
			return false, end
		}
		n := p + 3
		for n < len(s) && byteClass[s[n]]&(cAlnum|cUnderscore|cDash) != 0 {
			n++
		}
		if part == 0 {
			end = n
		}
		if n < p+3+8 || n == len(s) || s[n] != '.' {
			return false, end
		}
		p = n + 1
	}
	return true, end
}

// bearerToken reports whether s starts with "Bearer" (any case), white
// space and a token of at least 16 bytes (RFC 6750 b64token).
func bearerToken(s string) bool {
	const word = "bearer"
	if len(s) < len(word) || !strings.EqualFold(s[:len(word)], word) {
		return false
	}
	s = s[len(word):]
	n := 0
	for n < len(s) && isSpace(s[n]) {
		n++
	}
	if n == 0 {
		return false
	}
	s = s[n:]
	for n = 0; n < len(s) && (byteClass[s[n]] != 0 || s[n] == '~'); n++ {
		if n+1 == 16 {
			return true
		}
	}
	return false
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// urlHasPassword reports whether the authority that starts s (the rest of
// a URL after "://") has a user information with a password:
// "user:pass@host", ":pass@host" (RFC 3986 section 3.2.1 deprecates the
// form; clients still send it). A template reference is no password:
// "user:${PASSWORD}@host", "user:<password>@host".
func urlHasPassword(s string) bool {
	at := userinfoEnd(s)
	if at < 0 {
		return false
	}
	_, pass, ok := strings.Cut(s[:at], ":")
	return ok && pass != "" && strings.IndexByte("$%{<", pass[0]) < 0
}

// urlHasUserinfo reports whether the authority that starts s has user
// information ("key@host", as in a Sentry DSN).
func urlHasUserinfo(s string) bool {
	return userinfoEnd(s) > 0
}

// userinfoEnd returns the index of the '@' that ends the user information
// at the start of s, the rest of a URL after "://", or -1.
func userinfoEnd(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '@':
			return i
		case '/', '?', '#', '\\', '"', '\'', '<', '>', '`', ' ', '\t', '\n', '\r':
			return -1
		}
	}
	return -1
}

// assignsSecret reports whether the ':' or '=' at s[i] assigns a
// credential-like value to a sensitive name: "password=hunter2!",
// "TOKEN: abc123def", `"client_secret": "..."`, "--password=...",
// "Authorization: Basic dXNlcjpwYXNz", "AccountKey=...;". The name is the
// run of letters, digits, '_', '-' and '.' before the separator (after an
// optional quote), and its last two words must be sensitive: the name
// ends with the credential ("DB_PASSWORD", "aws_secret_access_key",
// "SharedAccessKey") rather than mentioning one on the way, as names in
// code do ("RealtimeSessionCreateResponseModel", "SessionTTLHeader").
// The value is a quoted string or a run of bytes up to white space, a
// quote or one of ",;&()[]{}<>"; "Basic", "Bearer" and other HTTP
// authentication schemes are skipped. Comparisons ("==", "!=", "<=",
// ">=") are not assignments, nor "password = password" (code); see
// credentialValue for which values count.
func assignsSecret(s string, i int) bool {
	v := i + 1
	switch {
	case s[i] == '=' && (v < len(s) && s[v] == '=' || i > 0 && strings.IndexByte("=!<>:", s[i-1]) >= 0):
		return false
	case v < len(s) && (s[i] == ':' && s[v] == '=' || s[i] == '=' && s[v] == '>'): // := and =>
		v++
	}
	k := i - 1
	for k >= 0 && (s[k] == ' ' || s[k] == '\t') {
		k--
	}
	if k >= 0 && (s[k] == '"' || s[k] == '\'') {
		k--
	}
	end := k + 1
	for k >= 0 && end-k <= 64 && (byteClass[s[k]]&(cAlnum|cUnderscore|cDash|cDot) != 0) {
		k--
	}
	key := s[k+1 : end]
	if len(key) < 3 || !isSensitiveKey(lastWords(key, 2)) {
		return false
	}
	val, next, quoted, ok := assignedValue(s[v:])
	if ok && !quoted && isAuthScheme(val) { // "Authorization: Basic <credentials>"
		val, _, quoted, ok = assignedValue(s[v+next:])
	}
	val = strings.TrimRight(val, ".,;:!?") // sentence punctuation
	if strings.EqualFold(val, key[strings.LastIndexByte(key, '.')+1:]) {
		return false // "password = password", "c.token = token": code
	}
	return ok && credentialValue(val, quoted, s[i] == '=')
}

// assignedValue returns the value at the start of s after blanks, and the
// offset in s after it: a quoted string (up to its closing quote or the
// end of the line) or an unquoted run, at most maxScan bytes of either. ok
// is false for an unquoted value that is code: followed by '(', '[' or '{'
// (a call, an index, a template).
func assignedValue(s string) (val string, next int, quoted, ok bool) {
	p := 0
	for p < len(s) && (s[p] == ' ' || s[p] == '\t') {
		p++
	}
	if p < len(s) && (s[p] == '"' || s[p] == '\'' || s[p] == '`') {
		q := s[p]
		e := p + 1
		for e < len(s) && e-p < maxScan && s[e] != q && s[e] != '\n' {
			e++
		}
		return s[p+1 : e], e, true, true
	}
	e := p
	for e < len(s) && e-p < maxScan && !isSpace(s[e]) && strings.IndexByte("\"'`,;&()[]{}<>", s[e]) < 0 {
		e++
	}
	if e < len(s) && (s[e] == '(' || s[e] == '[' || s[e] == '{') {
		return "", e, false, false
	}
	return s[p:e], e, false, true
}

func isAuthScheme(v string) bool {
	for _, s := range []string{"basic", "bearer", "token", "digest", "negotiate", "apikey"} {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// credentialValue reports whether an assigned value v could be a
// credential; quoted says it was in quotes, equals that it was assigned
// with '=' rather than ':'. Not:
//   - shorter than 6 bytes, or one byte repeated ("******");
//   - a reference or placeholder: "$VAR", "%s", "{{.Token}}", "<your-key>",
//     "*****", a digest this package made;
//   - a file path: "/run/secrets/db", "./token.txt", "~/.netrc" (a random
//     token that starts with '/' is left to the high-entropy rule);
//   - text with blanks (`"TODO: fix this"`), a number ("131072",
//     "-0x7f879679", "2.5.4.35", "2024-06-01");
//   - words: letters with at most '-', '_' and '.' between them
//     ("required", "your-api-key", "STANDARD_RIGHTS_READ", "dataSourceName",
//     "session.updated"), unless assigned with '=' as one run of 12 or
//     more lower-case letters ("DB_PASSWORD=supersecretpassword"; after
//     ':' that is prose: "Token: corresponding to the next page");
//   - unquoted, a dotted name in code ("cfg.Password", "oauth2.AuthStyle");
//   - a URL without user information ("https://id.example.com/token").
func credentialValue(v string, quoted, equals bool) bool {
	if len(v) < 6 || strings.IndexByte("$%{<*/", v[0]) >= 0 || strings.HasPrefix(v, DigestPrefix) ||
		strings.HasPrefix(v, "./") || strings.HasPrefix(v, "~/") {
		return false
	}
	var seen uint8
	same, blank, other := true, false, false
	for i := 0; i < len(v); i++ {
		cl := byteClass[v[i]]
		seen |= cl
		same = same && v[i] == v[0]
		blank = blank || isSpace(v[i])
		other = other || cl == 0
	}
	words := !other && seen&(cDigit|cSlash|cPlus) == 0
	number := !other && seen&(cUpper|cLower|cSlash) == 0
	switch {
	case same, blank, number, hexLiteral(v):
		return false
	case words:
		return equals && seen == cLower && len(v) >= 12
	case !quoted && dottedName(v):
		return false
	}
	if i := strings.Index(v, "://"); i > 0 {
		return urlHasUserinfo(v[i+3:])
	}
	return true
}

// dottedName reports whether v is a dotted name, segments of letters,
// digits and '_' that start with a letter or '_': "os.environ",
// "oauth2.AuthStyleInHeader".
func dottedName(v string) bool {
	if strings.IndexByte(v, '.') < 0 {
		return false
	}
	for seg := range strings.SplitSeq(v, ".") {
		if seg == "" || byteClass[seg[0]]&cDigit != 0 {
			return false
		}
		for i := 0; i < len(seg); i++ {
			if byteClass[seg[i]]&(cAlnum|cUnderscore) == 0 {
				return false
			}
		}
	}
	return true
}

// hexLiteral reports whether v is a number like "0x1F" or "-0x7f879679".
func hexLiteral(v string) bool {
	v = strings.TrimLeft(v, "+-")
	if len(v) < 3 || v[0] != '0' || v[1] != 'x' && v[1] != 'X' {
		return false
	}
	for i := 2; i < len(v); i++ {
		if byteClass[v[i]]&cDigit == 0 && (v[i]|0x20 < 'a' || v[i]|0x20 > 'f') {
			return false
		}
	}
	return true
}

// highEntropy reports whether s[start:end], a run of cRun bytes, is a
// random-looking token: at least minEntropyRun bytes with an upper-case
// letter, a lower-case letter and a digit; Shannon entropy of at least
// minEntropy bits per byte; and made of short pieces, a mean of at most
// maxWordLen bytes per camelCase word or digit group (random base62
// averages under 2; identifiers and paths such as
// "getUserAccountByIdentifier2" or "src/main/java/FooBar2Service" average
// 3 or more, with entropy as high as a token's).
//
// Not high-entropy on purpose, as identifiers that audit records need
// readable: runs whose letters are hexadecimal in one case (git SHAs,
// SHA-256 digests including this package's, UUIDs, "0xC0FFEE..." and
// "AC" plus hex IDs), ULIDs (upper case only), and base64 digests marked
// as such: go.sum "h1:" and Subresource Integrity "sha256-"/"sha384-"/
// "sha512-"/"sha1-" values. Opaque random identifiers of 24 bytes or more
// in base62 or base64 are indistinguishable from keys and are digested.
func highEntropy(s string, start, end int) bool {
	run := s[start:end]
	if len(run) < minEntropyRun || start >= 3 && s[start-3:start] == "h1:" {
		return false
	}
	if strings.HasPrefix(run, "sha") {
		if d := strings.IndexByte(run, '-'); d > 3 && d <= 6 && strings.Trim(run[3:d], "0123456789") == "" {
			return false
		}
	}
	var counts [256]int32
	var seen uint8
	hexLower, hexUpper := true, true
	words, chars := 0, 0
	var cur uint8 // class of the current word
	curLen := 0
	for i := 0; i < len(run); i++ {
		c := run[i]
		counts[c]++
		cl := byteClass[c]
		seen |= cl
		switch {
		case cl&cLower != 0:
			hexLower = hexLower && c <= 'f'
		case cl&cUpper != 0:
			hexUpper = hexUpper && c <= 'F'
		}
		if cl&cAlnum == 0 {
			cur = 0
			continue
		}
		chars++
		switch {
		case cl == cur:
		case cl == cLower && cur == cUpper && curLen == 1: // "Title"
		default:
			words++
			curLen = 0
		}
		cur = cl
		curLen++
	}
	if seen&cAlnum != cAlnum || hexLower || hexUpper || float64(chars) > maxWordLen*float64(words) {
		return false
	}
	n := float64(len(run))
	h := math.Log2(n)
	for _, k := range counts {
		if k > 0 {
			h -= float64(k) / n * math.Log2(float64(k))
		}
	}
	return h >= minEntropy
}

// Redact returns a copy of the JSON value args with sensitive values
// replaced by digests and long strings shortened, plus the digest of the
// canonical form of the full value. Sensitive are every value under a
// sensitive name (isSensitiveKey), at any depth, and every string, value
// or object key, that holds something credential-shaped (looksSecret);
// such a string is digested whole. Invalid JSON is not stored: the result
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
	canonicalOK := err == nil
	if !canonicalOK {
		canonical = args
	}
	digest = r.Digest(canonical)
	red, changed := r.redactValue(v, false)
	if !changed && canonicalOK {
		// Nothing to hide: the redacted copy would encode exactly as
		// the canonical form, a buffer of our own.
		return canonical, digest
	}
	out, err := json.Marshal(red)
	if err != nil {
		return nil, digest
	}
	return out, digest
}

// redactValue returns a copy of v, a decoded JSON value, with sensitive
// values (all of them under a sensitive key) replaced by digests and long
// strings shortened; changed reports whether the copy differs from v.
func (r *Redactor) redactValue(v any, sensitive bool) (_ any, changed bool) {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			val, c := r.redactValue(val, sensitive || isSensitiveKey(k))
			changed = changed || c
			if looksSecret(k) { // a credential used as a key
				k = r.Digest([]byte(k))
				changed = true
			}
			out[k] = val
		}
		return out, changed
	case []any:
		out := make([]any, len(t))
		for i, val := range t {
			var c bool
			out[i], c = r.redactValue(val, sensitive)
			changed = changed || c
		}
		return out, changed
	case string:
		if sensitive || looksSecret(t) {
			return r.Digest([]byte(t)), true
		}
		if len(t) > MaxStoredString {
			cut := MaxStoredString
			for cut > 0 && !utf8.RuneStart(t[cut]) {
				cut--
			}
			return fmt.Sprintf("%s…[%d bytes, %s]", t[:cut], len(t), r.Digest([]byte(t))), true
		}
		return t, false
	case nil, bool, json.Number:
		if sensitive && v != nil {
			return r.Digest([]byte(fmt.Sprint(v))), true
		}
		return t, false
	default:
		return t, false
	}
}
