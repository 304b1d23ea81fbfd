"""The `internet` wall: a worker of functions that asked for the internet (`internet=True`)
reaches out through a network namespace of its own, not the host's, so that it cannot reach
the host's loopback (Basin's own ports, a database listening on 127.0.0.1) or the host's
own addresses (every port Basin or anything else serves on them), nor the link-local
addresses where clouds serve instance credentials (169.254.0.0/16).

How: the worker makes a network namespace (inside its own user namespace, no privileges
needed) and slirp4netns, the user-mode network stack rootless Podman and Docker use, joins
it with a tap device and forwards what leaves it through ordinary sockets of the host's,
with `--disable-host-loopback` (its gateway does not lead to the host's 127.0.0.1). Routes
of type `unreachable` in the namespace cover the host's own addresses and 169.254.0.0/16
(slirp's sockets are the host's, so without them the host's addresses would be reached).
The worker then gives up CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_PTRACE in its namespace, so
that its packages' import code cannot change those routes; each invocation's process is in a user
namespace of its own, with no capability over the worker's network. Names resolve through
slirp's forwarder (10.0.2.3), put in /etc/resolv.conf in the worker's mount namespace.

slirp4netns is a Debian package (`apt install slirp4netns`, libslirp 4.3 or later: older ones
forward any port of 10.0.2.3 to the host's resolver, often on its loopback); without it the
wall is missing, and said so. slirp4netns is a process of the host's network: the worker's
Landlock layer (the `files` wall) keeps the worker's own code from tracing it, and without
that layer the wall is reported missing. The host's addresses are read when the worker
starts; a worker lives until it has been idle for `[functions] keep_alive`. Written by hand with ctypes (netlink, capabilities): Python 3.11's
standard library has neither, and the worker imports nothing outside it here.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import socket
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]

_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000

#: Where slirp4netns is looked for (not the function's PATH, which its environment leads).
SLIRP_PATH = "/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin"
#: slirp4netns' network: the namespace is 10.0.2.100, the gateway 10.0.2.2, DNS 10.0.2.3.
DNS = "10.0.2.3"
#: Never reachable from a function with the internet, besides the host's own addresses:
#: link-local (cloud instance metadata and credentials at 169.254.169.254).
UNREACHABLE = ["169.254.0.0/16", "100.100.100.200/32"]
#: The first libslirp that forwards only port 53 of its DNS address (10.0.2.3).
MIN_LIBSLIRP = (4, 3)
#: How long slirp4netns may take to bring the namespace's interface up.
READY_TIMEOUT = 10.0

# Netlink (linux/netlink.h, linux/rtnetlink.h).
_RTM_NEWROUTE = 24
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 1, 4, 0x200, 0x400
_NLMSG_ERROR = 2
_RT_TABLE_MAIN, _RTPROT_STATIC, _RT_SCOPE_UNIVERSE, _RTN_UNREACHABLE = 254, 4, 0, 7
_RTA_DST = 1

# Capabilities (linux/capability.h).
_CAP_NET_ADMIN, _CAP_NET_RAW, _CAP_SYS_PTRACE, _CAP_SYS_ADMIN = 12, 13, 19, 21
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 47, 2
#: The capabilities the worker gives up once its network is built.
_DROPPED = (_CAP_NET_ADMIN, _CAP_NET_RAW, _CAP_SYS_PTRACE)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

#: slirp4netns's process id in the worker's PID namespace, while it serves the worker (0:
#: none). Its end ends the worker's network: the worker then ends too (see _worker._reap).
SLIRP: dict = {"pid": 0}


def host_addresses() -> list:
    """The host's own IPv4 addresses and local ranges (`a.b.c.d/n`), from the kernel's local
    routing table as this network namespace sees it (read before leaving it)."""
    found, last = [], None
    try:
        with open("/proc/net/fib_trie") as f:
            for line in f:
                text = line.strip()
                if text.startswith("|--"):
                    last = text[3:].strip()
                elif text.endswith("host LOCAL") and text.startswith("/") and last:
                    network = f"{last}{text.split()[0]}"
                    if network not in found:
                        found.append(network)
    except OSError:
        pass
    return found


def slirp_version(slirp: str) -> tuple | None:
    """libslirp's version, as `slirp4netns --version` prints it."""
    import subprocess  # only here: the worker imports it for this wall alone

    try:
        out = subprocess.run([slirp, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("libslirp:"):
            try:
                return tuple(int(p) for p in line.split(":", 1)[1].strip().split(".")[:2])
            except ValueError:
                return None
    return None


def build(host_pid: int) -> str | None:
    """Leaves the host's network for a namespace of its own that slirp4netns serves, walls
    off the host's addresses, and gives up the capabilities that could undo it. Called by the
    worker, in its own user namespace, before any other wall and any import. `host_pid`:
    this process's id as the host sees it. Returns why the wall could not be built; the
    worker is then left on the host's network if it failed before leaving it, and on no
    network at all after."""
    slirp = shutil.which("slirp4netns", path=SLIRP_PATH)
    if not slirp:
        return "slirp4netns is not installed (apt install slirp4netns)"
    version = slirp_version(slirp)
    if version is None or version < MIN_LIBSLIRP:
        return (f"slirp4netns's libslirp is {'.'.join(map(str, version)) if version else 'unknown'}; "
                f"{'.'.join(map(str, MIN_LIBSLIRP))} or later is needed (older ones forward any port "
                f"of the DNS address to the host's resolver)")
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (slirp4netns needs the tun device)"
    own = host_addresses()
    if not own:
        return "cannot read the host's addresses (/proc/net/fib_trie)"
    root = os.geteuid() == 0
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    child = os.fork()
    if child == 0:
        # Still in the host's network: wait until the namespace exists, then serve it.
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)  # never Basin's pipes, even while waiting
            os.close(go_w)
            os.close(ready_r)
            os.close(exit_w)
            if os.read(go_r, 1) != b"1":
                os._exit(0)  # the worker gave up
            os.set_inheritable(ready_w, True)
            os.set_inheritable(exit_r, True)
            # Opened here, with this process's capabilities in the worker's namespace (as
            # many as the worker's: reading its namespace needs no more); slirp4netns, with
            # fewer, could not open the worker's /proc entry itself.
            netns = os.open(f"/proc/{host_pid}/ns/net", os.O_RDONLY)
            os.set_inheritable(netns, True)
            args = [slirp, "--configure", "--mtu=65520", "--disable-host-loopback",
                    f"--ready-fd={ready_w}", f"--exit-fd={exit_r}"]
            if root:
                # Its own mount namespace and no capabilities but binding (as root only: it
                # switches to group 0, which a user's namespace does not map).
                args += ["--enable-sandbox", "--enable-seccomp"]
            else:
                # A user's id is mapped onto itself: exec would clear every capability it
                # holds in the worker's namespace, and it needs these two there.
                _keep_across_exec([_CAP_SYS_ADMIN, _CAP_NET_ADMIN])
            os.execv(slirp, args + ["--netns-type=path", f"/proc/self/fd/{netns}", "tap0"])
        finally:
            os._exit(127)
    os.close(go_r)
    os.close(ready_w)
    os.close(exit_r)
    # The write end of exit stays open in this worker (and the processes it forks): when all
    # are gone, slirp4netns ends (it dies with the worker's PID namespace anyway).
    os.set_inheritable(exit_w, False)
    SLIRP["pid"] = child

    def fail(why: str) -> str:
        SLIRP["pid"] = 0
        try:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        except OSError:
            pass
        for fd in (go_w, ready_r, exit_w):
            try:
                os.close(fd)
            except OSError:
                pass
        return why

    if _libc.unshare(_CLONE_NEWNET) != 0:
        return fail(f"no network namespace ({_err()})")
    os.write(go_w, b"1")
    readable, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
    if not readable or os.read(ready_r, 1) != b"1":
        return fail("slirp4netns did not bring the network up")
    for network in own + UNREACHABLE:
        why = _unreachable(network)
        if why:
            return fail(why)
    why = _drop_capabilities()
    if why:
        return fail(why)
    for fd in (go_w, ready_r):
        os.close(fd)
    return None


def point_dns(covered: bool, scratch: str) -> str | None:
    """/etc/resolv.conf, in this worker's mount namespace, names slirp's forwarder: the
    host's may name a resolver on its loopback (systemd-resolved's 127.0.0.53), which the
    namespace cannot reach. `covered`: the worker's socket folders are covered already, and
    a resolv.conf that links into one (/run) is written there instead. `scratch`: a folder
    of the host's this worker may write, where the file is made, bound over the host's, and
    unlinked (the bind holds it). Returns why not."""
    content = f"# written by Basin: the internet wall's resolver (slirp4netns)\nnameserver {DNS}\n"
    target = os.path.realpath("/etc/resolv.conf")
    if covered and any(target.startswith(f + "/") for f in ("/run", "/var/run", "/tmp", "/var/tmp")):
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                f.write(content)
            return None
        except OSError as e:
            return f"a resolv.conf at {target} ({e.strerror})"
    if not os.path.isfile(target):
        return None  # no resolver configured: nothing to point elsewhere
    source = os.path.join(scratch, f".resolv-{os.getpid()}-{os.urandom(4).hex()}.conf")
    try:
        with open(source, "w") as f:
            f.write(content)
        os.chmod(source, 0o644)
        if _libc.mount(source.encode(), target.encode(), None, _MS_BIND, None) != 0:
            return f"a resolv.conf over {target} ({_err()})"
    except OSError as e:
        return f"a resolv.conf over {target} ({e.strerror})"
    finally:
        try:
            os.unlink(source)
        except OSError:
            pass
    return None


def _unreachable(network: str) -> str | None:
    """Adds an `unreachable` route for `network` (a.b.c.d/n) to the main table, by netlink."""
    address, length = network.split("/")
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, int(length), 0, 0, _RT_TABLE_MAIN,
                       _RTPROT_STATIC, _RT_SCOPE_UNIVERSE, _RTN_UNREACHABLE, 0)
    body += struct.pack("=HH", 8, _RTA_DST) + socket.inet_aton(address)
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL
    message = struct.pack("=IHHII", 16 + len(body), _RTM_NEWROUTE, flags, 1, 0) + body
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
            nl.send(message)
            answer = nl.recv(4096)
    except OSError as e:
        return f"a route walling off {network} ({e.strerror})"
    if len(answer) < 20:
        return f"a route walling off {network} (a short answer from the kernel)"
    kind = struct.unpack_from("=H", answer, 4)[0]
    if kind == _NLMSG_ERROR:
        error = -struct.unpack_from("=i", answer, 16)[0]
        if error and error != 17:  # EEXIST: the address is listed twice
            return f"a route walling off {network} ({os.strerror(error)})"
    return None


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _capabilities() -> tuple:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), f"capget: {_err()}")
    return header, data


def _drop_capabilities() -> str | None:
    """Gives up `_DROPPED` for good (changing the namespace's routes and interfaces, raw
    sockets, tracing a process such as slirp4netns): from the bounding set, and from the
    effective, permitted and inheritable sets."""
    for cap in _DROPPED:
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            return f"giving up capability {cap} ({_err()})"
    try:
        header, data = _capabilities()
    except OSError as e:
        return f"reading capabilities ({e.strerror})"
    mask = 0xFFFFFFFF
    for cap in _DROPPED:
        mask &= ~(1 << cap)
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    if _libc.capset(ctypes.byref(header), data) != 0:
        return f"giving up capabilities ({_err()})"
    return None


def _keep_across_exec(caps: list) -> None:
    """Makes `caps` (held now) survive the next exec: inheritable, then ambient."""
    header, data = _capabilities()
    for cap in caps:
        data[0].inheritable |= 1 << cap
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), f"capset: {_err()}")
    for cap in caps:
        if _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"ambient capability {cap}: {_err()}")


def _err() -> str:
    return os.strerror(ctypes.get_errno())
