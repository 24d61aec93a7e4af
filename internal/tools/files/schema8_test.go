package files_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/portcullis/portcullis/internal/tools/files"
)

// TestSchemasRejectBadArguments validates arguments against each tool's
// published InputSchema exactly as the gateway does (Resolve once, then
// Validate the decoded JSON) before any tool code runs: bad arguments are
// refused with a message naming the property and the rule.
func TestSchemasRejectBadArguments(t *testing.T) {
	s := openWS(t, files.Config{})
	schemas := map[string]*jsonschema.Resolved{}
	for name, tl := range s.tools {
		rs, err := tl.Definition().InputSchema.Resolve(nil)
		if err != nil {
			t.Fatalf("%s: resolve schema: %v", name, err)
		}
		schemas[name] = rs
	}
	long := strings.Repeat("a", 4097)
	tests := []struct {
		tool string
		args string
		want []string // substrings of the validation error; none means valid
	}{
		// Valid calls pass.
		{files.ToolSearchFiles, `{"path":".","pattern":"**/*.go"}`, nil},
		{files.ToolSearchFiles, `{"path":".","pattern":"*","content":"x"}`, nil},
		{files.ToolEditFile, `{"path":"f","old_text":"a","new_text":""}`, nil},
		{files.ToolMoveFile, `{"source":"a","destination":"b"}`, nil},
		{files.ToolDeleteFile, `{"path":"a"}`, nil},

		// Missing required properties are named.
		{files.ToolSearchFiles, `{"path":"."}`, []string{"required", `"pattern"`}},
		{files.ToolSearchFiles, `{}`, []string{"required", `"path"`, `"pattern"`}},
		{files.ToolEditFile, `{"path":"f","old_text":"a"}`, []string{"required", `"new_text"`}},
		{files.ToolEditFile, `{"path":"f","new_text":"a"}`, []string{"required", `"old_text"`}},
		{files.ToolMoveFile, `{"source":"a"}`, []string{"required", `"destination"`}},
		{files.ToolMoveFile, `{"destination":"a"}`, []string{"required", `"source"`}},
		{files.ToolDeleteFile, `{}`, []string{"required", `"path"`}},

		// additionalProperties: false, on every tool.
		{files.ToolSearchFiles, `{"path":".","pattern":"*","regex":true}`, []string{"additional properties", `"regex"`}},
		{files.ToolEditFile, `{"path":"f","old_text":"a","new_text":"b","replace_all":true}`, []string{"additional properties", `"replace_all"`}},
		{files.ToolMoveFile, `{"source":"a","destination":"b","overwrite":true}`, []string{"additional properties", `"overwrite"`}},
		{files.ToolMoveFile, `{"path":"a","destination":"b"}`, []string{"additional properties", `"path"`}},
		{files.ToolDeleteFile, `{"path":"a","recursive":true}`, []string{"additional properties", `"recursive"`}},
		{files.ToolReadFile, `{"path":"a","follow":true}`, []string{"additional properties", `"follow"`}},

		// Types.
		{files.ToolSearchFiles, `{"path":".","pattern":7}`, []string{"/properties/pattern", "type"}},
		{files.ToolSearchFiles, `{"path":".","pattern":"*","content":["x"]}`, []string{"/properties/content", "type"}},
		{files.ToolEditFile, `{"path":"f","old_text":"a","new_text":null}`, []string{"/properties/new_text", "type"}},
		{files.ToolMoveFile, `{"source":["a"],"destination":"b"}`, []string{"/properties/source", "type"}},
		{files.ToolDeleteFile, `{"path":{"a":1}}`, []string{"/properties/path", "type"}},
		{files.ToolDeleteFile, `["a"]`, []string{"type"}},

		// Lengths.
		{files.ToolSearchFiles, `{"path":".","pattern":""}`, []string{"/properties/pattern", "minLength"}},
		{files.ToolSearchFiles, `{"path":".","pattern":"*","content":""}`, []string{"/properties/content", "minLength"}},
		{files.ToolSearchFiles, `{"path":".","pattern":"` + strings.Repeat("*", 1025) + `"}`, []string{"/properties/pattern", "maxLength"}},
		{files.ToolEditFile, `{"path":"f","old_text":"","new_text":"x"}`, []string{"/properties/old_text", "minLength"}},
		{files.ToolEditFile, `{"path":"","old_text":"a","new_text":"x"}`, []string{"/properties/path", "minLength"}},
		{files.ToolMoveFile, `{"source":"","destination":"b"}`, []string{"/properties/source", "minLength"}},
		{files.ToolMoveFile, `{"source":"a","destination":"` + long + `"}`, []string{"/properties/destination", "maxLength"}},
		{files.ToolDeleteFile, `{"path":"` + long + `"}`, []string{"/properties/path", "maxLength"}},
	}
	for _, tt := range tests {
		t.Run(tt.tool+"/"+tt.args[:min(len(tt.args), 60)], func(t *testing.T) {
			var v any
			if err := json.Unmarshal([]byte(tt.args), &v); err != nil {
				t.Fatal(err)
			}
			err := schemas[tt.tool].Validate(v)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("valid arguments refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("invalid arguments accepted by the schema")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
