"""supervisor: a process that starts children, restarts them by a strategy, and stops them
in order.

Client API first (:func:`start_link`, :func:`start_child`, :func:`terminate_child`,
:func:`restart_child`, :func:`delete_child`, :func:`which_children`,
:func:`count_children`, :func:`stop`), then the class form (:class:`Supervisor`) and the
values it uses (:class:`ChildSpec`, :class:`Spec`).

Guarantees, as in OTP:

* Children start in list order, each after the previous one's start returned. If one
  fails, the ones already started are stopped in reverse order and :func:`start_link`
  raises :class:`StartChildError` (``.child_id``, ``.reason``).
* Strategies: ``"one_for_one"`` restarts the child that ended; ``"one_for_all"`` stops all
  the others (reverse order) and restarts every child; ``"rest_for_one"`` stops the
  children started after it and restarts it and them.
* Restart types: ``"permanent"`` always, ``"transient"`` after an abnormal exit only,
  ``"temporary"`` never (and forgotten when it ends, also when a sibling's failure stops it).
* More than ``intensity`` restarts within ``period`` seconds, counted over all children (a
  one_for_all or rest_for_one restart counts once), make the supervisor stop every child in
  reverse order and exit with :data:`otp.SHUTDOWN`, for its own supervisor to decide.
* A restart that fails (the child's start raises or returns no pid) is retried, each try
  counting toward the intensity, until it succeeds or the supervisor gives up. Meanwhile
  the child is *restarting*: listed with no pid, and :func:`restart_child` and
  :func:`delete_child` raise :class:`Restarting`; :func:`terminate_child` ends the retries.
* A temporary child whose start returns None (ignore) is not kept.
* Significant children (``ChildSpec(significant=True)``, transient or temporary) and
  ``auto_shutdown``: with ``"any_significant"`` the supervisor shuts down (reason
  :data:`otp.SHUTDOWN`) as soon as a significant child ends on its own (transient: with a
  normal reason; temporary: with any reason); with ``"all_significant"``, once no
  significant child is left running. Ends caused by the supervisor itself (terminate_child,
  a sibling's restart) do not count. With ``"never"`` (the default) a significant child is
  refused with ValueError, as is a permanent significant child under any setting.
* Shutdown stops children in reverse start order, each per its ``shutdown``.
* Children run in the supervisor's own trio nursery: none outlives it.
* Each restart, give-up and failed start is logged (logger ``otp.supervisor``) with the
  supervisor, the child id and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeAlias, assert_never

import attrs

from . import gen_server
from ._child_spec import ChildSpec
from ._errors import AlreadyStarted, InitError
from ._messages import Exit
from ._names import Name
from ._primitives import trap_exits
from ._process import Pid, current
from ._supervision import (
    AlreadyPresent,
    AutoShutdown,
    Child,
    CountChildren,
    DeleteChild,
    NotFound,
    Raise,
    Request,
    RestartChild,
    Restarting,
    RestartIntensity,
    Running,
    StartChild,
    StartChildError,
    TerminateChild,
    WhichChildren,
    as_child_spec,
    call_supervisor,
    check_auto_shutdown,
    check_significant,
    log_auto_shutdown,
    log_child_exit,
    log_failed_start,
    log_give_up,
    shutdown_child,
    shutdown_children,
    start_child_process,
    sup_label,
    supervisor_nursery,
)
from ._terms import NORMAL, SHUTDOWN, Shutdown, is_normal_exit, shutdown

__all__ = [
    "AlreadyPresent",
    "AutoShutdown",
    "ChildSpec",
    "NotFound",
    "Restarting",
    "Running",
    "Spec",
    "StartChildError",
    "Strategy",
    "Supervisor",
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "start_link",
    "stop",
    "terminate_child",
    "which_children",
]

Strategy: TypeAlias = Literal["one_for_one", "one_for_all", "rest_for_one"]
_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


@attrs.frozen
class Spec:
    """What a :class:`Supervisor`'s ``init`` returns: its children and flags.

    ``children`` are :class:`ChildSpec` values, classes with a ``child_spec()``
    classmethod, or ``(class, arg, ...)`` tuples. The flags are those of
    :func:`start_link`; they are checked when the supervisor starts (ValueError).
    """

    children: Sequence[Any]
    strategy: Strategy = "one_for_one"
    intensity: int = 3
    period: float = 5.0
    auto_shutdown: AutoShutdown = "never"


class Supervisor:
    """The class form of a supervisor: override :meth:`init` to return a :class:`Spec`.

    Start it with ``await otp.supervisor.start_link(MySup, *args, name=...)`` or list it in
    another supervisor as ``MySup`` / ``(MySup, arg)`` / ``MySup.child_spec(arg)``.
    """

    async def init(self, *args: Any) -> Spec | gen_server.Ignore:
        """Return the children and flags (or ``otp.Ignore()`` not to start)."""
        raise TypeError(f"{type(self).__qualname__} must override init() to return a Spec")

    @classmethod
    def child_spec(
        cls, *args: Any, id: Any = None, name: Any = None, **overrides: Any
    ) -> ChildSpec:
        """A child spec that starts this supervisor (type ``"supervisor"``, shutdown
        ``"infinity"``). Extra positional arguments given to ``start`` come first."""

        async def start(*extra: Any) -> Pid | None:
            return await start_link(cls, *extra, *args, name=name)

        overrides.setdefault("type", "supervisor")
        return ChildSpec(id=cls if id is None else id, start=start, **overrides)


# -- client API ----------------------------------------------------------------------------


async def start_link(
    children: Sequence[Any] | type[Supervisor],
    *args: Any,
    strategy: Strategy = "one_for_one",
    intensity: int = 3,
    period: float = 5.0,
    auto_shutdown: AutoShutdown = "never",
    name: Any = None,
) -> Pid | None:
    """Start a supervisor linked to the caller; return its pid once every child started.

    ``children`` is a list of child specs (or classes with ``child_spec()``), with the flags
    as keywords; or a :class:`Supervisor` subclass, whose ``init(*args)`` returns them as a
    :class:`Spec`. Flags: ``strategy``, ``intensity`` restarts at most in ``period``
    seconds, and ``auto_shutdown`` (``"never"``, ``"any_significant"``,
    ``"all_significant"``: see the module docstring).

    Returns the pid; None if the class's ``init`` returned ``Ignore()``. Raises
    :class:`StartChildError` (``.child_id``, ``.reason``) if a child fails to start (those
    already started are stopped first), :class:`otp.AlreadyStarted` if ``name`` is taken,
    ValueError for a bad flag, a duplicate child id or a significant child the flags refuse.
    Whenever it returns None or raises, ``name`` is free again.
    """
    if isinstance(children, type):
        if not issubclass(children, Supervisor):
            raise TypeError(f"children must be a list or a Supervisor subclass, got {children!r}")
        source: Any = (children, args)
    else:
        if args:
            raise TypeError("extra positional arguments are only for the class form")
        source = Spec(list(children), strategy, intensity, period, auto_shutdown)
    try:
        return await gen_server.start_link(_StaticSupervisor, source, name=name)
    except InitError as exc:
        raise _unwrap_init_error(exc) from None


def _unwrap_init_error(exc: InitError) -> Exception:
    reason = exc.reason
    if type(reason) is Shutdown and isinstance(reason.term, StartChildError):
        return reason.term
    if isinstance(reason, ValueError | TypeError):
        return reason
    return exc


async def start_child(sup: Name, child: Any) -> Pid | None:
    """Add a child spec at run time and start it; return its pid (None if it ignored).

    The child is added after the others. One whose start returns None is kept, defined but
    not running, unless it is temporary. Raises :class:`otp.AlreadyStarted` (``.pid``) if
    a child with that id runs, :class:`AlreadyPresent` if one is defined but not running
    (or restarting), :class:`StartChildError` if its start fails (it is then not kept), and
    ValueError for a significant child the supervisor refuses.
    """
    pid: Pid | None = await call_supervisor(sup, StartChild(as_child_spec(child)))
    return pid


async def terminate_child(sup: Name, child_id: Any) -> None:
    """Stop the child ``child_id`` per its shutdown; its spec stays (unless temporary).

    Returns None once it has ended (at once if it was not running). A child whose restart
    is being retried is marked terminated: the retries stop. Its end never triggers an
    auto-shutdown. Raises :class:`NotFound` for an unknown id.
    """
    await call_supervisor(sup, TerminateChild(child_id))


async def restart_child(sup: Name, child_id: Any) -> Pid | None:
    """Start again a child that is defined but not running; return its pid (None if its
    start ignored).

    Raises :class:`Running` if it runs, :class:`Restarting` while the supervisor retries a
    failed restart of it, :class:`NotFound` for an unknown id and :class:`StartChildError`
    if the start fails (the child stays defined, not running).
    """
    pid: Pid | None = await call_supervisor(sup, RestartChild(child_id))
    return pid


async def delete_child(sup: Name, child_id: Any) -> None:
    """Forget a child that is not running, so its id is free again.

    Raises :class:`Running` if it runs, :class:`Restarting` while the supervisor retries a
    failed restart of it (terminate it first) and :class:`NotFound` for an unknown id.
    """
    await call_supervisor(sup, DeleteChild(child_id))


async def which_children(sup: Name) -> list[tuple[Any, Pid | None, str]]:
    """``(id, pid or None, "worker" | "supervisor")`` for every child, in start order.

    The pid is None for a child that is not running, including one whose restart is being
    retried (OTP shows ``restarting`` there). For a dynamic supervisor the id is None and
    the order is that of the children's last starts.
    """
    children: list[tuple[Any, Pid | None, str]] = await call_supervisor(sup, WhichChildren())
    return children


async def count_children(sup: Name) -> dict[str, int]:
    """``{"specs", "active", "supervisors", "workers"}``, counted as Erlang does: every
    child counts in ``specs`` and in ``supervisors`` or ``workers``, running or not
    (restarting ones included); ``active`` counts the running ones."""
    counts: dict[str, int] = await call_supervisor(sup, CountChildren())
    return counts


async def stop(sup: Name, reason: Any = NORMAL, timeout: float | None = None) -> None:
    """Stop any supervisor (static, dynamic or partitioned) and its children in order;
    return once it has exited. Raises :class:`otp.NoProc` if it is not running and
    :class:`otp.CallTimeout` if it has not exited within ``timeout`` seconds."""
    await gen_server.stop(sup, reason, timeout)


@attrs.frozen
class _TryAgain:
    """Cast to itself by a supervisor that failed to restart ``child_id``: retry it."""

    child_id: Any


# -- the server ----------------------------------------------------------------------------


class _StaticSupervisor(gen_server.GenServer):
    """The gen_server behind :func:`start_link`."""

    child_shutdown: ClassVar[float | str] = "infinity"

    def _process_context(self) -> Any:
        return supervisor_nursery()

    async def init(self, source: Any) -> Any:
        trap_exits(True)
        if isinstance(source, tuple):
            module_cls, args = source
            self._otp_behaviour = module_cls  # what introspection reports it as
            spec = await module_cls().init(*args)
            if type(spec) is gen_server.Ignore:
                return spec
            if not isinstance(spec, Spec):
                raise TypeError(f"{module_cls.__qualname__}.init returned {spec!r}, not a Spec")
        else:
            spec = source
        if spec.strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}, got {spec.strategy!r}")
        self.strategy = spec.strategy
        self.intensity = RestartIntensity(spec.intensity, spec.period)
        self.auto_shutdown = check_auto_shutdown(spec.auto_shutdown)
        self.children: list[Child] = []
        seen = set()
        for child in spec.children:
            child_spec = as_child_spec(child)
            if child_spec.id in seen:
                raise ValueError(f"children: duplicate child id {child_spec.id!r}")
            check_significant(child_spec, self.auto_shutdown)
            seen.add(child_spec.id)
            self.children.append(Child(child_spec))
        self.label = sup_label(current())
        for child in list(self.children):
            try:
                child.pid = await start_child_process(child.spec)
            except StartChildError as exc:
                log_failed_start(self.label, exc.child_id, exc.reason)
                await shutdown_children(self.children)
                return gen_server.Stop(shutdown(exc))
            if child.pid is None and child.spec.restart == "temporary":
                self.children.remove(child)  # OTP does not keep an ignored temporary child
        return None

    async def terminate(self, reason: Any) -> None:
        await shutdown_children(getattr(self, "children", []))

    # -- run-time requests ---------------------------------------------------------------
    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not isinstance(request, Request):
            raise ValueError(f"unknown supervisor request {request!r}")
        try:
            return await self._serve(request)
        except (
            AlreadyStarted, AlreadyPresent, Running, Restarting, NotFound, StartChildError,
        ) as exc:
            return Raise(exc)

    async def _serve(self, request: Request) -> Any:
        """A static supervisor serves every :data:`Request`."""
        match request:
            case WhichChildren():
                return [(c.spec.id, c.pid, c.spec.type) for c in self.children]
            case CountChildren():
                return _count(self.children)
            case StartChild(spec):
                return await self._start_child(spec)
            case TerminateChild(child_id):
                await self._terminate(self._find(child_id))
                return None
            case RestartChild(child_id):
                child = self._stopped(child_id)
                child.pid = await start_child_process(child.spec)
                return child.pid
            case DeleteChild(child_id):
                self.children.remove(self._stopped(child_id))
                return None
            case _:
                assert_never(request)

    async def _start_child(self, spec: ChildSpec) -> Pid | Raise | None:
        for child in self.children:
            if child.spec.id == spec.id:
                if child.pid is not None:
                    raise AlreadyStarted(spec.id, child.pid)
                raise AlreadyPresent(spec.id)
        try:
            check_significant(spec, self.auto_shutdown)
        except ValueError as exc:
            return Raise(exc)
        pid = await start_child_process(spec)
        if pid is not None or spec.restart != "temporary":
            self.children.append(Child(spec, pid))
        return pid

    def _find(self, child_id: Any) -> Child:
        for child in self.children:
            if child.spec.id == child_id:
                return child
        raise NotFound(child_id)

    def _stopped(self, child_id: Any) -> Child:
        """The child ``child_id``, which must be neither running nor restarting."""
        child = self._find(child_id)
        if child.pid is not None:
            raise Running(child.spec.id)
        if child.restarting:
            raise Restarting(child.spec.id)
        return child

    async def _terminate(self, child: Child) -> None:
        child.restarting = False  # a pending retry now finds nothing to do
        if child.pid is not None:
            pid, child.pid = child.pid, None
            await shutdown_child(pid, child.spec.shutdown)
        if child.spec.restart == "temporary":
            self.children.remove(child)

    # -- children ending -----------------------------------------------------------------
    async def handle_info(self, msg: Any) -> Any:
        match msg:
            case Exit(pid, reason):
                return await self._child_exited(pid, reason)
            case _:
                return await super().handle_info(msg)

    async def handle_cast(self, msg: Any) -> Any:
        match msg:
            case _TryAgain(child_id):
                for child in self.children:
                    if child.spec.id == child_id and child.restarting:
                        return await self._restart(child, None)
                return None  # terminated, deleted or restarted meanwhile
            case _:
                return await super().handle_cast(msg)

    async def _child_exited(self, pid: Pid | None, reason: Any) -> Any:
        child = next((c for c in self.children if c.pid is pid and pid is not None), None)
        if child is None:
            return None
        child.pid = None
        restart = child.spec.restart
        if restart == "temporary":
            self.children.remove(child)
            if not is_normal_exit(reason):
                log_child_exit(self.label, child.spec.id, reason, "temporary: not restarted")
            return self._maybe_auto_shutdown(child, reason)
        if restart == "transient" and is_normal_exit(reason):
            return self._maybe_auto_shutdown(child, reason)
        return await self._restart(child, reason)

    def _maybe_auto_shutdown(self, child: Child, reason: Any) -> Any:
        """After ``child`` ended on its own and is not restarted: shut down if it was
        significant and the ``auto_shutdown`` condition now holds."""
        if not child.spec.significant or self.auto_shutdown == "never":
            return None
        if self.auto_shutdown == "all_significant" and any(
            c.spec.significant and (c.pid is not None or c.restarting) for c in self.children
        ):
            return None
        log_auto_shutdown(self.label, child.spec.id, reason, self.auto_shutdown)
        return gen_server.Stop(SHUTDOWN)

    async def _restart(self, child: Child, reason: Any) -> Any:
        """Restart per the strategy, or give up past the intensity. A start that fails
        leaves that child restarting and retries it (a cast to itself, so that requests
        already waiting are served in between)."""
        if not self.intensity.add():
            log_give_up(self.label, child.spec.id, reason, self.intensity)
            return gen_server.Stop(SHUTDOWN)
        if reason is not None:
            log_child_exit(self.label, child.spec.id, reason, f"restarting ({self.strategy})")
        child.restarting = False
        if self.strategy == "one_for_one":
            to_start = [child]
        else:
            index = self.children.index(child)
            affected = self.children if self.strategy == "one_for_all" else self.children[index:]
            affected = list(affected)
            for other in reversed(affected):
                other.restarting = False
                if other.pid is not None:
                    pid, other.pid = other.pid, None
                    await shutdown_child(pid, other.spec.shutdown)
            for other in affected:
                if other.spec.restart == "temporary" and other is not child:
                    self.children.remove(other)
            to_start = [c for c in affected if c in self.children]
        for other in to_start:
            try:
                other.pid = await start_child_process(other.spec)
            except StartChildError as exc:
                log_failed_start(self.label, exc.child_id, exc.reason)
                other.restarting = True
                gen_server.cast(current().pid, _TryAgain(other.spec.id))
                return None
        return None


def _count(children: list[Child]) -> dict[str, int]:
    return {
        "specs": len(children),
        "active": sum(1 for c in children if c.pid is not None),
        "supervisors": sum(1 for c in children if c.spec.type == "supervisor"),
        "workers": sum(1 for c in children if c.spec.type == "worker"),
    }
