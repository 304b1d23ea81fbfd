"""Process namespaces for the worker and its children: a session of its own, the zygote's user,
PID and IPC namespaces, each child forked into a PID namespace of its own beside its init,
and the ids the host sees. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import signal

from basin._kernel import _CLONE_NEWIPC, _CLONE_NEWPID, _CLONE_NEWUSER, _PR_SET_DUMPABLE, _PR_SET_PDEATHSIG, _err, _libc



def own_process_group() -> None:
    """A new session (so a new process group Basin can kill whole), killed with its parent."""
    os.setsid()
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _map_own_ids(uid: int, gid: int) -> str | None:
    """In a new user namespace: our ids mean themselves (and no group changes)."""
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError as e:
        return f"user namespace mapping: {e.strerror}"
    return None


def own_pid_namespace() -> str | None:
    """For the zygote, once, before it imports anything (a process with threads cannot enter
    a user namespace): a user namespace and a PID namespace of its own, and an IPC namespace
    (no System V IPC or POSIX message queues shared with the host's processes). In them it
    may give each child a PID namespace as it forks it (`fork_into_namespace`), instead of the
    child forking once more to get one. The caller forks next: that child is the namespace's
    first process and goes on as the zygote. Returns why not."""
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWPID | _CLONE_NEWIPC) != 0:
        return f"no PID namespace ({_err()})"
    return _map_own_ids(uid, gid)


#: The init of an invocation's PID namespace: a program that waits until it is killed.
_INIT_PROGRAMS = ("/usr/bin/sleep", "/bin/sleep")


def fork_into_namespace(own_namespace: int) -> tuple:
    """os.fork() into a new PID namespace, after its init: `sleep`, started with posix_spawn
    (which does not copy this big process), so the child is not the init, which ignores the
    signals sent from inside its namespace (a function killing itself would live on). When
    the init is killed (by the zygote once the child has ended, or by Basin), the kernel ends
    every process left in the namespace, even one that called setsid(). `own_namespace` is a
    descriptor of the caller's own PID namespace, which its later children go back to (a
    process can make a new one only from its own). Returns (child, init), the ids in the
    caller's namespace; in the child, (0, 0)."""
    if _libc.unshare(_CLONE_NEWPID) != 0:
        raise OSError(ctypes.get_errno(), f"unshare(CLONE_NEWPID): {_err()}")
    init = 0
    try:
        program = next((p for p in _INIT_PROGRAMS if os.access(p, os.X_OK)), _INIT_PROGRAMS[0])
        init = os.posix_spawn(program, ["basin-init", "infinity"], {}, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        ])
        pid = os.fork()
    except BaseException:
        if init:
            os.kill(init, signal.SIGKILL)
        _libc.setns(own_namespace, _CLONE_NEWPID)
        raise
    if pid == 0:
        return 0, 0  # the child's own children stay in its namespace
    if _libc.setns(own_namespace, _CLONE_NEWPID) != 0:
        raise OSError(ctypes.get_errno(), f"setns to the zygote's PID namespace: {_err()}")
    return pid, init


def host_pid_of(pid: int) -> int:
    """A child's id as the host (and Basin) sees it, from a pidfd's description in /proc,
    which gives ids in the PID namespace /proc was mounted in."""
    fd = os.pidfd_open(pid)
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    raise OSError(f"no id for process {pid} in /proc/self/fdinfo")


def own_user_namespace() -> str | None:
    """A user namespace for one invocation's process, inside the zygote's: no privileges over
    anything outside it, and its processes counted apart from other invocations' (the
    process limit); with an IPC namespace, so no System V shared memory, semaphore or message
    queue (nor POSIX message queue) outlives the invocation or reaches another. Returns why
    not."""
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWIPC) != 0:
        return f"no user and IPC namespace ({_err()})"
    return _map_own_ids(uid, gid)


def watch_over(zygote: int) -> None:
    """What the zygote's parent does, outside the zygote's namespaces, for as long as the
    zygote lives: holds none of Basin's pipes, dies with Basin, and ends as the zygote ended."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Outside the zygote's network (the `internet` wall's): no code of the zygote's may
    # trace it to act from here.
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        try:
            _, status = os.waitpid(zygote, 0)
            break
        except InterruptedError:
            continue
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def host_pid() -> int:
    """This process's id as the host (and /proc) sees it; os.getpid() is 1 in the namespace."""
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


def _unshare(flags: int, what: str) -> str | None:
    """New namespaces for this process; without privileges, inside a user namespace that maps
    our ids onto themselves. Returns why not, or None."""
    if _libc.unshare(flags) == 0:
        return None
    first = _err()
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(_CLONE_NEWUSER | flags) != 0:
        return f"{what} ({first})"
    why = _map_own_ids(uid, gid)
    return f"{what} ({why})" if why else None
