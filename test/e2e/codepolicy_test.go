package e2e

import (
	"strings"
	"testing"
)

// TestCodePolicyThroughGateway: the default development policy (normal)
// refuses a subprocess import before the code runs, with a message naming
// the rule; ordinary code runs. (The sandbox, not this check, is the
// boundary: TestSandboxAbuseThroughGateway runs its payloads at legacy.)
func TestCodePolicyThroughGateway(t *testing.T) {
	g := startGateway(t)
	cs := g.connect(g.createKey("coder", "developer"), "2026-07-28")
	if !containsName(toolNames(t, cs), "execute_python") {
		t.Skip("execute_python not offered (no sandbox or python3 on this machine)")
	}
	res := call(t, cs, "execute_python", map[string]any{"code": "import subprocess\nsubprocess.run(['true'])\n"})
	if !res.IsError || code(res) != "INVALID_ARGUMENTS" || !strings.Contains(text(res), "subprocess") {
		t.Errorf("subprocess import: error %v code %q text %q", res.IsError, code(res), text(res))
	}
	res = call(t, cs, "execute_python", map[string]any{"code": "import json\nprint(json.dumps({'ok': 1}))\n"})
	if res.IsError || !strings.Contains(text(res), `{"ok": 1}`) {
		t.Errorf("plain code: error %v code %q text %q", res.IsError, code(res), text(res))
	}
}

func containsName(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestAllToolsListedForAdmin: every built-in tool of DESIGN §2 is offered
// to an admin, each with an object input schema that forbids unknown
// properties.
func TestAllToolsListedForAdmin(t *testing.T) {
	g := startGateway(t)
	cs := g.connect(g.adminKey, "2026-07-28")
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string]any{}
	for _, tl := range res.Tools {
		s, _ := tl.InputSchema.(map[string]any)
		byName[tl.Name] = s
	}
	want := []string{"list_directory", "read_file", "search_files", "file_info", "write_file", "edit_file", "move_file",
		"delete_file", "execute_python", "run_command", "http_fetch", "git_status", "git_diff", "git_log", "git_commit",
		"sql_query"}
	for _, name := range want {
		s, ok := byName[name]
		if !ok {
			t.Errorf("%s missing from the admin's tools/list", name)
			continue
		}
		if s["type"] != "object" || s["additionalProperties"] != false {
			t.Errorf("%s input schema %v: want type object with additionalProperties false", name, s)
		}
	}
}
