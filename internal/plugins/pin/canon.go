package pin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

// maxDepth bounds the nesting of objects and arrays in a schema or the
// annotations; deeper is malformed.
const maxDepth = 256

// errMalformed is the cause of a malformed field (never shown as is).
var errMalformed = errors.New("malformed JSON")

// jsonField is one raw JSON part of a Definition, parsed.
type jsonField struct {
	key   string // "inputSchema", "outputSchema", "annotations"
	raw   []byte
	value any   // nil, bool, json.Number, string, []any, map[string]any
	err   error // why raw is malformed
}

// analysis is a Definition parsed once for fingerprinting and scanning.
type analysis struct {
	canonical json.RawMessage
	hash      string
	findings  []Finding
}

func analyze(d Definition) analysis {
	fields := parseFields(d)
	c := encodeDefinition(d, fields)
	sum := sha256.Sum256(c)
	return analysis{canonical: c, hash: "sha256:" + hex.EncodeToString(sum[:]), findings: scanParsed(d, fields)}
}

// Fingerprint returns "sha256:" and the hex SHA-256 of the canonical JSON
// of d: an object with the keys name, title, description, inputSchema,
// outputSchema and annotations (empty strings and absent or null JSON
// omitted), keys sorted bytewise at every level, no insignificant
// whitespace, strings with only '"', '\\' and control characters escaped,
// and numbers exactly as the server wrote them (json.Number): so key order,
// whitespace and escape spelling ("\u0041" for "A") do not change it, but
// 1, 1.0 and 1e0 are different fingerprints, as is every change of a name,
// title, description, schema or annotation. A part that is not well-formed
// (invalid JSON or UTF-8, a duplicate key, a lone surrogate escape, nesting
// deeper than 256) is hashed byte for byte under a key of its own
// ("inputSchema!text", "name!base64", ...), so it cannot collide with a
// well-formed one; Scan reports it as RuleMalformed.
func Fingerprint(d Definition) string {
	fields := parseFields(d)
	sum := sha256.Sum256(encodeDefinition(d, fields))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func parseFields(d Definition) []jsonField {
	fs := []jsonField{{key: "inputSchema", raw: d.InputSchema}, {key: "outputSchema", raw: d.OutputSchema},
		{key: "annotations", raw: d.Annotations}}
	for i := range fs {
		if len(bytes.TrimSpace(fs[i].raw)) == 0 {
			fs[i].raw = nil
			continue
		}
		fs[i].value, fs[i].err = parseJSON(fs[i].raw)
		if fs[i].err == nil && fs[i].value == nil { // JSON null: absent
			fs[i].raw = nil
		}
	}
	return fs
}

// encodeDefinition returns the canonical JSON of d (see Fingerprint).
func encodeDefinition(d Definition, fields []jsonField) []byte {
	type member struct {
		key string
		enc func(*bytes.Buffer)
	}
	var ms []member
	addString := func(key, s string, always bool) {
		switch {
		case s == "" && !always:
		case utf8.ValidString(s):
			ms = append(ms, member{key, func(b *bytes.Buffer) { writeString(b, s, false) }})
		default:
			ms = append(ms, member{key + "!base64", func(b *bytes.Buffer) {
				writeString(b, base64.StdEncoding.EncodeToString([]byte(s)), false)
			}})
		}
	}
	addString("name", d.Name, true)
	addString("title", d.Title, false)
	addString("description", d.Description, false)
	for _, f := range fields {
		switch {
		case f.raw == nil:
		case f.err == nil:
			ms = append(ms, member{f.key, func(b *bytes.Buffer) { writeValue(b, f.value, false) }})
		default:
			addString(f.key+"!text", string(f.raw), true) // "!text!base64" if not even UTF-8
		}
	}
	slices.SortFunc(ms, func(a, b member) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(&b, m.key, false)
		b.WriteByte(':')
		m.enc(&b)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// parseJSON decodes one JSON value, numbers as json.Number, rejecting what
// encoding/json would silently accept or repair: invalid UTF-8, lone
// surrogate escapes (both decode to U+FFFD), duplicate object keys (which
// one wins differs between parsers), trailing data and nesting deeper than
// maxDepth.
func parseJSON(raw []byte) (any, error) {
	if !utf8.Valid(raw) || !validSurrogates(raw) {
		return nil, errMalformed
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errMalformed
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, errMalformed
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // nil, bool, json.Number or string
	}
	if depth >= maxDepth {
		return nil, errMalformed
	}
	switch d {
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := parseValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, errMalformed
		}
		return arr, nil
	case '{':
		obj := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, errMalformed
			}
			k, ok := kt.(string)
			if !ok {
				return nil, errMalformed
			}
			if _, dup := obj[k]; dup {
				return nil, errMalformed
			}
			v, err := parseValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			obj[k] = v
		}
		if _, err := dec.Token(); err != nil { // '}'
			return nil, errMalformed
		}
		return obj, nil
	}
	return nil, errMalformed // a closing delimiter where a value belongs
}

// validSurrogates reports whether every \uD800-\uDFFF escape in the
// strings of raw is half of a high-low pair. Other syntax is left to the
// decoder.
func validSurrogates(raw []byte) bool {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 < len(raw) && raw[i+1] == 'u' {
				r, ok := hex4(raw, i+2)
				switch {
				case !ok:
				case r >= 0xD800 && r < 0xDC00:
					lo, ok := hex4(raw, i+8)
					if i+7 >= len(raw) || raw[i+6] != '\\' || raw[i+7] != 'u' || !ok || lo < 0xDC00 || lo > 0xDFFF {
						return false
					}
					i += 6
				case r >= 0xDC00 && r <= 0xDFFF:
					return false
				}
				i += 5
				continue
			}
			i++ // the escaped character
		}
	}
	return true
}

func hex4(b []byte, at int) (rune, bool) {
	if at < 0 || at+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[at:at+4]), 16, 32)
	return rune(v), err == nil
}

// writeValue writes v canonically: object keys sorted, no whitespace. With
// display, strings also escape what could hide or reorder text (see
// writeString).
func writeValue(b *bytes.Buffer, v any, display bool) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case json.Number:
		b.WriteString(string(v))
	case string:
		writeString(b, v, display)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeValue(b, e, display)
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k, display)
			b.WriteByte(':')
			writeValue(b, v[k], display)
		}
		b.WriteByte('}')
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// writeString writes s (valid UTF-8) as a JSON string, escaping only '"',
// '\\' and control characters (\n, \r, \t, else \u00XX), so the canonical
// form does not depend on any Unicode table. With display it also escapes,
// as \uXXXX, every character hidden (see hiddenRune) or not graphic, so a
// terminal shows an admin what is there.
func writeString(b *bytes.Buffer, s string, display bool) {
	const hexDigits = "0123456789abcdef"
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || (display && !displayable(r)):
			for _, u := range utf16Units(r) {
				b.WriteString(`\u`)
				b.WriteByte(hexDigits[u>>12&0xf])
				b.WriteByte(hexDigits[u>>8&0xf])
				b.WriteByte(hexDigits[u>>4&0xf])
				b.WriteByte(hexDigits[u&0xf])
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

func utf16Units(r rune) []rune {
	if r < 0x10000 {
		return []rune{r}
	}
	r -= 0x10000
	return []rune{0xD800 + r>>10, 0xDC00 + r&0x3ff}
}

// display renders canonical JSON for people: pretty-printed with
// two-space indentation, hidden characters escaped. What does not parse is
// returned as its text with hidden characters escaped.
func display(raw []byte) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		return ""
	}
	v, err := parseJSON(raw)
	if err != nil {
		return escapeText(string(bytes.ToValidUTF8(raw, []byte("\uFFFD"))))
	}
	var compact, out bytes.Buffer
	writeValue(&compact, v, true)
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return escapeText(compact.String()) // not reached: writeValue writes valid JSON
	}
	return out.String()
}
