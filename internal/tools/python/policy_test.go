//go:build linux

package python_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/reason"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/tools/python"
)

// withPolicy sets the code policy.
func withPolicy(p python.CodePolicy) func(*python.Config) {
	return func(c *python.Config) { c.CodePolicy = p }
}

// refusal calls the tool with code and requires a tool error with code
// want; it returns the error.
func refusal(t *testing.T, tl *python.Tool, code string, want reason.Code) *tool.Error {
	t.Helper()
	res, err := call(t, tl, map[string]any{"code": code})
	te, ok := tool.AsError(err)
	if !ok || te.Code != want {
		t.Fatalf("Call = %+v, %v; want a %s tool error", res, err, want)
	}
	return te
}

// check runs the checker alone and requires a verdict.
func check(t *testing.T, tl *python.Tool, code string) *python.Verdict {
	t.Helper()
	v, err := tl.Check(t.Context(), code)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return v
}

func hasFinding(v *python.Verdict, rule string, level python.CodePolicy, what string, line int) bool {
	for _, f := range v.Findings {
		if f.Rule == rule && f.Level == level && f.What == what && f.Line == line {
			return true
		}
	}
	return false
}

// TestCodePolicyRules checks each rule: the checker reports it with its
// level and line, strict refuses it naming the rule, normal refuses it
// only when the rule's level is normal (and otherwise runs the code).
func TestCodePolicyRules(t *testing.T) {
	strict := newTool(t, withPolicy(python.CodePolicyStrict))
	normal := newTool(t, withPolicy(python.CodePolicyNormal))
	const n, s = python.CodePolicyNormal, python.CodePolicyStrict
	for _, tc := range []struct {
		name  string
		code  string
		rule  string
		level python.CodePolicy
		what  string
		line  int
	}{
		{"import subprocess", "import subprocess", "import", n, "import of subprocess", 1},
		{"from subprocess", "x = 1\nfrom subprocess import run", "import", n, "import of subprocess", 2},
		{"import socket", "import socket", "import", n, "import of socket", 1},
		{"import _socket", "import _socket", "import", n, "import of _socket", 1},
		{"import ctypes", "import ctypes", "import", n, "import of ctypes", 1},
		{"from ctypes", "from ctypes import CDLL", "import", n, "import of ctypes", 1},
		{"import importlib.util", "import importlib.util", "import", n, "import of importlib", 1},
		{"from importlib", "from importlib import import_module", "import", n, "import of importlib", 1},
		{"import alias", "import json, multiprocessing as mp", "import", n, "import of multiprocessing", 1},
		{"import posix", "import posix", "import", n, "import of posix", 1},
		{"import _posixsubprocess", "import _posixsubprocess", "import", n, "import of _posixsubprocess", 1},
		{"import pty", "import pty", "import", n, "import of pty", 1},
		{"import in a function", "def f():\n    import socket\n", "import", n, "import of socket", 2},
		{"fullwidth letters (NFKC)", "import ｓｏｃｋｅｔ", "import", n, "import of socket", 1},
		{"os.system", "import os\nos.system('true')", "os-process", n, "os.system", 2},
		{"os.popen", "import os\nos.popen('true')", "os-process", n, "os.popen", 2},
		{"os.execv", "import os\nos.execv('/bin/true', ['true'])", "os-process", n, "os.execv", 2},
		{"os.spawnlp", "import os\nos.spawnlp(os.P_WAIT, 'true', 'true')", "os-process", n, "os.spawnlp", 2},
		{"os.fork", "import os\nif os.fork() == 0:\n    os._exit(0)", "os-process", n, "os.fork", 2},
		{"os.kill", "import os\nos.kill(1, 0)", "os-process", n, "os.kill", 2},
		{"os.posix_spawn", "import os\nos.posix_spawn('/bin/true', ['true'], {})", "os-process", n, "os.posix_spawn", 2},
		{"os alias", "import os as o\no.system('true')", "os-process", n, "os.system", 2},
		{"os via os.path", "import os.path\nos.system('true')", "os-process", n, "os.system", 2},
		{"from os import system", "from os import path, system", "os-process", n, "os.system", 1},
		{"from os import exec as", "from os import execve as e", "os-process", n, "os.execve", 1},
		{"from os import star", "from os import *", "os-process", n, "from os import *", 1},
		{"getattr os", "import os\ngetattr(os, 'system')('true')", "os-process", n, "os.system", 2},
		{"__import__", "m = __import__('json')", "dynamic-import", n, "__import__", 1},
		{"import builtins", "import builtins", "import", s, "import of builtins", 1},
		{"import pickle", "import pickle", "import", s, "import of pickle", 1},
		{"import marshal", "import marshal", "import", s, "import of marshal", 1},
		{"import code", "import code", "import", s, "import of code", 1},
		{"import runpy", "import runpy", "import", s, "import of runpy", 1},
		{"import pdb", "import pdb", "import", s, "import of pdb", 1},
		{"eval", "print(eval('1 + 1'))", "dynamic-code", s, "eval", 1},
		{"exec", "exec('x = 1')", "dynamic-code", s, "exec", 1},
		{"compile", "c = compile('1', 'f', 'eval')", "dynamic-code", s, "compile", 1},
		{"eval by reference", "f = eval", "dynamic-code", s, "eval", 1},
		{"breakpoint", "if False:\n    breakpoint()", "dynamic-code", s, "breakpoint", 2},
		{"__class__", "c = ().__class__", "dunder-attribute", s, "attribute __class__", 1},
		{"__subclasses__", "c = object.__subclasses__()", "dunder-attribute", s, "attribute __subclasses__", 1},
		{"__bases__", "c = int.__bases__", "dunder-attribute", s, "attribute __bases__", 1},
		{"__mro__", "c = int.__mro__", "dunder-attribute", s, "attribute __mro__", 1},
		{"__globals__", "def f(): pass\ng = f.__globals__", "dunder-attribute", s, "attribute __globals__", 2},
		{"__builtins__ attribute", "def f(): pass\ng = f.__builtins__", "dunder-attribute", s, "attribute __builtins__", 2},
		{"__dict__", "d = int.__dict__", "dunder-attribute", s, "attribute __dict__", 1},
		{"__code__", "c = (lambda: 0).__code__", "dunder-attribute", s, "attribute __code__", 1},
		{"__getattribute__", "c = object.__getattribute__(1, 'real')", "dunder-attribute", s, "attribute __getattribute__", 1},
		{"dunder on the walk's end", "x = [].__init__.__self__", "dunder-attribute", s, "attribute __self__", 1},
		{"from import dunder", "from sys import __stdout__", "dunder-attribute", s, "attribute __stdout__", 1},
		{"match class attribute", "match 1:\n    case int(__class__=c):\n        pass", "dunder-attribute", s, "attribute __class__", 2},
		{"__builtins__ name", "print(__builtins__)", "dunder-name", s, "name __builtins__", 1},
		{"__loader__ name", "l = __loader__", "dunder-name", s, "name __loader__", 1},
		{"__spec__ name", "l = __spec__", "dunder-name", s, "name __spec__", 1},
		{"getattr dunder", "c = getattr((), '__class__')", "dunder-string", s, "dunder string __class__", 1},
		{"setattr dunder", "class A: pass\nclass B: pass\nsetattr(A(), '__class__', B)", "dunder-string", s, "dunder string __class__", 3},
		{"hasattr dunder", "h = hasattr(1, '__globals__')", "dunder-string", s, "dunder string __globals__", 1},
		{"attrgetter dunder", "import operator\ng = operator.attrgetter('real.__class__')", "dunder-string", s, "dunder string __class__", 2},
		{"subscript dunder", "b = globals()['__builtins__']", "dunder-string", s, "dunder string __builtins__", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := check(t, strict, tc.code)
			if v.Status != python.VerdictParsed || !hasFinding(v, tc.rule, tc.level, tc.what, tc.line) {
				t.Errorf("verdict %+v, want a finding %s/%s %q at line %d", v, tc.rule, tc.level, tc.what, tc.line)
			}
			te := refusal(t, strict, tc.code, reason.InvalidArguments)
			if want := "is not allowed by the strict code policy (line "; !strings.HasPrefix(te.Msg, "invalid arguments: ") ||
				!strings.Contains(te.Msg, want) || !strings.Contains(te.Error(), tc.rule+": "+tc.what) {
				t.Errorf("strict refusal %q (detail %q), want it to name %q", te.Msg, te.Error(), tc.what)
			}
			if !errors.Is(te, python.ErrCodeRefused) {
				t.Errorf("strict refusal %v is not ErrCodeRefused", te)
			}
			res, err := call(t, normal, map[string]any{"code": tc.code})
			te, refused := tool.AsError(err)
			switch {
			case tc.level == n && (!refused || te.Code != reason.InvalidArguments || !strings.Contains(te.Msg, "normal code policy")):
				t.Errorf("normal: %+v, %v; want an INVALID_ARGUMENTS refusal", res, err)
			case tc.level == s && err != nil:
				t.Errorf("normal refused a strict-only rule: %v", err)
			case tc.level == s && !strings.Contains(res.Detail, "code policy normal: not enforced: "+tc.rule+": "+tc.what):
				t.Errorf("normal: detail %q does not record the finding", res.Detail)
			}
		})
	}
}

// TestCodePolicyAllowsOrdinaryCode runs everyday code at strict: math,
// json, print, the __main__ idiom, classes calling super().__init__,
// os.path and look-alikes of refused names (re.compile, platform.system,
// private attributes).
func TestCodePolicyAllowsOrdinaryCode(t *testing.T) {
	tl := newTool(t, withPolicy(python.CodePolicyStrict))
	for _, tc := range []struct{ name, code, want string }{
		{"print", `print("hello")`, "hello\n"},
		{"math", "import math\nprint(math.sqrt(16), math.pi > 3)", "4.0 True\n"},
		{"json", "import json\nprint(json.dumps({'a': [1, 2]}, sort_keys=True))", "{\"a\": [1, 2]}\n"},
		{"main idiom", "def main():\n    print('main')\nif __name__ == \"__main__\":\n    main()", "main\n"},
		{"class", `
class Base:
    def __init__(self, x):
        self.__x = x
    def __repr__(self):
        return "%s(%d)" % (type(self).__name__, self.__x)
class Sub(Base):
    def __init__(self):
        super().__init__(7)
print(repr(Sub()), Sub.__qualname__, Sub.__doc__)
`, "Sub(7) Sub None\n"},
		{"look-alikes", `
import os, platform, re
print(re.compile("a+").match("aa").group(), platform.system(), os.path.join("a", "b"), os.getcwd())
`, "aa Linux a/b /work\n"},
		{"collections and itertools", "import collections, itertools\nprint(collections.Counter('aab')['a'], list(itertools.islice(itertools.count(), 3)))", "2 [0, 1, 2]\n"},
		{"string that merely mentions subprocess", "print('import subprocess; os.system(\"x\")')", "import subprocess; os.system(\"x\")\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v := check(t, tl, tc.code); v.Status != python.VerdictParsed || len(v.Findings) != 0 {
				t.Errorf("verdict %+v, want no findings", v)
			}
			res := mustCall(t, tl, map[string]any{"code": tc.code})
			if res.IsError || res.Text != tc.want || res.Detail != "" {
				t.Errorf("result: error %v code %s text %q detail %q, want %q", res.IsError, res.Code, res.Text, res.Detail, tc.want)
			}
		})
	}
}

// TestCodePolicySyntaxError reports CPython's syntax errors with the
// line before running anything; legacy runs the code and Python reports
// the error itself.
func TestCodePolicySyntaxError(t *testing.T) {
	for _, tc := range []struct{ name, code, msg string }{
		{"unclosed", "x = 1\nprint(", "syntax error at line 2: '(' was never closed"},
		{"invalid", "def f(:\n    pass", "syntax error at line 1: invalid syntax"},
		{"indent", "x = 1\n    y = 2", "syntax error at line 2: unexpected indent"},
		{"too many parentheses", strings.Repeat("(", 300) + strings.Repeat(")", 300), "syntax error at line 1: too many nested parentheses"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range []python.CodePolicy{python.CodePolicyStrict, python.CodePolicyNormal} {
				te := refusal(t, newTool(t, withPolicy(p)), tc.code, reason.InvalidArguments)
				if te.Msg != "invalid arguments: "+tc.msg {
					t.Errorf("%s: message %q, want %q", p, te.Msg, "invalid arguments: "+tc.msg)
				}
			}
			res := mustCall(t, newTool(t, withPolicy(python.CodePolicyLegacy)), map[string]any{"code": tc.code})
			if !res.IsError || res.Code != reason.NonZeroExit || !strings.Contains(res.Text, "Error") {
				t.Errorf("legacy: error %v code %s text %q, want Python's own error", res.IsError, res.Code, res.Text)
			}
			if !strings.HasPrefix(res.Detail, "code policy legacy: not enforced: "+tc.msg) {
				t.Errorf("legacy: detail %q does not record the syntax error", res.Detail)
			}
		})
	}
}

// TestCodePolicyLegacyRunsWhatStrictRefuses runs code with findings of
// both levels at legacy: it runs, and the detail (audit only) records
// what strict would have refused.
func TestCodePolicyLegacyRunsWhatStrictRefuses(t *testing.T) {
	code := "import subprocess\nx = ().__class__\nprint(subprocess.__name__, x.__name__, eval('6 * 7'))"
	refusal(t, newTool(t, withPolicy(python.CodePolicyStrict)), code, reason.InvalidArguments)
	refusal(t, newTool(t, withPolicy(python.CodePolicyNormal)), code, reason.InvalidArguments)
	res := mustCall(t, newTool(t, withPolicy(python.CodePolicyLegacy)), map[string]any{"code": code})
	if res.IsError || res.Text != "subprocess tuple 42\n" {
		t.Fatalf("legacy: error %v code %s text %q", res.IsError, res.Code, res.Text)
	}
	want := "code policy legacy: not enforced: import: import of subprocess (line 1); " +
		"dunder-attribute: attribute __class__ (line 2); dynamic-code: eval (line 3)"
	if res.Detail != want {
		t.Errorf("detail %q, want %q", res.Detail, want)
	}
	for k, v := range res.Structured { // the verdict is for the audit log only
		if strings.Contains(k, "polic") || strings.Contains(fmt.Sprint(v), "polic") {
			t.Errorf("the client sees the verdict: structured %s = %v", k, v)
		}
	}
}

// TestCodePolicyBypassIsContained is why the check is not the boundary:
// each snippet reaches os.system (posix.system) without anything the
// strict checker (or, for pickle, the normal one) refuses, runs a shell
// with it where the sandbox level allows processes, and opens a socket
// through an allowed module. What it does stays in the sandbox: the host
// marker file is never created, /etc is read-only, and the host loopback
// listener sees no connection.
func TestCodePolicyBypassIsContained(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted sync.WaitGroup
	var conns int
	var mu sync.Mutex
	accepted.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			c.Close()
		}
	})
	defer func() { ln.Close(); accepted.Wait() }()
	port := ln.Addr().(*net.TCPAddr).Port

	hostDir := t.TempDir()
	marker := filepath.Join(hostDir, "pwned")
	body := fmt.Sprintf(`
import errno, json, http.client
def _err(e):
    return errno.errorcode.get(e.errno, str(e.errno))
res = {"function": system.__module__ + "." + system.__name__}
res["shell"] = system("echo ran > /work/ran")
try:
    res["ran"] = open("/work/ran").read().strip()
except OSError as e:
    res["ran"] = _err(e)
res["host marker"] = system("mkdir -p %[1]s && echo pwned > %[2]s")
res["etc"] = system("echo pwned > /etc/pwned 2>/dev/null") != 0
try:
    open("/etc/pwned", "w")
except OSError as e:
    res["etc open"] = _err(e)
try:
    http.client.socket.create_connection(("127.0.0.1", %[3]d), timeout=5)
    res["connect"] = "connected"
except OSError as e:
    res["connect"] = _err(e) if e.errno else type(e).__name__
print(json.dumps(res))
`, hostDir, marker, port)
	bypasses := []struct {
		name   string
		policy python.CodePolicy
		reach  string
	}{
		{"attribute of an allowed module", python.CodePolicyStrict, "import shutil\nsystem = shutil.os.system"},
		{"sys.modules", python.CodePolicyStrict, "import sys\nsystem = sys.modules['posix'].system"},
		{"object graph walk with computed dunder names", python.CodePolicyStrict, `
d = "_" * 2
base = getattr(getattr((), d + "class" + d), d + "base" + d)
wrap = [c for c in getattr(base, d + "subclasses" + d)() if c.__name__ == "_wrap_close"][0]
system = getattr(wrap.__init__, d + "globals" + d)["system"]`},
		{"pickle at normal", python.CodePolicyNormal, "import pickle\nsystem = pickle.loads(b'cposix\\nsystem\\n.')"},
	}
	for _, level := range []sandbox.Level{sandbox.LevelMaximum, sandbox.LevelStrict} {
		for _, bp := range bypasses {
			t.Run(string(level)+"/"+bp.name, func(t *testing.T) {
				tl := newTool(t, func(c *python.Config) { c.CodePolicy, c.Level = bp.policy, level })
				code := bp.reach + "\n" + body
				v := check(t, tl, code)
				if refused := v.Refused(bp.policy); v.Status != python.VerdictParsed || len(refused) > 0 {
					t.Fatalf("the %s checker refuses the bypass: %+v", bp.policy, v)
				}
				out := runJSON(t, tl, code)
				want := map[string]any{"function": "posix.system", "etc": true, "etc open": "EROFS", "connect": "EACCES"}
				if level == sandbox.LevelStrict { // processes allowed: the shell really runs
					want["shell"], want["ran"], want["host marker"] = 0.0, "ran", 0.0
				} else { // no new processes at maximum
					want["shell"], want["ran"], want["host marker"] = out["shell"], "ENOENT", out["host marker"]
					if out["shell"] == 0.0 || out["host marker"] == 0.0 {
						t.Errorf("os.system succeeded at maximum: %v", out)
					}
				}
				if diff := cmp.Diff(want, out); diff != "" {
					t.Errorf("what the bypass reached (-want +got):\n%s", diff)
				}
				if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the host marker %s exists (%v): the shell wrote outside the sandbox", marker, err)
				}
				if entries, _ := os.ReadDir(hostDir); len(entries) != 0 {
					t.Errorf("host directory %s gained %v", hostDir, entries)
				}
				mu.Lock()
				defer mu.Unlock()
				if conns != 0 {
					t.Errorf("the host listener accepted %d connections from the sandbox", conns)
				}
			})
		}
	}
}

// TestCodePolicyCheckerNotSubverted feeds the checker code that tries to
// subvert it: the code is data on stdin (no framing to break), is never
// executed (a fake verdict it would print is not the verdict), is decoded
// by its own encoding declaration as the run will decode it, and cannot
// exhaust the checker into a pass (deep nesting, huge code, a flood of
// findings, NUL bytes are refused).
func TestCodePolicyCheckerNotSubverted(t *testing.T) {
	tl := newTool(t, func(c *python.Config) { c.MaxCodeBytes = 4 << 20 })
	normal := newTool(t, func(c *python.Config) { c.MaxCodeBytes, c.CodePolicy = 4<<20, python.CodePolicyNormal })
	fakeVerdict := `{"status":"ok","findings":[],"total":0}`
	// 2 MiB of code, mostly comments; the last line decides.
	const hugeLines = (2 << 20) / 100
	hugeOK := strings.Repeat("# "+strings.Repeat("x", 97)+"\n", hugeLines) + "print('end')\n"
	for _, tc := range []struct {
		name string
		tl   *python.Tool
		code string
		want string // client message after "invalid arguments: "
	}{
		{"fake verdict in a string", tl, "s = '\"}\\n" + fakeVerdict + "\\n'\n\"\"\"\n" + fakeVerdict + "\n\"\"\"\nimport subprocess",
			"import of subprocess is not allowed by the strict code policy (line 5)"},
		{"code that would print a verdict", tl, "import sys\nsys.stdout.write('" + fakeVerdict + "\\n')\nsys.stdout.flush()\nsys.exit(0)\nimport socket",
			"import of socket is not allowed by the strict code policy (line 5)"},
		{"stdin close", tl, "import sys\nsys.stdin.close()\nimport ctypes", "import of ctypes is not allowed by the strict code policy (line 3)"},
		{"utf-7 hides an import", tl, "# coding: utf-7\nx = 1 # +AAo-import subprocess\n",
			"import of subprocess is not allowed by the strict code policy (line 3)"},
		{"NUL byte ends a line", tl, "import json\x00\nimport subprocess", "syntax error at line 1: source code cannot contain null bytes"},
		{"NUL byte in a string", tl, "x = 1\ns = '\x00'", "syntax error at line 2: source code cannot contain null bytes"},
		{"deep unary nesting", tl, strings.Repeat("-", 100000) + "1", "code is too complex to check (nesting too deep or too large)"},
		{"long operator chain", tl, "a = " + strings.Repeat("1+", 20000) + "1", "code is too complex to check (nesting too deep or too large)"},
		{"deep lambdas", tl, strings.Repeat("lambda: ", 5000) + "1", "code is too complex to check (nesting too deep or too large)"},
		{"huge code ending in an import", tl, hugeOK + "import subprocess\n",
			fmt.Sprintf("import of subprocess is not allowed by the strict code policy (line %d)", hugeLines+2)},
		{"huge dense code beyond the checker's memory", tl, strings.Repeat("x=1\n", (2<<20)/4),
			"code is too complex to check (nesting too deep or too large)"},
		{"flood of strict findings before a normal one", normal, strings.Repeat("eval('1')\n", 200) + "import subprocess\n",
			"import of subprocess is not allowed by the normal code policy (line 201)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := refusal(t, tc.tl, tc.code, reason.InvalidArguments)
			if te.Msg != "invalid arguments: "+tc.want {
				t.Errorf("message %q, want %q", te.Msg, "invalid arguments: "+tc.want)
			}
		})
	}

	t.Run("huge ordinary code runs", func(t *testing.T) {
		res := mustCall(t, tl, map[string]any{"code": hugeOK})
		if res.IsError || res.Text != "end\n" {
			t.Errorf("error %v code %s text %.200q", res.IsError, res.Code, res.Text)
		}
	})
	t.Run("flood of findings is capped", func(t *testing.T) {
		v := check(t, tl, strings.Repeat("eval('1')\n", 200)+strings.Repeat("import socket\n", 80))
		if v.Total != 280 || len(v.Findings) != 100 {
			t.Errorf("total %d findings %d, want 280 and 50 per level", v.Total, len(v.Findings))
		}
		te := refusal(t, tl, strings.Repeat("eval('1')\n", 200), reason.InvalidArguments)
		if !strings.HasSuffix(te.Msg, "(line 1) and 49 more") || !strings.Contains(te.Error(), "; 150 more") {
			t.Errorf("message %q detail %q", te.Msg, te.Error())
		}
	})
}

// TestCodePolicySeesWhatRuns hides an import behind source encodings and
// line-ending tricks: the checker decodes the bytes as the interpreter
// does when it runs the file, so whatever import the run executes (legacy
// shows it does) the strict check refuses, on the same line.
func TestCodePolicySeesWhatRuns(t *testing.T) {
	strict := newTool(t, withPolicy(python.CodePolicyStrict))
	legacy := newTool(t, withPolicy(python.CodePolicyLegacy))
	const probe = "import sys\nprint('subprocess' in sys.modules)\n"
	for _, tc := range []struct {
		name, code string
		line       int
	}{
		{"utf-7 cookie", "# coding: utf-7\nx = 1 # +AAo-import subprocess\n", 3},
		{"vim-style cookie on line 2", "#!/usr/bin/env python3\n# vim: set fileencoding=utf-7 :\nx = 1 # +AAo-import subprocess\n", 4},
		{"carriage returns", "x = 1\rimport subprocess\r", 2},
		{"form feed", "\fimport subprocess\n", 1},
		{"BOM", "\ufeffimport subprocess\n", 1},
		{"line continuation", "import \\\n    subprocess\n", 1},
		{"latin-1 cookie", "# -*- coding: latin-1 -*-\ns = 'é'\nimport subprocess\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := refusal(t, strict, tc.code+probe, reason.InvalidArguments)
			if want := fmt.Sprintf("invalid arguments: import of subprocess is not allowed by the strict code policy (line %d)", tc.line); te.Msg != want {
				t.Errorf("message %q, want %q", te.Msg, want)
			}
			if res := mustCall(t, legacy, map[string]any{"code": tc.code + probe}); res.IsError || res.Text != "True\n" {
				t.Errorf("legacy run: error %v code %s text %q, want the import to have run", res.IsError, res.Code, res.Text)
			}
		})
	}
}

// TestCodePolicyCancelled ends the call's context before the check: the
// call is refused as cancelled and nothing runs.
func TestCodePolicyCancelled(t *testing.T) {
	tl := newTool(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := tl.Call(ctx, []byte(`{"code": "print(1)"}`))
	if te, ok := tool.AsError(err); !ok || te.Code != reason.Cancelled {
		t.Errorf("err %v, want a %s tool error", err, reason.Cancelled)
	}
}

// fakeRuntime answers the checker's run with check and records the specs
// it was given; any later run (the code) succeeds with "ran".
type fakeRuntime struct {
	check func(*sandbox.Spec) (*sandbox.Result, error)
	mu    sync.Mutex
	specs []*sandbox.Spec
}

func (f *fakeRuntime) Name() string { return "fake" }

func (f *fakeRuntime) Run(_ context.Context, spec *sandbox.Spec) (*sandbox.Result, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	first := len(f.specs) == 1
	f.mu.Unlock()
	if first {
		return f.check(spec)
	}
	return &sandbox.Result{Stdout: []byte("ran\n")}, nil
}

// TestCodePolicyCheckerOutcomes maps what the checker run produced to the
// call's outcome with a fake runtime: no verdict is never a pass (except
// at legacy, where it is recorded and the code runs), a checker stopped by
// a limit is code too complex to check, and a sandbox that cannot start
// refuses the call at every level.
func TestCodePolicyCheckerOutcomes(t *testing.T) {
	out := func(stdout string) func(*sandbox.Spec) (*sandbox.Result, error) {
		return func(*sandbox.Spec) (*sandbox.Result, error) { return &sandbox.Result{Stdout: []byte(stdout)}, nil }
	}
	for _, tc := range []struct {
		name  string
		check func(*sandbox.Spec) (*sandbox.Result, error)
		want  reason.Code // strict and normal; "" = runs
		// legacy: runs unless the sandbox is unavailable or the call was cancelled
	}{
		{"clean verdict", out(`{"status":"ok","findings":[],"total":0}` + "\n"), ""},
		{"crash", func(*sandbox.Spec) (*sandbox.Result, error) {
			return &sandbox.Result{ExitCode: 1, Stderr: []byte("Traceback ...\nImportError: _ast")}, nil
		}, reason.ToolFailed},
		{"killed by seccomp", func(*sandbox.Spec) (*sandbox.Result, error) {
			return &sandbox.Result{ExitCode: -1, Signal: "SIGSYS", Violations: []sandbox.Violation{{Code: sandbox.ViolationSeccompKill}}}, nil
		}, reason.ToolFailed},
		{"no output", out(""), reason.ToolFailed},
		{"two verdicts", out(`{"status":"ok","findings":[],"total":0}{"status":"ok","findings":[],"total":0}`), reason.ToolFailed},
		{"trailing text", out(`{"status":"ok","findings":[],"total":0} ok`), reason.ToolFailed},
		{"unknown field", out(`{"status":"ok","findings":[],"total":0,"allow":true}`), reason.ToolFailed},
		{"unknown status", out(`{"status":"pass"}`), reason.ToolFailed},
		{"total below findings", out(`{"status":"ok","findings":[{"rule":"import","level":"normal","line":1,"what":"import of socket"}],"total":0}`), reason.ToolFailed},
		{"finding of unknown level", out(`{"status":"ok","findings":[{"rule":"import","level":"legacy","line":1,"what":"x"}],"total":1}`), reason.ToolFailed},
		{"not an object", out(`[]`), reason.ToolFailed},
		{"out of memory", func(*sandbox.Spec) (*sandbox.Result, error) {
			return &sandbox.Result{ExitCode: -1, Signal: "SIGKILL", Violations: []sandbox.Violation{{Code: sandbox.ViolationOOM}}}, nil
		}, reason.InvalidArguments},
		{"wall timeout", func(*sandbox.Spec) (*sandbox.Result, error) {
			return &sandbox.Result{ExitCode: -1, Signal: "SIGKILL", Violations: []sandbox.Violation{{Code: sandbox.ViolationWallTimeout}}}, nil
		}, reason.InvalidArguments},
		{"sandbox unavailable", func(*sandbox.Spec) (*sandbox.Result, error) {
			return nil, fmt.Errorf("%w: cgroups missing", sandbox.ErrUnavailable)
		}, reason.SandboxUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range []python.CodePolicy{python.CodePolicyStrict, python.CodePolicyNormal, python.CodePolicyLegacy} {
				rt := &fakeRuntime{check: tc.check}
				cfg := baseConfig(interpreter(t))
				cfg.CodePolicy = p
				tl, err := python.New(cfg, rt)
				if err != nil {
					t.Fatal(err)
				}
				res, err := tl.Call(t.Context(), []byte(`{"code": "print(1)"}`))
				want := tc.want
				if p == python.CodePolicyLegacy && want != reason.SandboxUnavailable {
					want = ""
				}
				te, _ := tool.AsError(err)
				switch {
				case want == "" && (err != nil || res.Text != "ran\n"):
					t.Errorf("%s: %+v, %v; want the code to run", p, res, err)
				case want != "" && (te == nil || te.Code != want):
					t.Errorf("%s: %+v, %v; want a %s tool error", p, res, err, want)
				case want != "" && len(rt.specs) != 1:
					t.Errorf("%s: %d runs after a refusal, want only the check", p, len(rt.specs))
				case want != "" && strings.Contains(te.ClientMessage(), "Traceback"):
					t.Errorf("%s: client message %q carries the checker's output", p, te.ClientMessage())
				case p == python.CodePolicyLegacy && tc.want != "" && want == "" && !strings.HasPrefix(res.Detail, "code policy legacy: "):
					t.Errorf("legacy: detail %q does not record the failed check", res.Detail)
				}
			}
		})
	}
}

// TestCodePolicyCheckSpec pins how the checker runs: the same interpreter
// with -I -S -B and the checker as -c, the code as stdin only (never a
// file, never an argument), at the maximum level without network, before
// the code's own run.
func TestCodePolicyCheckSpec(t *testing.T) {
	rt := &fakeRuntime{check: func(*sandbox.Spec) (*sandbox.Result, error) {
		return &sandbox.Result{Stdout: []byte(`{"status":"ok","findings":[],"total":0}`)}, nil
	}}
	in := interpreter(t)
	cfg := baseConfig(in)
	cfg.Level = sandbox.LevelStrict
	tl, err := python.New(cfg, rt)
	if err != nil {
		t.Fatal(err)
	}
	code := "print('--' + 'payload')"
	if _, err := call(t, tl, map[string]any{"code": code, "stdin": "input"}); err != nil {
		t.Fatal(err)
	}
	if len(rt.specs) != 2 {
		t.Fatalf("%d runs, want the check and the code", len(rt.specs))
	}
	chk, run := rt.specs[0], rt.specs[1]
	if len(chk.Argv) != 6 || chk.Argv[0] != in.Executable || strings.Join(chk.Argv[1:5], " ") != "-I -S -B -c" ||
		!strings.Contains(chk.Argv[5], "PyCF_ONLY_AST") {
		t.Errorf("checker argv %q", chk.Argv[:min(5, len(chk.Argv))])
	}
	for _, a := range chk.Argv {
		if strings.Contains(a, "payload") {
			t.Errorf("the code is an argument of the checker")
		}
	}
	if string(chk.Stdin) != code || len(chk.Files) != 0 || chk.Level != sandbox.LevelMaximum ||
		chk.Network.Mode != "" || chk.Limits.WallTime != 10*time.Second || fmt.Sprint(chk.Mounts) != fmt.Sprint(run.Mounts) {
		t.Errorf("checker spec %+v", chk)
	}
	if string(run.Stdin) != "input" || len(run.Files) != 1 || string(run.Files[0].Data) != code || run.Level != sandbox.LevelStrict {
		t.Errorf("code spec %+v", run)
	}
}

// TestParseCodePolicy accepts the three level names only.
func TestParseCodePolicy(t *testing.T) {
	for _, s := range []string{"strict", "normal", "legacy"} {
		if p, err := python.ParseCodePolicy(s); err != nil || string(p) != s {
			t.Errorf("ParseCodePolicy(%q) = %q, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "Strict", "off", "none", "legacy "} {
		if p, err := python.ParseCodePolicy(s); err == nil {
			t.Errorf("ParseCodePolicy(%q) = %q, want an error", s, p)
		}
	}
	if python.DefaultCodePolicy(true) != python.CodePolicyStrict || python.DefaultCodePolicy(false) != python.CodePolicyNormal {
		t.Errorf("defaults: production %s, development %s", python.DefaultCodePolicy(true), python.DefaultCodePolicy(false))
	}
}

// BenchmarkCodeCheck measures one check (a sandboxed interpreter start
// and parse, with the runtime's warm pool) for a short program and for
// 64 KiB of code, next to a whole call of the short program at legacy
// (check and run) for scale.
func BenchmarkCodeCheck(b *testing.B) {
	tl := newTool(b, func(c *python.Config) { c.MaxCodeBytes = 1 << 20 })
	short := "import json\nprint(json.dumps({'a': 1}))\n"
	long := strings.Repeat("def f(x):\n    return [i * x for i in range(10)]\nprint(f(2))\n", 64<<10/60)
	for name, code := range map[string]string{"short": short, "64KiB": long} {
		b.Run("check/"+name, func(b *testing.B) {
			for b.Loop() {
				if v, err := tl.Check(b.Context(), code); err != nil || v.Status != python.VerdictParsed {
					b.Fatalf("Check: %+v, %v", v, err)
				}
			}
		})
	}
	b.Run("call/short", func(b *testing.B) {
		raw := []byte(`{"code": "import json\nprint(json.dumps({'a': 1}))\n"}`)
		for b.Loop() {
			if res, err := tl.Call(b.Context(), raw); err != nil || res.IsError {
				b.Fatalf("Call: %+v, %v", res, err)
			}
		}
	})
}
