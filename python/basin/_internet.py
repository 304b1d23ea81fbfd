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
The worker then gives up CAP_NET_ADMIN and CAP_NET_RAW in its namespace, so that its
packages' import code cannot change those routes; each invocation's process is in a user
namespace of its own, with no capability over the worker's network. Names resolve through
slirp's forwarder (10.0.2.3), put in /etc/resolv.conf in the worker's mount namespace.

slirp4netns is a Debian package (`apt install slirp4netns`); without it the wall is
missing, and said so. Written by hand with ctypes (netlink, capabilities): Python 3.11's
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
UNREACHABLE = ["169.254.0.0/16"]
#: How long slirp4netns may take to bring the namespace's interface up.
READY_TIMEOUT = 10.0

# Netlink (linux/netlink.h, linux/rtnetlink.h).
_RTM_NEWROUTE = 24
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 1, 4, 0x200, 0x400
_NLMSG_ERROR = 2
_RT_TABLE_MAIN, _RTPROT_STATIC, _RT_SCOPE_UNIVERSE, _RTN_UNREACHABLE = 254, 4, 0, 7
_RTA_DST = 1

# Capabilities (linux/capability.h).
_CAP_NET_ADMIN, _CAP_NET_RAW = 12, 13
_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def host_addresses() -> list:
    """The host's own IPv4 addresses, from the kernel's local routing table as this network
    namespace sees it (read before leaving it)."""
    found, last = [], None
    try:
        with open("/proc/net/fib_trie") as f:
            for line in f:
                text = line.strip()
                if text.startswith("|--"):
                    last = text[3:].strip()
                elif "/32 host LOCAL" in text and last and last not in found:
                    found.append(last)
    except OSError:
        pass
    return found


def build(host_pid: int) -> str | None:
    """Leaves the host's network for a namespace of its own that slirp4netns serves, walls
    off the host's addresses, and gives up the capabilities that could undo it. Called by the
    worker, in its own user namespace, before any other wall and any import. `host_pid`:
    this process's id as the host sees it. Returns why the wall could not be built (the
    worker then stays on the host's network), or None."""
    slirp = shutil.which("slirp4netns", path=SLIRP_PATH)
    if not slirp:
        return "slirp4netns is not installed (apt install slirp4netns)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (slirp4netns needs the tun device)"
    own = host_addresses()
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    child = os.fork()
    if child == 0:
        # Still in the host's network: wait until the namespace exists, then serve it.
        try:
            os.close(go_w)
            os.close(ready_r)
            os.close(exit_w)
            os.read(go_r, 1)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.set_inheritable(ready_w, True)
            os.set_inheritable(exit_r, True)
            os.execv(slirp, [slirp, "--configure", "--mtu=65520", "--disable-host-loopback",
                             "--enable-sandbox", "--enable-seccomp",
                             f"--ready-fd={ready_w}", f"--exit-fd={exit_r}",
                             "--netns-type=path", f"/proc/{host_pid}/ns/net", "tap0"])
        finally:
            os._exit(127)
    os.close(go_r)
    os.close(ready_w)
    os.close(exit_r)
    # The write end of exit stays open in this worker (and the processes it forks): when all
    # are gone, slirp4netns ends.
    os.set_inheritable(exit_w, False)

    def fail(why: str) -> str:
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
    os.close(go_w)
    readable, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
    if not readable or os.read(ready_r, 1) != b"1":
        return fail("slirp4netns did not bring the network up")
    os.close(ready_r)
    for address in own:
        why = _unreachable(f"{address}/32")
        if why:
            return why
    for network in UNREACHABLE:
        why = _unreachable(network)
        if why:
            return why
    return _drop_network_capabilities()


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


def _drop_network_capabilities() -> str | None:
    """Gives up CAP_NET_ADMIN and CAP_NET_RAW for good: from the bounding set, and from the
    effective, permitted and inheritable sets."""
    for cap in (_CAP_NET_ADMIN, _CAP_NET_RAW):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            return f"giving up capability {cap} ({_err()})"
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        return f"reading capabilities ({_err()})"
    mask = ~((1 << _CAP_NET_ADMIN) | (1 << _CAP_NET_RAW)) & 0xFFFFFFFF
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    if _libc.capset(ctypes.byref(header), data) != 0:
        return f"giving up network capabilities ({_err()})"
    return None


def _err() -> str:
    return os.strerror(ctypes.get_errno())
