#!/usr/bin/env python3
"""The shape of src/: the import graph between modules (no cycles), file lengths (at most
700 lines) and function lengths (at most 80 lines outside tests, but for the few listed in
LONG_FNS with their reason).

Edges: a file's `crate::a::b` and `super::` paths (outside `#[cfg(test)] mod tests` and
`tests.rs` files; the binary's own modules, main/cli/demo, are outside the graph),
resolved to the deepest module that exists. An edge between two files is lifted to the two
siblings under their nearest common parent that contain them; a parent naming its own child
is containment, not an edge. A cycle is a cycle among siblings.

Usage: tools/layout.py [--graph] [SRC]     exit 1 when a rule is broken
"""
import os
import re
import sys

MAX_FILE = 700
MAX_FN = 80
# A linear sequence that reads better whole (at most two).
LONG_FNS = {
    # Every metric of the contract, registered one after another: a table, not logic.
    "metrics.rs::for_sides": "the metric table",
    # The contract's verification steps 2–7 in their order, each refusing with its
    # reason: split, the order (which is the security argument) would no longer be on
    # one screen.
    "token/verify.rs::verify": "the verification steps in order",
}


def module_of(path, src):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip_tests(text):
    m = re.search(r"^#\[cfg\(test\)\]\s*\n\s*(pub\s+)?mod\s+\w+\s*\{", text, re.M)
    return text[: m.start()] if m else text


def code_only(text):
    """Comments and string/char literals blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + re.sub(r"[^\n]", " ", text[i + 2 : end - 2]) + "  ")
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + re.sub(r"[^\n]", " ", text[i + 1 : j]) + '"')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def references(code, me, modules):
    refs = set()
    for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", code):
        segs = m.group(2).split("::")[1:]
        if m.group(1) == "crate":
            base = ()
        else:
            base = me[:-1]
            # super::super::x
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
        target = base
        for s in segs:
            if base + (s,) in modules or target + (s,) in modules:
                target = target + (s,)
            else:
                break
        refs.add(target)
    # `use super::{a, b}` and `use crate::{a::b, c}` groups
    for m in re.finditer(r"\buse\s+(crate|super)::\{([^}]*)\}", code):
        base = () if m.group(1) == "crate" else me[:-1]
        for item in m.group(2).split(","):
            first = item.strip().split("::")[0]
            if base + (first,) in modules:
                refs.add(base + (first,))
    refs.discard(me)
    return refs


def lift(a, b):
    """The sibling edge an a→b reference makes, or None (containment)."""
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    if k == len(a) or k == len(b):
        return None
    return a[: k + 1], b[: k + 1]


def cycles(edges):
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def long_functions(code):
    """(name, first line, lines) of every fn body longer than MAX_FN."""
    found = []
    for m in re.finditer(r"\bfn\s+(\w+)", code):
        # The body: the first `{` at this nesting before a `;` (a declaration has none).
        i, depth = m.end(), 0
        while i < len(code):
            c = code[i]
            if c in "(<[":
                depth += 1
            elif c in ")>]":
                depth -= 1
            elif c == ";" and depth <= 0:
                i = -1
                break
            elif c == "{" and depth <= 0:
                break
            i += 1
        if i < 0 or i >= len(code):
            continue
        j, braces = i, 0
        while j < len(code):
            if code[j] == "{":
                braces += 1
            elif code[j] == "}":
                braces -= 1
                if braces == 0:
                    break
            j += 1
        start = code.count("\n", 0, m.start()) + 1
        lines = code.count("\n", m.start(), j) + 1
        if lines > MAX_FN:
            found.append((m.group(1), start, lines))
    return found


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "src")
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                p = os.path.join(root, name)
                files[module_of(p, src)] = p
    modules = set(files)
    for m in list(modules):
        for k in range(len(m)):
            modules.add(m[:k])
    problems = []
    edges = set()
    for me, path in sorted(files.items()):
        text = open(path, encoding="utf-8").read()
        n = text.count("\n")
        if n > MAX_FILE:
            problems.append(f"{os.path.relpath(path, src)}: {n} lines (at most {MAX_FILE})")
        code = code_only(strip_tests(text))
        for name, line, lines in long_functions(code):
            key = f"{os.path.relpath(path, src)}::{name}"
            if key not in LONG_FNS:
                problems.append(f"{os.path.relpath(path, src)}:{line}: fn {name} is {lines} lines (at most {MAX_FN})")
        # The binary's modules and test modules are not part of the library's graph.
        if me and me[0] in ("main", "cli", "demo") or me[-1:] == ("tests",):
            continue
        for target in references(code, me, modules):
            e = lift(me, target)
            if e:
                edges.add(e)
    for comp in cycles(edges):
        problems.append("import cycle: " + " ↔ ".join("::".join(c) for c in comp))
    if "--graph" in sys.argv:
        by = {}
        for a, b in sorted(edges):
            by.setdefault(a, []).append("::".join(b))
        for a in sorted(by):
            print(f"{'::'.join(a) or 'crate'} → {', '.join(by[a])}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
