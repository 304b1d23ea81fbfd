#!/usr/bin/env python3
"""Check Basin's layering, so that a circle cannot come back unnoticed.

Three checks, each run on the source text alone (no cargo, no compiler):

circles  No import circle between the modules of any crate. Each file under
         crates/<crate>/src is a module; an edge A -> B means code in A names an item
         defined in B (`use crate::..`, `use super::..`, `use self::..`, a `use` of a
         child module by name, or a path such as `crate::a::f()` / `super::X` in code).
         Paths are resolved to the module that DEFINES the item: re-exports
         (`pub use error::Error;` in lib.rs, globs too) are followed, so naming
         `crate::Error` is an edge to `error`, not to the crate root; the re-export
         itself is an edge from the re-exporting module. Test code (`#[cfg(test)]`
         modules and items, `#[test]` functions) is ignored: tests naturally use their
         parent. Every strongly connected component of more than one module is
         reported, with one example file:line for each edge inside it.
crates   No upward arrow between crates: a crate's [dependencies] may name only
         basin-* crates strictly earlier in LAYERS (lowest first). Test-only crates
         are exempt, and may not be normal dependencies of anything.
sizes    No source file over 600 lines (.rs under crates/*/src and crates/*/tests,
         .py under python/, .js under console/ and static/ folders), and no Rust
         function body over 120 lines outside tests (lines from its `{` to its `}`).

Usage: scripts/check_layers.py [--report] [--only circles|crates|sizes]
Exits 1 when anything is found, unless --report.
"""

import argparse
import bisect
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["basin-core", "basin-catalog", "basin-table", "basin-runtime", "basin-ingest",
          "basin-sql", "basin-service", "basin-server", "basin-cli"]
TEST_ONLY_CRATES = {"basin-fuzz"}
MAX_FILE_LINES = 600
MAX_FN_LINES = 120

# --- Reading Rust: strip comments and literals, drop test code ------------------------

TOKEN = re.compile(r'//|/\*|(?<![\w$])[bc]?r#*"|"|\'')


def strip_rust(text):
    """Blank comments and string/char literals (lifetimes stay), keeping every newline."""
    out, i, n = [], 0, len(text)
    while (m := TOKEN.search(text, i)):
        out.append(text[i:m.start()])
        tok, i = m.group(), m.start()
        if tok == "//":
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif tok == "/*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
        elif "r" in tok:                                    # raw string r#"..."#
            hashes = tok.count("#")
            end = text.find('"' + "#" * hashes, m.end())
            j = n if end < 0 else end + 1 + hashes
        elif tok == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
        elif text.startswith("\\", i + 1):                 # '\n', '\'', '\u{..}'
            j = text.find("'", i + 3) + 1
        elif i + 2 < n and text[i + 2] == "'":              # 'x'
            j = i + 3
        else:                                               # a lifetime: keep it
            out.append("'")
            i += 1
            continue
        out.append(re.sub(r"[^\n]", " ", text[i:j]))
        i = j
    return "".join(out) + text[i:]


def close_of(text, i):
    """Index of the bracket closing the one at text[i]."""
    pair = {"{": "}", "(": ")", "[": "]"}[text[i]]
    depth = 0
    for j in range(i, len(text)):
        if text[j] == text[i]:
            depth += 1
        elif text[j] == pair:
            depth -= 1
            if depth == 0:
                return j
    return len(text) - 1


def body_start(text, i):
    """From i (inside an item's head), the index of its `{` or `;` outside () and []."""
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        depth += c in "([" and 1 or c in ")]" and -1 or 0
        if depth == 0 and c in "{;":
            return j
    return len(text) - 1


TEST_ATTR = re.compile(r"#\[\s*(?:cfg\(\s*test\s*\)|cfg\(\s*all\([^\]]*\btest\b[^\]]*\)|"
                       r"(?:\w+::)*test\b[^\]]*)\]")
MOD_DECL = re.compile(r"\bmod\s+(?:r#)?(\w+)\s*([;{])")
TEST_MOD_DECL = re.compile(r"\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(?:r#)?(\w+)\s*;")


def drop_tests(code):
    """Blank test-only items; return the text and the names of `#[cfg(test)] mod x;`."""
    test_mods = set()
    while (m := TEST_ATTR.search(code)):
        j = m.end()
        while (a := re.compile(r"\s*#\[").match(code, j)):         # further attributes
            j = close_of(code, a.end() - 1) + 1
        end = body_start(code, j)
        if (decl := TEST_MOD_DECL.match(code, j)):
            test_mods.add(decl.group(1))
        if code[end] == "{":
            end = close_of(code, end)
        code = code[:m.start()] + re.sub(r"[^\n]", " ", code[m.start():end + 1]) + code[end + 1:]
    return code, test_mods


def line_at(text, pos):
    return text.count("\n", 0, pos) + 1


# --- The module graph of one crate -----------------------------------------------------

class Module:
    def __init__(self, crate, path, file, parent):
        self.crate, self.path, self.file, self.parent = crate, path, file, parent
        self.raw = file.read_text(encoding="utf-8")
        self.code, self.test_mods = drop_tests(strip_rust(self.raw))
        self.children = {}      # name -> Module (inline modules map to self)
        self.defined = set()    # item names defined at item level
        self.bindings = {}      # name -> [segments] from module-level `use`
        self.globs = []         # [segments] of module-level `use x::*`
        self.refs = []          # (segments, mod_depth, line) to resolve into edges

    @property
    def name(self):
        return "::".join(self.path) or "crate"

    def child_dir(self):
        """The folder where the files of this module's `mod x;` children live."""
        if self.file.name in ("lib.rs", "main.rs", "mod.rs"):
            return self.file.parent
        return self.file.with_suffix("")

    def where(self, line):
        return f"{self.file.relative_to(ROOT)}:{line}"

    def scopes(self):
        """Outermost non-module brace spans (fn, impl, trait...) and inline-module spans."""
        outer, mods, stack, depth = [], [], [], 0
        for i, c in enumerate(self.code):
            if c == "{":
                is_mod = bool(re.search(r"\bmod\s+\w+\s*$", self.code[max(0, i - 80):i]))
                if not is_mod and depth == 0:
                    outer.append([i, len(self.code)])
                depth += not is_mod
                stack.append((i, is_mod))
            elif c == "}" and stack:
                start, is_mod = stack.pop()
                depth -= not is_mod
                if is_mod:
                    mods.append((start, i))
                elif depth == 0:
                    outer[-1][1] = i
        return outer, mods


DEFINES = re.compile(r"\b(?:fn|struct|enum|trait|type|const|static(?:\s+mut)?|union)"
                     r"\s+(?:r#)?([A-Za-z_]\w*)|\bmacro_rules!\s*(\w+)")
USE = re.compile(r"(?<![\w$])(pub(?:\s*\([^)]*\))?\s+)?use\s+([^;]*);")
USE_TOKEN = re.compile(r"::|[{},*]|(?:r#)?\w+")
CODE_PATH = re.compile(r"(?<![\w:])(?<!in )\$?((?:r#)?[A-Za-z_]\w*(?:\s*::\s*(?:r#)?\w+)+)")
KEYWORDS = {"fn", "mut", "unsafe", "async", "extern"}


def use_leaves(tree, base):
    """Expand a `use` tree into (segments, bound name or None, is_glob, offset)."""
    toks = [(m.group(), base + m.start()) for m in USE_TOKEN.finditer(tree)]
    out = []

    def parse(pos, prefix):
        segs = list(prefix)
        while pos < len(toks):
            tok, off = toks[pos]
            if tok == "{":
                pos += 1
                while pos < len(toks) and toks[pos][0] != "}":
                    pos = parse(pos, segs)
                    pos += toks[pos][0] == "," if pos < len(toks) else 0
                return pos + 1
            if tok == "*":
                out.append((segs, None, True, off))
                return pos + 1
            if tok != "::":
                segs = segs + [tok.removeprefix("r#")]
                if pos + 1 < len(toks) and toks[pos + 1][0] == "::":
                    pos += 2
                    continue
                alias = segs[-1] if segs[-1] != "self" else (segs[-2] if len(segs) > 1 else None)
                if segs[-1] == "self":
                    segs = segs[:-1]
                if pos + 2 < len(toks) and toks[pos + 1][0] == "as":
                    alias, pos = toks[pos + 2][0], pos + 2
                out.append((segs, None if alias == "_" else alias, False, off))
                return pos + 1
            pos += 1
        return pos

    if toks and toks[0][0] != "::":        # `use ::x` names an external crate
        parse(0, [])
    return out


def load_crate(crate, root_file):
    """Read every module reachable from the crate root through non-test `mod` items."""
    modules, warnings = [], []

    def visit(path, file, parent):
        m = Module(crate, path, file, parent)
        modules.append(m)
        outer, mods = m.scopes()
        starts = [s for s, _ in outer]
        item_level = lambda p: (k := bisect.bisect(starts, p) - 1) < 0 or outer[k][1] < p
        mod_depth = lambda p: sum(s < p < e for s, e in mods)
        for d in DEFINES.finditer(m.code):
            name = d.group(1) or d.group(2)
            if item_level(d.start()) and name not in KEYWORDS:
                m.defined.add(name)
        uses = []
        for u in USE.finditer(m.code):
            uses.append((u.start(), u.end()))
            for segs, alias, glob, off in use_leaves(u.group(2), u.start(2)):
                if segs:
                    m.refs.append((segs, mod_depth(off), line_at(m.code, off)))
                if item_level(u.start()) and segs:
                    if glob:
                        m.globs.append((segs, mod_depth(off)))
                    elif alias:
                        m.bindings.setdefault(alias, []).append((segs, mod_depth(off)))
        code = m.code
        for s, e in uses:                                     # don't count a use twice
            code = code[:s] + re.sub(r"[^\n]", " ", code[s:e]) + code[e:]
        for p in CODE_PATH.finditer(code):
            segs = [s.strip().removeprefix("r#") for s in p.group(1).split("::")]
            m.refs.append((segs, mod_depth(p.start()), line_at(code, p.start())))
        here = m.child_dir()
        for d in MOD_DECL.finditer(m.code):
            name = d.group(1)
            if d.group(2) == "{":
                m.children[name] = m
                continue
            if mod_depth(d.start()):
                warnings.append(f"{m.where(line_at(m.code, d.start()))}: `mod {name};` inside an "
                                "inline module is not followed")
                continue
            found = [f for f in (here / f"{name}.rs", here / name / "mod.rs") if f.exists()]
            if not found:
                warnings.append(f"{m.where(line_at(m.code, d.start()))}: no file for `mod {name};`")
                continue
            m.children[name] = visit(path + (name,), found[0], m)
        return m

    visit((), root_file, None)
    return modules, warnings


EXTERNAL = object()


def resolve(m, segs, depth, stack):
    """Resolve a path written in module m (inside `depth` inline modules) to
    (defining module, item name or None), EXTERNAL, or None when not crate-internal."""
    first, i = segs[0], 1
    if first in ("crate", "$crate"):
        cur = m
        while cur.parent:
            cur = cur.parent
    elif first == "self":
        cur = m
    elif first == "super":
        cur, i = m, 0
        while i < len(segs) and segs[i] == "super":
            if depth > 0:
                depth -= 1              # `super` of an inline module is its own file
            elif cur.parent is None:
                return None
            else:
                cur = cur.parent
            i += 1
    elif first in m.children or first in m.bindings or first in m.defined:
        cur, i = m, 0
    else:
        return None                     # another crate, std, a local name...
    for k in range(i, len(segs)):
        name = segs[k]
        if name in cur.children:
            cur = cur.children[name]
            continue
        found = lookup(cur, name, stack)
        if found is EXTERNAL:
            return EXTERNAL
        if found is None:
            return cur, name            # not found (a variant, a macro-made item...)
        if found[1] is None:            # the name is a module alias: keep walking
            cur = found[0]
            continue
        return found
    return cur, None


def lookup(m, name, stack):
    """Where an item `name` reachable in module m is defined, following its uses."""
    if (m, name) in stack:
        return None
    stack.add((m, name))
    try:
        if name in m.defined:
            return m, name
        for segs, depth in m.bindings.get(name, []):
            found = resolve(m, segs, depth, stack)
            if found is None or found is EXTERNAL:
                return EXTERNAL
            return found
        for segs, depth in m.globs:
            source = resolve(m, segs, depth, stack)
            if isinstance(source, tuple) and source[1] is None and source[0] is not m:
                found = lookup(source[0], name, stack)
                if found is not None:
                    return found
        return None
    finally:
        stack.discard((m, name))


def strongly_connected(nodes, edges):
    """Tarjan's algorithm; returns the components with more than one node."""
    index, low, on_stack, stack, result = {}, {}, set(), [], []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w is v:
                    break
            if len(component) > 1:
                result.append(component)

    for v in nodes:
        if v not in index:
            connect(v)
    return result


def crate_roots():
    for src in sorted(ROOT.glob("crates/*/src")):
        for root in ("lib.rs", "main.rs"):
            if (src / root).exists():
                yield src.parent.name + (" (bin)" if root == "main.rs" and
                                         (src / "lib.rs").exists() else ""), src / root


def check_circles():
    lines, circles, crates, modules_seen = [], 0, set(), {}
    for crate, root_file in crate_roots():
        modules, warnings = load_crate(crate, root_file)
        lines += [f"warning: {w}" for w in warnings]
        for m in modules:
            modules_seen[m.file] = m
        edges, example = {}, {}
        for m in modules:
            for segs, depth, line in m.refs:
                found = resolve(m, segs, depth, set())
                if isinstance(found, tuple) and found[0] is not m:
                    edges.setdefault(m, set()).add(found[0])
                    example.setdefault((m, found[0]), m.where(line))
        for component in strongly_connected(modules, edges):
            circles += 1
            crates.add(crate)
            component.sort(key=lambda m: m.path)
            lines.append(f"circle in {crate}: " + ", ".join(m.name for m in component))
            for a in component:
                for b in sorted(edges[a] & set(component), key=lambda m: m.path):
                    lines.append(f"    {a.name} -> {b.name}  ({example[(a, b)]})")
    test_dirs = [m.child_dir() / name for m in modules_seen.values() for name in m.test_mods]
    for f in sorted(ROOT.glob("crates/*/src/**/*.rs")):
        if f not in modules_seen and not any(f.with_suffix("") == d or d in f.parents
                                             for d in test_dirs):
            lines.append(f"warning: {f.relative_to(ROOT)} is in no module tree (not checked)")
    summary = f"circles: {circles} in {len(crates)} crates" if circles else "circles: none"
    return lines, circles, summary, modules_seen


def check_crates():
    """Crates are named by their folder (crates/basin-cli's package is called `basin`)."""
    lines, manifests = [], {}
    for cargo in sorted(ROOT.glob("crates/*/Cargo.toml")):
        manifests[cargo.parent.name] = tomllib.loads(cargo.read_text(encoding="utf-8"))
    folder_of = {data["package"]["name"]: folder for folder, data in manifests.items()}
    for crate, data in manifests.items():
        if crate in TEST_ONLY_CRATES:
            continue
        where = f"crates/{crate}/Cargo.toml"
        if crate not in LAYERS:
            lines.append(f"{where}: {crate} is not in LAYERS (scripts/check_layers.py)")
            continue
        tables = [data.get("dependencies", {}), data.get("build-dependencies", {})]
        for target in data.get("target", {}).values():
            tables += [target.get("dependencies", {}), target.get("build-dependencies", {})]
        packages = {spec.get("package", key) if isinstance(spec, dict) else key
                    for table in tables for key, spec in table.items()}
        deps = {folder_of.get(p, p) for p in packages}
        for dep in sorted(d for d in deps if d.startswith("basin-")):
            if dep in TEST_ONLY_CRATES:
                lines.append(f"{where}: {crate} depends on test-only {dep} "
                             "(allowed in [dev-dependencies] only)")
            elif dep not in LAYERS:
                lines.append(f"{where}: {crate} depends on {dep}, which is not in LAYERS")
            elif LAYERS.index(dep) >= LAYERS.index(crate):
                lines.append(f"{where}: {crate} depends on {dep}, which is not below it in LAYERS")
    summary = f"crates: {len(lines)} violations" if lines else "crates: none"
    return lines, len(lines), summary


FN_ITEM = re.compile(r"\bfn\s+(?:r#)?(\w+)")


def check_sizes(modules):
    lines, files, fns = [], 0, 0
    sources = [*ROOT.glob("crates/*/src/**/*.rs"), *ROOT.glob("crates/*/tests/**/*.rs"),
               *ROOT.glob("python/**/*.py")]
    sources += [p for ext in ("js", "mjs", "cjs") for p in ROOT.glob(f"**/*.{ext}")
                if {"console", "static"} & set(p.relative_to(ROOT).parts[:-1])
                and not {"target", "node_modules", ".git"} & set(p.relative_to(ROOT).parts)]
    for f in sorted(set(sources)):
        count = len(f.read_text(encoding="utf-8").splitlines())
        if count > MAX_FILE_LINES:
            files += 1
            lines.append(f"{f.relative_to(ROOT)}: file is {count} lines (limit {MAX_FILE_LINES})")
    for m in sorted(modules.values(), key=lambda m: m.file):
        if "tests" in m.file.relative_to(ROOT).parts:
            continue
        for f in FN_ITEM.finditer(m.code):      # test code is already blanked
            open_ = body_start(m.code, f.end())
            if m.code[open_] != "{":
                continue
            length = line_at(m.code, close_of(m.code, open_)) - line_at(m.code, open_) + 1
            if length > MAX_FN_LINES:
                fns += 1
                lines.append(f"{m.where(line_at(m.code, f.start()))}: fn {f.group(1)} is "
                             f"{length} lines (limit {MAX_FN_LINES})")
    summary = (f"sizes: {files} files over {MAX_FILE_LINES} lines, {fns} functions over "
               f"{MAX_FN_LINES} lines" if files + fns else "sizes: none")
    return lines, files + fns, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="print findings, exit 0")
    parser.add_argument("--only", choices=["circles", "crates", "sizes"])
    args = parser.parse_args()
    found, summaries, modules = 0, [], None
    for check in ("circles", "crates", "sizes"):
        if args.only not in (None, check):
            continue
        if check == "circles":
            lines, n, summary, modules = check_circles()
        elif check == "crates":
            lines, n, summary = check_crates()
        else:
            if modules is None:
                modules = check_circles()[3]
            lines, n, summary = check_sizes(modules)
        print("\n".join(lines)) if lines else None
        found += n
        summaries.append(summary)
    print("\n".join(summaries))
    return 1 if found and not args.report else 0


if __name__ == "__main__":
    sys.exit(main())
