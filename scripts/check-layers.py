#!/usr/bin/env python3
"""Check the module import graph of a Rust crate: no cycle between modules (files), and, when
the crate root declares layers, no import from a lower layer to a higher one.

A crate declares its layers in its root file (lib.rs) with lines of the form

    //! layer N: module, module, ...

Modules not named in any layer line are reported. Run from the repository root:

    scripts/check-layers.py src providers/aws/src providers/vault/src ...

Edges are `use` paths and inline paths starting with `crate::`, `super::` or `self::`, resolved to
the file that defines the named module (a path into a module's items resolves to that module's
file). `mod x;` declarations are ownership, not imports. Test code (`#[cfg(test)]` modules and
files named tests.rs or test_*.rs) is ignored: tests may reach anywhere.
"""
import os
import re
import sys
from collections import defaultdict

def module_files(root):
    """Map module path tuple -> file path for every .rs file under root."""
    mods = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith('.rs'):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, root)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ('mod', 'lib', 'main'):
                parts = parts[:-1]
            if rel in ('main.rs',):
                continue  # the binary is its own crate
            if 'bin' == parts[0] if parts else False:
                continue
            mods[tuple(parts)] = full
    return mods

def strip_tests_and_comments(text):
    # drop line comments and doc comments
    text = re.sub(r'//[^\n]*', '', text)
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    # drop #[cfg(test)] mod xxx { ... } blocks (brace matching)
    out = []
    i = 0
    pat = re.compile(r'#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{')
    while True:
        m = pat.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i:m.start()])
        depth = 1
        j = m.end()
        while j < len(text) and depth:
            if text[j] == '{':
                depth += 1
            elif text[j] == '}':
                depth -= 1
            j += 1
        i = j
    text = ''.join(out)
    # drop string literals (crude)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text

def expand_use(tree):
    """Expand a use tree like `crate::{a::b, c::{d, e}}` into paths."""
    tree = tree.strip()
    m = re.match(r'^(.*?)\{(.*)\}$', tree, flags=re.S)
    if not m:
        return [re.sub(r'\s+as\s+\w+$', '', tree).strip()]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ''
    for ch in inner:
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
            continue
        if ch == '{':
            depth += 1
        elif ch == '}':
            depth -= 1
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        for e in expand_use(p):
            out.append(prefix + e if e != 'self' else prefix.rstrip(':'))
    return out

def references(text):
    refs = set()
    for m in re.finditer(r'\buse\s+([^;]+);', text):
        for p in expand_use(m.group(1)):
            refs.add(re.sub(r'\s+', '', p))
    for m in re.finditer(r'\b((?:crate|super|self)(?:::(?:super|\w+))+)', text):
        refs.add(m.group(1))
    return refs

def resolve(path, here, mods):
    """The module (tuple) a path names: the longest prefix of it that is a module."""
    segs = path.split('::')
    if segs[0] == 'crate':
        base, segs = [], segs[1:]
    elif segs[0] in ('super', 'self'):
        base = list(here)
        while segs and segs[0] in ('super', 'self'):
            if segs[0] == 'super':
                base = base[:-1]
            segs = segs[1:]
    else:
        return None
    cur = tuple(base)
    for s in segs:
        if cur + (s,) in mods:
            cur = cur + (s,)
        else:
            break
    return cur

def check(root):
    mods = module_files(root)
    problems = []
    graph = defaultdict(set)
    rootfile = mods.get(())
    for mod, path in mods.items():
        name = os.path.basename(path)
        if name == 'tests.rs' or name.startswith('test_') or 'tests' in mod:
            continue
        text = strip_tests_and_comments(open(path, encoding='utf-8').read())
        # Paths relative to the module: `child::item` or `use child::item` names a child module.
        for child in [m[-1] for m in mods if len(m) == len(mod) + 1 and m[:-1] == mod]:
            if re.search(r'(?<![:\w])' + re.escape(child) + r'::', text):
                graph[mod].add(mod + (child,))
        for ref in references(text):
            target = resolve(ref, mod, mods)
            if target is None or target == mod:
                continue
            graph[mod].add(target)
    # cycles (Tarjan)
    index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)
    for v in list(mods):
        if v not in index:
            strong(v)
    fmt = lambda m: '::'.join(m) or '(crate root)'
    for comp in sccs:
        problems.append('cycle: ' + ' <-> '.join(sorted(fmt(m) for m in comp)))
    # layers
    layers = {}
    if rootfile:
        for m in re.finditer(r'^//!\s*layer\s+(\d+):\s*(.+)$', open(rootfile, encoding='utf-8').read(), flags=re.M):
            for name in re.split(r'[,\s]+', m.group(2).strip()):
                name = name.strip('`.')
                if name:
                    layers[name] = int(m.group(1))
    if layers:
        for mod in mods:
            if mod and mod[0] not in layers and mod[0] not in ('tests',):
                problems.append(f'module {fmt(mod)} is in no layer (add it to a `//! layer N:` line in the crate root)')
        for src, dsts in graph.items():
            if not src:
                continue
            for dst in dsts:
                if not dst:
                    problems.append(f'{fmt(src)} imports from the crate root; import from the defining module')
                    continue
                ls, ld = layers.get(src[0]), layers.get(dst[0])
                if ls is not None and ld is not None and ld > ls:
                    problems.append(f'{fmt(src)} (layer {ls}) imports {fmt(dst)} (layer {ld}): a lower layer may not import a higher one')
    return problems, graph, mods

def main():
    roots = sys.argv[1:] or ['src']
    verbose = os.environ.get('VERBOSE')
    failed = False
    for root in roots:
        problems, graph, mods = check(root)
        if verbose:
            for s in sorted(graph):
                print(root, '::'.join(s) or '(root)', '->', ', '.join(sorted('::'.join(d) or '(root)' for d in graph[s])))
        for p in problems:
            print(f'{root}: {p}')
        failed |= bool(problems)
        if not problems:
            print(f'{root}: {len(mods)} modules, no cycle, layers respected')
    sys.exit(1 if failed else 0)

if __name__ == '__main__':
    main()
