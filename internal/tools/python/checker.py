# Portcullis code policy checker for execute_python (see policy.go).
#
# Run inside the sandbox as `python3 -I -S -B -c <this file>` with the code
# to check as raw bytes on standard input. The code is data: it is parsed
# (compile with PyCF_ONLY_AST), never compiled to bytecode or executed.
# Parsing the bytes rather than a decoded string makes CPython apply the
# code's own encoding declaration (PEP 263, e.g. "# coding: utf-7") and BOM
# exactly as it does when it runs the file, so the checker sees the code
# that will run. The verdict is one JSON object on standard output; any
# other outcome (a traceback, a kill) is a failed check, never a pass.
#
# Only the built-in modules _ast and sys are imported: importing ast and
# json would double the interpreter's start-up time.
#
# This is a blocklist over the syntax tree: defence in depth, not a
# boundary. The OS sandbox is the boundary.
import _ast
import sys

NORMAL, STRICT = "normal", "strict"
MAX_FINDINGS = 50  # per level

# Modules whose import is refused (also any submodule), with the least
# strict level that refuses it. The top-level name counts: "import
# importlib.util" and "from ctypes import CDLL" are imports of importlib
# and ctypes.
MODULES = {
    # processes, sockets, native code, the import machinery, and the C
    # modules behind them (posix is os without the Python layer)
    "subprocess": NORMAL, "_posixsubprocess": NORMAL, "multiprocessing": NORMAL, "pty": NORMAL,
    "socket": NORMAL, "_socket": NORMAL, "ctypes": NORMAL, "_ctypes": NORMAL,
    "importlib": NORMAL, "_imp": NORMAL, "posix": NORMAL,
    # code from data: eval and exec by other names
    "builtins": STRICT, "code": STRICT, "codeop": STRICT, "runpy": STRICT, "pdb": STRICT,
    "pickle": STRICT, "_pickle": STRICT, "marshal": STRICT,
}

# os functions that start, replace or signal processes (plus every os.exec*
# and os.spawn*).
OS_PROCESS = {"system", "popen", "fork", "forkpty", "kill", "killpg", "posix_spawn", "posix_spawnp", "startfile"}

# Built-in functions that run code from strings (breakpoint: pdb reads
# commands from stdin, which the caller supplies).
DYNAMIC_CODE = {"eval", "exec", "compile", "breakpoint"}

# Dunder attributes that name or construct and lead nowhere on their own:
# super().__init__(), f.__name__, np.__version__.
DUNDER_ATTRS_ALLOWED = {"__init__", "__name__", "__qualname__", "__doc__", "__module__", "__version__"}
# Dunder names a script may read: if __name__ == "__main__".
DUNDER_NAMES_ALLOWED = {"__name__", "__file__", "__doc__"}

GETATTR_FAMILY = {"getattr", "setattr", "delattr", "hasattr"}
ATTRGETTERS = {"attrgetter", "methodcaller"}


def is_dunder(s):
    return isinstance(s, str) and len(s) > 4 and s.startswith("__") and s.endswith("__")


def os_process(name):
    return isinstance(name, str) and (name in OS_PROCESS or name.startswith("exec") or name.startswith("spawn"))


def shown(s):
    # Only identifiers of modest length are echoed: the verdict reaches the
    # audit log, which must not carry fragments of the caller's data.
    if isinstance(s, str) and s.isidentifier() and len(s) <= 64:
        return s
    return "(not shown)"


def const_str(node):
    if isinstance(node, _ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def walk(tree):
    # Iterative: a deep tree must not exhaust the checker's own stack.
    nodes, stack = [], [tree]
    while stack:
        node = stack.pop()
        nodes.append(node)
        for field in node._fields:
            v = getattr(node, field, None)
            if isinstance(v, _ast.AST):
                stack.append(v)
            elif isinstance(v, list):
                stack.extend(x for x in v if isinstance(x, _ast.AST))
    return nodes


def check(tree):
    nodes = walk(tree)
    found = set()

    def add(node, rule, level, what):
        found.add((getattr(node, "lineno", 0) or 0, rule, level, what))

    # Names bound to the os module anywhere in the code: "import os",
    # "import os.path", "import os as o". Scopes are ignored (conservative).
    os_names = set()
    for n in nodes:
        if isinstance(n, _ast.Import):
            for a in n.names:
                if a.name == "os" and a.asname:
                    os_names.add(a.asname)
                elif (a.name == "os" or a.name.startswith("os.")) and not a.asname:
                    os_names.add("os")

    def module(node, name):
        top = name.split(".")[0]
        level = MODULES.get(top)
        if level:
            add(node, "import", level, "import of " + top)

    def dunder_attr(node, name):
        if is_dunder(name) and name not in DUNDER_ATTRS_ALLOWED:
            add(node, "dunder-attribute", STRICT, "attribute " + shown(name))

    def dunder_string(node, s):
        if is_dunder(s) and s not in DUNDER_ATTRS_ALLOWED:
            add(node, "dunder-string", STRICT, "dunder string " + shown(s))

    for n in nodes:
        if isinstance(n, _ast.Import):
            for a in n.names:
                module(n, a.name)
        elif isinstance(n, _ast.ImportFrom):
            if n.level == 0 and n.module:
                module(n, n.module)
                if n.module == "os":
                    for a in n.names:
                        if a.name == "*":
                            add(n, "os-process", NORMAL, "from os import *")
                        elif os_process(a.name):
                            add(n, "os-process", NORMAL, "os." + a.name)
            for a in n.names:
                dunder_attr(n, a.name)
        elif isinstance(n, _ast.Attribute):
            if isinstance(n.value, _ast.Name) and n.value.id in os_names and os_process(n.attr):
                add(n, "os-process", NORMAL, "os." + n.attr)
            dunder_attr(n, n.attr)
        elif isinstance(n, _ast.Name):
            if n.id == "__import__":
                add(n, "dynamic-import", NORMAL, "__import__")
            elif n.id in DYNAMIC_CODE:
                add(n, "dynamic-code", STRICT, n.id)
            elif is_dunder(n.id) and isinstance(n.ctx, _ast.Load) and n.id not in DUNDER_NAMES_ALLOWED:
                add(n, "dunder-name", STRICT, "name " + shown(n.id))
        elif isinstance(n, _ast.Call):
            f = n.func
            fname = f.id if isinstance(f, _ast.Name) else f.attr if isinstance(f, _ast.Attribute) else None
            if fname in GETATTR_FAMILY and len(n.args) >= 2:
                key = const_str(n.args[1])
                dunder_string(n, key)
                if isinstance(n.args[0], _ast.Name) and n.args[0].id in os_names and os_process(key):
                    add(n, "os-process", NORMAL, "os." + key)
            elif fname in ATTRGETTERS:
                for arg in n.args:
                    for part in (const_str(arg) or "").split("."):
                        dunder_string(n, part)
        elif isinstance(n, _ast.Subscript):
            dunder_string(n, const_str(n.slice))
        elif type(n).__name__ == "MatchClass":
            # case C(__class__=x) reads the attribute
            for name in n.kwd_attrs:
                dunder_attr(n, name)

    # The first MAX_FINDINGS of each level, so that a flood of strict
    # findings cannot push a normal one out of the verdict.
    found = sorted(found)
    kept = [f for f in found if f[2] == NORMAL][:MAX_FINDINGS] + [f for f in found if f[2] == STRICT][:MAX_FINDINGS]
    out = [{"rule": r, "level": lv, "line": line, "what": w} for line, r, lv, w in sorted(kept)]
    return {"status": "ok", "findings": out, "total": len(found)}


def parse(src):
    if b"\0" in src:
        # 3.11.0-3.11.3 raise ValueError, later versions SyntaxError
        return None, {"status": "syntax_error", "line": src.count(b"\n", 0, src.index(b"\0")) + 1,
                      "message": "source code cannot contain null bytes"}
    try:
        return compile(src, "/work/main.py", "exec", _ast.PyCF_ONLY_AST, True), None
    except SyntaxError as e:  # also IndentationError, TabError
        return None, {"status": "syntax_error", "line": e.lineno or 0, "message": str(e.msg)[:200]}
    except ValueError as e:
        return None, {"status": "syntax_error", "line": 0, "message": str(e)[:200]}


def main():
    src = sys.stdin.buffer.read()
    try:
        tree, verdict = parse(src)
        if tree is not None:
            verdict = check(tree)
    except (RecursionError, MemoryError) as e:
        # deep nesting: "maximum recursion depth exceeded during ast
        # construction", "Parser stack overflowed" (MemoryError)
        verdict = {"status": "too_complex", "message": type(e).__name__}
    sys.stdout.write(js(verdict) + "\n")


def js(v):
    # JSON for the verdict's str, int, list and dict values; ASCII only.
    if isinstance(v, bool) or v is None:
        raise TypeError("unexpected value in verdict")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + "".join(c if " " <= c <= "~" and c not in '"\\' else esc(c) for c in v) + '"'
    if isinstance(v, list):
        return "[" + ",".join(js(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(js(k) + ":" + js(x) for k, x in v.items()) + "}"
    raise TypeError("unexpected value in verdict")


def esc(c):
    o = ord(c)
    if o > 0xFFFF:
        o -= 0x10000
        return "\\u%04x\\u%04x" % (0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF))
    return "\\u%04x" % o


main()
