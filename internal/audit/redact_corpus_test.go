package audit_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Fake credentials for the detector corpus. Every one is drawn at run time
// by a seeded PRNG, so that the values are realistic (random where the real
// ones are random) and the same on every run, yet no credential-shaped
// string is in this file for a secret scanner (gitleaks in `make secrets`)
// to flag. None of them was ever valid.
const (
	base32Upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	base62      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	base64Std   = base62 + "+/"
	base64URL   = base62 + "-_"
	letters     = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	hexLower    = "0123456789abcdef"
)

// fake returns n bytes of alphabet drawn by a PRNG seeded with seed.
func fake(seed uint64, alphabet string, n int) string {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// pemBlock returns a PEM block of type label with a fake base64 body; body
// is its first line, the part that must never be stored.
func pemBlock(seed uint64, label string) (block, body string) {
	body = fake(seed, base64Std, 64)
	dashes := strings.Repeat("-", 5)
	block = dashes + "BEGIN " + label + dashes + "\n" + body + "\n" + fake(seed+1, base64Std, 40) + "=\n" +
		dashes + "END " + label + dashes + "\n"
	return block, body
}

// rep repeats pattern up to n bytes: a low-entropy body that the
// high-entropy rule leaves alone.
func rep(pattern string, n int) string {
	return strings.Repeat(pattern, n/len(pattern)+1)[:n]
}

// pemShape returns a PEM block of type label with a low-entropy body.
func pemShape(label string) string {
	dashes := strings.Repeat("-", 5)
	return dashes + "BEGIN " + label + dashes + "\n" + rep("AbC1", 64) + "\n" + dashes + "END " + label + dashes
}

type secretCase struct {
	name  string
	value string // the string argument
	clear string // the part that must not appear in the output; value when empty
}

// secretCorpus returns the true positives: each value must be stored as the
// digest of the whole string.
func secretCorpus() []secretCase {
	pw := "Tr0ub4dor" + "&3x!"          // a low-entropy password only a label or a URL gives away
	awsSecret := fake(1, base64Std, 40) // the shape of an AWS secret access key
	rsa, rsaBody := pemBlock(2, "RSA PRIVATE KEY")
	pkcs8, pkcs8Body := pemBlock(3, "PRIVATE KEY")
	ec, ecBody := pemBlock(4, "EC PRIVATE KEY")
	openssh, opensshBody := pemBlock(5, "OPENSSH PRIVATE KEY")
	encrypted, encryptedBody := pemBlock(6, "ENCRYPTED PRIVATE KEY")
	pgp, pgpBody := pemBlock(7, "PGP PRIVATE KEY BLOCK")
	sa, _ := json.MarshalIndent(map[string]string{
		"type": "service_account", "project_id": "demo-project",
		"private_key_id": fake(8, hexLower, 40), "private_key": pkcs8,
		"client_email": "ci@demo-project.iam.gserviceaccount.com",
	}, "", "  ")
	azureKey := fake(9, base64Std, 86) + "=="
	stripe := fake(10, base62, 24)
	basic := base64.StdEncoding.EncodeToString([]byte("deploy:" + pw))
	jwt := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"1234567890","name":"Alice"}`)) + "." +
		fake(11, base64URL, 43)
	random := fake(12, base62, 32)
	return []secretCase{
		// Cloud keys.
		{"AWS access key ID", "AKIA" + fake(20, base32Upper, 16), ""},
		{"AWS temporary key ID in text", "using ASIA" + fake(21, base32Upper, 16) + " until noon", "ASIA" + fake(21, base32Upper, 16)},
		{"AWS access key ID after an underscore", "KEY_AKIA" + fake(22, base32Upper, 16), "AKIA" + fake(22, base32Upper, 16)},
		{"AWS secret access key, credentials file", "[default]\naws_access_key_id = AKIA" + fake(23, base32Upper, 16) + "\naws_secret_access_key = " + awsSecret + "\n", awsSecret},
		{"AWS secret access key, env", "AWS_SECRET_ACCESS_KEY=" + awsSecret, awsSecret},
		{"AWS secret access key, JSON text", `{"AccessKeyId":"x","SecretAccessKey":"` + awsSecret + `"}`, awsSecret},
		{"Google API key", "AIza" + fake(24, base64URL, 35), ""},
		{"Google API key in a URL", "https://maps.googleapis.com/maps/api/geocode/json?address=x&key=AIza" + fake(25, base64URL, 35), "AIza" + fake(25, base64URL, 35)},
		{"GCP service-account JSON", string(sa), pkcs8Body},
		{"Azure storage connection string", "DefaultEndpointsProtocol=https;AccountName=demo;AccountKey=" + azureKey + ";EndpointSuffix=core.windows.net", azureKey},
		{"Azure Service Bus connection string", "Endpoint=sb://demo.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=" + pw, pw},

		// Forges, chat, payments, registries, model providers.
		{"GitHub token", "ghp_" + fake(30, base62, 36), ""},
		{"GitHub fine-grained token", "github_pat_" + fake(31, base62, 22) + "_" + fake(32, base62, 59), ""},
		{"GitLab token", "glpat-" + fake(33, base64URL, 20), ""},
		{"GitLab runner token in text", "register with glrt-" + fake(34, base64URL, 20) + " please", "glrt-" + fake(34, base64URL, 20)},
		{"Slack bot token", "xoxb-" + fake(35, "0123456789", 12) + "-" + fake(36, base62, 24), ""},
		{"Slack webhook", "https://hooks.slack.com/services/T" + fake(37, base32Upper, 8) + "/B" + fake(38, base32Upper, 10) + "/" + fake(39, base62, 24), ""},
		{"Stripe secret key", "sk_live_" + stripe, ""},
		{"Stripe restricted key", "rk_live_" + stripe, ""},
		{"Stripe test key", "sk_test_" + stripe, ""},
		{"Stripe webhook secret", "whsec_" + fake(40, base62, 32), ""},
		{"OpenAI key", "sk-" + fake(41, base62, 48), ""},
		{"OpenAI project key", "sk-proj-" + fake(42, base64URL, 120), ""},
		{"Anthropic key", "sk-ant-api03-" + fake(43, base64URL, 93) + "AA", ""},
		{"Anthropic key in a command", "export ANTHROPIC_API_KEY=sk-ant-api03-" + fake(44, base64URL, 93) + "AA && make", fake(44, base64URL, 93)},
		{"npm token", "npm_" + fake(45, base62, 36), ""},
		{"npmrc", "//registry.npmjs.org/:_authToken=npm_" + fake(46, base62, 36), fake(46, base62, 36)},
		{"Hugging Face token", "hf_" + fake(47, letters, 34), ""},
		{"Portcullis key", "pcl_" + fake(48, base62, 40), ""},

		// Private keys.
		{"PEM RSA", rsa, rsaBody},
		{"PEM PKCS#8", pkcs8, pkcs8Body},
		{"PEM EC", ec, ecBody},
		{"PEM OpenSSH", openssh, opensshBody},
		{"PEM encrypted", encrypted, encryptedBody},
		{"PGP private key block", pgp, pgpBody},
		{"PEM in text", "here is the key: " + strings.ReplaceAll(openssh, "\n", `\n`) + " thanks", opensshBody},
		{"PuTTY key", "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\n" + opensshBody + "\n", opensshBody},

		// Tokens in protocols.
		{"JWT", jwt, ""},
		{"JWT in a header", "Authorization: Bearer " + jwt, jwt},
		{"bearer token", "curl -H 'Authorization: Bearer " + fake(50, base64URL, 40) + "' https://api.example.com", fake(50, base64URL, 40)},
		{"basic credentials", "Authorization: Basic " + basic, basic},
		{"cookie header", "Cookie: session=" + fake(51, base64URL, 20) + "; theme=dark", fake(51, base64URL, 20)},

		// Passwords in URLs.
		{"postgres URL", "postgres://app:" + pw + "@db.internal:5432/app?sslmode=require", pw},
		{"https URL", "git clone https://deploy:" + pw + "@git.example.com/org/repo.git", pw},
		{"redis URL without user", "redis://:" + pw + "@cache:6379/0", pw},
		{"JDBC URL", "jdbc:mysql://db:3306/app?user=app&password=" + pw, pw},
		{"token in a query", "https://example.com/callback?state=x&access_token=" + fake(52, base64URL, 30) + "&expires_in=3600", fake(52, base64URL, 30)},

		// Assignments in free text, config and code.
		{"password=", "password=" + pw, pw},
		{"password: in prose", "the db password: " + pw + " (rotate it)", pw},
		{"token: yaml", "github:\n  token: " + pw + "\n", pw},
		{"quoted client_secret", `{"client_id": "demo", "client_secret": "` + pw + `"}`, pw},
		{"python string", "API_KEY = '" + pw + "'", pw},
		{"go literal", "const dbPassword = \"" + pw + "\"", pw},
		{"CLI flag", "mysql --user=root --password=" + pw + " app", pw},
		{"PHP array", "'passwd' => '" + pw + "',", pw},
		{"MySQL env", "MYSQL_PWD=" + pw, pw},
		{"DSN", "SENTRY_DSN: https://" + fake(53, hexLower, 32) + "@o1.ingest.sentry.io/42", fake(53, hexLower, 32)},
		{"long passphrase", "passphrase=correcthorsebatterystaple", "correcthorsebatterystaple"},
		{"dotenv", "APP_ENV=dev\nDB_PASSWORD=supersecretpassword\n", "supersecretpassword"},
		{"weak password in a URL", "postgres://admin:admin@localhost:5432/app", "admin:admin"},

		// The shapes alone, with low-entropy bodies that only the format
		// rule can catch.
		{"shape: AWS access key ID", "AKIA" + rep("AB23", 16), ""},
		{"shape: AWS temporary key ID", "ASIA" + rep("AB23", 16), ""},
		{"shape: Google API key", "AIza" + rep("aB3-", 35), ""},
		{"shape: Portcullis key", "pcl_" + rep("aB3", 20), ""},
		{"shape: GitHub token", "ghs_" + rep("aB3", 30), ""},
		{"shape: GitHub refresh token", "ghr_" + rep("aB3", 30), ""},
		{"shape: GitHub user token", "ghu_" + rep("aB3", 30), ""},
		{"shape: GitHub fine-grained token", "github_pat_" + rep("aB3_", 22), ""},
		{"shape: GitLab token", "glpat-" + rep("aB3-", 20), ""},
		{"shape: GitLab deploy token", "gldt-" + rep("aB3-", 20), ""},
		{"shape: GitLab trigger token", "glptt-" + rep("aB3", 20), ""},
		{"shape: GitLab runner token", "glrt-" + rep("aB3", 20), ""},
		{"shape: Slack app token", "xoxa-" + rep("1a-", 12), ""},
		{"shape: Slack user token", "xoxp-" + rep("1a-", 12), ""},
		{"shape: Slack refresh token", "xoxr-" + rep("1a-", 12), ""},
		{"shape: Slack session token", "xoxs-" + rep("1a-", 12), ""},
		{"shape: Slack config token", "xoxe-" + rep("1a-", 12), ""},
		{"shape: Slack rotating token", "xoxe.xoxp-" + rep("1a-", 12), ""},
		{"shape: Slack webhook", "https://hooks.slack.com/services/" + rep("T1/", 24), "T1/T1/T1/T1/T1/T1/T1/T1"},
		{"shape: Slack workflow webhook", "https://hooks.slack.com/workflows/" + rep("T1/", 24), "T1/T1/T1/T1/T1/T1/T1/T1"},
		{"shape: Slack trigger webhook", "https://hooks.slack.com/triggers/" + rep("T1/", 24), "T1/T1/T1/T1/T1/T1/T1/T1"},
		{"shape: Stripe key", "sk_live_" + rep("aB3", 16), ""},
		{"shape: Stripe test key", "sk_test_" + rep("aB3", 16), ""},
		{"shape: Stripe restricted key", "rk_live_" + rep("aB3", 16), ""},
		{"shape: Stripe restricted test key", "rk_test_" + rep("aB3", 16), ""},
		{"shape: Stripe webhook secret", "whsec_" + rep("aB3", 24), ""},
		{"shape: OpenAI key", "sk-" + rep("aB3", 20), ""},
		{"shape: OpenAI project key", "sk-proj-" + rep("ab-", 20), ""},
		{"shape: OpenAI service-account key", "sk-svcacct-" + rep("ab-", 20), ""},
		{"shape: OpenAI admin key", "sk-admin-" + rep("ab-", 20), ""},
		{"shape: OpenAI user key", "sk-None-" + rep("ab_", 20), ""},
		{"shape: Anthropic key", "sk-ant-" + rep("ab-", 20), ""},
		{"shape: npm token", "npm_" + rep("aB3", 36), ""},
		{"shape: Hugging Face token", "hf_" + rep("aB", 30), ""},
		{"shape: JWT", "eyJ" + rep("aB3", 10) + ".eyJ" + rep("cD4", 10) + "." + rep("eF5", 10), ""},
		{"shape: JWT without signature", "eyJ" + rep("aB3", 10) + ".eyJ" + rep("cD4", 10) + ".", ""},
		{"shape: bearer", "bearer\t" + rep("aB3.", 16), rep("aB3.", 16)},
		{"shape: PEM", pemShape("DSA PRIVATE KEY"), rep("AbC1", 64)},
		{"shape: PuTTY key", "PuTTY-User-Key-File-2: ssh-rsa\nPrivate-Lines: 1\n" + rep("AbC1", 64), rep("AbC1", 64)},

		// High-entropy tokens without a known shape.
		{"random base62", random, ""},
		{"random base62 in text", "use " + random + " for the staging deploy", random},
		{"random base64", fake(54, base64Std, 44), ""},
		{"random base64url", "id " + fake(55, base64URL, 43), fake(55, base64URL, 43)},
		{"random, 24 bytes", fake(56, base62, 24), ""},
		{"random with a label", "ci secret " + fake(57, base62, 40), fake(57, base62, 40)},
	}
}

// harmlessCorpus returns the true negatives: each must be stored unchanged.
// digest is one of the Redactor's own digests.
func harmlessCorpus(digest string) []string {
	sha := sha1.Sum([]byte("commit"))
	sum := sha256.Sum256([]byte("blob"))
	sum512 := sha512.Sum384([]byte("script"))
	return []string{
		// Prose.
		"Please update the README and run the tests before merging.",
		"Reset your password: click the link we sent you.",
		"The token: expired yesterday; ask for a new one.",
		"password: required",
		"Session: 3 of 5",
		"Authorization header is required for this endpoint",
		"the bearer of this letter",
		"sk-learn is a Python library",

		// Paths, names, identifiers.
		"src/internal/audit/redact_test.go",
		"/home/dev/project/src/main/java/com/Example/FooBar2Service.java",
		`C:\Users\Alice\Projects\App2\src\main.go`,
		"getUserAccountByIdentifier2",
		"TestRedactSecretLookingValues2",
		"AbstractSingletonProxyFactoryBean2",
		"rewriteValueAMD64_OpLsh32x8",
		"github.com/aws/aws-sdk-go-v2/service/s3",
		"x86_64-unknown-linux-gnu",
		"kube-system/coredns-5d78c9869d-8xk2p",
		"ghcr.io/portcullis/portcullis:v1.2.3",
		"alice@example.com",
		"ProductionDeployment2024Q3Report",

		// Identifiers that are random but not secret.
		"123e4567-e89b-12d3-a456-426614174000",
		"123E4567-E89B-12D3-A456-426614174000",
		"01ARZ3NDEKTSV4RRFFQ69G5FAV", // ULID
		hex.EncodeToString(sha[:]),   // git SHA
		hex.EncodeToString(sum[:]),
		"sha256:" + hex.EncodeToString(sum[:]),
		"0x" + strings.ToUpper(hex.EncodeToString(sum[:])),
		"AC" + hex.EncodeToString(sum[:16]), // Twilio-style SID
		digest,                              // this package's digests
		"golang.org/x/text v0.14.0 h1:" + base64.StdEncoding.EncodeToString(sum[:]),
		"sha384-" + base64.StdEncoding.EncodeToString(sum512[:]),
		"12345678901234567890123456789",
		"2024-06-01T10:00:00Z",

		// URLs without credentials.
		"https://example.com/api/v2/Users/12345/Orders?page=2&sort=desc",
		"http://localhost:8080/health",
		"ssh://git@github.com/org/repo.git",
		"git@github.com:org/repo.git",
		"https://user@example.com/path",
		"https://example.com/x?token=abc",

		// Code and config that name a credential without holding one.
		`password := os.Getenv("DB_PASSWORD")`,
		`token = request.headers.get("X-Token")`,
		`if password == "" {`,
		"Password: cfg.Password,",
		`api_key = "${API_KEY}"`,
		"export GITHUB_TOKEN=$GH_TOKEN",
		`password = "<your-password>"`,
		`secret: "{{ .Values.secret }}"`,
		"token: ********",
		"max_tokens=4096",
		"tokenizer: cl100k_base",
		"PWD=/home/dev/project",
		"AccountName=demo;EndpointSuffix=core.windows.net",
		"password=hunter", // too weak to tell from prose
		"TokenURL: https://id.example.com/oauth/token",
		"// PageToken: Optional. A page token received from a previous call.",
		"c.fetchaccesstokenrequest = fetchaccesstokenrequest",
		"TOKEN_READ = STANDARD_RIGHTS_READ | TOKEN_QUERY",
		"AuthStyle: oauth2.AuthStyleInHeader,",
		`-ai-api-key="your_key" ./...`,
		`git config url."https://x-access-token:${GITHUB_TOKEN}@github.com/".insteadOf`,
		"token_file: /etc/portcullis/siem.token",
		`EventType = "session.status_running"`,
		"passphrase: correct-horse-battery-staple", // words, not told from identifiers
		"// NextPageToken: Token corresponding to the next page of results.",
		`RealtimeSessionCreateResponseModel = "gpt-realtime-2.1"`,
		`awsIMDSv2SessionTTLHeader = "X-aws-ec2-metadata-token-ttl-seconds"`,
		`const szOID_USER_PASSWORD = "2.5.4.35"`,
		"const TOKEN_READ = 131080",
		"dec.tokenState = tokenObjectComma",
		"return OpenDB(dsnConnector{dsn: dataSourceName, driver: d})",
		"IMAGE_REL_ARM64_TOKEN = 0x000C",
		`"TicketSessionIDLength-33-TLS": "TODO: first pass, this should be fixed",`,
		`const masterSecretLabel = "master secret"`,

		// Near misses of the shapes.
		"sk-lorem-ipsum-dolor-sit-amet-consectetur", // not mixed
		"AKIA" + rep("AB23", 15),
		"AKIA" + rep("AB23", 17),
		"ghp_" + rep("aB3", 29),
		"npm_install_dependencies_for_the_project",
		"hooks.slack.com/services/",
		"eyJ" + rep("aB3", 10) + ".notjwt",
		"-----BEGIN PUBLIC KEY-----",
		"bearer\n" + rep("aB3", 15),
		"https://hooks.slack.com/services/T00",
	}
}

func TestRedactSecretCorpus(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	for _, tt := range secretCorpus() {
		t.Run(tt.name, func(t *testing.T) {
			clear := tt.clear
			if clear == "" {
				clear = tt.value
			}
			if !strings.Contains(tt.value, clear) {
				t.Fatalf("bad case: %q is not part of the value", clear)
			}
			want := strconv.Quote(r.Digest([]byte(tt.value)))
			for _, shape := range []any{
				map[string]any{"content": tt.value},
				map[string]any{"argv": []any{"run", tt.value}},
				map[string]any{"headers": map[string]any{tt.value: "x"}}, // as an object key
				tt.value,
			} {
				in, _ := json.Marshal(shape)
				out, _ := r.Redact(in)
				if strings.Contains(string(out), clear) {
					t.Errorf("stored in clear: %s", out)
				}
				if !strings.Contains(string(out), want) {
					t.Errorf("output %s lacks the digest of the whole value", out)
				}
			}
		})
	}
}

func TestRedactHarmlessCorpus(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	for _, v := range harmlessCorpus(r.Digest([]byte("x"))) {
		t.Run(v, func(t *testing.T) {
			// Also as an object key, with null under it: a name that is
			// merely sensitive keeps null.
			in, _ := json.Marshal(map[string]any{"text": v, "list": []any{v}, v: nil})
			out, _ := r.Redact(in)
			if diff := cmp.Diff(decode(t, in), decode(t, out)); diff != "" {
				t.Errorf("harmless value changed (-in +out):\n%s", diff)
			}
		})
	}
}

func TestRedactKeyNames(t *testing.T) {
	r := newRedactor(t, testKey('k'))
	const value = "c1earText-value-77"
	tests := []struct {
		key       string
		sensitive bool
	}{
		{"passphrase", true}, {"key_passphrase", true}, {"passcode", true},
		{"MYSQL_PWD", true}, {"db-pwd", true}, {"userPwd", true},
		{"auth", true}, {"x-auth", true}, {"basicAuth", true}, {"auth_header", true},
		{"bearer", true}, {"bearer_token", true}, {"jwt", true}, {"dsn", true}, {"SENTRY_DSN", true},
		{"connection_string", true}, {"connectionString", true}, {"ConnStr", true},
		{"ssh_key", true}, {"sshPrivateKey", true}, {"privKey", true}, {"signing_key", true},
		{"encryption_key", true}, {"master_key", true}, {"AccountKey", true},
		{"client_secret", true}, {"refresh_token", true}, {"X-API-Key", true}, {"x_api_key", true},
		{"Set-Cookie", true}, {"credentials", true}, {"Proxy-Authorization", true},
		{"X-Amz-Security-Token", true}, {"id_token", true}, {"accesstoken", true}, {"IDToken", true},
		{"OAuthToken", true}, {"token_secret_count", true}, {"maxtokens", true},
		{"secret_file_contents", true}, {"password_hash", true}, {"token_type_hint", true},

		{"author", false}, {"authority", false}, {"authors", false}, {"authenticated", false},
		{"coauthor", false}, {"oauth_provider", false}, {"authorize_url", false},
		{"tokenizer", false}, {"detokenize", false}, {"tokenization_model", false},
		{"max_tokens", false}, {"maxTokens", false}, {"input_tokens", false}, {"token_count", false},
		{"PWD", false}, {"OLDPWD", false}, {"pwd", false},
		{"key", false}, {"cache_key", false}, {"public_key", false}, {"monkey", false},
		{"signature", false}, {"email_signature", false}, {"pin", false},
		{"passport", false}, {"bypass", false}, {"path", false}, {"description", false},
		{"token_url", false}, {"TokenURL", false}, {"auth_type", false}, {"subjectTokenType", false},
		{"password_file", false}, {"secret_name", false}, {"session_timeout", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			in, _ := json.Marshal(map[string]any{tt.key: value})
			out, _ := r.Redact(in)
			redacted := !strings.Contains(string(out), value)
			if redacted != tt.sensitive {
				t.Errorf("Redact(%s) = %s; want sensitive=%v", in, out, tt.sensitive)
			}
		})
	}
}

// FuzzEmbeddedCredential: a credential anywhere in a string, whatever
// surrounds it, makes the whole string a digest; the credential never
// reaches the output.
func FuzzEmbeddedCredential(f *testing.F) {
	f.Add("", "", uint8(0), uint64(1))
	f.Add("see", "for details", uint8(3), uint64(2))
	f.Add("password=", `"}`, uint8(7), uint64(3))
	f.Add("\xff\xfe", "eyJ", uint8(11), uint64(4))
	f.Add(strings.Repeat("a", 1100), "://", uint8(12), uint64(5))
	f.Fuzz(func(t *testing.T, before, after string, kind uint8, seed uint64) {
		gens := []func(uint64) string{
			func(s uint64) string { return "AKIA" + fake(s, base32Upper, 16) },
			func(s uint64) string { return "ghp_" + fake(s, base62, 36) },
			func(s uint64) string { return "github_pat_" + fake(s, base62, 82) },
			func(s uint64) string { return "glpat-" + fake(s, base64URL, 20) },
			func(s uint64) string { return "AIza" + fake(s, base64URL, 35) },
			func(s uint64) string { return "sk-ant-api03-" + fake(s, base64URL, 95) },
			func(s uint64) string { return "sk_live_" + fake(s, base62, 24) },
			func(s uint64) string { return "npm_" + fake(s, base62, 36) },
			func(s uint64) string { return "xoxb-" + fake(s, base62, 30) },
			func(s uint64) string { b, _ := pemBlock(s, "OPENSSH PRIVATE KEY"); return b },
			func(s uint64) string { return "postgres://u:" + fake(s, letters, 12) + "@db/app" },
			func(s uint64) string { return "password=" + fake(s, base62, 10) + "9!" },
			func(s uint64) string { return "Bearer " + fake(s, base64URL, 32) },
			func(s uint64) string { return "eyJ" + fake(s, base64URL, 20) + ".eyJ" + fake(s+1, base64URL, 30) + "." },
		}
		cred := gens[int(kind)%len(gens)](seed)
		value := before + " " + cred + " " + after
		in, err := json.Marshal(map[string]string{"v": value})
		if err != nil {
			t.Fatal(err)
		}
		var stored map[string]string // value as JSON carries it (invalid UTF-8 replaced)
		unmarshalNumbers(t, in, &stored)

		r := newRedactor(t, testKey('e'))
		out, _ := r.Redact(in)
		var got map[string]string
		unmarshalNumbers(t, out, &got)
		if want := r.Digest([]byte(stored["v"])); got["v"] != want {
			t.Fatalf("Redact(%q) = %s, want the digest of the whole value", value, out)
		}
		if strings.Contains(string(out), cred) {
			t.Fatalf("credential %q stored in clear: %s", cred, out)
		}
	})
}
