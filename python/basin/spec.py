"""What a Python file declares, as JSON: `python -m basin.spec FILE.py`."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from dataclasses import asdict
from pathlib import Path

from basin.decorators import ATTRIBUTE, Model


def describe(path: str) -> list:
    """Imports the file (running only its top level) and lists its declared functions."""
    file = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(f"basin_user_{abs(hash(str(file)))}", file)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up here
    spec.loader.exec_module(module)
    found = []
    for name, func in inspect.getmembers(module, inspect.isfunction):
        declared = getattr(func, ATTRIBUTE, None)
        if declared is None or func.__module__ != module.__name__:
            continue
        inputs = {
            p.name: p.default.to_json()
            for p in inspect.signature(func).parameters.values()
            if isinstance(p.default, Model)
        }
        found.append({
            "function": name,
            "file": str(file),
            "line": func.__code__.co_firstlineno,
            "inputs": inputs,
            **asdict(declared),
        })
    return sorted(found, key=lambda f: f["line"])


def main(argv: list) -> int:
    if len(argv) != 1:
        print("usage: python -m basin.spec FILE.py", file=sys.stderr)
        return 2
    json.dump(describe(argv[0]), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
