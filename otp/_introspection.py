"""Looking inside a running node without disturbing it: :func:`process_info`.

Published as :func:`otp.process_info` and :class:`otp.observer.ProcessInfo`. It reads the
process's state directly, synchronously: no message is sent and nothing waits, so it can
be called for every process of a large node (:func:`otp.observer.snapshot` does).
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias

import attrs
from trio.lowlevel import Task

from ._process import DEAD, RUNNING, Pid, _Process
from .gen_server import GenServer

__all__ = ["ProcessInfo", "RunStatus", "process_info"]

RunStatus: TypeAlias = Literal["running", "waiting", "exiting"]
"""What a process is doing: see :attr:`ProcessInfo.status`."""

_NO_PIDS: Final[tuple[Pid, ...]] = ()


@attrs.frozen(weakref_slot=False)
class ProcessInfo:
    """What :func:`otp.process_info` tells of a live process (Erlang's
    ``process_info/1``, Elixir's ``Process.info/1``), read at one instant.

    * ``pid``: the process.
    * ``name``: the name it is registered under: a ``str`` (local name), or the
      :class:`otp.Via` name it was started with; None when it has none.
    * ``status``: ``"running"`` while it runs or is ready to run (a process that was just
      spawned, or woken, and waits for its turn); ``"waiting"`` while it is suspended in
      an ``await`` (a ``receive``, a ``call``, a sleep, I/O); ``"exiting"`` once it has
      accepted an exit signal and is unwinding (Erlang's ``exiting``).
    * ``message_queue_len``: the messages in its mailbox (a gen_server's calls, casts and
      system messages not yet taken included).
    * ``links``: the pids it is linked to, in pid order.
    * ``monitors``: the pids it monitors (with :func:`otp.monitor`), one per monitor, in
      the order they were made.
    * ``monitored_by``: the pids that monitor it, one per monitor, in the order they were
      made. Calls, stops and starts watch their server without a monitor: a caller
      waiting for a reply is not listed (unlike in Erlang).
    * ``trap_exits``: whether it turns exit signals into :class:`otp.Exit` messages.
    * ``parent``: the pid of the process that spawned it (a supervised child's
      supervisor), None for a node's main process.
    * ``behaviour``: what runs it: a gen_server's class (for a supervisor of the class
      form, its :class:`otp.Supervisor` subclass; for one started from a list of
      children, otp's own class for it), or the function a plain process was spawned with
      (None for a node's main process).
    """

    pid: Pid
    name: Any
    status: RunStatus
    message_queue_len: int
    links: tuple[Pid, ...]
    monitors: tuple[Pid, ...]
    monitored_by: tuple[Pid, ...]
    trap_exits: bool
    parent: Pid | None
    behaviour: Any


def process_info(pid: Pid) -> ProcessInfo | None:
    """What the process ``pid`` is and does now, as a :class:`ProcessInfo`; None when it
    is not alive (it has ended; a process that is still exiting has an info, with status
    ``"exiting"``).

    Synchronous and cheap: it reads the process's state where it is kept, sends nothing
    and allocates only the result, so it may be called from any process or task of the
    node, and on any number of processes. Raises ``TypeError`` if ``pid`` is not a pid.
    """
    if type(pid) is not Pid:
        raise TypeError(f"pid must be an otp.Pid, got {pid!r}")
    proc = pid._proc
    if proc is None or proc.state == DEAD:
        return None
    return _info(proc)


def _info(proc: _Process) -> ProcessInfo:
    """The :class:`ProcessInfo` of ``proc``, which has not ended. (Written for speed:
    :func:`otp.observer.snapshot` calls it for every process of a node.)"""
    links = proc.links
    if not links:
        linked = _NO_PIDS
    elif len(links) == 1:
        for other in links:
            linked = (other.pid,)
    else:
        linked = tuple(sorted([other.pid for other in links], key=_pid_order))
    watching = proc.watching
    monitors = tuple([t.pid for t in watching.values()]) if watching else _NO_PIDS
    watchers = proc.monitors
    if not watchers:
        monitored_by = _NO_PIDS
    else:
        monitored_by = tuple([w.pid for w in watchers.values() if type(w) is _Process])
    mailbox = proc.mailbox
    impl = proc.impl
    if isinstance(impl, GenServer):
        impl = impl._otp_behaviour or type(impl)
    return ProcessInfo(
        proc.pid,
        proc.name,
        _status(proc) if proc.state == RUNNING else "exiting",
        len(mailbox) if mailbox is not None else 0,
        linked,
        monitors,
        monitored_by,
        proc.trap_exit,
        proc.parent,
        impl,
    )


def _status(proc: _Process) -> RunStatus:
    """``"running"`` or ``"waiting"``, for a process that has not begun to exit."""
    task = proc.task
    if task is None:
        node = proc.node
        if node.main is not proc.pid:
            return "running"  # spawned, not started yet: ready to run
        task = node.nursery.parent_task  # a node's main process is the task that opened it
    # Trio keeps the abort function of a task while it is suspended in
    # wait_task_rescheduled, where every blocking operation ends up; a task that runs or
    # is scheduled to run has none. (Without it, in some other trio: always "running".)
    if _SUSPENDED and task._abort_func is not None:
        return "waiting"
    return "running"


_SUSPENDED: Final = hasattr(Task, "_abort_func")
"""Whether this trio keeps ``Task._abort_func``, by which :func:`_status` tells a
suspended task."""


def _pid_order(pid: Pid) -> int:
    return pid._id
