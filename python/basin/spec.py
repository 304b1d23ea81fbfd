"""What a Python file declares, as JSON: `python -m basin.spec FILE.py [--function NAME]`.

The file is parsed, never imported: Basin reads declarations before the function's
environment exists (to know which environment to build), and without running user code.
So decorator arguments and `basin.Model(...)` defaults must be literals (strings, numbers,
lists, dicts, True/False/None), as in Bauplan; anything else is an error naming the line.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

from basin import decorators
from basin.decorators import DeclarationError, Declaration, Model

#: The SDK names that declare something, by what they do.
DECORATORS: dict = {
    "python": decorators.python,
    "model": decorators.model,
    "expectation": decorators.expectation,
    "on_object": decorators.on_object,
    "on_commit": decorators.on_commit,
    "schedule": decorators.schedule,
    "http": decorators.http,
}


class _Names:
    """How the file refers to the SDK: `import basin [as b]`, `from basin import python [as p]`."""

    def __init__(self, tree: ast.Module):
        self.modules = set()
        self.direct: dict = {}
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "basin":
                        self.modules.add(alias.asname or "basin")
            elif isinstance(node, ast.ImportFrom) and node.module == "basin":
                for alias in node.names:
                    self.direct[alias.asname or alias.name] = alias.name

    def sdk_name(self, node: ast.expr) -> Optional[str]:
        """`basin.python` or `python` (imported from basin) -> "python"."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in self.modules:
                return node.attr
        if isinstance(node, ast.Name):
            return self.direct.get(node.id)
        return None


def _literal(node: ast.expr, where: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise DeclarationError(
            f"{where}: `{ast.unparse(node)}` is not a literal; Basin reads declarations without "
            "running the file, so write the value itself (a string, number, list or dict)"
        ) from None


def _call(node: ast.Call, func: Callable, where: str) -> Any:
    args = [_literal(a, where) for a in node.args]
    kwargs = {}
    for k in node.keywords:
        if k.arg is None:
            raise DeclarationError(f"{where}: `**{ast.unparse(k.value)}` is not allowed; name each argument")
        kwargs[k.arg] = _literal(k.value, where)
    try:
        return func(*args, **kwargs)
    except TypeError as e:
        raise DeclarationError(f"{where}: {e}") from None


#: The decorators a `[triggers.NAME]` section of basin.toml may stand for.
TRIGGERS = ("on_object", "on_commit", "schedule", "http")


def toml_triggers(folder: Path) -> dict:
    """The `[triggers.NAME]` sections of `folder/basin.toml`: triggers declared beside the
    code instead of in it, one decorator's arguments each, e.g.
    `[triggers.load.on_object]` with `bucket = "landing"`, `suffix = ".csv"`."""
    path = folder / "basin.toml"
    if not path.is_file():
        return {}
    import tomllib

    try:
        triggers = tomllib.loads(path.read_text()).get("triggers", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise DeclarationError(f"{path}: {e}") from None
    if not isinstance(triggers, dict):
        raise DeclarationError(f"{path}: `triggers` is a table of [triggers.FUNCTION] sections")
    return triggers


def _toml_trigger(spec: Any, function: str, folder: Path) -> Callable:
    """The decorator a `[triggers.FUNCTION]` section stands for."""
    where = f"{folder / 'basin.toml'}: [triggers.{function}]"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in TRIGGERS:
        raise DeclarationError(f"{where}: give one of {', '.join(TRIGGERS)} as a table, e.g. "
                               f"[triggers.{function}.on_object] with bucket = \"landing\"")
    kind, args = next(iter(spec.items()))
    if not isinstance(args, dict):
        raise DeclarationError(f"{where}: `{kind}` takes a table of the decorator's arguments")
    try:
        return DECORATORS[kind](**args)
    except TypeError as e:
        raise DeclarationError(f"{where}: {e}") from None
    except DeclarationError as e:
        raise DeclarationError(f"{where}: {e}") from None


def _declared(node: ast.FunctionDef, names: _Names, file: str, triggers: dict) -> Optional[Declaration]:
    """Applies the function's Basin decorators (bottom-up, as Python does) to a stand-in,
    then the trigger basin.toml declares for it, if any."""
    stand_in = lambda: None  # noqa: E731 - only carries the declaration
    stand_in.__qualname__ = stand_in.__name__ = node.name
    found = False
    for dec in reversed(node.decorator_list):
        call = dec if isinstance(dec, ast.Call) else None
        name = names.sdk_name(call.func if call else dec)
        if name not in DECORATORS:
            continue
        found = True
        where = f"{file}:{dec.lineno}: @{ast.unparse(call.func if call else dec)}"
        decorate = _call(call, DECORATORS[name], where) if call else DECORATORS[name]()
        decorate(stand_in)
    if node.name in triggers:
        found = True
        _toml_trigger(triggers[node.name], node.name, Path(file).parent)(stand_in)
    return getattr(stand_in, decorators.ATTRIBUTE, None) if found else None


def _inputs(node: ast.FunctionDef, names: _Names, file: str) -> dict:
    args = node.args.posonlyargs + node.args.args
    defaults = [None] * (len(args) - len(node.args.defaults)) + list(node.args.defaults)
    pairs = list(zip(args, defaults)) + list(zip(node.args.kwonlyargs, node.args.kw_defaults))
    inputs = {}
    for arg, default in pairs:
        if isinstance(default, ast.Call) and names.sdk_name(default.func) == "Model":
            where = f"{file}:{default.lineno}: parameter `{arg.arg}`"
            inputs[arg.arg] = _call(default, Model, where).to_json()
    return inputs


def _imports(tree: ast.Module) -> list:
    """The absolute module names the file imports, anywhere in it: `import a.b` gives a.b,
    `from a.b import c` gives a.b and a.b.c (c may be a submodule). The worker imports those of
    packages it has loaded before it forks, so each invocation does not import them again."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
    return sorted(found)


def describe(path: str, function: Optional[str] = None) -> list:
    """The file's declared functions in file order; with `function`, just that one (declared
    or not: a plain function gets the defaults)."""
    file = Path(path).resolve()
    try:
        source = file.read_text()
    except OSError as e:
        raise _unhinted(f"{path}: cannot read: {e.strerror}") from None
    try:
        tree = ast.parse(source, filename=str(file))
    except SyntaxError as e:
        raise _unhinted(_syntax_error(path, e)) from None
    names = _Names(tree)
    imports = _imports(tree)
    triggers = toml_triggers(file.parent)
    found = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if function is not None and node.name != function:
            continue
        declared = _declared(node, names, str(file), triggers)
        if declared is None and function is None:
            continue
        declared = declared or Declaration()
        params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
        found.append({
            "function": node.name,
            "file": str(file),
            "line": node.lineno,
            "params": params,
            "inputs": _inputs(node, names, str(file)),
            "imports": imports,
            **asdict(declared),
        })
    if function is not None and not found:
        defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        raise _unhinted(
            f"{path}: no function `{function}` at the top level"
            + (f" (functions: {', '.join(defined)})" if defined else " (it defines no functions)")
        )
    return found


# What a decorator's error comes with: declarations are read, never run.
LITERALS_HINT = "declarations are read without running the file: decorator arguments must be literals"


def _unhinted(message: str) -> DeclarationError:
    """An error that is not about a decorator's arguments (the literals hint would mislead)."""
    e = DeclarationError(message)
    e.hint = None
    return e


def _syntax_error(path: str, e: SyntaxError) -> str:
    """`FILE:LINE:COLUMN: MESSAGE`, then the line with a caret under the place, as Python
    itself shows it."""
    where = f"{path}:{e.lineno}" + (f":{e.offset}" if e.offset else "")
    text = (e.text or "").rstrip("\r\n")
    if not text or not e.lineno:
        return f"{where}: {e.msg}"
    column = max(1, min(e.offset or 1, len(text) + 1))
    end = e.end_offset if e.end_offset and e.end_lineno == e.lineno and e.end_offset > column else column + 1
    pad = "".join("\t" if c == "\t" else " " for c in text[:column - 1])
    gutter = " " * len(str(e.lineno))
    return (f"{where}: {e.msg}\n{gutter} |\n{e.lineno} | {text}\n"
            f"{gutter} | {pad}{'^' * max(1, min(end, len(text) + 1) - column)}")


def main(argv: list) -> int:
    args = list(argv)
    function = None
    if "--function" in args:
        i = args.index("--function")
        function = args[i + 1] if i + 1 < len(args) else None
        del args[i:i + 2]
    if len(args) != 1:
        print("usage: python -m basin.spec FILE.py [--function NAME]", file=sys.stderr)
        return 2
    try:
        found = describe(args[0], function)
    except DeclarationError as e:
        print(f"error: {e}", file=sys.stderr)
        hint = getattr(e, "hint", LITERALS_HINT)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        return 1
    json.dump(found, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
