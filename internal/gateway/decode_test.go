package gateway

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/jsonschema-go/jsonschema"
)

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    any
		wantErr string // substring; "" means success
	}{
		{"object", `{"a":1,"b":[true,null,"x"]}`, map[string]any{"a": 1.0, "b": []any{true, nil, "x"}}, ""},
		{"whitespace around", " \n\t{} \r\n", map[string]any{}, ""},
		{"scalar", `"x"`, "x", ""},
		{"same key in sibling objects", `[{"a":1},{"a":2}]`, []any{map[string]any{"a": 1.0}, map[string]any{"a": 2.0}}, ""},
		{"same key at different depths", `{"a":{"a":{"a":1}}}`, map[string]any{"a": map[string]any{"a": map[string]any{"a": 1.0}}}, ""},
		{"key equal to a value", `{"a":"b","b":"a"}`, map[string]any{"a": "b", "b": "a"}, ""},
		{"empty key", `{"":1}`, map[string]any{"": 1.0}, ""},
		{"depth 64", strings.Repeat("[", 64) + strings.Repeat("]", 64), nest(64), ""},
		{"empty", ``, nil, "malformed"},
		{"only whitespace", "  \n", nil, "malformed"},
		{"duplicate key", `{"a":1,"a":2}`, nil, "duplicate key"},
		{"duplicate after nested value", `{"a":{"b":1},"a":2}`, nil, "duplicate key"},
		{"duplicate after array value", `{"a":[1,{"x":1}],"b":2,"a":3}`, nil, "duplicate key"},
		{"duplicate empty key", `{"":1,"":2}`, nil, "duplicate key"},
		{"duplicate via unicode escape", `{"a":1,"\u0061":2}`, nil, "duplicate key"},
		{"duplicate via escaped slash", `{"a/b":1,"a\/b":2}`, nil, "duplicate key"},
		{"duplicate nested in array", `[1,{"k":1,"k":1}]`, nil, "duplicate key"},
		{"duplicate deep", `{"a":[{"b":{"c":1,"c":1}}]}`, nil, "duplicate key"},
		{"trailing object", `{} {}`, nil, "trailing data"},
		{"trailing scalar", `1 2`, nil, "trailing data"},
		{"trailing without space", `{}{}`, nil, "trailing data"},
		{"trailing garbage", `{}x`, nil, "malformed"},
		{"trailing close", `{}}`, nil, "malformed"},
		{"truncated", `{"a":`, nil, "malformed"},
		{"missing comma", `[1 2]`, nil, "malformed"},
		{"single quotes", `{'a':1}`, nil, "malformed"},
		{"comment", `{} // x`, nil, "malformed"},
		{"number overflow", `1e400`, nil, "malformed"},
		{"depth 65 arrays", strings.Repeat("[", 65) + strings.Repeat("]", 65), nil, "nesting"},
		{"depth 65 objects", strings.Repeat(`{"a":`, 64) + "{}" + strings.Repeat("}", 64), nil, "nesting"},
		{"depth 65 unterminated", strings.Repeat("[", 65), nil, "nesting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeStrict([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("decodeStrict(%.40q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeStrict(%.40q) error: %v", tt.in, err)
			}
			// reflect.DeepEqual first: cmp.Diff is exponential on deep nesting.
			if !reflect.DeepEqual(tt.want, got) {
				t.Errorf("decodeStrict(%.40q) mismatch (-want +got):\n%s", tt.in, cmp.Diff(tt.want, got))
			}
		})
	}
}

func nest(n int) any {
	var v any = []any{}
	for range n - 1 {
		v = []any{v}
	}
	return v
}

// refScan is an independent reference check over valid JSON text: it
// reports whether any object holds two equal keys (after unescaping) and
// the maximum nesting depth. It must only be given text json.Valid accepts.
type refScan struct {
	b   []byte
	i   int
	dup bool
	max int
}

func (s *refScan) ws() {
	for s.i < len(s.b) && strings.IndexByte(" \t\r\n", s.b[s.i]) >= 0 {
		s.i++
	}
}

func (s *refScan) str() string {
	start := s.i
	s.i++ // opening quote
	for s.b[s.i] != '"' {
		if s.b[s.i] == '\\' {
			s.i++
		}
		s.i++
	}
	s.i++
	var out string
	if err := json.Unmarshal(s.b[start:s.i], &out); err != nil {
		panic("refScan: " + err.Error())
	}
	return out
}

func (s *refScan) value(depth int) {
	s.ws()
	switch s.b[s.i] {
	case '{', '[':
		open := s.b[s.i]
		depth++
		s.max = max(s.max, depth)
		s.i++
		keys := map[string]bool{}
		for {
			s.ws()
			if c := s.b[s.i]; c == '}' || c == ']' {
				s.i++
				return
			}
			if c := s.b[s.i]; c == ',' {
				s.i++
				s.ws()
			}
			if open == '{' {
				k := s.str()
				if keys[k] {
					s.dup = true
				}
				keys[k] = true
				s.ws()
				s.i++ // ':'
			}
			s.value(depth)
		}
	case '"':
		s.str()
	default:
		for s.i < len(s.b) && strings.IndexByte(" \t\r\n,]}", s.b[s.i]) < 0 {
			s.i++
		}
	}
}

func refCheck(b []byte) (dup bool, depth int) {
	s := &refScan{b: b}
	s.value(0)
	return s.dup, s.max
}

func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `null`, `1`, `"x"`, ``, ` `, `{} {}`, `{}x`, `{"a":1,"a":2}`,
		`{"a":1,"\u0061":2}`, `{"a":{"b":1,"b":2}}`, `[{"k":1},{"k":1}]`, `{"a":[1,{"x":1}],"b":2,"a":3}`,
		`{"path":"docs/a.txt","password":"hunter2","n":3}`, `{"\ud800":1,"\udfff":2}`, "{\"\xff\":1,\"\xfe\":2}",
		`[[[[[[[[[[]]]]]]]]]]`, strings.Repeat("[", 65) + strings.Repeat("]", 65), strings.Repeat(`{"a":`, 64) + "1" + strings.Repeat("}", 64),
		`1e400`, `-0`, `{"a":"\u0000"}`, `{"a" : 1 , "b" : [ ] }`, `[1,]`, `{"a":1,}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := decodeStrict(raw)
		if err != nil {
			if v != nil {
				t.Errorf("decodeStrict returned value %v with error %v", v, err)
			}
			// A refusal is justified: stdlib refuses it too, or it has a
			// duplicate key, excessive depth or more than one value.
			if !json.Valid(raw) {
				return
			}
			var any1 any
			if json.Unmarshal(raw, &any1) != nil {
				return
			}
			if dup, depth := refCheck(raw); !dup && depth <= maxDepth {
				t.Errorf("decodeStrict(%q) refused valid JSON without duplicates (depth %d): %v", raw, depth, err)
			}
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("decodeStrict(%q) accepted invalid JSON", raw)
		}
		dup, depth := refCheck(raw)
		if dup {
			t.Errorf("decodeStrict(%q) accepted a duplicate key", raw)
		}
		if depth > maxDepth {
			t.Errorf("decodeStrict(%q) accepted depth %d > %d", raw, depth, maxDepth)
		}
		var want any
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("decodeStrict(%q) accepted what json.Unmarshal refuses: %v", raw, err)
		}
		if !reflect.DeepEqual(want, v) {
			t.Errorf("decodeStrict(%q) = %v; json.Unmarshal = %v", raw, v, want)
		}
	})
}

func mustResolve(t testing.TB, schema string) *jsonschema.Resolved {
	t.Helper()
	var s jsonschema.Schema
	if err := json.Unmarshal([]byte(schema), &s); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// constrained has a constraint of every kind whose message quotes a value.
const constrained = `{
	"type": "object",
	"properties": {
		"s": {"type": "string", "minLength": 3, "maxLength": 10, "pattern": "^[a-z]+$"},
		"e": {"enum": ["red", "green"]},
		"c": {"const": "fixed"},
		"n": {"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 2},
		"x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
		"any": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
		"one": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
		"not": {"not": {"type": "string"}},
		"arr": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2, "uniqueItems": true},
		"has": {"type": "array", "contains": {"type": "integer"}},
		"obj": {"type": "object", "properties": {"deep": {"type": "integer"}}, "required": ["deep"]}
	},
	"required": ["s"],
	"additionalProperties": false
}`

func TestSchemaErrorHidesValues(t *testing.T) {
	rs := mustResolve(t, constrained)
	const secret = "SECRETVALUE"
	tests := []struct {
		args string
		want string
	}{
		{`{"s":"SECRETVALUE"}`, "/properties/s: maxLength"},
		{`{"s":"SE"}`, "/properties/s: minLength"},
		{`{"s":"SECRETV"}`, "/properties/s: pattern"},
		{`{"s":{"password":"SECRETVALUE"}}`, "/properties/s: type"},
		{`{"s":"abc","e":"SECRETVALUE"}`, "/properties/e: enum"},
		{`{"s":"abc","c":"SECRETVALUE"}`, "/properties/c: const"},
		{`{"s":"abc","n":"SECRETVALUE"}`, "/properties/n: type"},
		{`{"s":"abc","n":12}`, "/properties/n: maximum"},
		{`{"s":"abc","n":-2}`, "/properties/n: minimum"},
		{`{"s":"abc","n":3}`, "/properties/n: multipleOf"},
		{`{"s":"abc","x":0}`, "/properties/x: exclusiveMinimum"},
		{`{"s":"abc","any":"SECRETVALUE"}`, "/properties/any: anyOf"},
		{`{"s":"abc","one":"SECRETVALUE"}`, "/properties/one: oneOf"},
		{`{"s":"abc","not":"SECRETVALUE"}`, "/properties/not: not"},
		{`{"s":"abc","arr":["SECRETVALUE"]}`, "/properties/arr/items: type"},
		{`{"s":"abc","has":["SECRETVALUE"]}`, "/properties/has: contains"},
		{`{"s":"abc","obj":{"deep":"SECRETVALUE"}}`, "/properties/obj/properties/deep: type"},
		// Messages without values are kept whole.
		{`{}`, `required: missing properties: ["s"]`},
		{`{"s":"abc","obj":{}}`, `/properties/obj: required: missing properties: ["deep"]`},
		{`{"s":"abc","zzz":1}`, `unexpected additional properties ["zzz"]`},
		{`{"s":"abc","arr":[]}`, `/properties/arr: minItems: array length 0 is less than 1`},
		{`{"s":"abc","arr":[1,1]}`, `/properties/arr: uniqueItems: array items 1 and 0 are equal`},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			v, err := decodeStrict([]byte(tt.args))
			if err != nil {
				t.Fatal(err)
			}
			verr := rs.Validate(v)
			if verr == nil {
				t.Fatalf("Validate(%s) = nil; bad fixture", tt.args)
			}
			got := schemaError(verr)
			if strings.Contains(got, secret) {
				t.Errorf("schemaError(%q) = %q holds the value", verr, got)
			}
			if got != tt.want {
				t.Errorf("schemaError(%q) = %q; want %q", verr, got, tt.want)
			}
		})
	}
}

// TestSchemaErrorShapes covers messages the validator does not produce
// today: anything unrecognised is reduced to "schema violation".
func TestSchemaErrorShapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{`validating root: type: "v" has type "string", want "integer"`, "type"},
		{`validating /properties/a: weird message "SECRET" here`, "/properties/a: schema violation"},
		{`validating /properties/a: "SECRET": bad`, "/properties/a: schema violation"},
		{`validating /properties/a: averyveryveryveryverylongkeywordname: "SECRET"`, "/properties/a: schema violation"},
		{`validating root`, "schema violation"},
		{`SECRET value 42`, "schema violation"},
		{`validating root: required: missing properties: ["a"]`, `required: missing properties: ["a"]`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := schemaError(errors.New(tt.in)); got != tt.want {
				t.Errorf("schemaError(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzSchemaError: whatever string a client puts in a constrained
// argument, the sanitized validation message does not contain it.
func FuzzSchemaError(f *testing.F) {
	for _, s := range []string{"SECRETVALUE", "hunter2", "ab", "abcdefghijklmnop", "AKIAIOSFODNN7EXAMPLE", `"quoted"`, "a: b", "validating x: y"} {
		for _, field := range []string{"s", "e", "c", "n", "any", "one", "not", "arr", "obj"} {
			f.Add(field, s)
		}
	}
	rs := mustResolve(f, constrained)
	f.Fuzz(func(t *testing.T, field, value string) {
		if len(value) < 6 || strings.Contains(constrained, value) || strings.Contains(strconv.Quote(field), value) {
			return // short values occur in any message by chance; keys are not redacted
		}
		var v any
		switch field {
		case "arr":
			v = map[string]any{"s": "abc", "arr": []any{value}}
		case "obj":
			v = map[string]any{"s": "abc", "obj": map[string]any{"deep": value}}
		default:
			v = map[string]any{"s": "abc", field: value}
		}
		err := rs.Validate(v)
		if err == nil {
			return
		}
		msg := schemaError(err)
		if strings.Contains(msg, value) {
			t.Errorf("schemaError(%q) = %q holds the value %q", err, msg, value)
		}
	})
}
