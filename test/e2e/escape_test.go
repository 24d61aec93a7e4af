package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestSandboxAbuseThroughGateway sends hostile code through execute_python
// as a developer would and checks, after each, the specific outcome the
// client sees and that the gateway keeps answering (readiness and an
// ordinary tool call).
func TestSandboxAbuseThroughGateway(t *testing.T) {
	// The sandbox is the subject: the code policy (defence in depth, which
	// would refuse most of these payloads before they run) only logs.
	g := startGateway(t, "PORTCULLIS_PYTHON_CODE_POLICY=legacy")
	if err := os.WriteFile(filepath.Join(g.workspace, "ok.txt"), []byte("still here"), 0o644); err != nil {
		t.Fatal(err)
	}
	cs := g.connect(g.createKey("eve", "developer"), "")
	stillServing := func(t *testing.T) {
		t.Helper()
		resp, err := http.Get(g.base + "/readyz")
		if err != nil {
			t.Fatalf("readyz: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("readyz = %d after the attack", resp.StatusCode)
		}
		if res := call(t, cs, "read_file", map[string]any{"path": "ok.txt"}); res.IsError || text(res) != "still here" {
			t.Fatalf("read_file after the attack: %q", text(res))
		}
	}
	cases := []struct {
		name     string
		code     string
		timeout  int
		wantCode string // structuredContent.code; "" = success
		wantOut  string // substring of the text
	}{
		{"fork bomb (no new processes at maximum)", "import os\nwhile True:\n    os.fork()", 0, "NON_ZERO_EXIT", "Operation not permitted"},
		{"subprocess", "import subprocess\nsubprocess.run(['/bin/sh','-c','id'])", 0, "NON_ZERO_EXIT", "Operation not permitted"},
		{"memory bomb", "x = []\nwhile True:\n    x.append(bytearray(16 << 20))", 0, "SANDBOX_VIOLATION", ""},
		{"infinite loop", "while True:\n    pass", 2, "TIMEOUT", ""},
		{"sleep past deadline", "import time\ntime.sleep(60)", 1, "TIMEOUT", ""},
		{"output flood", "import sys\nwhile True:\n    sys.stdout.write('A' * 65536)", 2, "TIMEOUT", ""},
		{"host secrets", "print(open('/etc/shadow').read())", 0, "NON_ZERO_EXIT", "No such file"},
		{"gateway data dir", "import os\nprint(os.listdir('" + g.dataDir + "'))", 0, "NON_ZERO_EXIT", "No such file"},
		{"network to the gateway", "import socket\nsocket.create_connection(('127.0.0.1', " + strings.TrimPrefix(g.base[strings.LastIndex(g.base, ":"):], ":") + "))", 0, "NON_ZERO_EXIT", "Permission denied"},
		{"unshare via ctypes", "import ctypes\nctypes.CDLL(None).unshare(0x10000000)", 0, "SANDBOX_VIOLATION", ""},
		{"ptrace via ctypes", "import ctypes\nctypes.CDLL(None).ptrace(16, 1, 0, 0)", 0, "SANDBOX_VIOLATION", ""},
		{"sysrq trigger", "open('/proc/sysrq-trigger', 'w').write('b')", 0, "NON_ZERO_EXIT", "No such file"},
		{"file size limit", "f = open('/tmp/big', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))", 0, "NON_ZERO_EXIT", "File too large"},
		{"disk fill", "i = 0\nwhile True:\n    i += 1\n    open('/tmp/fill%d' % i, 'wb').write(b'x' * (16 << 20))", 0, "NON_ZERO_EXIT", "No space left"},
		{"benign code still runs", "print(sum(range(10)))", 0, "", "45"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := map[string]any{"code": tc.code}
			if tc.timeout > 0 {
				args["timeout_s"] = tc.timeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "execute_python", Arguments: args})
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if got := code(res); got != tc.wantCode || res.IsError != (tc.wantCode != "") {
				t.Errorf("code %q isError %v, want %q; text %.300q", got, res.IsError, tc.wantCode, text(res))
			}
			if tc.wantOut != "" && !strings.Contains(text(res), tc.wantOut) {
				t.Errorf("text %.300q lacks %q", text(res), tc.wantOut)
			}
			stillServing(t)
		})
	}
}
