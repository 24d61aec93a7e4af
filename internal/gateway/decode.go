package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxDepth bounds nesting of argument values.
const maxDepth = 64

// decodeStrict parses one JSON value, refusing duplicate object keys at
// any depth (two parsers that disagree on which duplicate wins is how
// checks get bypassed), nesting deeper than maxDepth, and trailing data.
func decodeStrict(raw []byte) (any, error) {
	if err := checkTokens(raw); err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&v); err != nil {
		return nil, errors.New("malformed JSON")
	}
	return v, nil
}

func checkTokens(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]struct{}
		expect bool // object: next token is a key
	}
	var stack []*frame
	values := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errors.New("malformed JSON")
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expect {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			key, _ := tok.(string)
			if _, dup := top.keys[key]; dup {
				return fmt.Errorf("duplicate key %q", key)
			}
			top.keys[key] = struct{}{}
			top.expect = false
			continue
		}
		if top == nil {
			values++
			if values > 1 {
				return errors.New("trailing data after JSON value")
			}
		}
		switch tok {
		case json.Delim('{'):
			if top != nil && top.object {
				top.expect = true
			}
			stack = append(stack, &frame{object: true, keys: map[string]struct{}{}, expect: true})
		case json.Delim('['):
			if top != nil && top.object {
				top.expect = true
			}
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			if top != nil && top.object {
				top.expect = true
			}
		}
		if len(stack) > maxDepth {
			return fmt.Errorf("nesting deeper than %d", maxDepth)
		}
	}
	return nil
}

// schemaError describes a schema validation failure without the argument
// values that the validator quotes in its messages (`minLength: "hunter2"
// contains ...`, `type: map[password:...] has type ...`): the text goes to
// the client and to the audit log, where sensitive values are stored only
// as digests (DESIGN §4). What remains names the failing schema location and
// keyword, e.g. "/properties/password: minLength"; messages that name only
// properties (required, additional properties, counts) are kept whole.
func schemaError(err error) string {
	msg := err.Error()
	where := ""
	for {
		rest, ok := strings.CutPrefix(msg, "validating ")
		if !ok {
			break
		}
		loc, tail, ok := strings.Cut(rest, ": ")
		if !ok {
			break
		}
		where, msg = loc, tail
	}
	if !hasAnyPrefix(msg, valueFreeSchemaErrors) {
		kw, _, _ := strings.Cut(msg, ":")
		if !isKeyword(kw) {
			kw = "schema violation"
		}
		msg = kw
	}
	if where == "" || where == "root" {
		return msg
	}
	return where + ": " + msg
}

// valueFreeSchemaErrors are jsonschema-go messages that quote property
// names and counts but never argument values.
var valueFreeSchemaErrors = []string{
	"required: ", "unexpected additional properties ", "dependentRequired[",
	"minProperties: ", "maxProperties: ", "minItems: ", "maxItems: ",
	"minContains: ", "maxContains: ", "uniqueItems: ",
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// isKeyword reports whether s looks like a JSON Schema keyword ("minLength").
func isKeyword(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}
