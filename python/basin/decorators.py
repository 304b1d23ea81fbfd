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
    #: False: a fresh process for every invocation; None: `[functions] reuse` decides.
    reuse: Optional[bool] = None
    model: Optional[dict] = None
    expectation: bool = False
    #: What invokes it when deployed: {"kind": "object" | "commit" | "schedule" | "http", ...}.
    trigger: Optional[dict] = None
    #: The table its results are appended to, exactly once per event.
    to: Optional[str] = None
    batch_size: int = 1
    batch_window_seconds: float = 0.0
    max_attempts: int = 3


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
    reuse: Optional[bool] = None,
) -> Callable[[F], F]:
    """The function's environment (Python version, pinned packages) and limits: `timeout`
    (wall clock), `memory`, `internet` (off by default), the `secrets` it may read (by name, as
    environment variables; each declared under `[secrets]` in basin.toml), `concurrency`
    (most invocations at once) and `reuse` (False: a fresh process for every invocation, so
    not even module globals pass from one to the next; by default `[functions] reuse`, on,
    keeps a process for the next invocation of the same function version)."""
    if not re.fullmatch(r"3\.\d+", str(version)):
        raise DeclarationError(f"@basin.python({version!r}): give a Python version like '3.11'")
    pins = dict(pip or {})
    for name, pin in pins.items():
        if not isinstance(name, str) or not isinstance(pin, str) or not pin:
            raise DeclarationError(f"@basin.python: pip={{{name!r}: {pin!r}}} must map a package to a version")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1):
        raise DeclarationError(f"@basin.python(concurrency={concurrency!r}): give a whole number of at least 1")
    if reuse is not None and not isinstance(reuse, bool):
        raise DeclarationError(f"@basin.python(reuse={reuse!r}): give True or False")
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
        d.reuse = reuse
        return func

    return decorate


def model(materialize: Optional[str] = "replace", partition_by: Any = None, name: Optional[str] = None,
          incremental: bool = False, key: Any = None) -> Callable[[F], F]:
    """A model of a pipeline: its output becomes a table (`replace`, `append`), or lives only
    for the run (`None`). With `incremental=True` its table inputs hold only the rows they
    gained and lost since its last run on the target branch (with `_change`), and its output
    is appended, or merged by `key` (a column or a list of them); `basin run --full-refresh`
    rebuilds it."""
    if materialize not in MATERIALIZATIONS:
        raise DeclarationError(f"@basin.model(materialize={materialize!r}): use 'replace', 'append' or None")
    terms = [partition_by] if isinstance(partition_by, str) else list(partition_by or [])
    keys = [key] if isinstance(key, str) else list(key or [])
    if keys and not incremental:
        raise DeclarationError("@basin.model(key=...): a key is for incremental models: add incremental=True")
    if incremental and materialize is None:
        raise DeclarationError("@basin.model(incremental=True): an incremental model is stored: drop materialize=None")

    def decorate(func: F) -> F:
        d = declaration(func)
        d.model = {"name": name or func.__name__, "materialize": materialize, "partition_by": terms,
                   "incremental": bool(incremental), "key": keys}
        return func

    return decorate


def expectation() -> Callable[[F], F]:
    """A check over model outputs: returns a bool (or raises); False fails the run."""

    def decorate(func: F) -> F:
        declaration(func).expectation = True
        return func

    return decorate


_TABLE = re.compile(r"[A-Za-z_]\w*\.[A-Za-z_]\w*")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def _delivery(where: str, to: Optional[str], batch_size: Any, batch_window: Any, max_attempts: Any) -> dict:
    if to is not None and not (isinstance(to, str) and _TABLE.fullmatch(to)):
        raise DeclarationError(f"{where}: to={to!r}: name the table as 'namespace.table'")
    for name, value in (("batch_size", batch_size), ("max_attempts", max_attempts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeclarationError(f"{where}: {name}={value!r}: give a whole number of at least 1")
    window = 0.0 if batch_window in (None, 0) else parse_duration(batch_window, where)
    return {"to": to, "batch_size": batch_size, "batch_window_seconds": window, "max_attempts": max_attempts}


def _trigger(trigger: dict, delivery: dict) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        d = declaration(func)
        if d.trigger is not None:
            raise DeclarationError(f"{func.__qualname__}: one trigger per function (it has a {d.trigger['kind']} trigger)")
        d.trigger = trigger
        for name, value in delivery.items():
            setattr(d, name, value)
        return func

    return decorate


def on_object(
    bucket: str,
    prefix: str = "",
    suffix: str = "",
    to: Optional[str] = None,
    batch_size: int = 1,
    batch_window: Any = None,
    max_attempts: int = 3,
) -> Callable[[F], F]:
    """Runs `handler(event, context)` for each object created in `bucket` whose key starts
    with `prefix` and ends with `suffix`. The event has bucket, key, size, etag, time and
    source; `context.read_table()` and `context.read_bytes()` read the object. With `to`, the
    returned table is appended to that table exactly once per event, `batch_size` events (or
    what arrives within `batch_window`) per commit. An event failing `max_attempts` times is
    dead-lettered."""
    where = f"@basin.on_object({bucket!r})"
    if not isinstance(bucket, str) or not _NAME.fullmatch(bucket):
        raise DeclarationError(f"{where}: a bucket name is lowercase letters, digits, '.', '_' and '-'")
    if not isinstance(prefix, str) or not isinstance(suffix, str):
        raise DeclarationError(f"{where}: prefix and suffix are strings")
    delivery = _delivery(where, to, batch_size, batch_window, max_attempts)
    return _trigger({"kind": "object", "bucket": bucket, "prefix": prefix, "suffix": suffix}, delivery)


def on_commit(
    table: str,
    branch: str = "main",
    to: Optional[str] = None,
    batch_size: int = 1,
    batch_window: Any = None,
    max_attempts: int = 3,
) -> Callable[[F], F]:
    """Runs `handler(event, context)` after commits that change `table` on `branch`, from any
    writer (imports, merges, change capture, other engines, other functions). The event has
    table, branch, from_snapshot and to_snapshot; `context.changes()` gives the rows inserted
    and deleted between them as a pyarrow Table (with `_change`, `_commit`, `_snapshot_id`).
    Each change reaches the function once: with `to`, the returned table is appended in the
    commit that consumes the event. A function cannot watch the table it writes."""
    where = f"@basin.on_commit({table!r})"
    if not isinstance(table, str) or not _TABLE.fullmatch(table):
        raise DeclarationError(f"{where}: name the table as NAMESPACE.TABLE")
    if not isinstance(branch, str) or not branch:
        raise DeclarationError(f"{where}: branch is a branch name, e.g. 'main'")
    if to == table:
        raise DeclarationError(f"{where}: a function cannot write the table it watches (to={to!r}): "
                               "each of its commits would trigger it again")
    delivery = _delivery(where, to, batch_size, batch_window, max_attempts)
    return _trigger({"kind": "commit", "table": table, "branch": branch}, delivery)


def schedule(
    cron: str,
    tz: str = "UTC",
    missed: str = "skip",
    to: Optional[str] = None,
    max_attempts: int = 3,
) -> Callable[[F], F]:
    """Runs `handler(event, context)` at each slot of the cron expression `cron` (five
    fields, or six with seconds first), in time zone `tz` (an IANA name). Slots missed while
    Basin was down are skipped, or run once with `missed="run_once"`."""
    where = f"@basin.schedule({cron!r})"
    if not isinstance(cron, str) or len(cron.split()) not in (5, 6):
        raise DeclarationError(f"{where}: give five fields: minute hour day-of-month month day-of-week "
                               "(or six, with seconds first)")
    if missed not in ("skip", "run_once"):
        raise DeclarationError(f"{where}: missed={missed!r}: use 'skip' or 'run_once'")
    delivery = _delivery(where, to, 1, None, max_attempts)
    return _trigger({"kind": "schedule", "cron": cron, "tz": tz, "missed": missed}, delivery)


def http(
    path: Optional[str] = None,
    to: Optional[str] = None,
    max_attempts: int = 1,
    batch_size: int = 1,
    batch_window: Any = None,
) -> Callable[[F], F]:
    """Runs `handler(event, context)` for `POST /fn/NAME` (or `path`), with the JSON body
    as the event. With `batch_size`, calls waiting together run in one process, up to that
    many (the handler once per call); `batch_window` lets a part batch wait that long for
    more, so a synchronous call may wait as long before it runs."""
    where = f"@basin.http({path!r})"
    if path is not None and not (isinstance(path, str) and path.startswith("/")):
        raise DeclarationError(f"{where}: a path starts with '/'")
    delivery = _delivery(where, to, batch_size, batch_window, max_attempts)
    return _trigger({"kind": "http", "path": path}, delivery)
