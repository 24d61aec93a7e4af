package oidc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

var errNotObject = errors.New("not a JSON object without duplicate member names")

// parseObject decodes a JSON object into its members, keyed by exact
// (case-sensitive) name. It rejects anything but a single object and any
// object, at any depth, with a duplicate member name: RFC 7515 §4 and
// RFC 7519 §4 let a parser either reject duplicates or take the last one,
// and rejecting removes any chance that two parsers read different values.
func parseObject(data []byte) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errNotObject
	}
	if err := checkDuplicates(data); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, errNotObject
	}
	return m, nil
}

// checkDuplicates walks the JSON token stream and fails on a repeated
// member name within one object.
func checkDuplicates(data []byte) error {
	type frame struct {
		keys      map[string]struct{} // nil for arrays
		expectKey bool
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errNotObject
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top != nil && top.keys != nil {
					top.expectKey = true // this container is the member's value
				}
				f := &frame{}
				if d == '{' {
					f.keys, f.expectKey = map[string]struct{}{}, true
				}
				stack = append(stack, f)
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if top == nil || top.keys == nil {
			continue
		}
		if !top.expectKey {
			top.expectKey = true // a scalar member value
			continue
		}
		name, _ := tok.(string)
		if _, dup := top.keys[name]; dup {
			return errNotObject
		}
		top.keys[name] = struct{}{}
		top.expectKey = false
	}
}
