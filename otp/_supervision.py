"""What every kind of supervisor shares: the errors, the requests their clients send,
reading child specs, shutting a child down, restart intensity, and the nursery that keeps
children inside their supervisor.

:class:`otp.ChildSpec` itself is defined in :mod:`otp._child_spec`, below
:mod:`otp.gen_server`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, TypeAlias

import attrs
import trio

from . import gen_server
from ._child_spec import ChildSpec, ShutdownValue
from ._errors import InitError, OTPError, ProcessExited
from ._messages import Exit
from ._names import Name
from ._node import await_exit
from ._primitives import exit as send_exit
from ._primitives import unlink
from ._process import Pid, _Process, current
from ._terms import KILL, SHUTDOWN

__all__ = [
    "AUTO_SHUTDOWNS",
    "AlreadyPresent",
    "AutoShutdown",
    "NotFound",
    "Restarting",
    "Running",
    "StartChildError",
]

AutoShutdown: TypeAlias = Literal["never", "any_significant", "all_significant"]
"""Whether a supervisor shuts itself down when significant children end on their own."""
AUTO_SHUTDOWNS: Final[tuple[AutoShutdown, ...]] = ("never", "any_significant", "all_significant")

log: Final = logging.getLogger("otp.supervisor")


def as_child_spec(child: Any) -> ChildSpec:
    """Accept a ChildSpec, a class with ``child_spec()``, or ``(class, arg, ...)``."""
    if isinstance(child, ChildSpec):
        return child
    if isinstance(child, tuple) and child and hasattr(child[0], "child_spec"):
        spec = child[0].child_spec(*child[1:])
    elif hasattr(child, "child_spec"):
        spec = child.child_spec()
    else:
        raise TypeError(
            f"a child must be a ChildSpec, a class with child_spec() or (class, args...), "
            f"got {child!r}"
        )
    if not isinstance(spec, ChildSpec):
        raise TypeError(f"{child!r}.child_spec() returned {spec!r}, not a ChildSpec")
    return spec


class StartChildError(OTPError):
    """A child's start failed (``.child_id``, ``.reason``); the supervisor did not keep it."""

    def __init__(self, child_id: Any, reason: Any) -> None:
        super().__init__(f"child {child_id!r} failed to start: {reason!r}")
        self.child_id = child_id
        self.reason = reason


class AlreadyPresent(OTPError):
    """A child with this id (``.child_id``) is defined but not running."""

    def __init__(self, child_id: Any) -> None:
        super().__init__(f"child {child_id!r} is already present")
        self.child_id = child_id


class Running(OTPError):
    """The child (``.child_id``) is running, so it cannot be restarted or deleted."""

    def __init__(self, child_id: Any) -> None:
        super().__init__(f"child {child_id!r} is running")
        self.child_id = child_id


class Restarting(OTPError):
    """The child (``.child_id``) failed to restart and its supervisor is still trying
    (OTP's ``{error, restarting}``): it cannot be restarted or deleted now, only
    terminated, which ends the retries."""

    def __init__(self, child_id: Any) -> None:
        super().__init__(f"child {child_id!r} is restarting")
        self.child_id = child_id


class NotFound(OTPError, LookupError):
    """No child with this id (or pid) (``.child_id``)."""

    def __init__(self, child_id: Any) -> None:
        super().__init__(f"no child {child_id!r}")
        self.child_id = child_id


# -- the requests -------------------------------------------------------------------------
# What the client functions of otp.supervisor and otp.dynamic_supervisor call a supervisor
# with. which_children, count_children, start_child and terminate_child are served by both
# kinds (each names the requests it serves in a union next to its server).


@attrs.frozen
class StartChild:
    """Start a child from ``spec`` and keep it; answered with its pid (or None)."""

    spec: ChildSpec


@attrs.frozen
class TerminateChild:
    """Stop a child per its shutdown: ``child`` is its id (static) or its pid (dynamic)."""

    child: Any


@attrs.frozen
class RestartChild:
    """Start again the child ``child_id``, defined but not running (static only)."""

    child_id: Any


@attrs.frozen
class DeleteChild:
    """Forget the child ``child_id``, which is not running (static only)."""

    child_id: Any


@attrs.frozen
class WhichChildren:
    """Answered with ``(id, pid or None, type)`` for every child, in start order."""


@attrs.frozen
class CountChildren:
    """Answered with the ``specs``, ``active``, ``supervisors`` and ``workers`` counts."""


Request: TypeAlias = (
    StartChild | TerminateChild | RestartChild | DeleteChild | WhichChildren | CountChildren
)
"""Every request a supervisor client sends."""


@attrs.frozen
class Raise:
    """A supervisor's answer that makes its client raise ``error`` (the supervisor itself
    carries on)."""

    error: Exception


async def call_supervisor(sup: Name, request: Request) -> Any:
    """Call ``sup`` with ``request`` (no timeout); raise what it answers with :class:`Raise`."""
    result = await gen_server.call(sup, request, timeout=None)
    if type(result) is Raise:
        raise result.error
    return result


class Child:
    """A supervisor's record of one child: its spec, its pid while it runs, and whether a
    restart of it failed and is being retried (``restarting``; its pid is then None)."""

    __slots__ = ("pid", "restarting", "spec")

    def __init__(self, spec: ChildSpec, pid: Pid | None = None) -> None:
        self.spec = spec
        self.pid = pid
        self.restarting = False

    def __repr__(self) -> str:
        state = repr(self.pid) if self.pid is not None else (
            "restarting" if self.restarting else "not running")
        return f"<Child {self.spec.id!r} {state}>"


def check_auto_shutdown(value: Any) -> AutoShutdown:
    """Return ``value`` if it is one of :data:`AUTO_SHUTDOWNS`; raise ValueError otherwise."""
    if value not in AUTO_SHUTDOWNS:
        raise ValueError(f"auto_shutdown must be one of {AUTO_SHUTDOWNS}, got {value!r}")
    return value  # type: ignore[no-any-return]


def check_significant(spec: ChildSpec, auto_shutdown: AutoShutdown) -> None:
    """Refuse a significant child OTP refuses (its ``bad_combination``): a permanent one,
    or any under a supervisor whose ``auto_shutdown`` is ``"never"``. Raises ValueError."""
    if not spec.significant:
        return
    if spec.restart == "permanent":
        raise ValueError(
            f"child {spec.id!r}: a significant child must be transient or temporary, "
            "not permanent"
        )
    if auto_shutdown == "never":
        raise ValueError(
            f"child {spec.id!r} is significant, but the supervisor's auto_shutdown is "
            "'never' (use 'any_significant' or 'all_significant')"
        )


class RestartIntensity:
    """Counts restarts over a sliding window: more than ``intensity`` in ``period`` s is
    too many."""

    def __init__(self, intensity: int, period: float) -> None:
        if not isinstance(intensity, int) or intensity < 0:
            raise ValueError(f"intensity must be an int >= 0, got {intensity!r}")
        if not isinstance(period, int | float) or period <= 0:
            raise ValueError(f"period must be seconds > 0, got {period!r}")
        self.intensity = intensity
        self.period = float(period)
        self._times: deque[float] = deque()

    def __repr__(self) -> str:
        return f"<RestartIntensity {self.intensity} in {self.period:g} s>"

    def add(self) -> bool:
        """Record a restart now; return False when that exceeds the intensity."""
        now = trio.current_time()
        times = self._times
        times.append(now)
        while times and times[0] <= now - self.period:
            times.popleft()
        return len(times) <= self.intensity

    def recent(self, now: float) -> int:
        """The restarts that count toward the intensity at ``now`` (trio time): those of
        the last ``period`` seconds. Reads only; never waits."""
        cutoff = now - self.period
        count = 0
        for when in reversed(self._times):
            if when <= cutoff:
                break
            count += 1
        return count


async def start_child_process(spec: ChildSpec, extra: tuple[Any, ...] = ()) -> Pid | None:
    """Run ``spec.start`` in the supervisor; raise StartChildError unless it gave a pid/None."""
    try:
        pid = await spec.start(*extra)
    except InitError as exc:
        raise StartChildError(spec.id, exc.reason) from exc
    except ProcessExited as exc:  # the start function exited with a reason: report it
        raise StartChildError(spec.id, exc.reason) from exc
    except Exception as exc:
        raise StartChildError(spec.id, exc) from exc
    if pid is not None and type(pid) is not Pid:
        raise StartChildError(spec.id, TypeError(f"start returned {pid!r}, not a pid or None"))
    return pid


async def shutdown_child(pid: Pid, shutdown: ShutdownValue | None) -> Any:
    """Stop one child the OTP way and return its exit reason.

    Unlink, then ``"brutal_kill"`` kills at once; otherwise send ``SHUTDOWN`` and wait
    ``shutdown`` seconds (for ever with ``"infinity"``) before killing. The child's EXIT,
    if it already sits in the supervisor's mailbox, is removed.
    """
    proc = pid._proc
    unlink(pid)
    _flush_exit(current(), pid)
    if proc is None:
        return None
    if shutdown == "brutal_kill":
        send_exit(pid, KILL)
        return await await_exit(proc, None)
    send_exit(pid, SHUTDOWN)
    grace = math.inf if shutdown == "infinity" or shutdown is None else float(shutdown)
    return await await_exit(proc, None if math.isinf(grace) else grace)


def _flush_exit(me: _Process, pid: Pid) -> None:
    mailbox = me.mailbox
    if mailbox and any(type(m) is Exit and m.pid is pid for m in mailbox):
        me.mailbox = deque(m for m in mailbox if not (type(m) is Exit and m.pid is pid))


@asynccontextmanager
async def supervisor_nursery() -> AsyncIterator[trio.Nursery]:
    """Open the nursery the current (supervisor) process starts its children in.

    Children and anything they spawn run inside it, so none outlives the supervisor: when
    it stops, its children are already shut down and whatever is left is cancelled; when it
    is killed, its children are cancelled with it and end (with ``otp.KILLED``, running no
    ``terminate``) before its own exit is signalled.
    """
    me = current()
    me.is_supervisor = True
    try:
        async with trio.open_nursery() as nursery:
            me.spawn_nursery = nursery
            try:
                yield nursery
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Children never raise into the nursery (a process keeps its exception as its exit
        # reason) except trio.Cancelled, when a kill from above cancels them with the
        # supervisor; so the group holds the supervisor's own exit, or only Cancelled:
        # unwrap it, so that the supervisor ends as killed rather than with a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        cancelled, rest = group.split(trio.Cancelled)
        if rest is None and cancelled is not None:
            raise _first_leaf(cancelled) from None
        raise


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def log_child_exit(sup: Any, child_id: Any, reason: Any, action: str) -> None:
    """Log a child's end and what the supervisor does about it."""
    log.error("supervisor %r: child %r exited with %r; %s", sup, child_id, reason, action)


def log_give_up(sup: Any, child_id: Any, reason: Any, intensity: RestartIntensity) -> None:
    log.error(
        "supervisor %r: child %r exited with %r; more than %d restarts in %g s: "
        "shutting down", sup, child_id, reason, intensity.intensity, intensity.period,
    )


def log_failed_start(sup: Any, child_id: Any, reason: Any) -> None:
    log.error("supervisor %r: child %r failed to start: %r", sup, child_id, reason)


def log_auto_shutdown(sup: Any, child_id: Any, reason: Any, auto_shutdown: str) -> None:
    log.info(
        "supervisor %r: significant child %r exited with %r; auto_shutdown is %r: "
        "shutting down", sup, child_id, reason, auto_shutdown,
    )


def sup_label(me: _Process) -> Any:
    """How logs name a supervisor: its registered name, else its pid."""
    return me.name if me.name is not None else me.pid


async def shutdown_children(children: list[Child]) -> None:
    """Stop the running children one at a time in reverse start order."""
    for child in reversed(children):
        if child.pid is not None:
            pid, child.pid = child.pid, None
            await shutdown_child(pid, child.spec.shutdown)
