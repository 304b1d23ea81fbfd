"""The function side of one invocation, in the child the worker forked for it (after its
walls are up): the function loaded from the request's source, its arguments (tables
memory-mapped, the event, the context), its output written where Basin said, and the reply,
with an error described down to the user's line. basin._worker forks and confines; this runs.
"""

from __future__ import annotations

import inspect
import io
import json
import linecache
import os
import resource
import signal
import sys
import time
import traceback
import types
from typing import Any, Optional


class Context:
    """What a `handler(event, context)` function knows about its invocation."""

    def __init__(self, request: dict, item: Optional[dict] = None):
        self.invocation_id: str = request["invocation"]
        self.function_name: str = request["function"]["name"]
        self.deadline_ms: Optional[int] = request.get("deadline_ms")
        item = item or {}
        self._object: Optional[str] = item.get("object")
        # CSV and JSON objects, read by Basin as `basin import` reads them (same types).
        self._table: Optional[str] = item.get("object_table")
        self._table_error: Optional[str] = item.get("object_table_error")
        event = item.get("event", request.get("event"))
        self._key: str = event.get("key", "") if isinstance(event, dict) else ""
        self._commit_event: bool = isinstance(event, dict) and event.get("type") == "commit"

    def _object_path(self) -> str:
        if self._object is None:
            raise LookupError("this invocation is not about an object (no @basin.on_object event)")
        return self._object

    def read_bytes(self) -> bytes:
        """The object the event is about, whole."""
        with open(self._object_path(), "rb") as f:
            return f.read()

    def read_table(self, format: Optional[str] = None):
        """The object as a pyarrow Table: CSV, JSON (one object per line) or Parquet, by the
        key's suffix unless `format` says. A CSV or JSON object has the column types `basin
        import` would give it (Basin reads it before the call), e.g. decimal(18,2) for money."""
        import pyarrow as pa

        path = self._object_path()
        suffix = self._key.rsplit(".", 1)[-1].lower()
        kind = (format or suffix).lower()
        if kind == suffix:
            if self._table_error is not None:
                raise ValueError(self._table_error)
            if self._table is not None:
                return pa.ipc.open_file(pa.memory_map(self._table, "r")).read_all()
        if kind in ("csv", "tsv", "tbl", "txt"):
            from pyarrow import csv

            options = csv.ParseOptions(delimiter={"tsv": "\t", "tbl": "|"}.get(kind, ","))
            return csv.read_csv(path, parse_options=options)
        if kind in ("json", "jsonl", "ndjson"):
            from pyarrow import json

            return json.read_json(path)
        if kind in ("parquet", "pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if kind in ("arrow", "feather", "ipc"):
            return pa.ipc.open_file(pa.memory_map(path, "r")).read_all()
        raise ValueError(f"cannot tell the format of {self._key!r}: pass read_table(format='csv'|'json'|'parquet')")

    def changes(self):
        """The rows the watched table gained and lost in the commits this event stands for
        (an @basin.on_commit event), as a pyarrow Table: the table's columns, then `_change`
        ('insert', 'delete'; 'update_before', 'update_after' for a table with a key),
        `_commit` and `_snapshot_id`. Basin read them before the call."""
        import pyarrow as pa

        if not self._commit_event:
            raise LookupError("this invocation is not about a commit (no @basin.on_commit event)")
        if self._table_error is not None:
            raise ValueError(self._table_error)
        return pa.ipc.open_file(pa.memory_map(self._table, "r")).read_all()

    def remaining_time_ms(self) -> Optional[int]:
        """Milliseconds left before the timeout (None: no timeout)."""
        if self.deadline_ms is None:
            return None
        return max(0, self.deadline_ms - int(time.time() * 1000))


def serve(request: dict, missing: list) -> dict:
    """Runs the function the request names (or each event of its batch) and answers with
    the reply Basin reads on the control connection."""
    function = request["function"]
    # A kept process serves several invocations: each is metered for its own CPU time.
    before, _ = _usage()
    try:
        if request.get("batch") is not None:
            reply: dict = {"type": "result", "status": "ok", "batch": _serve_batch(request)}
        else:
            func = _load(function)
            value = func(**_arguments(func, request, request.get("event"), Context(request)))
            where = request["output"]
            output = _write_output(value, where["path"], function["name"], where.get("by_reference", False))
            reply = {"type": "result", "status": "ok", "output": output}
    except BaseException as e:  # noqa: BLE001 - every failure goes back to Basin
        reply = {"type": "result", "status": "error", "error": _describe(e, function["file"])}
    cpu_ms, max_rss = _usage()
    reply["usage"] = {"cpu_ms": round(cpu_ms - before, 3), "max_rss_bytes": max_rss}
    reply["unconfined"] = missing
    return reply


def _usage() -> tuple:
    """CPU time (ms) of this process and its reaped children so far, and the most memory
    (bytes) either held."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime) * 1000
    return cpu, max(usage.ru_maxrss, children.ru_maxrss) * 1024


#: The most output kept per event of a batch (the tail); all of it still streams to Basin.
ITEM_LOG_LIMIT = 64 * 1024


class _Tee(io.TextIOBase):
    """Writes to a stream and keeps a copy: one event's share of the batch's output."""

    def __init__(self, stream, copy: io.StringIO):
        self._stream, self._copy = stream, copy

    def write(self, text: str) -> int:
        self._copy.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()


class _ItemTimeout(BaseException):
    """Raised by SIGALRM: a BaseException, so a handler's `except Exception` lets it through."""


def _alarm(signum, frame):
    raise _ItemTimeout()


def _serve_batch(request: dict) -> list:
    """Calls the handler once per event of the batch, in this one process (the module is
    loaded once), each with its own time limit, output file and share of the logs."""
    function = request["function"]
    func = _load(function)
    limit = request.get("item_timeout_ms")
    signal.signal(signal.SIGALRM, _alarm)
    stdout, stderr = sys.stdout, sys.stderr
    results = []
    for item in request["batch"]:
        copy = io.StringIO()
        sys.stdout, sys.stderr = _Tee(stdout, copy), _Tee(stderr, copy)
        try:
            if limit:
                signal.setitimer(signal.ITIMER_REAL, limit / 1000)
            try:
                value = func(**_arguments(func, request, item.get("event"), Context(request, item)))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            output = _write_output(value, item["output"]["path"], function["name"])
            result: dict = {"status": "ok", "output": output}
        except _ItemTimeout:
            result = {"status": "error", "error": {
                "type": "TimeoutError", "message": f"the handler ran longer than {limit / 1000:g}s on this event",
                "traceback": "", "file": None, "line": None}}
        except BaseException as e:  # noqa: BLE001 - one event's failure is its own
            result = {"status": "error", "error": _describe(e, function["file"])}
        finally:
            sys.stdout, sys.stderr = stdout, stderr
        result["logs"] = copy.getvalue()[-ITEM_LOG_LIMIT:]
        results.append(result)
    return results


#: Functions loaded in this process, by (file, source, name): a kept child (`reuse`) runs
#: the same function again without loading its module again, so module globals persist
#: between its invocations, as in a warm Lambda environment.
_LOADED: dict = {}


def _load(function: dict):
    path, source, name = function["file"], function["source"], function["name"]
    key = (path, source, name)
    if key in _LOADED:
        return _LOADED[key]
    # The source comes through the protocol (the user's folder is not readable from here);
    # linecache lets tracebacks show its lines.
    linecache.cache[path] = (len(source), None, source.splitlines(True), path)
    module = types.ModuleType("__basin_function__")
    module.__file__ = path
    sys.modules[module.__name__] = module
    exec(compile(source, path, "exec"), module.__dict__)
    func = getattr(module, name, None)
    if not callable(func):
        raise LookupError(f"{path} defines no function `{name}`")
    _LOADED[key] = func
    return func


def _arguments(func, request: dict, event: Any, context: Context) -> dict:
    params = inspect.signature(func).parameters
    kwargs: dict = {}
    _REGIONS.clear()
    for arg, spec in request.get("inputs", {}).items():
        kwargs[arg] = _read_table(arg, spec["path"])
    if "event" in params and "event" not in kwargs:
        kwargs["event"] = event
    if "params" in params and "params" not in kwargs:
        kwargs["params"] = request.get("params") or {}
    if "context" in params and "context" not in kwargs:
        kwargs["context"] = context
    return kwargs


#: The inputs' mappings, kept until the process ends: undoing the mapping of a large input
#: (every page's entry) takes tens of milliseconds, which the exit after the reply does instead.
_MAPPED: list = []

#: Column references one reply may carry (each some 80 bytes of it): past them the rest of
#: the table is written, so a reply stays far below `[functions] max_reply_size`.
_REFERENCE_LIMIT = 100_000

#: This invocation's inputs as (name, first address, length) of their mappings: an output
#: column whose buffers all lie in one is handed back by reference (`_reference`). Emptied
#: for each invocation, so a table a kept process held from an earlier one is written out.
_REGIONS: list = []


def _read_table(name: str, path: str):
    """A table memory-mapped from the IPC file Basin wrote: no copy, no parse."""
    import pyarrow as pa

    source = pa.memory_map(path, "r")
    _MAPPED.append(source)
    whole = source.read_buffer(source.size())
    _REGIONS.append((name, whole.address, whole.size))
    source.seek(0)
    return pa.ipc.open_file(source).read_all()


def _flat(t) -> bool:
    """Types whose arrays are their buffers alone (no children, no dictionary)."""
    import pyarrow.types as pt

    return (pt.is_primitive(t) or pt.is_decimal(t) or pt.is_string(t) or pt.is_large_string(t)
            or pt.is_binary(t) or pt.is_large_binary(t) or pt.is_fixed_size_binary(t))


def _reference(batch) -> Optional[dict]:
    """The batch as references into the inputs' files, when each of its columns lies in one
    (a column passed through, selected, renamed or sliced): Basin reads those bytes where
    they already are instead of the worker copying them into the output file."""
    if not _REGIONS or batch.num_columns == 0:
        return None
    columns = []
    for array in batch.columns:
        if not _flat(array.type):
            return None
        found, buffers = None, []
        for i, buffer in enumerate(array.buffers()):
            if buffer is None and i == 0:  # no validity bitmap: no nulls
                buffers.append(None)
                continue
            if buffer is None:
                return None
            start, end = buffer.address, buffer.address + buffer.size
            region = next((r for r in _REGIONS if r[1] <= start and end <= r[1] + r[2]), None)
            if region is None or (found is not None and region[0] != found):
                return None
            found = region[0]
            buffers.append([start - region[1], buffer.size])
        if found is None:
            return None
        columns.append({"input": found, "offset": array.offset, "buffers": buffers})
    return {"from": "input", "rows": batch.num_rows, "columns": columns}


def _batches(value: Any, name: str):
    """(schema, iterator of record batches) for any table-like value; None if not one."""
    import pyarrow as pa

    if isinstance(value, pa.Table):
        return value.schema, iter(value.to_batches())
    if isinstance(value, pa.RecordBatch):
        return value.schema, iter([value])
    if isinstance(value, pa.RecordBatchReader):
        return value.schema, iter(value)
    module = type(value).__module__.split(".")[0]
    if module == "pandas" and type(value).__name__ == "DataFrame":
        table = pa.Table.from_pandas(value, preserve_index=False)
        return table.schema, iter(table.to_batches())
    if module == "polars" and type(value).__name__ == "DataFrame":
        table = value.to_arrow()
        return table.schema, iter(table.to_batches())
    if hasattr(value, "__arrow_c_stream__"):
        reader = pa.RecordBatchReader.from_stream(value)
        return reader.schema, iter(reader)
    return None


def _write_output(value: Any, path: str, name: str, by_reference: bool = False) -> dict:
    if value is None:
        return {"kind": "none"}
    if type(value).__module__.split(".")[0] in ("pyarrow", "pandas", "polars") or hasattr(value, "__arrow_c_stream__"):
        found = _batches(value, name)
        if found is None:
            raise TypeError(f"{name} returned a {type(value).__name__}; return a pyarrow Table, a "
                            "RecordBatchReader, a pandas or polars DataFrame, a JSON value or None")
        import pyarrow as pa

        schema, batches = found
        rows, pieces, references = 0, [], 0
        # Basin may have put a file of allocated shared memory (zeros) at `path`: writing over
        # its pages is twice as fast as into new ones. It is cut to the table's length after.
        with open(path, "r+b" if os.path.isfile(path) else "wb") as f:
            # Not closed by its own `with`: closing it would close `f` before the cut.
            with pa.ipc.new_file(pa.PythonFile(f, mode="w"), schema) as writer:
                for batch in batches:
                    room = by_reference and references + batch.num_columns <= _REFERENCE_LIMIT
                    piece = _reference(batch) if room else None
                    if piece is not None:
                        pieces.append(piece)
                        references += batch.num_columns
                    else:
                        writer.write_batch(batch)
                        if pieces and pieces[-1]["from"] == "file":
                            pieces[-1]["count"] += 1
                        else:
                            pieces.append({"from": "file", "count": 1})
                    rows += batch.num_rows
            size = f.tell()
            f.truncate(size)
        output = {"kind": "table", "path": path, "rows": rows, "bytes": size}
        if any(p["from"] == "input" for p in pieces):
            output["batches"] = pieces
        return output
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} returned a {type(value).__name__}, which is neither a table nor "
                        f"JSON ({e}); return a pyarrow Table, a DataFrame, a JSON value or None") from None
    return {"kind": "json", "value": value}


def _describe(e: BaseException, user_file: str) -> dict:
    """The error as Basin shows it: type, message, and the traceback from user code down."""
    te = traceback.TracebackException.from_exception(e)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename != __file__])
    user = [f for f in te.stack if f.filename == user_file]
    if isinstance(e, SyntaxError) and e.filename == user_file:
        line = e.lineno
    else:
        line = user[-1].lineno if user else None
    message = str(e) if not isinstance(e, SystemExit) else f"the function called sys.exit({e.code!r})"
    described = {
        "type": type(e).__name__,
        "message": message,
        "traceback": "".join(te.format()),
        "file": user_file if line is not None else None,
        "line": line,
    }
    hint = _missing_package_hint(e, user_file)
    if hint:
        described["hint"] = hint
    return described


# Modules whose package on PyPI has another name.
_PACKAGE_OF = {
    "sklearn": "scikit-learn", "yaml": "PyYAML", "cv2": "opencv-python", "PIL": "pillow",
    "bs4": "beautifulsoup4", "dateutil": "python-dateutil", "dotenv": "python-dotenv",
    "jwt": "PyJWT", "google.protobuf": "protobuf", "psycopg2": "psycopg2-binary",
}


def _missing_package_hint(e: BaseException, user_file: str):
    """For an import of a package the environment lacks: where to declare it. The
    environment holds only what the decorator's (or the project's) `pip` pins."""
    if not isinstance(e, ModuleNotFoundError) or not e.name:
        return None
    module = e.name.split(".")[0]
    if module in getattr(sys, "stdlib_module_names", ()) or module == "basin":
        return None
    package = _PACKAGE_OF.get(e.name) or _PACKAGE_OF.get(module) or module
    return (f"`{package}` is not installed in the function's environment: add it to `pip={{...}}` "
            f"of its decorator in {user_file} (`@basin.python(pip={{\"{package}\": \"VERSION\"}})`), "
            f"or for a pipeline's models to `[project.pip]` in basin.toml")
