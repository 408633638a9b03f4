"""dynamic_supervisor: a one_for_one supervisor whose children are all added at run time.

Like Elixir's DynamicSupervisor: :func:`start_child` adds and starts a child,
``max_children`` bounds how many run, ``extra_args`` are passed first to every child's
``start``. Children are addressed by pid; restart types and the restart intensity work
as in :mod:`otp.supervisor`. On shutdown every child is sent its exit signal at once,
then each is waited for (and killed after its own ``shutdown`` time).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, TypeAlias, assert_never

import attrs
import trio

from . import gen_server
from ._errors import OTPError
from ._messages import Exit
from ._names import Name
from ._node import await_exit
from ._primitives import exit as send_exit
from ._primitives import trap_exits, unlink
from ._process import Pid, current
from ._supervision import (
    Child,
    CountChildren,
    NotFound,
    Raise,
    RestartIntensity,
    StartChild,
    StartChildError,
    TerminateChild,
    WhichChildren,
    as_child_spec,
    call_supervisor,
    log_child_exit,
    log_failed_start,
    log_give_up,
    shutdown_child,
    start_child_process,
    sup_label,
    supervisor_nursery,
)
from ._terms import KILL, SHUTDOWN, is_normal_exit
from .supervisor import count_children, stop, which_children

__all__ = [
    "MaxChildren",
    "count_children",
    "start_child",
    "start_link",
    "stop",
    "terminate_child",
    "which_children",
]


class MaxChildren(OTPError):
    """The dynamic supervisor already runs ``max_children`` children."""

    def __init__(self, max_children: int) -> None:
        super().__init__(f"the supervisor already runs its max_children={max_children}")
        self.max_children = max_children


async def start_link(
    *,
    max_children: int | None = None,
    extra_args: tuple[Any, ...] = (),
    intensity: int = 3,
    period: float = 5.0,
    name: Any = None,
) -> Pid | None:
    """Start a dynamic supervisor linked to the caller, with no children; return its pid."""
    if max_children is not None and (not isinstance(max_children, int) or max_children < 0):
        raise ValueError(f"max_children must be None or an int >= 0, got {max_children!r}")
    RestartIntensity(intensity, period)  # validates before anything starts
    return await gen_server.start_link(
        _DynamicSupervisor, max_children, tuple(extra_args), intensity, period, name=name
    )


async def start_child(sup: Name, spec: Any) -> Pid | None:
    """Start a child from ``spec`` under ``sup``; return its pid (None if it ignored).

    Raises :class:`MaxChildren` when full and :class:`otp.supervisor.StartChildError`
    (``child_id=None``) when its start fails.
    """
    pid: Pid | None = await call_supervisor(sup, StartChild(as_child_spec(spec)))
    return pid


async def terminate_child(sup: Name, pid: Pid) -> None:
    """Stop the child ``pid`` per its shutdown and forget it; raises NotFound otherwise."""
    await call_supervisor(sup, TerminateChild(pid))


_Request: TypeAlias = StartChild | TerminateChild | WhichChildren | CountChildren
"""The requests a dynamic supervisor serves (children are added, never restarted or deleted
by request)."""


@attrs.frozen
class _TryAgain:
    """Cast to itself by a dynamic supervisor that failed to restart ``child``: retry it."""

    child: Child


class _DynamicSupervisor(gen_server.GenServer):
    child_shutdown: ClassVar[float | str] = "infinity"

    def _process_context(self) -> Any:
        return supervisor_nursery()

    async def init(
        self, max_children: int | None, extra_args: tuple[Any, ...], intensity: int,
        period: float,
    ) -> None:
        trap_exits(True)
        self.max_children = max_children
        self.extra_args = extra_args
        self.intensity = RestartIntensity(intensity, period)
        self.children: dict[Pid, Child] = {}
        self.label = sup_label(current())

    async def terminate(self, reason: Any) -> None:
        children = list(self.children.values())
        self.children.clear()
        await _shutdown_all(children)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not isinstance(request, _Request):
            raise ValueError(f"unknown dynamic supervisor request {request!r}")
        match request:
            case WhichChildren():
                return [(None, c.pid, c.spec.type) for c in self.children.values()]
            case CountChildren():
                kids = self.children.values()
                return {
                    "specs": len(kids),
                    "active": len(kids),
                    "supervisors": sum(1 for c in kids if c.spec.type == "supervisor"),
                    "workers": sum(1 for c in kids if c.spec.type == "worker"),
                }
            case StartChild(spec):
                if self.max_children is not None and len(self.children) >= self.max_children:
                    return Raise(MaxChildren(self.max_children))
                try:
                    pid = await start_child_process(spec, self.extra_args)
                except StartChildError as exc:
                    return Raise(StartChildError(None, exc.reason))
                if pid is not None:
                    self.children[pid] = Child(spec, pid)
                return pid
            case TerminateChild(pid):
                child = self.children.pop(pid, None)
                if child is None:
                    return Raise(NotFound(pid))
                await shutdown_child(pid, child.spec.shutdown)
                return None
            case _:
                assert_never(request)

    async def handle_info(self, msg: Any) -> Any:
        match msg:
            case Exit(pid, reason):
                child = self.children.pop(pid, None) if pid is not None else None
                if child is None:
                    return None
                restart = child.spec.restart
                if restart == "temporary" or (restart == "transient" and is_normal_exit(reason)):
                    return None
                return await self._restart(child, reason)
            case _:
                return await super().handle_info(msg)

    async def handle_cast(self, msg: Any) -> Any:
        match msg:
            case _TryAgain(child):
                return await self._restart(child, None)
            case _:
                return await super().handle_cast(msg)

    async def _restart(self, child: Child, reason: Any) -> Any:
        if not self.intensity.add():
            log_give_up(self.label, child.spec.id, reason, self.intensity)
            return gen_server.Stop(SHUTDOWN)
        if reason is not None:
            log_child_exit(self.label, child.spec.id, reason, "restarting")
        try:
            pid = await start_child_process(child.spec, self.extra_args)
        except StartChildError as exc:
            log_failed_start(self.label, child.spec.id, exc.reason)
            gen_server.cast(current().pid, _TryAgain(child))
            return None
        if pid is not None:
            child.pid = pid
            self.children[pid] = child
        return None


async def _shutdown_all(children: list[Child]) -> None:
    """Signal every child at once, then wait for each within its own shutdown time."""
    now = trio.current_time()
    pending = []
    for child in reversed(children):
        pid = child.pid
        if pid is None or pid._proc is None:
            continue
        unlink(pid)
        send_exit(pid, KILL if child.spec.shutdown == "brutal_kill" else SHUTDOWN)
        shutdown = child.spec.shutdown
        deadline = now + (
            math.inf if shutdown in ("infinity", "brutal_kill") else float(shutdown)  # type: ignore[arg-type]
        )
        pending.append((pid, deadline))
    for pid, deadline in pending:
        proc = pid._proc
        if proc is not None:
            remaining = deadline - trio.current_time()
            await await_exit(proc, None if math.isinf(remaining) else max(remaining, 0.0))
