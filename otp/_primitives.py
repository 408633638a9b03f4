"""The process primitives: spawn, send, receive, links, monitors and exit signals.

All of them except :func:`receive` are plain functions that return at once; signals and
messages take effect in the receiving process at its next checkpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from trio.lowlevel import checkpoint, current_task, wait_task_rescheduled

from ._errors import ReceiveTimeout
from ._messages import Down
from ._names import Name, lookup, resolve
from ._process import (
    _CREDIT,
    RUNNING,
    IdleTimer,
    Pid,
    _Expired,
    _Process,
    current,
    current_or_none,
    link_pair,
    spawn_process,
)
from ._terms import KILL, KILLED, NOPROC, Ref, Timeout, check_timeout

__all__ = [
    "demonitor",
    "exit",
    "is_alive",
    "link",
    "monitor",
    "receive",
    "self",
    "send",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "trap_exits",
    "unlink",
]


def spawn(fn: Callable[..., Awaitable[Any]], *args: Any) -> Pid:
    """Start ``await fn(*args)`` as a new process and return its pid at once.

    The process runs in the nursery of its spawner's node (or supervisor), so it never
    outlives it. It ends with reason ``NORMAL`` when ``fn`` returns, with the exception
    when ``fn`` raises, or with ``e.reason`` when ``fn`` raises :class:`otp.ProcessExited`.
    """
    return spawn_process(fn, args).pid


def spawn_link(fn: Callable[..., Awaitable[Any]], *args: Any) -> Pid:
    """Like :func:`spawn`, and link the new process to the caller atomically."""
    return spawn_process(fn, args, link=True).pid


def spawn_monitor(fn: Callable[..., Awaitable[Any]], *args: Any) -> tuple[Pid, Ref]:
    """Like :func:`spawn`, and monitor the new process: returns ``(pid, ref)``."""
    me = current()
    proc = spawn_process(fn, args)
    return proc.pid, _add_monitor(me, proc)


def self() -> Pid:
    """The pid of the calling process; raises :class:`otp.NotInProcess` outside one."""
    return current().pid


def is_alive(pid: Pid) -> bool:
    """True while the process runs: False once it has accepted an exit signal or ended."""
    proc = pid._proc
    return proc is not None and proc.state == RUNNING


def send(dest: Name, msg: Any) -> None:
    """Put ``msg`` in the mailbox of ``dest``; never blocks (mailboxes are unbounded).

    Sending to a dead pid drops the message; a name that nothing holds raises
    :class:`otp.NoProc`. Messages from one sender to one receiver arrive in order.
    """
    if type(dest) is Pid:
        proc = dest._proc
        if proc is not None:
            proc.deliver(msg)
        return
    resolve(dest).deliver(msg)


async def receive(
    timeout: Timeout = None, match: Callable[[Any], bool] | None = None
) -> Any:
    """Return the oldest message in the mailbox, waiting for one if it is empty.

    With ``match``, return the oldest message for which ``match(msg)`` is true and leave
    the others where they are, in order (selective receive). With ``timeout`` (seconds
    ``>= 0``; None or ``"infinity"``: wait for ever), raise :class:`otp.ReceiveTimeout`
    if no such message arrives in time; ``timeout=0`` looks only at what is already
    there. Any other ``timeout`` raises ``TypeError``/``ValueError`` before the mailbox is
    touched. A process that has accepted an exit signal takes no further message: it ends
    here instead.
    """
    if timeout is not None and (type(timeout) is not float or not timeout >= 0):
        timeout = check_timeout(timeout)
    proc = current()
    if match is None and proc.state == RUNNING:
        mailbox = proc.mailbox
        if mailbox:
            proc._credit -= 1
            if proc._credit <= 0:
                proc._credit = _CREDIT
                await checkpoint()
            return mailbox.popleft()
        if timeout is None:
            while not proc.mailbox:
                proc._waiting = current_task()
                await wait_task_rescheduled(proc._abort_wait)
            if proc.state == RUNNING:
                return proc.mailbox.popleft()
        elif timeout > 0:  # an idle timeout, asked for by servers on every message
            task = current_task()
            timer = proc.idle_timer
            if timer is None:
                timer = proc.idle_timer = IdleTimer(proc)
            timer.arm(proc.node.timers, trio.current_time() + timeout, task)
            try:
                while not proc.mailbox:  # only messages and the deadline wake it
                    proc._waiting = task
                    await wait_task_rescheduled(proc._abort_wait)
            except _Expired:
                raise ReceiveTimeout(f"no message within {timeout} s") from None
            finally:
                timer.waiting = None
            if proc.state == RUNNING:
                return proc.mailbox.popleft()
    return await _receive_slow(proc, timeout, match)


async def _receive_slow(
    proc: _Process, timeout: float | None, match: Callable[[Any], bool] | None
) -> Any:
    if proc.state != RUNNING:
        # An exit signal was accepted: the process must not take another message. Its
        # scope is cancelled, so this raises (unless the caller shielded itself).
        await checkpoint()
    found, msg = _take(proc, match, 0)
    if found:
        return msg
    if timeout is not None and timeout <= 0:
        # A schedule point now and then, as for messages taken: a server that asks for
        # an idle timeout of 0 again and again must not keep the node from running.
        proc._credit -= 1
        if proc._credit <= 0:
            proc._credit = _CREDIT
            await checkpoint()
        raise ReceiveTimeout(f"no matching message (timeout={timeout})")
    if timeout is None:
        return await _wait_for_match(proc, match)
    # The deadline goes on the node's timer heap through the process's reusable timer:
    # much cheaper than a cancel scope, which matters to servers that ask for an idle
    # timeout on every message.
    deadline = trio.current_time() + timeout
    timer = proc.idle_timer
    if timer is None:
        timer = proc.idle_timer = IdleTimer(proc)
    timer.arm(proc.node.timers, deadline, current_task())
    try:
        return await _wait_for_match(proc, match, deadline)
    except _Expired:
        raise ReceiveTimeout(f"no matching message within {timeout} s") from None
    finally:
        timer.waiting = None


async def _wait_for_match(
    proc: _Process, match: Callable[[Any], bool] | None, deadline: float | None = None
) -> Any:
    """Wait for a message ``match`` accepts, scanning only the ones that arrive meanwhile;
    past ``deadline``, raise :class:`_Expired`."""
    scanned = len(proc.mailbox) if proc.mailbox is not None else 0
    while True:
        proc._waiting = current_task()
        await wait_task_rescheduled(proc._abort_wait)
        if proc.state != RUNNING:
            await checkpoint()
        found, msg = _take(proc, match, scanned)
        if found:
            return msg
        if deadline is not None and trio.current_time() >= deadline:
            raise _Expired
        scanned = len(proc.mailbox) if proc.mailbox is not None else 0


def _take(proc: _Process, match: Callable[[Any], bool] | None, start: int) -> tuple[bool, Any]:
    mailbox = proc.mailbox
    if not mailbox:
        return False, None
    if match is None:
        return True, mailbox.popleft()
    for i in range(start, len(mailbox)):
        msg = mailbox[i]
        if match(msg):
            del mailbox[i]
            return True, msg
    return False, None


def link(pid: Pid) -> None:
    """Link the caller and ``pid``: each gets the other's exit signal. Idempotent.

    Linking to a process that is not alive sends the caller an exit signal with reason
    :data:`otp.NOPROC`.
    """
    me = current()
    proc = pid._proc
    if proc is None or proc.state != RUNNING:
        me.exit_signal(pid, NOPROC)
        return
    if proc is not me:
        link_pair(me, proc)


def unlink(pid: Pid) -> None:
    """Remove the link between the caller and ``pid``, if any."""
    me = current()
    proc = pid._proc
    if proc is None:
        return
    if me.links is not None:
        me.links.discard(proc)
    if proc.links is not None:
        proc.links.discard(me)


def monitor(target: Name) -> Ref:
    """Monitor ``target`` (a pid or a name); return the new monitor's reference.

    When the target ends, the caller receives :class:`otp.Down` with this reference and the
    reason; if it is not alive now, at once with :data:`otp.NOPROC`. Monitors stack.
    """
    me = current()
    proc = lookup(target)
    if proc is None:
        ref = Ref()
        me.deliver(Down(ref, target, NOPROC))
        return ref
    return _add_monitor(me, proc)


def _add_monitor(me: _Process, proc: _Process) -> Ref:
    ref = Ref()
    if proc.monitors is None:
        proc.monitors = {}
    proc.monitors[ref] = me
    if me.watching is None:
        me.watching = {}
    me.watching[ref] = proc
    return ref


def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Turn off the monitor ``ref``; with ``flush``, also drop its Down from the mailbox.

    Returns True if the monitor was still active.
    """
    me = current()
    target = me.watching.pop(ref, None) if me.watching is not None else None
    if target is not None and target.monitors is not None:
        target.monitors.pop(ref, None)
    if flush and me.mailbox:
        me.mailbox = type(me.mailbox)(
            m for m in me.mailbox if not (type(m) is Down and m.ref is ref)
        )
    return target is not None


def exit(pid: Pid, reason: Any) -> None:
    """Send ``pid`` an exit signal with ``reason``, as if from the caller.

    :data:`otp.KILL` ends the process with :data:`otp.KILLED` and cannot be trapped. A
    process that traps exits gets any other reason as an :class:`otp.Exit` message (the
    reason as given); otherwise ``NORMAL`` (or ``"normal"``) is ignored unless sent to
    oneself, and any other reason ends it. Signalling a dead pid does nothing.
    """
    proc = pid._proc
    if proc is None:
        return
    if reason is KILL:
        proc.terminate(KILLED)
        return
    sender = current_or_none()
    proc.exit_signal(sender.pid if sender is not None else None, reason)


def trap_exits(flag: bool) -> bool:
    """Set whether the caller turns exit signals into :class:`otp.Exit` messages.

    Returns the previous setting.
    """
    me = current()
    old = me.trap_exit
    me.trap_exit = bool(flag)
    return old
