package pin_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/plugins/pin"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// base is a realistic definition (the official filesystem server's
// read_file, abridged).
func base() pin.Definition {
	return pin.Definition{
		Name:         "read_file",
		Title:        "Read file",
		Description:  "Read the complete contents of a file from the file system.",
		InputSchema:  raw(`{"type":"object","properties":{"path":{"type":"string"},"head":{"type":"number","minimum":1}},"required":["path"]}`),
		OutputSchema: raw(`{"type":"object","properties":{"content":{"type":"string"}}}`),
		Annotations:  raw(`{"readOnlyHint":true,"title":"Read file"}`),
	}
}

func TestFingerprintForm(t *testing.T) {
	fp := pin.Fingerprint(base())
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(fp) {
		t.Fatalf("Fingerprint = %q, want sha256:<64 hex>", fp)
	}
	if pin.Fingerprint(base()) != fp {
		t.Error("Fingerprint is not deterministic")
	}
}

// TestFingerprintGolden pins the canonical encoding itself: a change to
// it would report every pinned tool of every installation as changed.
func TestFingerprintGolden(t *testing.T) {
	d := pin.Definition{Name: "t", Description: "say \"hi\"\n\u00e9\u200b<b>",
		InputSchema: raw(` { "z" : 1.50, "a" : [ true, null, "\u0041" ], "m": {"y": {}, "x": []} } `)}
	const canonical = `{"description":"say \"hi\"\n` + "\u00e9\u200b" + `<b>","inputSchema":{"a":[true,null,"A"],"m":{"x":[],"y":{}},"z":1.50},"name":"t"}`
	sum := sha256.Sum256([]byte(canonical))
	if got, want := pin.Fingerprint(d), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Fingerprint = %s, want the SHA-256 of %s (%s)", got, canonical, want)
	}
	// The stored definition is that canonical form (pending: the zero-width
	// space is flagged).
	p, mem := newPinner(t)
	if _, err := p.Observe(t.Context(), "s", []pin.Definition{d}); err != nil {
		t.Fatal(err)
	}
	r, err := mem.GetPin(t.Context(), "s", "t")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != pin.Pending || string(r.PendingDefinition) != canonical {
		t.Errorf("stored %s definition\n%s\nwant\n%s", r.Status, r.PendingDefinition, canonical)
	}
}

func TestFingerprintStable(t *testing.T) {
	for _, tt := range []struct {
		name string
		mut  func(*pin.Definition)
	}{
		{"key order", func(d *pin.Definition) {
			d.InputSchema = raw(`{"required":["path"],"properties":{"head":{"minimum":1,"type":"number"},"path":{"type":"string"}},"type":"object"}`)
		}},
		{"whitespace", func(d *pin.Definition) {
			d.InputSchema = raw("{\n  \"type\": \"object\",\n\t\"properties\": {\"path\": {\"type\": \"string\"}, \"head\": {\"type\":\"number\", \"minimum\": 1}},\r\n \"required\": [ \"path\" ]\n}\n")
		}},
		{"escape spelling", func(d *pin.Definition) {
			d.InputSchema = raw(`{"type":"\u006fbject","properties":{"path":{"type":"string"},"head":{"type":"number","minimum":1}},"required":["pa\u0074h"]}`)
		}},
		{"annotations key order", func(d *pin.Definition) { d.Annotations = raw(`{"title":"Read file","readOnlyHint":true}`) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := base()
			tt.mut(&d)
			if got, want := pin.Fingerprint(d), pin.Fingerprint(base()); got != want {
				t.Errorf("Fingerprint changed: %s, want %s", got, want)
			}
		})
	}
	// Absent, empty, blank and JSON null are the same: no schema.
	var fps []string
	for _, s := range []json.RawMessage{nil, {}, raw("  \n"), raw("null"), raw(" null ")} {
		d := base()
		d.OutputSchema = s
		fps = append(fps, pin.Fingerprint(d))
	}
	for i, fp := range fps {
		if fp != fps[0] {
			t.Errorf("output schema variant %d fingerprints %s, want %s", i, fp, fps[0])
		}
	}
}

func TestFingerprintSensitive(t *testing.T) {
	seen := map[string]string{pin.Fingerprint(base()): "base"}
	for _, tt := range []struct {
		name string
		mut  func(*pin.Definition)
	}{
		{"name", func(d *pin.Definition) { d.Name = "read_files" }},
		{"name case", func(d *pin.Definition) { d.Name = "Read_file" }},
		{"title", func(d *pin.Definition) { d.Title = "Read a file" }},
		{"title removed", func(d *pin.Definition) { d.Title = "" }},
		{"description", func(d *pin.Definition) { d.Description += " " }},
		{"description zero-width", func(d *pin.Definition) { d.Description += "\u200b" }},
		{"text moved from title to description", func(d *pin.Definition) { d.Description, d.Title = d.Title, d.Description }},
		{"input schema property", func(d *pin.Definition) {
			d.InputSchema = raw(`{"type":"object","properties":{"path":{"type":"string","description":"x"},"head":{"type":"number","minimum":1}},"required":["path"]}`)
		}},
		{"input schema array order", func(d *pin.Definition) {
			d.InputSchema = raw(`{"type":"object","properties":{"path":{"type":"string"},"head":{"type":"number","minimum":1}},"required":["path","head"]}`)
		}},
		// Numbers are kept as written: 1 and 1.0 validate alike but are a
		// different declaration, so they are a change an admin accepts once.
		{"number spelling 1.0", func(d *pin.Definition) {
			d.InputSchema = raw(`{"type":"object","properties":{"path":{"type":"string"},"head":{"type":"number","minimum":1.0}},"required":["path"]}`)
		}},
		{"number spelling 1e0", func(d *pin.Definition) {
			d.InputSchema = raw(`{"type":"object","properties":{"path":{"type":"string"},"head":{"type":"number","minimum":1e0}},"required":["path"]}`)
		}},
		{"number type", func(d *pin.Definition) {
			d.InputSchema = raw(`{"type":"object","properties":{"path":{"type":"string"},"head":{"type":"number","minimum":"1"}},"required":["path"]}`)
		}},
		{"input schema removed", func(d *pin.Definition) { d.InputSchema = nil }},
		{"output schema", func(d *pin.Definition) { d.OutputSchema = raw(`{"type":"object"}`) }},
		{"output schema removed", func(d *pin.Definition) { d.OutputSchema = nil }},
		{"schemas swapped", func(d *pin.Definition) { d.InputSchema, d.OutputSchema = d.OutputSchema, d.InputSchema }},
		{"annotation hint", func(d *pin.Definition) { d.Annotations = raw(`{"readOnlyHint":false,"title":"Read file"}`) }},
		{"annotations removed", func(d *pin.Definition) { d.Annotations = nil }},
		{"malformed schema", func(d *pin.Definition) { d.InputSchema = raw(`{"type":"object",}`) }},
		{"other malformed schema", func(d *pin.Definition) { d.InputSchema = raw(`{"type":"object",,}`) }},
		{"malformed schema as its text", func(d *pin.Definition) { d.InputSchema = raw(`"{\"type\":\"object\",}"`) }},
		{"duplicate key, last wins", func(d *pin.Definition) { d.InputSchema = raw(`{"type":"string","type":"object"}`) }},
		{"duplicate key, first wins", func(d *pin.Definition) { d.InputSchema = raw(`{"type":"object","type":"string"}`) }},
		{"lone high surrogate", func(d *pin.Definition) { d.Description = ""; d.InputSchema = raw(`{"description":"\ud800"}`) }},
		{"lone low surrogate", func(d *pin.Definition) { d.Description = ""; d.InputSchema = raw(`{"description":"\udc00"}`) }},
		{"invalid UTF-8 description", func(d *pin.Definition) { d.Description = "a\xff" }},
		{"other invalid UTF-8 description", func(d *pin.Definition) { d.Description = "a\xfe" }},
	} {
		d := base()
		tt.mut(&d)
		fp := pin.Fingerprint(d)
		if prev, dup := seen[fp]; dup {
			t.Errorf("%s: same fingerprint as %s", tt.name, prev)
		}
		seen[fp] = tt.name
	}
}

// TestFingerprintEscapesOnlyWhatJSONNeeds: HTML characters are not
// escaped (unlike encoding/json), so "<" and "\u003c" are one declaration.
func TestFingerprintEscapesOnlyWhatJSONNeeds(t *testing.T) {
	a, b := base(), base()
	a.InputSchema = raw(`{"description":"<IMPORTANT> & more"}`)
	b.InputSchema = raw(`{"description":"\u003cIMPORTANT\u003e \u0026 more"}`)
	if pin.Fingerprint(a) != pin.Fingerprint(b) {
		t.Error("escaped and unescaped HTML characters fingerprint differently")
	}
	if !strings.HasPrefix(pin.Fingerprint(a), "sha256:") {
		t.Error("bad form")
	}
}
