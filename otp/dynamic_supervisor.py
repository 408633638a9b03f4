"""dynamic_supervisor: a one_for_one supervisor whose children are all added at run time.

Like Elixir's DynamicSupervisor: :func:`start_child` adds and starts a child,
``max_children`` bounds how many it has, ``extra_args`` are passed first to every child's
``start``. Children are addressed by pid; restart types and the restart intensity work
as in :mod:`otp.supervisor`.

Guarantees, as in Elixir:

* A child whose restart fails stays a child while the supervisor retries it (each try
  counting toward the intensity): it is *restarting* under its old pid, counted by
  :func:`count_children` (in ``specs`` and ``workers``/``supervisors``, not ``active``)
  and against ``max_children``, listed by :func:`which_children` with pid None, and
  :func:`terminate_child` of its old pid removes it and ends the retries. A restart whose
  start returns None (ignore) removes the child.
* A child that ends and is not restarted (temporary; transient with a normal reason) is
  removed at once.
* Significant children are refused (ValueError): a dynamic supervisor's auto_shutdown is
  always ``"never"``.
* On shutdown every child is sent its exit signal at once; each is killed when its own
  ``shutdown`` time has passed, and the supervisor exits once all of them have ended.
"""

from __future__ import annotations

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
    check_significant,
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
    """Start a dynamic supervisor linked to the caller, with no children; return its pid.

    ``max_children`` (None: no limit) bounds how many children it has, restarting ones
    included; ``extra_args`` come first in every child's ``start``; more than
    ``intensity`` restarts in ``period`` seconds make it stop its children and exit with
    :data:`otp.SHUTDOWN`. Raises ValueError for a bad option and
    :class:`otp.AlreadyStarted` if ``name`` is taken.
    """
    if max_children is not None and (not isinstance(max_children, int) or max_children < 0):
        raise ValueError(f"max_children must be None or an int >= 0, got {max_children!r}")
    RestartIntensity(intensity, period)  # validates before anything starts
    return await gen_server.start_link(
        _DynamicSupervisor, max_children, tuple(extra_args), intensity, period, name=name
    )


async def start_child(sup: Name, spec: Any) -> Pid | None:
    """Start a child from ``spec`` under ``sup``; return its pid (None if it ignored, and
    then nothing is kept).

    Raises :class:`MaxChildren` when it already has ``max_children`` children (restarting
    ones count), :class:`otp.supervisor.StartChildError` (``child_id=None``) when the
    start fails, and ValueError for a significant child.
    """
    pid: Pid | None = await call_supervisor(sup, StartChild(as_child_spec(spec)))
    return pid


async def terminate_child(sup: Name, pid: Pid) -> None:
    """Stop the child ``pid`` per its shutdown and forget it; return once it has ended.

    ``pid`` may be the old pid of a child whose restart is being retried: it is forgotten
    and the retries end. Raises :class:`otp.supervisor.NotFound` if ``pid`` is not a child.
    """
    await call_supervisor(sup, TerminateChild(pid))


_Request: TypeAlias = StartChild | TerminateChild | WhichChildren | CountChildren
"""The requests a dynamic supervisor serves (children are added, never restarted or deleted
by request)."""


@attrs.frozen
class _TryAgain:
    """Cast to itself by a dynamic supervisor that failed to restart the child it keeps
    under the old pid ``key``: retry it, if it is still restarting."""

    key: Pid


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
        # Keyed by pid; a restarting child stays under the pid it had (its Child.pid None).
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
                    "active": sum(1 for c in kids if c.pid is not None),
                    "supervisors": sum(1 for c in kids if c.spec.type == "supervisor"),
                    "workers": sum(1 for c in kids if c.spec.type == "worker"),
                }
            case StartChild(spec):
                if self.max_children is not None and len(self.children) >= self.max_children:
                    return Raise(MaxChildren(self.max_children))
                try:
                    check_significant(spec, "never")
                except ValueError as exc:
                    return Raise(exc)
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
                child.restarting = False  # a pending retry now finds nothing to do
                if child.pid is not None:
                    await shutdown_child(child.pid, child.spec.shutdown)
                return None
            case _:
                assert_never(request)

    async def handle_info(self, msg: Any) -> Any:
        match msg:
            case Exit(pid, reason):
                child = self.children.get(pid) if pid is not None else None
                if pid is None or child is None or child.pid is not pid:
                    return None
                restart = child.spec.restart
                if restart == "temporary" or (restart == "transient" and is_normal_exit(reason)):
                    del self.children[pid]
                    return None
                child.pid = None
                return await self._restart(pid, child, reason)
            case _:
                return await super().handle_info(msg)

    async def handle_cast(self, msg: Any) -> Any:
        match msg:
            case _TryAgain(key):
                child = self.children.get(key)
                if child is None or not child.restarting:
                    return None  # terminated meanwhile
                return await self._restart(key, child, None)
            case _:
                return await super().handle_cast(msg)

    async def _restart(self, key: Pid, child: Child, reason: Any) -> Any:
        """Restart ``child``, kept under its old pid ``key``; keep it there, restarting,
        while its start fails; give up past the intensity."""
        if not self.intensity.add():
            log_give_up(self.label, child.spec.id, reason, self.intensity)
            del self.children[key]
            return gen_server.Stop(SHUTDOWN)
        if reason is not None:
            log_child_exit(self.label, child.spec.id, reason, "restarting")
        try:
            pid = await start_child_process(child.spec, self.extra_args)
        except StartChildError as exc:
            log_failed_start(self.label, child.spec.id, exc.reason)
            child.restarting = True
            gen_server.cast(current().pid, _TryAgain(key))
            return None
        child.restarting = False
        del self.children[key]
        if pid is not None:
            child.pid = pid
            self.children[pid] = child
        return None


async def _shutdown_all(children: list[Child]) -> None:
    """Signal every running child at once; kill each still running when its own shutdown
    time has passed (``"infinity"``: never); return once all have ended."""
    async with trio.open_nursery() as nursery:
        for child in reversed(children):
            pid = child.pid
            proc = pid._proc if pid is not None else None
            if pid is None or proc is None:
                continue
            unlink(pid)
            shutdown = child.spec.shutdown
            send_exit(pid, KILL if shutdown == "brutal_kill" else SHUTDOWN)
            grace = None if shutdown in ("infinity", "brutal_kill") else float(shutdown)  # type: ignore[arg-type]
            nursery.start_soon(await_exit, proc, grace)
