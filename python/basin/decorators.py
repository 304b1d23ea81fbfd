"""The decorators and `Model`: each records a part of a function's declaration."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute on a decorated function that holds its declaration.
ATTRIBUTE = "__basin__"

MATERIALIZATIONS = ("replace", "append", None)


class DeclarationError(ValueError):
    """A decorator was given something Basin cannot run; the message says what and where."""


@dataclass(frozen=True)
class Model:
    """An input: a table (`"ns.table"`) or another model of the project (`"name"`),
    with the columns to read and a filter pushed down to the scan."""

    name: str
    columns: Optional[Sequence[str]] = None
    filter: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", self.name):
            raise DeclarationError(f"Model({self.name!r}): name a table as 'ns.table' or a model as 'name'")
        if self.columns is not None:
            if isinstance(self.columns, str) or not all(isinstance(c, str) for c in self.columns):
                raise DeclarationError(f"Model({self.name!r}): columns must be a list of column names")
            object.__setattr__(self, "columns", list(self.columns))

    def to_json(self) -> dict:
        return {"name": self.name, "columns": self.columns, "filter": self.filter}


@dataclass
class Declaration:
    """Everything the decorators of one function said."""

    python: Optional[str] = None
    pip: dict = field(default_factory=dict)
    timeout_seconds: Optional[float] = None
    memory_bytes: Optional[int] = None
    internet: bool = False
    secrets: list = field(default_factory=list)
    concurrency: Optional[int] = None
    model: Optional[dict] = None
    expectation: bool = False


def declaration(func: Callable) -> Declaration:
    """The function's declaration, created empty on first use."""
    found = getattr(func, ATTRIBUTE, None)
    if found is None:
        found = Declaration()
        setattr(func, ATTRIBUTE, found)
    return found


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_BYTES = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, None: 1}


def parse_duration(value: Any, where: str) -> float:
    """`"5m"`, `"30s"`, `"250ms"`, `"1h"` or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = _DURATION.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise DeclarationError(f"{where}: timeout {value!r} is not a duration like '30s', '5m' or '1h'")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_size(value: Any, where: str) -> int:
    """`"2GiB"`, `"512MiB"`, `"1GB"` or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise DeclarationError(f"{where}: memory {value!r} is not a size like '512MiB' or '2GiB'")
    return int(float(m.group(1)) * _BYTES[m.group(2)])


def python(
    version: str = "3.11",
    pip: Optional[dict] = None,
    timeout: Any = None,
    memory: Any = None,
    internet: bool = False,
    secrets: Sequence[str] = (),
    concurrency: Optional[int] = None,
) -> Callable[[F], F]:
    """The function's environment (Python version, pinned packages) and limits: `timeout`
    (wall clock), `memory`, `internet` (off by default), the `secrets` it may read (environment
    variables of Basin's, by name) and `concurrency` (most invocations at once)."""
    if not re.fullmatch(r"3\.\d+", str(version)):
        raise DeclarationError(f"@basin.python({version!r}): give a Python version like '3.11'")
    pins = dict(pip or {})
    for name, pin in pins.items():
        if not isinstance(name, str) or not isinstance(pin, str) or not pin:
            raise DeclarationError(f"@basin.python: pip={{{name!r}: {pin!r}}} must map a package to a version")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1):
        raise DeclarationError(f"@basin.python(concurrency={concurrency!r}): give a whole number of at least 1")
    if isinstance(secrets, str) or not all(isinstance(s, str) and s.isidentifier() for s in secrets):
        raise DeclarationError(f"@basin.python(secrets={secrets!r}): give a list of environment variable names")

    def decorate(func: F) -> F:
        where = f"@basin.python on {func.__qualname__}"
        d = declaration(func)
        d.python = str(version)
        d.pip = pins
        d.timeout_seconds = None if timeout is None else parse_duration(timeout, where)
        d.memory_bytes = None if memory is None else parse_size(memory, where)
        d.internet = bool(internet)
        d.secrets = list(secrets)
        d.concurrency = concurrency
        return func

    return decorate


def model(materialize: Optional[str] = "replace", partition_by: Any = None, name: Optional[str] = None) -> Callable[[F], F]:
    """A model of a pipeline: its output becomes a table (`replace`, `append`), or lives only
    for the run (`None`)."""
    if materialize not in MATERIALIZATIONS:
        raise DeclarationError(f"@basin.model(materialize={materialize!r}): use 'replace', 'append' or None")
    terms = [partition_by] if isinstance(partition_by, str) else list(partition_by or [])

    def decorate(func: F) -> F:
        d = declaration(func)
        d.model = {"name": name or func.__name__, "materialize": materialize, "partition_by": terms}
        return func

    return decorate


def expectation() -> Callable[[F], F]:
    """A check over model outputs: returns a bool (or raises); False fails the run."""

    def decorate(func: F) -> F:
        declaration(func).expectation = True
        return func

    return decorate
