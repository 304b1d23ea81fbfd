"""Basin's worker: a fork server per environment, and the function side of the protocol.

`python -I -m basin._worker zygote [--preload name,...] [--ahead JSON]` starts a fork server (a "zygote",
as in SOCK): it builds walls of its own (basin._sandbox.confine_worker), imports pyarrow, the
environment's packages and the modules of theirs the function imports (`--preload`:
distribution and module names) once, inside them, freezes the heap, then
waits for fork requests from Basin, one JSON line each on stdin. Every invocation runs in a
fresh child forked from it, so no state passes from one invocation to the next, and the child
starts with the heavy imports already done. One child is forked ahead of time, builds its
walls (`--ahead`: those of the functions this worker serves, with or without the internet;
all but the rules for the invocation's own folder) and waits for its request, so an
invocation waits for neither the fork nor most of its confinement; a request with other walls
gets a child of its own. With the `processes` wall the zygote lives in a user and a PID namespace of
its own (its parent waits outside), where it may fork each child as the first process of a new
PID namespace: one fork per invocation. The zygote reports on stdout, with ids as the host sees
them: `{"ready": ...}` once, `{"spare": N}` when a child is forked ahead (Basin moves it into
a memory group while it waits), `{"forked": INVOCATION, "pid": N}` per request and
`{"exited": N, "code": C}` / `{"exited": N, "signal": S}` when a child ends.

The child connects to Basin's socket once (Basin hands it its stdout and stderr, its secrets
and, for a Python function, the request), finishes its walls (basin._sandbox), then either runs
a Python function (speaking the protocol itself: basin._invocation) or execs a program that
speaks it. docs/protocol.md describes the protocol for programs in any language.
"""

from __future__ import annotations

import array
import gc
import importlib
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import Optional

from basin import _internet, _sandbox
from basin._invocation import serve

PROTOCOL = 1
#: Seconds of quiet before the next spare child is forked: not while the invocation just
#: handed over is starting, on the same cores.
SPARE_DELAY = 0.02
#: Requests closer together than this (seconds) are a burst: the next spare is forked at
#: once, since the next request would come before the quiet does.
BURST = 0.05


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


# ---------------------------------------------------------------------------------------------
# The zygote


def _preload(names: list) -> list:
    """Imports pyarrow and the top-level modules of the environment's packages (the
    distribution names in `names`), then the other names, the modules the function imports,
    where they belong to a package already loaded (`pyarrow.compute`, `numpy.linalg`): a
    module of the user's own, or of a package not loaded, is left to the function's process,
    so the zygote runs no code the environment does not ship."""
    from importlib import metadata

    packages, modules = ["pyarrow", "pyarrow.ipc"], []
    for name in names:
        try:
            top = metadata.distribution(name).read_text("top_level.txt")
        except (metadata.PackageNotFoundError, ValueError):
            modules.append(name)
            continue
        tops = (top or name.replace("-", "_")).split()
        packages += [n for n in tops if n.isidentifier() and not n.startswith("_")]
    loaded = []
    for name in packages:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - a module that cannot load is the function's problem
            pass
    for name in modules:
        if name.split(".")[0] not in sys.modules or name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception:  # noqa: BLE001 - `from a import b` where b is not a module
            pass
    return loaded


def zygote(preload: list) -> None:
    _sandbox._libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # die with Basin
    started = time.perf_counter()
    _sandbox.prepare(AHEAD)
    if NAMESPACE["why"] is None and "processes" not in OFF:
        NAMESPACE["fd"] = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        # Before the packages' import code runs: it runs inside these walls.
        for why in _sandbox.confine_worker(AHEAD):
            print(f"the worker's own walls: {why}", file=sys.stderr)
    loaded = _preload(preload)
    gc.collect()
    gc.freeze()  # children share these pages instead of copying them on the next collection
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _send(1, {"ready": PROTOCOL, "pid": _sandbox.host_pid(), "python": sys.version.split()[0],
              "preloaded": loaded, "ms": round((time.perf_counter() - started) * 1000, 1)})
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    # A child is forked ahead and waits, so a request only has to be handed over. The next
    # one is forked once the zygote has been quiet for a moment, or at once in a burst.
    spare: Optional[tuple] = _spawn(selector, (wake_r, wake_w), AHEAD)
    pending = b""
    last_request, burst = 0.0, False
    while True:
        ready = selector.select(timeout=None if spare else (0 if burst else SPARE_DELAY))
        if spare is None and (burst or not ready):
            spare = _spawn(selector, (wake_r, wake_w), AHEAD)
        for key, _ in ready:
            if key.fd == wake_r:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                _reap()
                continue
            data = os.read(0, 1 << 16)
            if not data:
                return  # Basin closed our stdin: retire
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if not line.strip():
                    continue
                fork = json.loads(line)
                now = time.monotonic()
                burst, last_request = now - last_request < BURST, now
                if _sandbox.fits(AHEAD, fork["sandbox"]):
                    spare = spare or _spawn(selector, (wake_r, wake_w), AHEAD)
                    _hand_over(line, fork, spare, selector, (wake_r, wake_w))
                    spare = None
                else:
                    # Walls unlike the spare's (a function with the internet): a child of its own.
                    one_off = _spawn(selector, (wake_r, wake_w), fork["sandbox"])
                    _hand_over(line, fork, one_off, selector, (wake_r, wake_w))


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid and pid == _internet.SLIRP["pid"]:
            # The worker's way out is gone: end, and Basin starts another worker.
            print("basin: slirp4netns, the internet wall's network, ended; the worker ends",
                  file=sys.stderr)
            os._exit(70)
        if pid in INIT_OF:
            # A namespace's init, killed by Basin: its id may be reused from now on.
            INITS.pop(INIT_OF.pop(pid), None)
            continue
        if pid not in HOST_PIDS:
            continue  # the init of a child that ended first (killed then, below)
        init = INITS.pop(pid, None)
        if init is not None:
            # Killing the init ends whatever the child left in its namespace.
            del INIT_OF[init[0]]
            try:
                os.kill(init[0], signal.SIGKILL)
            except OSError:
                pass
        pid = HOST_PIDS.pop(pid)
        if os.WIFSIGNALED(status):
            _send(1, {"exited": pid, "signal": os.WTERMSIG(status)})
        else:
            _send(1, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _spawn(selector, wake: tuple, config: dict) -> tuple:
    """Forks a spare child that builds the walls of the invocation `config` ahead (all but
    the rules for the invocation's folder), then waits for one request on a pipe; returns
    (pid, the request pipe). With the `processes` wall the child is forked into a PID
    namespace of its own, beside the namespace's init. The child closes every request pipe
    the zygote holds open (`REQUEST_PIPES`): with another child's, it could send that child a
    request of its choosing."""
    _sandbox.refresh(AHEAD)
    r, w = os.pipe()
    pid = _fork()
    if pid:
        os.close(r)
        REQUEST_PIPES.add(w)
        # Basin moves it into a memory group while it builds its walls and waits.
        _send(1, {"spare": HOST_PIDS[pid]})
        return pid, w
    code = 70
    try:
        for fd in (w, *wake, *REQUEST_PIPES):
            os.close(fd)
        if NAMESPACE["fd"] is not None:
            os.close(NAMESPACE["fd"])
            KEEPABLE["namespace"] = True
        selector.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _sandbox.own_process_group()
        _lower_priority(config.get("limits", {}).get("nice", 0))
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # the zygote's pipes are not the child's
        os.dup2(devnull, 1)
        os.close(devnull)
        walls = _sandbox.confine_ahead(config, _process_walls())
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(r, 1 << 16)
            if not chunk:
                os._exit(0)  # the zygote retired this spare
            line += chunk
        os.close(r)
        code = _child(json.loads(line), walls)
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote loop
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _fork() -> int:
    """os.fork(), into a PID namespace of the child's own when the zygote can make one; the
    parent notes the child's and its init's ids as Basin sees them."""
    if NAMESPACE["fd"] is None:
        pid = os.fork()
        if pid:
            HOST_PIDS[pid] = pid
        return pid
    try:
        pid, init = _sandbox.fork_into_namespace(NAMESPACE["fd"])
    except OSError as e:
        # Not expected once the zygote has its namespace; the functions run without the wall.
        os.close(NAMESPACE["fd"])
        NAMESPACE.update(fd=None, why=f"no PID namespace for the invocation ({e})")
        return _fork()
    if pid:
        HOST_PIDS[pid] = _sandbox.host_pid_of(pid)
        INITS[pid], INIT_OF[init] = (init, _sandbox.host_pid_of(init)), pid
    return pid


#: The invocation config spares are built for (`--ahead`, from Basin): the internet or not, the
#: environment's folder, the limits, the walls turned off (`[functions] disable_walls`).
AHEAD: dict = {}
#: Walls turned off for every invocation.
OFF: set = set()
#: The write ends of the request pipes of children waiting for a request.
REQUEST_PIPES: set = set()
#: In a child: whether it was forked into a PID namespace of its own, the condition for
#: keeping it for the next invocation (`reuse`): between two, it ends every other process
#: of the namespace.
KEEPABLE: dict = {"namespace": False}


#: The zygote's own PID namespace ("fd", a descriptor, once it is the zygote), or why it has
#: none ("why").
NAMESPACE: dict = {"fd": None, "why": None}
#: Children's ids in the zygote's PID namespace -> their ids as Basin (the host) sees them.
HOST_PIDS: dict = {}
#: Children's ids -> the init of their PID namespace, while it lives: (its id here, its id as
#: Basin sees it); and its id here -> the child's.
INITS: dict = {}
INIT_OF: dict = {}


def _process_walls() -> list:
    """In a spare, ahead of its request: its user namespace, inside the zygote's (the PID
    namespace it was forked into). Returns the walls not in force."""
    if "processes" in OFF:
        return []
    if NAMESPACE["why"] is not None:
        return [f"processes: {NAMESPACE['why']}"]
    why = _sandbox.own_user_namespace()
    return [f"processes: {why}"] if why else []


def _hand_over(line: bytes, fork: dict, spare: tuple, selector, wake: tuple) -> None:
    """Gives the request to the spare child and reports it. If the spare died (killed from
    outside), one fresh child is forked and tried; the pipe is always closed here, so no
    later child inherits a way to send requests."""
    invocation = fork["invocation"]
    data = line + b"\n"
    for attempt in range(2):
        pid, w = spare
        try:
            while data:
                data = data[os.write(w, data):]
            if pid not in HOST_PIDS:
                raise OSError(f"the spare {pid} has ended")
            forked = {"forked": invocation, "pid": HOST_PIDS[pid]}
            if pid in INITS:
                forked["init"] = INITS[pid][1]
            _send(1, forked)
            return
        except OSError:
            data = line + b"\n"
        finally:
            os.close(w)
            REQUEST_PIPES.discard(w)
        if attempt == 0:
            spare = _spawn(selector, wake, fork["sandbox"])
    _send(1, {"forked": invocation, "pid": 0})


# ---------------------------------------------------------------------------------------------
# The child


def _open(path: str, invocation: str, lines: int) -> tuple:
    """The child's one connection to Basin. Basin answers with the child's stdout and stderr
    (descriptors, attached to its first bytes), then `lines` JSON lines: the secrets, and for
    a Python function the request. Returns the connection and the lines."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    hello = {"invocation": invocation, "stream": "child", "pid": _sandbox.host_pid()}
    sock.sendall((json.dumps(hello) + "\n").encode())
    got = _receive(sock, lines)
    if got is None:
        raise ConnectionError("Basin closed the connection before the request")
    return sock, got


def _receive(sock: socket.socket, lines: int) -> Optional[list]:
    """Reads one message of Basin's on the child's connection: its stdout and stderr (two
    descriptors, put in place as 1 and 2) and `lines` JSON lines. None when Basin closed the
    connection instead (a kept child's retirement)."""
    data, ancillary, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(2 * 4))
    if not data and not ancillary:
        return None
    fds = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", payload[: len(payload) - len(payload) % 4])
    if len(fds) != 2:
        raise ConnectionError(f"Basin sent {len(fds)} output streams, not 2")
    for fd, target in zip(fds, (1, 2)):
        if fd != target:  # a kept child's 1 and 2 are free: the streams may arrive there
            os.dup2(fd, target)
            os.close(fd)
    data, seen = bytearray(data), data.count(b"\n")
    while seen < lines:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("Basin closed the connection before the request")
        data += chunk
        seen += chunk.count(b"\n")
    return [bytes(line) for line in data.split(b"\n")[:lines]]


def _child(fork: dict, walls: "_sandbox.Ahead") -> int:
    invocation, path = fork["invocation"], fork["socket"]
    _sandbox.reveal(walls, fork["sandbox"].get("write", []))  # the socket lies in its folder
    # The secrets never pass through the zygote, whose memory every later spare is forked
    # from: they come on this connection.
    program = fork.get("exec") is not None
    control, lines = _open(path, invocation, 1 if program else 2)
    secrets = lines.pop(0)
    if program:
        control.close()  # the program connects its own control stream
        control = None
    _settle(fork.get("env", {}), json.loads(secrets))
    del secrets
    missing = _sandbox.confine(walls, fork["sandbox"])
    if missing and fork["sandbox"].get("strict"):
        # Basin checks the walls before it forks; this is the second check, where they apply.
        if control is not None:
            _send(control.fileno(), {"type": "result", "status": "refused", "unconfined": missing})
            return 0
        print(f"basin: refused to run (isolation is strict); not confined by: {'; '.join(missing)}",
              file=sys.stderr)
        return 78
    if fork.get("exec") is not None:
        if missing:
            print(f"basin: not confined by: {'; '.join(missing)}", file=sys.stderr)
        argv = fork["exec"]
        os.environ.update({"BASIN_SOCKET": path, "BASIN_INVOCATION": invocation})
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores it; programs expect the default
        try:
            os.execve(argv[0], argv, dict(os.environ))
        except OSError as e:
            print(f"basin: cannot run {argv[0]}: {e.strerror}", file=sys.stderr)
            return 127
    assert control is not None
    request = json.loads(lines.pop())
    # Kept for the next invocation of the same function version (Basin asks only when the
    # environment, limits and secrets are the same): the walls stay, the module stays loaded.
    kept = bool(fork.get("reuse")) and KEEPABLE["namespace"]
    if kept:
        # Orphans of the function's processes come to this process, which reaps them.
        _sandbox._libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    while True:
        reply = serve(request, missing)
        if kept:
            _end_others()
        # Output first: closing stdout and stderr lets Basin finish reading them now.
        sys.stdout.flush()
        sys.stderr.flush()
        os.close(1)
        os.close(2)
        control.sendall((json.dumps(reply) + "\n").encode())
        if not kept:
            control.close()
            return 0
        # The next invocation comes on the same connection, with its own output streams.
        got = _receive(control, 3)
        if got is None:
            return 0  # Basin retired this child
        again, secrets, request = (json.loads(line) for line in got)
        _settle(again["env"], secrets)
        del secrets
        os.chdir(again["workdir"])


def _settle(env: dict, secrets: dict) -> None:
    """An invocation's streams (descriptors 1 and 2, just received) as sys.stdout and
    sys.stderr, and its environment: `env` and its secrets, nothing else."""
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    os.environ.clear()
    os.environ.update(env)
    os.environ.update(secrets)


_PR_SET_CHILD_SUBREAPER = 36


def _end_others() -> None:
    """In a kept child, between two invocations: ends every other process of its PID
    namespace but the namespace's init (what the function started, even in the background
    or in a new session) and reaps them, so the next invocation starts with this process
    alone, as a fresh one would."""
    for _ in range(1000):
        try:
            os.kill(-1, signal.SIGKILL)  # never this process, nor the init
        except ProcessLookupError:
            return  # none left
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue


def _lower_priority(nice: int) -> None:
    """In a child, ahead of its request: lowers its CPU priority by `nice` steps below Basin's
    (`[functions] nice`, as `nice -n` does; 19 at most), so on a busy machine Basin's own
    threads come first. The worker itself keeps Basin's priority: it starts while Basin scans
    a pipeline's inputs, and its imports should be done when the scan is. `RLIMIT_NICE` 0
    keeps a function from raising it again (that, or CAP_SYS_NICE, which no function holds in
    its user namespace); `RLIMIT_RTPRIO` 0, from a real-time policy."""
    try:
        os.nice(int(nice))
        # Nor a real-time policy, which would run ahead of every nice value.
        resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
        resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    except (OSError, ValueError) as e:
        print(f"basin: functions keep Basin's CPU priority: {e}", file=sys.stderr)


def main(argv: list) -> int:
    if argv[:1] != ["zygote"]:
        print("usage: python -I -m basin._worker zygote [--preload pkg,pkg] [--ahead JSON]",
              file=sys.stderr)
        return 2
    def listed(flag: str) -> list:
        if flag not in argv:
            return []
        return [p for p in argv[argv.index(flag) + 1].split(",") if p]

    # Basin hands the worker its stdin, stdout and stderr only: any other descriptor it has
    # was left open by whoever started Basin (a pipe, a socket), and no function may write to
    # it. The open ones are listed, not a range closed: the range's end can be huge.
    try:
        inherited = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd > 2]
    except OSError:  # no /proc
        inherited = range(3, min(os.sysconf("SC_OPEN_MAX"), 1 << 16))
    for fd in inherited:
        try:
            os.close(fd)
        except OSError:
            pass  # not open (the listing's own descriptor, closed already)
    if "--ahead" in argv:
        AHEAD.update(json.loads(argv[argv.index("--ahead") + 1]))
    OFF.update(AHEAD.get("off", []))
    if "processes" not in OFF:
        # Before any import: a process with threads cannot enter a user namespace.
        NAMESPACE["why"] = _sandbox.own_pid_namespace()
        if NAMESPACE["why"] is None:
            zygote_pid = os.fork()
            if zygote_pid:
                _sandbox.watch_over(zygote_pid)
    zygote(listed("--preload"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
