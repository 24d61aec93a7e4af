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
