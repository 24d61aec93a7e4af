package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
)

// otherChainKey is a chain key an attacker might use: right length, wrong
// value.
var otherChainKey = bytes.Repeat([]byte{0x66}, 32)

// someHash is a valid-looking 64-hex prev_hash with letters in it (so that
// case changes are real changes).
var someHash = hexSHA256("some earlier record")

func hexSHA256(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// newChain returns a chain keyed with key and a fresh Ed25519 signer.
func newChain(t testing.TB, key []byte) *audit.Chain {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.NewChain(key, priv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fullEvent returns an unsealed event with every field set to a non-zero
// value.
func fullEvent() audit.Event {
	return audit.Event{
		ID:           "evt_full",
		Time:         time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC),
		Type:         audit.ToolCallEnd,
		Principal:    "alice",
		Roles:        []string{"developer", "guest"},
		Session:      "sess-1",
		RequestID:    "req-1",
		RemoteAddr:   "192.0.2.7:5555",
		Tool:         "read_file",
		Server:       "files",
		ArgsDigest:   "hmac-sha256:" + strings.Repeat("a", 64),
		Args:         json.RawMessage(`{"path":"a.txt","limit":10}`),
		Decision:     audit.DecisionAllow,
		Reason:       "OK",
		Status:       audit.StatusOK,
		Duration:     1500 * time.Microsecond,
		ResultDigest: "hmac-sha256:" + strings.Repeat("b", 64),
		Error:        "generic",
		Detail:       "rule 3",
	}
}

// sealed returns fullEvent sealed as record 42 after someHash.
func sealed(t testing.TB, c *audit.Chain) audit.Event {
	t.Helper()
	e := fullEvent()
	if err := c.Seal(&e, 41, someHash); err != nil {
		t.Fatal(err)
	}
	return e
}

// hmacOver computes the documented seal by hand:
// HMAC-SHA256(key, prev_hash bytes || Canonical(e)), hex.
func hmacOver(key []byte, e *audit.Event) string {
	prev, err := hex.DecodeString(e.PrevHash)
	if err != nil || len(prev) != sha256.Size {
		prev = []byte(e.PrevHash)
	}
	m := hmac.New(sha256.New, key)
	m.Write(prev)
	m.Write(audit.Canonical(e))
	return hex.EncodeToString(m.Sum(nil))
}

func TestNewChainRejectsBadKeys(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	tests := []struct {
		name   string
		key    []byte
		signer ed25519.PrivateKey
	}{
		{"nil key", nil, priv},
		{"31-byte key", bytes.Repeat([]byte{1}, 31), priv},
		{"short signer", bytes.Repeat([]byte{1}, 32), priv[:32]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := audit.NewChain(tt.key, tt.signer); err == nil {
				t.Error("NewChain accepted it")
			}
		})
	}
	c, err := audit.NewChain(bytes.Repeat([]byte{1}, 32), nil)
	if err != nil {
		t.Fatalf("verify-only chain: %v", err)
	}
	if c.PublicKey() != nil {
		t.Errorf("verify-only chain has public key %x", c.PublicKey())
	}
	e := audit.Event{Type: audit.AuditCheckpoint, Time: time.Now()}
	if err := c.Seal(&e, 0, audit.GenesisHash); err == nil {
		t.Error("a chain without a signer sealed a checkpoint")
	}
}

// TestNewChainCopiesKey: changing the caller's key slice afterwards does
// not change the chain's key.
func TestNewChainCopiesKey(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	c, err := audit.NewChain(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := fullEvent()
	if err := c.Seal(&e, 0, audit.GenesisHash); err != nil {
		t.Fatal(err)
	}
	key[0] ^= 0xff
	if !c.Check(&e) {
		t.Error("the chain shares its key with the caller's slice")
	}
}

func TestSealCheckRoundTrip(t *testing.T) {
	c := audittest.Chain()
	first := fullEvent()
	if err := c.Seal(&first, 0, audit.GenesisHash); err != nil {
		t.Fatal(err)
	}
	if first.Seq != 1 || first.PrevHash != audit.GenesisHash {
		t.Errorf("first record: Seq %d PrevHash %q, want 1 and the genesis hash", first.Seq, first.PrevHash)
	}
	if len(audit.GenesisHash) != 64 || strings.Trim(audit.GenesisHash, "0") != "" {
		t.Errorf("GenesisHash = %q, want 64 zeros", audit.GenesisHash)
	}
	second := fullEvent()
	second.ID = "evt_second"
	if err := c.Seal(&second, first.Seq, first.Hash); err != nil {
		t.Fatal(err)
	}
	if second.Seq != 2 || second.PrevHash != first.Hash {
		t.Errorf("second record: Seq %d PrevHash %q, want 2 and %q", second.Seq, second.PrevHash, first.Hash)
	}
	for _, e := range []*audit.Event{&first, &second} {
		if len(e.Hash) != 64 || strings.ToLower(e.Hash) != e.Hash {
			t.Errorf("Hash %q is not 64 lowercase hex digits", e.Hash)
		}
		if _, err := hex.DecodeString(e.Hash); err != nil {
			t.Errorf("Hash %q: %v", e.Hash, err)
		}
		if !c.Check(e) {
			t.Errorf("Check(%s) = false on a freshly sealed record", e.ID)
		}
		// A separately built chain with the same key verifies it (the
		// signer plays no part in row hashes).
		if !newChain(t, audittest.ChainKey).Check(e) {
			t.Errorf("same key, other signer: Check(%s) = false", e.ID)
		}
	}
	if first.Hash == second.Hash {
		t.Error("two records share a hash")
	}
	// Sealing is deterministic: the same row over the same head gives the
	// same hash (Verify recomputes it years later).
	again := fullEvent()
	if err := c.Seal(&again, 0, audit.GenesisHash); err != nil {
		t.Fatal(err)
	}
	if again.Hash != first.Hash {
		t.Errorf("resealing gave %s, first seal %s", again.Hash, first.Hash)
	}
}

// TestSealIsHMACOfCanonical pins the documented construction
// hash = HMAC-SHA256(chain key, prev_hash || canonical row), which other
// tools (and the hand-forged records in verify_test.go) rely on.
func TestSealIsHMACOfCanonical(t *testing.T) {
	e := sealed(t, audittest.Chain())
	if got := hmacOver(audittest.ChainKey, &e); got != e.Hash {
		t.Errorf("Hash = %s, HMAC(key, prev || Canonical) = %s", e.Hash, got)
	}
	if !bytes.HasPrefix(audit.Canonical(&e), append([]byte{byte(len("portcullis.audit.row.v1"))}, "portcullis.audit.row.v1"...)) {
		t.Errorf("Canonical does not start with the length-prefixed version: %q", audit.Canonical(&e)[:30])
	}
}

// fieldTampers changes one field of a sealed event each. Every field of
// Event must appear at least once (TestCheckDetectsEveryField enforces
// it), so a field added later cannot silently escape the seal.
var fieldTampers = []struct {
	field, name string
	tamper      func(e *audit.Event)
}{
	{"Seq", "plus one", func(e *audit.Event) { e.Seq++ }},
	{"Seq", "minus one", func(e *audit.Event) { e.Seq-- }},
	{"ID", "other id", func(e *audit.Event) { e.ID = "evt_other" }},
	{"ID", "empty", func(e *audit.Event) { e.ID = "" }},
	{"Time", "plus 1ns", func(e *audit.Event) { e.Time = e.Time.Add(time.Nanosecond) }},
	{"Time", "minus 1s", func(e *audit.Event) { e.Time = e.Time.Add(-time.Second) }},
	{"Type", "other type", func(e *audit.Event) { e.Type = audit.ToolCallStart }},
	{"Principal", "other principal", func(e *audit.Event) { e.Principal = "mallory" }},
	{"Principal", "trailing space", func(e *audit.Event) { e.Principal += " " }},
	{"Roles", "order swapped", func(e *audit.Event) { e.Roles = []string{e.Roles[1], e.Roles[0]} }},
	{"Roles", "role added", func(e *audit.Event) { e.Roles = append(e.Roles[:len(e.Roles):len(e.Roles)], "admin") }},
	{"Roles", "role dropped", func(e *audit.Event) { e.Roles = e.Roles[:1] }},
	{"Roles", "none", func(e *audit.Event) { e.Roles = nil }},
	{"Session", "other session", func(e *audit.Event) { e.Session = "sess-2" }},
	{"RequestID", "other request", func(e *audit.Event) { e.RequestID = "req-2" }},
	{"RemoteAddr", "other address", func(e *audit.Event) { e.RemoteAddr = "198.51.100.1:5555" }},
	{"Tool", "other tool", func(e *audit.Event) { e.Tool = "write_file" }},
	{"Server", "other server", func(e *audit.Event) { e.Server = "shell" }},
	{"ArgsDigest", "one digit", func(e *audit.Event) { e.ArgsDigest = e.ArgsDigest[:len(e.ArgsDigest)-1] + "b" }},
	{"Args", "other value", func(e *audit.Event) { e.Args = json.RawMessage(`{"path":"b.txt","limit":10}`) }},
	{"Args", "whitespace only", func(e *audit.Event) { e.Args = json.RawMessage(`{"path": "a.txt","limit":10}`) }},
	{"Args", "key order only", func(e *audit.Event) { e.Args = json.RawMessage(`{"limit":10,"path":"a.txt"}`) }},
	{"Args", "removed", func(e *audit.Event) { e.Args = nil }},
	{"Decision", "allow to deny", func(e *audit.Event) { e.Decision = audit.DecisionDeny }},
	{"Reason", "other reason", func(e *audit.Event) { e.Reason = "PERMISSION_DENIED" }},
	{"Status", "ok to refused", func(e *audit.Event) { e.Status = audit.StatusRefused }},
	{"Duration", "plus 1ns", func(e *audit.Event) { e.Duration++ }},
	{"ResultDigest", "one digit", func(e *audit.Event) { e.ResultDigest = e.ResultDigest[:len(e.ResultDigest)-1] + "c" }},
	{"Error", "other error", func(e *audit.Event) { e.Error = "" }},
	{"Detail", "other detail", func(e *audit.Event) { e.Detail = "rule 4" }},
	{"PrevHash", "other valid hash", func(e *audit.Event) { e.PrevHash = hexSHA256("another record") }},
	{"PrevHash", "genesis", func(e *audit.Event) { e.PrevHash = audit.GenesisHash }},
	{"PrevHash", "truncated", func(e *audit.Event) { e.PrevHash = e.PrevHash[:62] }},
	{"Chain", "moved to a named chain", func(e *audit.Event) { e.Chain = "replica-b" }},
	{"Hash", "one digit", func(e *audit.Event) { e.Hash = flipHex(e.Hash, 10) }},
	{"Hash", "upper case", func(e *audit.Event) { e.Hash = strings.ToUpper(e.Hash) }},
	{"Hash", "truncated", func(e *audit.Event) { e.Hash = e.Hash[:63] }},
	{"Hash", "empty", func(e *audit.Event) { e.Hash = "" }},
	{"Hash", "not hex", func(e *audit.Event) { e.Hash = strings.Repeat("z", 64) }},
}

// flipHex changes the hex digit at i to another digit.
func flipHex(s string, i int) string {
	b := []byte(s)
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	return string(b)
}

// TestCheckDetectsEveryField: after sealing, a change to any single field
// (down to one nanosecond, the order of roles or whitespace in the
// arguments) makes Check fail.
func TestCheckDetectsEveryField(t *testing.T) {
	c := audittest.Chain()
	covered := map[string]bool{}
	for _, tt := range fieldTampers {
		covered[tt.field] = true
		t.Run(tt.field+"/"+tt.name, func(t *testing.T) {
			e := sealed(t, c)
			before := e
			tt.tamper(&e)
			if reflect.DeepEqual(before, e) {
				t.Fatal("the tamper changed nothing")
			}
			if c.Check(&e) {
				t.Errorf("Check passed after %s of %s", tt.name, tt.field)
			}
		})
	}
	typ := reflect.TypeFor[audit.Event]()
	for i := range typ.NumField() {
		if f := typ.Field(i); !covered[f.Name] {
			t.Errorf("Event.%s has no entry in fieldTampers: is it covered by the seal?", f.Name)
		}
	}
}

// TestCheckIgnoresRepresentation: what is not stored does not count: the
// time zone of Time and nil versus empty slices.
func TestCheckIgnoresRepresentation(t *testing.T) {
	c := audittest.Chain()
	e := sealed(t, c)
	e.Time = e.Time.In(time.FixedZone("X", 5*3600))
	if !c.Check(&e) {
		t.Error("Check failed for the same instant in another zone")
	}
	bare := audit.Event{ID: "evt_bare", Time: e.Time, Type: audit.ServerStart}
	if err := c.Seal(&bare, 0, audit.GenesisHash); err != nil {
		t.Fatal(err)
	}
	bare.Roles, bare.Args = []string{}, json.RawMessage{}
	if !c.Check(&bare) {
		t.Error("Check failed for empty instead of nil Roles/Args (the store reads them back as either)")
	}
}

func TestCheckWrongKey(t *testing.T) {
	e := sealed(t, audittest.Chain())
	wrong, err := audit.NewChain(otherChainKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if wrong.Check(&e) {
		t.Error("a chain with another key accepted the record")
	}
	// Nor does a record sealed with the wrong key pass the right chain.
	forged := fullEvent()
	if err := wrong.Seal(&forged, 41, someHash); err != nil {
		t.Fatal(err)
	}
	if audittest.Chain().Check(&forged) {
		t.Error("the real chain accepted a record sealed with another key")
	}
	if forged.Hash == e.Hash {
		t.Error("two keys gave the same hash")
	}
}

// TestCanonicalInjective: moving bytes across a field boundary, or
// spelling one field's content so that it looks like an encoded boundary,
// gives another canonical form and another hash.
func TestCanonicalInjective(t *testing.T) {
	base := func(f func(e *audit.Event)) *audit.Event {
		e := &audit.Event{ID: "evt", Time: time.Unix(0, 1700000000000000000).UTC(), Type: audit.ToolCallStart}
		f(e)
		return e
	}
	pairs := []struct {
		name string
		a, b *audit.Event
	}{
		{"principal|session",
			base(func(e *audit.Event) { e.Principal, e.Session = "ab", "c" }),
			base(func(e *audit.Event) { e.Principal, e.Session = "a", "bc" })},
		{"tool|server",
			base(func(e *audit.Event) { e.Tool, e.Server = "read_file", "" }),
			base(func(e *audit.Event) { e.Tool, e.Server = "read_", "file" })},
		{"request id|remote addr",
			base(func(e *audit.Event) { e.RequestID, e.RemoteAddr = "r1", "10.0.0.1" }),
			base(func(e *audit.Event) { e.RequestID, e.RemoteAddr = "r110.0.0.1", "" })},
		{"error|detail",
			base(func(e *audit.Event) { e.Error, e.Detail = "x", "yz" }),
			base(func(e *audit.Event) { e.Error, e.Detail = "xy", "z" })},
		{"args|decision",
			base(func(e *audit.Event) { e.Args, e.Decision = json.RawMessage(`{}`), "allow" }),
			base(func(e *audit.Event) { e.Args, e.Decision = json.RawMessage(`{}allow`), "" })},
		{"seq|id digits",
			base(func(e *audit.Event) { e.Seq, e.ID = 1, "2" }),
			base(func(e *audit.Event) { e.Seq, e.ID = 12, "" })},
		{"status|duration digits",
			base(func(e *audit.Event) { e.Status, e.Duration = "ok1", 5 }),
			base(func(e *audit.Event) { e.Status, e.Duration = "ok", 15 })},
		{"roles split differently",
			base(func(e *audit.Event) { e.Roles = []string{"ab", "c"} }),
			base(func(e *audit.Event) { e.Roles = []string{"a", "bc"} })},
		{"roles moved to session",
			base(func(e *audit.Event) { e.Roles = []string{"dev"} }),
			base(func(e *audit.Event) { e.Session = "dev" })},
		{"embedded length prefix",
			// "x" then session "y" encodes as 01 'x' 00 01 'y'; try to
			// smuggle that encoding into the principal alone.
			base(func(e *audit.Event) { e.Principal, e.Session = "x", "y" }),
			base(func(e *audit.Event) { e.Principal = "x\x00\x01y" })},
		{"NUL versus empty error",
			base(func(e *audit.Event) { e.Error = "\x00" }),
			base(func(e *audit.Event) { e.Error = "" })},
		{"time versus duration",
			base(func(e *audit.Event) { e.Time = e.Time.Add(time.Nanosecond) }),
			base(func(e *audit.Event) { e.Duration = 1 })},
	}
	c := audittest.Chain()
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			if bytes.Equal(audit.Canonical(p.a), audit.Canonical(p.b)) {
				t.Fatalf("same canonical form %q", audit.Canonical(p.a))
			}
			for _, e := range []*audit.Event{p.a, p.b} {
				e.PrevHash = someHash
				e.Hash = hmacOver(audittest.ChainKey, e)
			}
			if p.a.Hash == p.b.Hash {
				t.Error("same hash")
			}
			// The seal of one does not verify the other.
			p.b.Hash = p.a.Hash
			if c.Check(p.b) {
				t.Error("one record's hash checks for the other")
			}
		})
	}
}

// FuzzCanonicalBoundaries: two events that differ only in how text is
// split between Principal and Session have equal canonical forms only if
// they are equal.
func FuzzCanonicalBoundaries(f *testing.F) {
	f.Add("ab", "c", "a", "bc")
	f.Add("x\x01", "y", "x", "\x01y")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, p1, s1, p2, s2 string) {
		a := audit.Event{Principal: p1, Session: s1}
		b := audit.Event{Principal: p2, Session: s2}
		same := bytes.Equal(audit.Canonical(&a), audit.Canonical(&b))
		if same != (p1 == p2 && s1 == s2) {
			t.Errorf("(%q,%q) vs (%q,%q): canonical equal = %v", p1, s1, p2, s2, same)
		}
	})
}

// signedCheckpoint returns a checkpoint for (seq, hash) signed by c's key,
// made the way the gateway makes them: by sealing an audit.checkpoint
// record over that head.
func signedCheckpoint(t testing.TB, c *audit.Chain, seq int64, hash string, at time.Time) audit.Checkpoint {
	t.Helper()
	e := audit.Event{ID: "evt_cp", Type: audit.AuditCheckpoint, Time: at}
	if err := c.Seal(&e, seq, hash); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint([]byte(e.Detail))
	if err != nil {
		t.Fatalf("ParseCheckpoint(%s): %v", e.Detail, err)
	}
	return cp
}

func TestSealCheckpointRecord(t *testing.T) {
	c := audittest.Chain()
	at := time.Date(2026, 6, 1, 12, 0, 0, 987654321, time.FixedZone("CEST", 2*3600))
	e := audit.Event{ID: "evt_cp", Type: audit.AuditCheckpoint, Time: at, Detail: "overwritten"}
	if err := c.Seal(&e, 41, someHash); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint([]byte(e.Detail))
	if err != nil {
		t.Fatal(err)
	}
	want := audit.Checkpoint{Seq: 41, Hash: someHash, Time: at.UTC(),
		PublicKey: base64.StdEncoding.EncodeToString(c.PublicKey())}
	if diff := cmp.Diff(want, cp, cmp.FilterPath(func(p cmp.Path) bool {
		return p.String() == "Signature"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("checkpoint (-want +got):\n%s", diff)
	}
	if e.Seq != 42 || !c.Check(&e) {
		t.Errorf("checkpoint record Seq %d, Check %v", e.Seq, c.Check(&e))
	}
	if err := cp.Verify(c.PublicKey()); err != nil {
		t.Errorf("Verify: %v", err)
	}
	// The detail is covered by the seal like any other field.
	e.Detail = strings.Replace(e.Detail, `"seq":41`, `"seq":40`, 1)
	if c.Check(&e) {
		t.Error("Check passed after the checkpoint's detail was edited")
	}
}

func TestCheckpointVerify(t *testing.T) {
	c := audittest.Chain()
	at := time.Date(2026, 6, 1, 12, 0, 0, 1, time.UTC)
	attacker := newChain(t, otherChainKey)
	tests := []struct {
		name    string
		tamper  func(cp *audit.Checkpoint)
		wantErr error // nil: any non-nil error
	}{
		{"seq", func(cp *audit.Checkpoint) { cp.Seq++ }, audit.ErrBadCheckpoint},
		{"hash", func(cp *audit.Checkpoint) { cp.Hash = flipHex(cp.Hash, 0) }, audit.ErrBadCheckpoint},
		{"hash upper case", func(cp *audit.Checkpoint) { cp.Hash = strings.ToUpper(cp.Hash) }, audit.ErrBadCheckpoint},
		{"time plus 1ns", func(cp *audit.Checkpoint) { cp.Time = cp.Time.Add(time.Nanosecond) }, audit.ErrBadCheckpoint},
		{"signature byte", func(cp *audit.Checkpoint) {
			sig, _ := base64.StdEncoding.DecodeString(cp.Signature)
			sig[7] ^= 1
			cp.Signature = base64.StdEncoding.EncodeToString(sig)
		}, audit.ErrBadCheckpoint},
		{"signature not base64", func(cp *audit.Checkpoint) { cp.Signature = "!!" }, audit.ErrBadCheckpoint},
		{"signature empty", func(cp *audit.Checkpoint) { cp.Signature = "" }, audit.ErrBadCheckpoint},
		{"signature of another checkpoint", func(cp *audit.Checkpoint) {
			cp.Signature = signedCheckpoint(t, c, cp.Seq-1, cp.Hash, cp.Time).Signature
		}, audit.ErrBadCheckpoint},
		{"public key swapped to the attacker's", func(cp *audit.Checkpoint) {
			cp.PublicKey = base64.StdEncoding.EncodeToString(attacker.PublicKey())
		}, audit.ErrForeignKey},
		{"public key missing", func(cp *audit.Checkpoint) { cp.PublicKey = "" }, audit.ErrForeignKey},
		{"re-signed by another key", func(cp *audit.Checkpoint) {
			*cp = signedCheckpoint(t, attacker, cp.Seq, cp.Hash, cp.Time)
		}, audit.ErrForeignKey},
		{"another key's signature, our public key", func(cp *audit.Checkpoint) {
			cp.Signature = signedCheckpoint(t, attacker, cp.Seq, cp.Hash, cp.Time).Signature
		}, audit.ErrBadCheckpoint},
	}
	good := signedCheckpoint(t, c, 41, someHash, at)
	if err := good.Verify(c.PublicKey()); err != nil {
		t.Fatalf("untampered checkpoint: %v", err)
	}
	// The signed time is the instant, whatever the zone it is shown in.
	shown := good
	shown.Time = shown.Time.In(time.FixedZone("X", -7*3600))
	if err := shown.Verify(c.PublicKey()); err != nil {
		t.Errorf("same instant in another zone: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := good
			tt.tamper(&cp)
			err := cp.Verify(c.PublicKey())
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if err := good.Verify(attacker.PublicKey()); !errors.Is(err, audit.ErrForeignKey) {
		t.Errorf("Verify under another key = %v, want ErrForeignKey", err)
	}
	if err := good.Verify(c.PublicKey()[:16]); err == nil {
		t.Error("Verify accepted a 16-byte public key")
	}
}

// TestCheckpointJSONRoundTrip: an exported checkpoint read back verifies.
func TestCheckpointJSONRoundTrip(t *testing.T) {
	c := audittest.Chain()
	cp := signedCheckpoint(t, c, 7, someHash, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	back, err := audit.ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cp, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := back.Verify(c.PublicKey()); err != nil {
		t.Errorf("Verify after round trip: %v", err)
	}
}

func TestParseCheckpointRejects(t *testing.T) {
	good := signedCheckpoint(t, audittest.Chain(), 7, someHash, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	b, _ := json.Marshal(good)
	valid := string(b)
	swap := func(old, repl string) string {
		if !strings.Contains(valid, old) {
			t.Fatalf("%q not in %s", old, valid)
		}
		return strings.Replace(valid, old, repl, 1)
	}
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"not json", "seq=7"},
		{"array", "[]"},
		{"unknown field", swap(`{"seq"`, `{"extra":1,"seq"`)},
		{"misspelt field", swap(`"public_key"`, `"publickey"`)},
		{"short hash", swap(someHash, someHash[:63])},
		{"long hash", swap(someHash, someHash+"0")},
		{"no hash", swap(`"hash":"`+someHash+`",`, "")},
		{"negative seq", swap(`"seq":7`, `"seq":-1`)},
		{"seq as string", swap(`"seq":7`, `"seq":"7"`)},
		{"no signature", swap(`"signature":"`+good.Signature+`"`, `"signature":""`)},
		{"bad time", swap(good.Time.Format(time.RFC3339Nano), "yesterday")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if cp, err := audit.ParseCheckpoint([]byte(tt.in)); err == nil {
				t.Errorf("ParseCheckpoint(%s) = %+v, want an error", tt.in, cp)
			}
		})
	}
	if _, err := audit.ParseCheckpoint(b); err != nil {
		t.Errorf("the valid original: %v", err)
	}
}

// FuzzParseCheckpoint: never panics, and what it accepts has the shape
// Verify relies on.
func FuzzParseCheckpoint(f *testing.F) {
	good := signedCheckpoint(f, audittest.Chain(), 7, someHash, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	b, _ := json.Marshal(good)
	f.Add(b)
	f.Add([]byte(`{"seq":0,"hash":"` + audit.GenesisHash + `","signature":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		cp, err := audit.ParseCheckpoint(in)
		if err != nil {
			return
		}
		if cp.Seq < 0 || len(cp.Hash) != 64 || cp.Signature == "" {
			t.Errorf("accepted malformed %+v", cp)
		}
		_ = cp.Verify(audittest.Chain().PublicKey())
	})
}

func TestRetentionCutoff(t *testing.T) {
	tests := []struct {
		name   string
		now    time.Time
		months int
		want   time.Time
	}{
		{"doc example", time.Date(2026, 11, 21, 15, 0, 0, 0, time.UTC), 12, time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)},
		{"months=0 is this month", time.Date(2026, 5, 10, 9, 0, 0, 0, time.UTC), 0, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"one month", time.Date(2026, 5, 10, 9, 0, 0, 0, time.UTC), 1, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)},
		{"January wraps to December", time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC), 1, time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"January minus 13 months", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 13, time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"March 31 minus one month is February, not March 3", time.Date(2026, 3, 31, 23, 59, 59, 999999999, time.UTC), 1, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
		{"leap year", time.Date(2024, 3, 31, 12, 0, 0, 0, time.UTC), 1, time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)},
		{"first instant of a month", time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), 2, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"last instant of a month", time.Date(2026, 6, 30, 23, 59, 59, 999999999, time.UTC), 2, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)},
		{"ten years", time.Date(2026, 2, 3, 0, 0, 0, 0, time.UTC), 120, time.Date(2016, 2, 1, 0, 0, 0, 0, time.UTC)},
		// The month is taken in UTC: 00:30 on March 1 at +02:00 is still
		// February in UTC.
		{"local zone ahead of UTC", time.Date(2026, 3, 1, 0, 30, 0, 0, time.FixedZone("EET", 2*3600)), 1, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"local zone behind UTC", time.Date(2026, 2, 28, 23, 30, 0, 0, time.FixedZone("EST", -5*3600)), 1, time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := audit.RetentionCutoff(tt.now, tt.months)
			if !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Errorf("RetentionCutoff(%s, %d) = %s, want %s", tt.now, tt.months, got, tt.want)
			}
		})
	}
}
