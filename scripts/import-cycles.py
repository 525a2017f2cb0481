#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

For every `src/` tree given, each file is a module; an edge a -> b means a
names something of b (`use crate::b::...`, `crate::b::...` in code,
`super::...`). A module and its own submodules may refer to each other (a
parent re-exports what its children define), and unit-test modules may use
anything; any other circle is reported with its path, so the layering of a
crate stays a graph read top-down.

Usage: scripts/import-cycles.py CRATE_DIR...   (run by `make lint`)
"""

import os
import re
import sys

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def modules(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    out = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main", "mod"):
                rel = rel[:-1]
            if rel and rel[0] == "bin":
                continue
            out[tuple(rel)] = os.path.join(root, f)
    return out


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    # A unit-test module (last in its file, by convention) may use anything.
    m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s", text)
    return text[: m.start()] if m else text


def resolve(mods, base, parts):
    """The longest module prefix of base + parts."""
    full = tuple(base) + tuple(parts)
    for n in range(len(full), -1, -1):
        if full[:n] in mods:
            return full[:n]
    return ()


def edges(mods, me, text):
    text = strip_comments(text)
    refs = []
    for m in USE_GROUP.finditer(text):
        head = [p for p in m.group(2).split("::") if p]
        for item in re.split(r"[,{}\s]+", m.group(3)):
            item = item.split("::")
            if item and item[0] and item[0] != "self":
                refs.append((m.group(1), head + item))
            elif item and item[0] == "self":
                refs.append((m.group(1), head))
    for m in PATH.finditer(text):
        refs.append((m.group(1), [p for p in m.group(2).split("::") if p]))
    out = set()
    for kind, parts in refs:
        if kind == "crate":
            base = ()
        else:
            # `super` is the parent module, whether the file is `x.rs` or `x/mod.rs`.
            base = me[:-1]
            while parts and parts[0] == "super":
                base, parts = base[:-1], parts[1:]
        target = resolve(mods, base, parts)
        if target != me:
            out.add(target)
    return out


def related(a, b):
    return a[: len(b)] == b or b[: len(a)] == a


def cycles(src):
    mods = modules(src)
    graph = {}
    for m, f in mods.items():
        with open(f, encoding="utf-8") as fh:
            graph[m] = {t for t in edges(mods, m, fh.read()) if not related(m, t)}
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for t in sorted(graph.get(n, ())):
            if state.get(t) == 1:
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def main():
    bad = 0
    for crate in sys.argv[1:]:
        for c in cycles(os.path.join(crate, "src")):
            bad += 1
            print(f"{crate}: import circle: " + " -> ".join("::".join(m) or "lib" for m in c))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
