"""Runs an unsandboxed command (stdlib only): `sandbox_reaper.py PARENT_PID COMMAND...`.

Without bubblewrap there is no PID namespace to take a command's whole tree down with it. A process
that `setsid`s leaves the command's process group, so a group kill misses it; and while it holds the
output pipe, the supervisor cannot see the command's end. This process stands in for the namespace's
PID 1. It is a child subreaper (`PR_SET_CHILD_SUBREAPER`): whatever the command leaves behind is
re-parented to it rather than to init. When COMMAND ends, it kills every descendant, whatever session
or group it moved to, and exits with COMMAND's status. It does the same on SIGUSR1, which the supervisor
sends at the deadline and the kernel sends when the job that started it dies (`PR_SET_PDEATHSIG`).

This process ignores SIGTERM, SIGINT and SIGHUP, so a command that signals its own process group
(`kill 0`) does not stop it before it has cleaned up. COMMAND gets the default dispositions back.
A command that means harm can still escape this. Containing one is what bubblewrap is for.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36
CLEAN_UP = signal.SIGUSR1
_SHIELDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _prctl(option: int, value: int) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _children() -> list[int]:
    """This process's live and zombie children, re-parented orphans included."""
    found: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as listing:
                found += [int(pid) for pid in listing.read().split()]
        return found
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: read every parent pid
        return _children_by_scan()


def _children_by_scan() -> list[int]:
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{name}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == me:  # field 4, after the name
                    found.append(int(name))
    return found


def kill_descendants() -> None:
    """SIGKILL every child until none is left: a child's own children are re-parented here when it
    dies, and are killed on the next pass. A pass ends when one child is reaped."""
    while True:
        for pid in _children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _die_like(status: int) -> None:
    """Exit as COMMAND did: with its code, or killed by its signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def _on_clean_up(_signum: int, _frame: object) -> None:
    kill_descendants()
    os.kill(os.getpid(), signal.SIGKILL)  # as the supervisor's group kill always ended a timed-out command


def _exec(argv: list[str]) -> None:
    """In the forked child: default dispositions back, then the command; a shell's codes if it can't start."""
    for sig in (*_SHIELDED, CLEAN_UP):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"archon sandbox: cannot run {argv[0]}: {exc.strerror}\n".encode())
        os._exit(126 if isinstance(exc, PermissionError) else 127)


def main(parent: int, argv: list[str]) -> None:
    for sig in _SHIELDED:
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(CLEAN_UP, _on_clean_up)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, CLEAN_UP)  # replaces the SIGKILL armed before exec: clean up instead
    if os.getppid() != parent:
        os._exit(137)  # the job died before the new death signal was armed: never start the command
    child = os.fork()
    if child == 0:
        _exec(argv)
    _, status = os.waitpid(child, 0)
    kill_descendants()
    _die_like(status)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
