package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// GenesisHash is the prev_hash of the first record of a chain: 32 zero
// bytes, hex-encoded.
var GenesisHash = strings.Repeat("0", 2*sha256.Size)

// canonicalVersion starts every canonical row so that a later format can
// never be confused with this one. Rows of a named chain (Event.Chain not
// empty) use canonicalVersionChained and seal the chain id right after it;
// rows of the default chain "" keep the v1 form, so records written before
// chains had names still verify.
const (
	canonicalVersion        = "portcullis.audit.row.v1"
	canonicalVersionChained = "portcullis.audit.row.v2"
)

// Chain seals audit records into a tamper-evident hash chain:
//
//	hash = HMAC-SHA256(chain key, prev_hash || canonical row)
//
// where prev_hash is the previous record's hash (GenesisHash for the first)
// and the canonical row is every stored field of the record, sequence
// included, each length-prefixed (see Canonical). Someone with write access
// to the database but not the chain key cannot alter, insert, delete or
// reorder rows without Verify noticing; truncation of the newest rows shows
// against a checkpoint exported earlier (Checkpoint).
//
// The chain key must differ from the redaction key: `portcullis audit hash`
// computes HMACs of arbitrary values under the redaction key, which would
// otherwise let its users forge row hashes.
//
// Several writers (gateway replicas on one PostgreSQL database) each keep
// their own chain, named by the chain id (the replica id, see WithID): a
// record links to the previous record of its own chain, while its
// sequence number stays global, assigned in commit order across every
// chain. Verify walks the log in that order and follows every chain.
type Chain struct {
	key    []byte
	signer ed25519.PrivateKey // nil: checkpoints cannot be sealed
	id     string             // the chain records are sealed into; "" is the default chain
}

// Head is where a chain stands before the next record: the sequence number
// and hash of its newest sealed record, or 0 and GenesisHash when it has
// none.
type Head struct {
	Seq  int64
	Hash string
}

// NewChain returns a chain keyed with key (at least 32 bytes). signer signs
// checkpoint records (audit.checkpoint) as they are sealed; it may be nil
// for a chain that only verifies.
func NewChain(key []byte, signer ed25519.PrivateKey) (*Chain, error) {
	if len(key) < 32 {
		return nil, errors.New("audit: chain key shorter than 32 bytes")
	}
	if signer != nil && len(signer) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: bad Ed25519 signing key")
	}
	return &Chain{key: bytes.Clone(key), signer: signer}, nil
}

// MaxChainIDLen is the longest chain id, in bytes.
const MaxChainIDLen = 64

// WithID returns a copy of c (same keys) that seals records into the chain
// named id: 1-64 bytes of letters, digits, '.', '_' and '-', or "" for the
// default chain. Any other id is an error.
func (c *Chain) WithID(id string) (*Chain, error) {
	if !ValidChainID(id) {
		return nil, fmt.Errorf("audit: chain id %q: want at most %d letters, digits, '.', '_' or '-'", id, MaxChainIDLen)
	}
	cc := *c
	cc.id = id
	return &cc, nil
}

// ID returns the id of the chain c seals into ("" for the default chain).
func (c *Chain) ID() string { return c.id }

// ValidChainID reports whether id can name a chain (WithID).
func ValidChainID(id string) bool {
	if len(id) > MaxChainIDLen {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// PublicKey returns the checkpoint verification key, nil without a signer.
func (c *Chain) PublicKey() ed25519.PublicKey {
	if c.signer == nil {
		return nil
	}
	return c.signer.Public().(ed25519.PublicKey)
}

// Seal links e to the record before it in a log with one chain: it is
// SealAt(e, h, h) with h = Head{prevSeq, prevHash}.
func (c *Chain) Seal(e *Event, prevSeq int64, prevHash string) error {
	h := Head{Seq: prevSeq, Hash: prevHash}
	return c.SealAt(e, h, h)
}

// SealAt seals e as the record after last, the log's newest record (of
// any chain; Head{} for an empty log), linked to prev, the head of c's
// chain: it sets e.Chain = c.ID(), e.Seq = last.Seq+1, e.PrevHash =
// prev.Hash and e.Hash. A checkpoint event (Type AuditCheckpoint) first
// gets its Detail set to the signed Checkpoint of both: the record of its
// chain just before it (prev) and, when that is not the same, the log's
// record just before it (last), so that an exported checkpoint covers
// every record before it whichever replica wrote it. last.Seq must not
// be below prev.Seq. Backends call SealAt inside the transaction that
// inserts e, after reading the log's newest record and the chain head in
// that same transaction, under a lock that orders commits by sequence
// number.
func (c *Chain) SealAt(e *Event, last, prev Head) error {
	if last.Seq < prev.Seq || prev.Seq < 0 {
		return fmt.Errorf("audit: seal after log record %d with chain head %d", last.Seq, prev.Seq)
	}
	if e.Type == AuditCheckpoint {
		if c.signer == nil {
			return errors.New("audit: checkpoint without a signing key")
		}
		cp := Checkpoint{Chain: c.id, Seq: prev.Seq, Hash: prev.Hash}
		if last.Seq != prev.Seq {
			cp.LogSeq, cp.LogHash = last.Seq, last.Hash
		}
		c.sign(&cp, e.Time)
		b, err := json.Marshal(&cp)
		if err != nil {
			return err
		}
		e.Detail = string(b)
	}
	e.Chain = c.id
	e.Seq = last.Seq + 1
	e.PrevHash = prev.Hash
	e.Hash = c.hash(e)
	return nil
}

// Check reports whether e.Hash is the seal of e over e.PrevHash, spelt
// exactly as Seal wrote it (lowercase hex): a re-cased hash is a change.
func (c *Chain) Check(e *Event) bool {
	return hmac.Equal([]byte(e.Hash), []byte(c.hash(e)))
}

func (c *Chain) hash(e *Event) string {
	prev, err := hex.DecodeString(e.PrevHash)
	if err != nil || len(prev) != sha256.Size {
		// A malformed prev_hash still gets a well-defined (and therefore
		// checkable) seal: the raw text is hashed instead.
		prev = []byte(e.PrevHash)
	}
	m := hmac.New(sha256.New, c.key)
	m.Write(prev)
	writeCanonical(m, e)
	return hex.EncodeToString(m.Sum(nil))
}

// Canonical returns the canonical form of e that Seal hashes: the version
// string (v2 and the chain id when e.Chain is not empty) and then every
// stored field in a fixed order, each as a uvarint byte length followed by
// the bytes. Integers are decimal; time is Unix
// nanoseconds; roles are joined by ",". Length prefixes make the encoding
// injective: no two different rows share a canonical form.
func Canonical(e *Event) []byte {
	var b bytes.Buffer
	writeCanonical(&b, e)
	return b.Bytes()
}

func writeCanonical(w io.Writer, e *Event) {
	var lenBuf [binary.MaxVarintLen64]byte
	field := func(s string) {
		n := binary.PutUvarint(lenBuf[:], uint64(len(s)))
		w.Write(lenBuf[:n])
		w.Write([]byte(s))
	}
	var num [20]byte
	integer := func(v int64) { field(string(strconv.AppendInt(num[:0], v, 10))) }
	if e.Chain == "" {
		field(canonicalVersion)
	} else {
		field(canonicalVersionChained)
		field(e.Chain)
	}
	integer(e.Seq)
	field(e.ID)
	integer(e.Time.UnixNano())
	field(string(e.Type))
	field(e.Principal)
	field(strings.Join(e.Roles, ","))
	field(e.Session)
	field(e.RequestID)
	field(e.RemoteAddr)
	field(e.Tool)
	field(e.Server)
	field(e.ArgsDigest)
	field(string(e.Args))
	field(e.Decision)
	field(string(e.Reason))
	field(e.Status)
	integer(int64(e.Duration))
	field(e.ResultDigest)
	field(e.Error)
	field(e.Detail)
}

// Checkpoint is a signed statement that the log's record Seq, the head of
// chain Chain, has hash Hash: exported with `portcullis audit checkpoint`
// and kept outside the database, it lets `audit verify` detect truncation
// of newer records and anchors a chain whose older records were pruned by
// retention.
type Checkpoint struct {
	// Chain is the chain id ("" for the default chain, omitted).
	Chain string `json:"chain,omitempty"`
	Seq   int64  `json:"seq"`
	Hash  string `json:"hash"`
	// LogSeq and LogHash name the log's record just before the checkpoint
	// record when that is another chain's (several replicas): what an
	// exported checkpoint covers. Omitted (0, "") when it is the chain's
	// record Seq; see LogPosition.
	LogSeq  int64     `json:"log_seq,omitempty"`
	LogHash string    `json:"log_hash,omitempty"`
	Time    time.Time `json:"time"`
	// PublicKey is the Ed25519 key (base64, 32 bytes) that signed it.
	PublicKey string `json:"public_key"`
	// Signature is Ed25519 (base64) over SignedMessage.
	Signature string `json:"signature"`
}

// LogPosition returns the log record the checkpoint covers everything up
// to: LogSeq and LogHash when set, else Seq and Hash.
func (cp *Checkpoint) LogPosition() (int64, string) {
	if cp.LogSeq != 0 {
		return cp.LogSeq, cp.LogHash
	}
	return cp.Seq, cp.Hash
}

// SignedMessage is the byte string a checkpoint's signature covers: v1
// for the default chain of a log with one chain (as before chains had
// names), v2 with the chain id and the log position otherwise.
func (cp *Checkpoint) SignedMessage() []byte {
	if cp.Chain != "" || cp.LogSeq != 0 {
		return fmt.Appendf(nil, "portcullis-audit-checkpoint-v2\n%s\n%d\n%s\n%d\n%s\n%s",
			cp.Chain, cp.Seq, cp.Hash, cp.LogSeq, cp.LogHash, cp.Time.UTC().Format(time.RFC3339Nano))
	}
	return fmt.Appendf(nil, "portcullis-audit-checkpoint-v1\n%d\n%s\n%s",
		cp.Seq, cp.Hash, cp.Time.UTC().Format(time.RFC3339Nano))
}

// sign completes cp (time, public key, signature) as c's signer.
func (c *Chain) sign(cp *Checkpoint, at time.Time) {
	cp.Time = at.UTC()
	cp.PublicKey = base64.StdEncoding.EncodeToString(c.PublicKey())
	cp.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(c.signer, cp.SignedMessage()))
}

// Errors of checkpoint verification.
var (
	ErrBadCheckpoint = errors.New("audit: checkpoint signature invalid")
	ErrForeignKey    = errors.New("audit: checkpoint signed by another key")
)

// Verify checks the checkpoint's signature under pub. A checkpoint signed
// by a different key is ErrForeignKey; a bad signature ErrBadCheckpoint.
func (cp *Checkpoint) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("audit: bad Ed25519 public key")
	}
	if k, err := base64.StdEncoding.DecodeString(cp.PublicKey); err != nil || !bytes.Equal(k, pub) {
		return ErrForeignKey
	}
	sig, err := base64.StdEncoding.DecodeString(cp.Signature)
	if err != nil || !ed25519.Verify(pub, cp.SignedMessage(), sig) {
		return ErrBadCheckpoint
	}
	return nil
}

// ParseCheckpoint decodes a checkpoint (JSON, as exported or stored in an
// audit.checkpoint record's detail); it does not verify the signature.
func ParseCheckpoint(b []byte) (Checkpoint, error) {
	var cp Checkpoint
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cp); err != nil {
		return cp, fmt.Errorf("audit: checkpoint: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return cp, errors.New("audit: checkpoint: data after the JSON object")
	}
	if _, err := hex.DecodeString(cp.Hash); err != nil || cp.Seq < 0 || len(cp.Hash) != 2*sha256.Size ||
		cp.Hash != strings.ToLower(cp.Hash) || cp.Signature == "" || !ValidChainID(cp.Chain) ||
		cp.LogSeq < 0 || cp.LogSeq != 0 && cp.LogSeq <= cp.Seq || !validLogHash(cp.LogSeq, cp.LogHash) {
		return cp, errors.New("audit: checkpoint: missing or malformed fields")
	}
	return cp, nil
}

// validLogHash: a log position names a sealed record (64 lowercase hex
// digits) or an unsealed one from before the chain existed ("").
func validLogHash(seq int64, h string) bool {
	if seq == 0 || h == "" {
		return seq != 0 || h == ""
	}
	_, err := hex.DecodeString(h)
	return err == nil && len(h) == 2*sha256.Size && h == strings.ToLower(h)
}
