"""Confines the current process before it runs user code. Standard library only.

Linux offers these without extra software, and Basin uses each where the kernel allows:
- a new network namespace (no interfaces but a down loopback) when the function did not ask
  for the internet; where namespaces are not allowed, Landlock's TCP rules (kernel 6.7+);
- a mount namespace with empty folders over /run, /tmp and /var/tmp, where services keep
  their Unix sockets (Landlock does not govern connecting to a socket by path);
- Landlock scoping (kernel 6.12+): no signals to processes outside the sandbox and no
  abstract Unix sockets;
- Landlock (kernel 5.13+, no privileges needed) so that files outside the allowed folders
  (the environment, the system's libraries, the invocation's own folder) cannot be opened:
  the catalog database and the warehouse are not among them, nor other processes' folders in
  /proc (their environment, memory and open files);
- its own session and process group, so Basin can kill it with everything it started, and
  death with its parent;
- no core dumps.

`apply` returns what it could not do, so Basin can say so once instead of failing.
ctypes is used because Python 3.11 has no os.unshare and no Landlock binding; the structs and
constants below are the kernel's (include/uapi/linux/landlock.h, sched.h, prctl.h).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]

# Syscall numbers shared by x86_64 and aarch64 (both use the generic table for these).
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_V1_ALL = (1 << 13) - 1
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18

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


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _syscall(number: int, *args) -> int:
    return _libc.syscall(ctypes.c_long(number), *args)


def _err() -> str:
    return os.strerror(ctypes.get_errno())


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when there is none."""
    version = _syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    return max(version, 0)


def own_process_group() -> None:
    """A new session (so a new process group Basin can kill whole), killed with its parent."""
    os.setsid()
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _unshare(flags: int, what: str) -> str | None:
    """New namespaces for this process; without privileges, inside a user namespace that maps
    our ids onto themselves. Returns why not, or None."""
    if _libc.unshare(flags) == 0:
        return None
    first = _err()
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(_CLONE_NEWUSER | flags) != 0:
        return f"{what} ({first})"
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError as e:
        return f"{what} (user namespace mapping: {e.strerror})"
    return None


def _hide_socket_folders(keep: list) -> str | None:
    """Empty, private folders over the usual socket folders; the `keep` folders inside them
    (the environment, the invocation's folder) are bound back in, alone."""
    if _unshare(_CLONE_NEWNS, "private mounts"):
        return "private mounts over service sockets (no mount namespace)"
    if _libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        return f"private mounts over service sockets (mount: {_err()})"
    kept = sorted({os.path.realpath(k) for k in keep if os.path.exists(k)})
    for folder in SOCKET_FOLDERS:
        if os.path.islink(folder) or not os.path.isdir(folder):
            continue
        inside = [k for k in kept if k.startswith(folder + "/")]
        handles = [(k, os.open(k, os.O_PATH | os.O_CLOEXEC)) for k in inside]  # before covering
        try:
            if _libc.mount(b"tmpfs", folder.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=64m") != 0:
                return f"an empty {folder} ({_err()})"
            for path, fd in handles:
                os.makedirs(path, exist_ok=True)
                source = f"/proc/self/fd/{fd}".encode()
                if _libc.mount(source, path.encode(), None, _MS_BIND | _MS_REC, None) != 0:
                    return f"an empty {folder} (binding {path} back: {_err()})"
        finally:
            for _, fd in handles:
                os.close(fd)
    return None


def _landlock(read: list, write: list, deny_tcp: bool) -> list:
    """Restricts the process to `read` (read and execute) and `write` (everything) folders.
    Returns what could not be applied."""
    abi = landlock_abi()
    if abi < 1:
        return ["file access rules (Landlock is not enabled in this kernel)"]
    handled = _FS_V1_ALL | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    file_rights = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (_FS_TRUNCATE if abi >= 3 else 0)
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if deny_tcp and abi >= 4 else 0
    # No signals to processes outside the sandbox (Basin, other functions), and no abstract
    # Unix sockets (X11, some services).
    scoped = (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _RulesetAttr(handled, net, scoped)
    size = 24 if scoped else (16 if net else 8)
    ruleset = _syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                       ctypes.c_uint32(0))
    if ruleset < 0:
        return [f"file access rules (landlock_create_ruleset: {_err()})"]
    missing = []
    if deny_tcp and not net:
        missing.append("TCP rules (Landlock ABI 4 needed)")
    if not scoped:
        missing.append("signal and abstract socket scoping (Landlock ABI 6 needed)")
    try:
        rules = [(p, _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR) for p in read]
        rules += [(p, handled) for p in write]
        rules += [(p, _FS_READ_FILE | _FS_WRITE_FILE) for p in DEVICES]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # not on this machine
            try:
                if not os.path.isdir(path):
                    rights &= file_rights
                rule = _PathBeneathAttr(rights, fd)
                if _syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule),
                            ctypes.c_uint32(0)) != 0:
                    missing.append(f"a file rule for {path} ({_err()})")
            finally:
                os.close(fd)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return missing + [f"file access rules (no_new_privs: {_err()})"]
        if _syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            return missing + [f"file access rules (landlock_restrict_self: {_err()})"]
    finally:
        os.close(ruleset)
    return missing


def apply(config: dict) -> list:
    """Confines this process as `config` says:
    `{"internet": bool, "read": [folders], "write": [folders], "workdir": folder}`.
    Returns the mechanisms that were not available (empty when all were)."""
    missing = []
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    net_missing = None if config.get("internet") else _unshare(_CLONE_NEWNET, "network namespace")
    if net_missing:
        missing.append(net_missing)
    read = list(config.get("read", []))
    for prefix in {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}:
        read.append(os.path.realpath(prefix))
    write = list(config.get("write", []))
    sockets_missing = _hide_socket_folders(read + write)
    if sockets_missing:
        missing.append(sockets_missing)
    read += SYSTEM_READ + [f"/proc/{os.getpid()}"]
    missing += _landlock(read, write, deny_tcp=bool(net_missing))
    os.chdir(config["workdir"])
    return missing
