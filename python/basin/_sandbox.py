"""Confines the current process before it runs user code. Standard library only.

Linux offers these without extra software, and Basin uses each where the kernel allows. Each
wall has a name, used by `[functions] disable_walls`, `basin doctor` and strict isolation:
- `processes`: a PID, a user and an IPC namespace of its own: the child is forked into a new
  PID namespace beside its init, so when the function's process ends (or is killed) the init
  is killed, the namespace ends, and the kernel kills every process it started, even one that
  called setsid(); inside the user namespace the process has no privileges over the host; no
  System V IPC object or POSIX message queue outlives the invocation or reaches another;
- `limits`: rlimits on processes (and threads), open files and file size;
- `network`: a new network namespace (no interfaces but a down loopback) when the function did not ask
  for the internet; where namespaces are not allowed, Landlock's TCP rules (kernel 6.7+);
- `internet`: when it did ask, a network namespace that slirp4netns connects to the outside,
  with no way to the host's loopback, the host's own addresses or link-local ones
  (basin/_internet.py);
- `sockets`: a mount namespace with empty folders over /run, /tmp and /var/tmp, where services keep
  their Unix sockets (Landlock does not govern connecting to a socket by path);
- `signals`: Landlock scoping (kernel 6.12+): no signals to processes outside the sandbox and no
  abstract Unix sockets;
- `files`: Landlock (kernel 5.13+, no privileges needed) so that files outside the allowed folders
  (the environment, the system's libraries, the invocation's own folder) cannot be opened:
  the catalog database and the warehouse are not among them, nor other processes' folders in
  /proc (their environment, memory and open files);
- always: its own session and process group, death with its parent, no core dumps.

The worker builds walls of its own (`confine_worker`) before it imports the environment's
packages, so their import code runs inside them, and every child inside them too.
A spare child builds the walls ahead of its request (`confine_ahead`), all but the rules for
the invocation's own folder, which `confine` adds before the walls close; it returns what
could not be done ("WALL: why"), so Basin can say so, or refuse to run the function when
isolation is strict.
The kernel's interfaces are in basin/_kernel.py (through ctypes), the process namespaces in
basin/_namespaces.py; both are imported here, so `basin._sandbox` still offers every wall.
"""

from __future__ import annotations

import ctypes
import os
import resource
import stat
import sys
import time

from basin import _internet
from basin._kernel import (
    _CLONE_NEWNET, _CLONE_NEWNS, _FS_EXECUTE, _FS_READ_DIR, _FS_READ_FILE, _FS_REFER,
    _FS_TRUNCATE, _FS_V1_ALL, _FS_WRITE_FILE, _KEYCTL_JOIN_SESSION_KEYRING, _MS_BIND,
    _MS_NODEV, _MS_NOSUID, _MS_PRIVATE, _MS_REC, _NET_BIND_TCP, _NET_CONNECT_TCP,
    _PR_SET_NO_NEW_PRIVS, _PathBeneathAttr, _RULE_PATH_BENEATH, _RulesetAttr,
    _SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL, _SYS_KEYCTL, _SYS_LANDLOCK_ADD_RULE,
    _SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_RESTRICT_SELF, _err, _libc, _syscall,
    landlock_abi,
)
from basin._namespaces import (
    _unshare, fork_into_namespace, host_pid, host_pid_of, own_pid_namespace,
    own_process_group, own_user_namespace, watch_over,
)


#: Where services put their Unix sockets (D-Bus, systemd, Docker, X11): covered with empty
#: folders, since Landlock does not govern connecting to a socket by its path.
SOCKET_FOLDERS = ["/run", "/var/run", "/tmp", "/var/tmp"]

#: Read-only everywhere: what programs and their libraries need. Of /proc only the process's
#: own folder and system-wide files: other processes' folders (their environment, memory and
#: open files) stay closed.
SYSTEM_READ = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/sys", "/proc/sys",
               "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/loadavg", "/proc/filesystems"]
#: Device files a program may read and write.
DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]


#: For root: the parts of /etc any user may read (see `prepare`); None until prepared.
_PUBLIC_ETC: list | None = None
#: The most entries `_public` looks at.
_MAX_PUBLIC_WALK = 20000


def _public(path: str, budget: list) -> tuple:
    """(whether everything under `path` is readable by any user, the paths to grant): the
    folder itself when everything under it is, else its readable entries one by one."""
    budget[0] -= 1
    if budget[0] < 0:
        return False, []
    try:
        st = os.lstat(path)
    except OSError:
        return False, []
    if stat.S_ISLNK(st.st_mode):
        return True, []  # its target is governed where it lies
    if stat.S_ISDIR(st.st_mode):
        if st.st_mode & 0o005 != 0o005:
            return False, []
        try:
            entries = sorted(e.path for e in os.scandir(path))
        except OSError:
            return False, []
        whole, granted = True, []
        for entry in entries:
            ok, paths = _public(entry, budget)
            whole = whole and ok
            granted += paths
        return (True, [path]) if whole else (False, granted)
    readable = bool(st.st_mode & 0o004)
    return readable, [path] if readable else []


def prepare(ahead: dict) -> None:
    """Once per worker, before forking. When Basin runs as root, a function's process keeps
    root's ownership of files inside its user namespace, so /etc/shadow and private keys
    would be readable through the /etc rule; it gets only what any user may read instead.
    Then the paths of the Landlock rules every spare built for `ahead` (an invocation config)
    grants are resolved and opened here, once, instead of in each spare (about 180 opens and
    250 stats per invocation under a root Basin)."""
    global _PUBLIC_ETC
    if os.geteuid() == 0:
        _PUBLIC_ETC = _public("/etc", [_MAX_PUBLIC_WALK])[1]
    _open_static(ahead)


#: How long the worker keeps the rules it opened: a file replaced since (a rename over
#: /etc/hosts) is granted anew within this time, as each spare once opened the paths itself.
RULES_MAX_AGE = 60.0


def refresh(ahead: dict) -> None:
    """In the worker before it forks a spare: opens the rules again once they are older than
    `RULES_MAX_AGE`."""
    if _OPENED is None or time.monotonic() - _OPENED.at > RULES_MAX_AGE:
        _open_static(ahead)


def _open_static(ahead: dict) -> None:
    global _OPENED
    _close_opened()
    own = _own_folders(ahead)
    _OPENED = _Opened(ahead, own, _open_rules(_static_rules(own)))


def _own_folders(config: dict) -> list:
    """The folders of its own a process confined by `config` may read and execute: the
    config's, and the environment's Python (its prefixes, resolved)."""
    read = list(config.get("read", []))
    for prefix in {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}:
        read.append(os.path.realpath(prefix))
    return read


def _static_rules(own: list) -> list:
    """(path, rights): the `own` folders and the system's readable and executable, the device
    files readable and writable; all but the process's own `/proc` entry."""
    system = SYSTEM_READ
    if os.geteuid() == 0:
        system = [p for p in SYSTEM_READ if p != "/etc"] + (_PUBLIC_ETC or [])
    return _read_rules(own + system) + [(p, _FS_READ_FILE | _FS_WRITE_FILE) for p in DEVICES]


def _read_rules(read: list) -> list:
    return [(p, _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR) for p in read]


def _open_rules(rules: list) -> list:
    """(O_PATH descriptor, Landlock rule, path) for each (path, rights) rule whose path exists
    on this machine, the rights cut to those a file can have where the path is not a folder."""
    file_rights = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE
    opened = []
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # not on this machine
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= file_rights
        opened.append((fd, _PathBeneathAttr(rights, fd), path))
    return opened


class _Opened:
    """The rules `prepare` opened for the spares of one invocation config."""

    def __init__(self, config: dict, own: list, rules: list):
        self.config = config
        self.own = own
        self.rules = rules
        self.at = time.monotonic()


#: The zygote's opened rules (`prepare`); every child closes them once its ruleset is built.
_OPENED: "_Opened | None" = None


def _close_opened() -> None:
    global _OPENED
    if _OPENED is not None:
        for fd, _, _ in _OPENED.rules:
            os.close(fd)
        _OPENED = None





def _hide_socket_folders(keep: list, covered: dict) -> str | None:
    """Empty, private folders over the usual socket folders; the `keep` folders inside them
    (the environment) are bound back in, alone. `covered` gets a handle on each covered
    folder, so that the invocation's own folder can be bound back later (`reveal`)."""
    if _unshare(_CLONE_NEWNS, "private mounts"):
        return "private mounts over service sockets (no mount namespace)"
    if _libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return f"private mounts over service sockets (mount: {_err()})"
    kept = sorted({os.path.realpath(k) for k in keep if os.path.exists(k)})
    for folder in SOCKET_FOLDERS:
        if os.path.islink(folder) or not os.path.isdir(folder):
            continue
        inside = [k for k in kept if k.startswith(folder + "/")]
        covered[folder] = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if _libc.mount(b"tmpfs", folder.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=64m") != 0:
            return f"an empty {folder} ({_err()})"
        for path in inside:
            why = _bind_back(covered, folder, path)
            if why:
                return f"an empty {folder} ({why})"
    return None


def _bind_back(covered: dict, folder: str, path: str) -> str | None:
    """Binds `path`, which lies in the covered `folder`, back over its empty copy."""
    try:
        fd = os.open(os.path.relpath(path, folder), os.O_PATH | os.O_CLOEXEC, dir_fd=covered[folder])
    except OSError as e:
        return f"binding {path} back: {e.strerror}"
    try:
        os.makedirs(path, exist_ok=True)
        if _libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, _MS_BIND | _MS_REC, None) != 0:
            return f"binding {path} back: {_err()}"
    finally:
        os.close(fd)
    return None


def _ruleset(opened: list, read: list, deny_tcp: bool, files: bool, scope: bool) -> tuple:
    """A Landlock ruleset that allows the `opened` rules and `read` (read and execute) (when
    `files`), no TCP (when `deny_tcp`), no signals out and no abstract sockets (when `scope`).
    Returns (its fd or -1, the rights a folder the process may write gets, the walls it
    holds, what cannot be built as "WALL: why")."""
    abi = landlock_abi()
    wanted = (["files"] if files else []) + (["network"] if deny_tcp else []) + (["signals"] if scope else [])
    if abi < 1:
        return -1, 0, [], [f"{w}: Landlock is not enabled in this kernel" for w in wanted]
    handled = _FS_V1_ALL | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if deny_tcp and abi >= 4 else 0
    # No signals to processes outside the sandbox (Basin, other functions), and no abstract
    # Unix sockets (X11, some services).
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if scope and abi >= 6 else 0
    missing = []
    if deny_tcp and not net:
        missing.append("network: no network namespace, and Landlock TCP rules need ABI 4")
    if scope and not scoped:
        missing.append("signals: Landlock scoping needs ABI 6 (kernel 6.12)")
    if not files and not net and not scoped:
        return -1, 0, [], missing
    attr = _RulesetAttr(handled if files else 0, net, scoped)
    size = 24 if scoped else (16 if net else 8)
    ruleset = _syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                       ctypes.c_uint32(0))
    if ruleset < 0:
        return -1, 0, [], [f"{w}: landlock_create_ruleset: {_err()}" for w in wanted]
    os.set_inheritable(ruleset, False)
    rights = handled if files else 0
    if files:
        missing += _add_opened(ruleset, opened)
        missing += _add_rules(ruleset, _read_rules(read))
    return ruleset, rights, wanted, missing


def _add_rules(ruleset: int, rules: list) -> list:
    """Adds (path, rights) rules; a path missing on this machine is skipped."""
    opened = _open_rules(rules)
    try:
        return _add_opened(ruleset, opened)
    finally:
        for fd, _, _ in opened:
            os.close(fd)


def _add_opened(ruleset: int, opened: list) -> list:
    """Adds the rules `_open_rules` made: (O_PATH descriptor, the rule, its path)."""
    missing = []
    syscall, add_rule = _libc.syscall, ctypes.c_long(_SYS_LANDLOCK_ADD_RULE)
    for _, rule, path in opened:
        if syscall(add_rule, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            missing.append(f"files: a rule for {path} ({_err()})")
    return missing


def _limits(limits: dict) -> list:
    """rlimits: processes and threads (counted in this invocation's user namespace), open
    files, and the size of any one file it writes (its folder is in memory)."""
    missing = []
    for name, key in (("RLIMIT_NPROC", "processes"), ("RLIMIT_NOFILE", "open_files"),
                      ("RLIMIT_FSIZE", "file_size")):
        value = limits.get(key)
        if value is None:
            continue
        try:
            resource.setrlimit(getattr(resource, name), (int(value), int(value)))
        except (OSError, ValueError) as e:
            missing.append(f"limits: {key} ({e})")
    return missing


#: Walls the worker built for itself and every process it forks (`confine_worker`): with
#: "sockets" in it, the socket folders are hidden already, and a spare cannot mount anyway.
WORKER_WALLS: set = set()


def confine_worker(config: dict) -> list:
    """The worker's own walls (`_confine_worker`), and the `internet` wall's condition: the
    worker's Landlock layer, without which the worker's own code could trace slirp4netns, a
    process of the host's network."""
    missing = _confine_worker(config)
    off = set(config.get("off", []))
    missing += _point_dns(off, config.get("scratch") or "", final=True)
    if "internet" in WORKER_WALLS and "files" not in WORKER_WALLS:
        WORKER_WALLS.discard("internet")
        INTERNET["why"] = ("needs the worker's own Landlock layer (the `files` wall): without it "
                           "the worker's code could take over slirp4netns, on the host's network")
        missing.append(f"internet: {INTERNET['why']}")
    return missing


def _confine_worker(config: dict) -> list:
    """The worker's own walls, built once before it imports the environment's packages, whose
    import code would otherwise run with every right of the user running Basin. In order:
    - for a worker of functions without the internet (Basin starts another for those with
      it), a network namespace with no interfaces; each child still gets one of its own;
    - a mount namespace with the socket folders hidden (the scratch folder, where invocation
      folders live, and the `own` folders bound back);
    - a Landlock layer: it reads only what a function reads (the system's folders, the
      environment, Python), writes only the scratch folder and the device files, and reads
      and writes /proc, which every child needs for its own entries (other processes'
      private entries stay closed: Landlock denies a sandboxed process ptrace access to
      processes outside its domain, which guards their environment, memory and open files).
    Every child forked later is inside these and adds its own. Called after `prepare` (whose
    opened rules it uses), and only inside the worker's own user namespace (the `processes`
    wall), where it may make namespaces without entering another. Returns what could not be
    done, as "WALL: why"."""
    off = set(config.get("off", []))
    scratch = config.get("scratch")
    if not scratch:
        return []
    missing = []
    if not config.get("internet") and "network" not in off:
        if _libc.unshare(_CLONE_NEWNET) == 0:
            WORKER_WALLS.add("network")
        else:
            missing.append(f"network: the worker's own (unshare: {_err()})")
    if config.get("internet") and "internet" not in off:
        why = _internet.build(host_pid())
        if why:
            INTERNET["why"] = why
            missing.append(f"internet: {why}")
        else:
            WORKER_WALLS.add("internet")
    missing += _point_dns(off, scratch)
    if "files" in off:
        return missing
    if "sockets" not in off:
        covered: dict = {}
        why = _hide_socket_folders(_OPENED.own + [scratch], covered)
        for fd in covered.values():
            os.close(fd)
        if why:
            # The spares try again, each in a namespace of its own; a layer here would keep
            # them from mounting.
            return missing + [f"sockets: the worker's own ({why})"]
        WORKER_WALLS.add("sockets")
    missing += _point_dns(off, scratch)
    if landlock_abi() < 1:
        return missing + ["files: the worker's own (Landlock is not enabled in this kernel)"]
    ruleset, rights, walls, lost = _ruleset(_OPENED.rules, [], deny_tcp=False, files=True,
                                            scope="signals" not in off)
    # Each child reports its own scoping; what counts here is the files.
    missing += [f"files: the worker's own ({m.split(': ', 1)[-1]})" for m in lost
                if m.startswith("files")]
    if ruleset < 0:
        return missing
    try:
        # Writing a child's uid_map opens it with O_TRUNC, as Python's "w" does.
        proc = _FS_READ_FILE | _FS_READ_DIR | _FS_WRITE_FILE | _FS_TRUNCATE
        missing += _add_rules(ruleset, [("/proc", proc & rights), (scratch, rights)])
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            missing.append(f"files: the worker's own (no_new_privs: {_err()})")
        elif _syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            missing.append(f"files: the worker's own (landlock_restrict_self: {_err()})")
        else:
            WORKER_WALLS.update(walls)
    finally:
        os.close(ruleset)
    return missing


#: Why the worker could not build the `internet` wall (its children report it).
INTERNET: dict = {"why": "needs the worker's own namespaces (the `processes` wall)"}


def _point_dns(off: set, scratch: str, final: bool = False) -> list:
    """Once the worker is on its own network (the `internet` wall) and in its own mount
    namespace (the `sockets` wall), or at the first of these calls after which no mount
    namespace will come (`final`: the walls are built, or given up): names resolve through
    slirp's forwarder. Before the worker's Landlock layer, which forbids mounting. Returns
    what is missing."""
    if "internet" not in WORKER_WALLS or "dns" in WORKER_WALLS:
        return []
    if not final and "sockets" not in WORKER_WALLS and "sockets" not in off and "files" not in off:
        return []  # the mount namespace comes next
    WORKER_WALLS.add("dns")
    if "sockets" not in WORKER_WALLS and _unshare(_CLONE_NEWNS, "private mounts") is None:
        _libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None)
    why = _internet.point_dns("sockets" in WORKER_WALLS, scratch)
    if why:
        return [f"internet: names do not resolve ({why})"]
    if _OPENED is not None:
        # The rules were opened on the host's resolv.conf; the one a function reads now is
        # the file bound over it.
        _open_static(_OPENED.config)
    return []


class Ahead:
    """The walls a spare child builds while it waits for its request (`confine_ahead`), for
    the invocation config it was built for; `confine` finishes them once the invocation's
    folder is known. Holds descriptors until then: the Landlock ruleset and a handle on each
    covered socket folder."""

    def __init__(self, config: dict):
        self.config = config
        self.missing: list = []
        self.ruleset = -1
        self.write_rights = 0
        self.landlock_walls: list = []
        self.covered: dict = {}

    def close(self) -> None:
        for fd in [self.ruleset, *self.covered.values()]:
            if fd >= 0:
                os.close(fd)
        self.ruleset, self.covered = -1, {}


#: What a spare is built for, of an invocation config: a request with the same can use it.
AHEAD_KEYS = ("internet", "read", "limits", "off")


def fits(ahead_config: dict, config: dict) -> bool:
    """Whether a spare built for `ahead_config` can run an invocation configured by `config`."""
    return all(ahead_config.get(k) == config.get(k) for k in AHEAD_KEYS)


def confine_ahead(config: dict, missing: list) -> Ahead:
    """Builds every wall that does not depend on the invocation's folder, before the request
    comes: the network namespace, the empty socket folders, the Landlock rules but the
    folder's, and the limits. `config` is an invocation config (see `confine`) of which `AHEAD_KEYS` count;
    `missing` holds what could not be done before this (the process namespace)."""
    ahead = Ahead(config)
    _own_session_keyring()
    off = set(config.get("off", []))
    ahead.missing = list(missing) + [f"{w}: turned off by [functions] disable_walls" for w in sorted(off)]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    want_net = not config.get("internet") and "network" not in off
    net_missing = _unshare(_CLONE_NEWNET, "network namespace") if want_net else None
    if config.get("internet") and "internet" not in off and "internet" not in WORKER_WALLS:
        ahead.missing.append(f"internet: {INTERNET['why']}")
    # The rules the zygote opened, if they were opened for this config; else opened here.
    prepared = _OPENED is not None and fits(_OPENED.config, config)
    own = _OPENED.own if prepared else _own_folders(config)
    if "sockets" not in off and "sockets" not in WORKER_WALLS:
        sockets_missing = _hide_socket_folders(own, ahead.covered)
        if sockets_missing:
            ahead.missing.append(f"sockets: {sockets_missing}")
    opened: list = []
    try:
        opened = _OPENED.rules if prepared else _open_rules(_static_rules(own))
        ahead.ruleset, ahead.write_rights, ahead.landlock_walls, lost = _ruleset(
            opened, [f"/proc/{host_pid()}"], deny_tcp=bool(net_missing), files="files" not in off,
            scope="signals" not in off)
    finally:
        if not prepared:
            for fd, _, _ in opened:
                os.close(fd)
        _close_opened()
    ahead.missing += lost
    # Last: the open files limit counts the descriptors held until now.
    if "limits" not in off:
        ahead.missing += _limits(config.get("limits", {}))
    return ahead


def _own_session_keyring() -> None:
    """Joins a new, empty session keyring. The one Basin was started with (a login's, a
    service's) would be every invocation's: a function could read Basin's keys, and leave keys
    there for the next invocation. Where keyctl is refused (a container's seccomp filter), the
    function cannot reach any keyring either, so there is nothing to wall."""
    if _SYS_KEYCTL is not None:
        _syscall(_SYS_KEYCTL, ctypes.c_int(_KEYCTL_JOIN_SESSION_KEYRING), None)


def reveal(ahead: Ahead, write: list) -> None:
    """Binds the invocation's `write` folders back in where they lie under a covered socket
    folder (before Basin's socket, inside the invocation's folder, is connected)."""
    for path in {os.path.realpath(w) for w in write}:
        folder = next((f for f in ahead.covered if path.startswith(f + "/")), None)
        why = folder and _bind_back(ahead.covered, folder, path)
        if why:
            ahead.missing.append(f"sockets: an empty {folder} ({why})")


def confine(ahead: Ahead, config: dict) -> list:
    """Finishes the walls `confine_ahead` built, for the invocation configured by `config`:
    `{"internet": bool, "read": [folders], "write": [folders], "workdir": folder, "limits":
    {...}, "off": [walls]}`, which `fits` the spare's, after `reveal`. The `write` folders join
    the Landlock rules, which then apply to this process for good. Returns every wall that is
    not in force, as "WALL: why" (empty when all are)."""
    missing = list(ahead.missing)
    try:
        if ahead.ruleset >= 0:
            if ahead.write_rights:
                missing += _add_rules(ahead.ruleset, [(p, ahead.write_rights) for p in config.get("write", [])])
            if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                missing += [f"{w}: no_new_privs: {_err()}" for w in ahead.landlock_walls]
            elif _syscall(_SYS_LANDLOCK_RESTRICT_SELF, ahead.ruleset, ctypes.c_uint32(0)) != 0:
                missing += [f"{w}: landlock_restrict_self: {_err()}" for w in ahead.landlock_walls]
    finally:
        ahead.close()
    os.chdir(config["workdir"])
    return missing
