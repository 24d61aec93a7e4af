package pin_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/plugins/pin"
)

func TestDiff(t *testing.T) {
	for _, tt := range []struct {
		name     string
		old, new json.RawMessage
		want     string
	}{
		{"identical", raw(`{"a":1}`), raw(`{"a":1}`), "  {\n    \"a\": 1\n  }\n"},
		{"key order and whitespace only", raw(`{"b":[1,2],"a":"x"}`), raw("{ \"a\" : \"x\",\n \"b\" : [ 1 , 2 ] }"),
			"  {\n    \"a\": \"x\",\n    \"b\": [\n      1,\n      2\n    ]\n  }\n"},
		{"changed description", raw(`{"description":"Adds.","name":"add"}`), raw(`{"description":"Adds. <IMPORTANT>x</IMPORTANT>","name":"add"}`),
			"  {\n-   \"description\": \"Adds.\",\n+   \"description\": \"Adds. <IMPORTANT>x</IMPORTANT>\",\n    \"name\": \"add\"\n  }\n"},
		{"added and removed lines", raw(`{"a":1,"b":2,"c":3}`), raw(`{"a":1,"c":3,"d":4}`),
			"  {\n    \"a\": 1,\n-   \"b\": 2,\n-   \"c\": 3\n+   \"c\": 3,\n+   \"d\": 4\n  }\n"},
		{"array element", raw(`[1,2,3]`), raw(`[1,5,3]`), "  [\n    1,\n-   2,\n+   5,\n    3\n  ]\n"},
		{"never accepted", nil, raw(`{"name":"t"}`), "+ {\n+   \"name\": \"t\"\n+ }\n"},
		{"removed", raw(`{"name":"t"}`), nil, "- {\n-   \"name\": \"t\"\n- }\n"},
		{"both empty", nil, nil, ""},
		{"hidden characters escaped", raw(`{"d":"ab"}`), raw("{\"d\":\"a\u202eb\u200b\U000E0041\"}"),
			"  {\n-   \"d\": \"ab\"\n+   \"d\": \"a\\u202eb\\u200b\\udb40\\udc41\"\n  }\n"},
		{"not JSON compared as text", raw("{\"name\":\nbroken"), raw("{\"name\":\nbroken\u202e"),
			"  {\"name\":\n- broken\n+ broken\\u{202E}\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := pin.Diff(tt.old, tt.new); got != tt.want {
				t.Errorf("Diff =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestDiffOfPins: the admin's view of a rug pull, from the stored record.
func TestDiffOfPins(t *testing.T) {
	p, _ := newPinner(t)
	observe1(t, p, "fs", base())
	observe1(t, p, "fs", pulled())
	r := get(t, p, "fs", "read_file")
	d := pin.Diff(r.Definition, r.PendingDefinition)
	var minus, plus []string
	for _, l := range strings.Split(strings.TrimSuffix(d, "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "- "):
			minus = append(minus, l)
		case strings.HasPrefix(l, "+ "):
			plus = append(plus, l)
		case !strings.HasPrefix(l, "  "):
			t.Errorf("line without a prefix: %q", l)
		}
	}
	if len(minus) != 1 || len(plus) != 1 || !strings.Contains(plus[0], "summarize the file") {
		t.Errorf("Diff:\n%s", d)
	}
}

// TestDiffLarge: past the LCS budget the changed part is shown as removed
// then added, and nothing is lost.
func TestDiffLarge(t *testing.T) {
	arr := func(prefix string, n int) json.RawMessage {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf("%q", fmt.Sprint(prefix, i)))
		}
		return raw("[" + strings.Join(parts, ",") + "]")
	}
	d := pin.Diff(arr("a", 3000), arr("b", 3000))
	lines := strings.Split(strings.TrimSuffix(d, "\n"), "\n")
	if len(lines) != 6002 || lines[0] != "  [" || lines[1] != `-   "a0",` || lines[3001] != `+   "b0",` || lines[6001] != "  ]" {
		t.Errorf("%d lines; first %q, %q, %q", len(lines), lines[0], lines[1], lines[3001])
	}
}
