package python

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeVerdict feeds arbitrary checker output to the verdict parser:
// it never panics, and what it accepts is one well-formed verdict.
func FuzzDecodeVerdict(f *testing.F) {
	for _, s := range []string{
		`{"status":"ok","findings":[],"total":0}` + "\n",
		`{"status":"ok","findings":[{"rule":"import","level":"normal","line":1,"what":"import of socket"}],"total":3}`,
		`{"status":"syntax_error","line":2,"message":"invalid syntax"}`,
		`{"status":"too_complex","message":"RecursionError"}`,
		`{"status":"ok"} {"status":"ok"}`,
		`{"status":"ok","findings":null,"total":-1}`,
		`{"status":"syntax_error","line":-1}`,
		`{"status":"syntax_error","message":"\ud800` + strings.Repeat("é", 300) + `"}`,
		``, `null`, `[]`, `{"status":"ok","Status":"pass"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeVerdict(b)
		if err != nil {
			if v != nil {
				t.Fatalf("verdict %+v with error %v", v, err)
			}
			return
		}
		switch v.Status {
		case VerdictParsed:
			if v.Total < len(v.Findings) {
				t.Errorf("total %d < %d findings", v.Total, len(v.Findings))
			}
			for _, fd := range v.Findings {
				if fd.Rule == "" || fd.Line < 0 || (fd.Level != CodePolicyNormal && fd.Level != CodePolicyStrict) {
					t.Errorf("malformed finding %+v accepted", fd)
				}
			}
		case VerdictSyntaxError, VerdictTooComplex:
			if len(v.Findings) != 0 || v.Total != 0 {
				t.Errorf("findings with status %s", v.Status)
			}
		default:
			t.Errorf("unknown status %q accepted", v.Status)
		}
		if v.Line < 0 || len(v.Message) > maxVerdictText+len("…") || !utf8.ValidString(v.Message) {
			t.Errorf("line %d message %q", v.Line, v.Message)
		}
	})
}

// TestPolicyEnforces pins which rule levels each policy refuses.
func TestPolicyEnforces(t *testing.T) {
	for _, tc := range []struct {
		p              CodePolicy
		normal, strict bool
	}{
		{CodePolicyStrict, true, true},
		{CodePolicyNormal, true, false},
		{CodePolicyLegacy, false, false},
		{"", false, false},
	} {
		if got := tc.p.enforces(CodePolicyNormal); got != tc.normal {
			t.Errorf("%q enforces normal rules: %v, want %v", tc.p, got, tc.normal)
		}
		if got := tc.p.enforces(CodePolicyStrict); got != tc.strict {
			t.Errorf("%q enforces strict rules: %v, want %v", tc.p, got, tc.strict)
		}
		if tc.p.enforces(CodePolicyLegacy) {
			t.Errorf("%q enforces a finding of level legacy", tc.p)
		}
	}
}
