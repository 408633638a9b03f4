"""Descriptions of supervision trees: what the model reasons about and the harness builds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from typing import Any, Literal, TypeAlias

import attrs

from .._process import Pid
from .._supervision import AUTO_SHUTDOWNS, AutoShutdown

__all__ = [
    "AUTO_SHUTDOWNS",
    "FORMS",
    "RESTARTS",
    "STRATEGIES",
    "Fault",
    "InjectedFault",
    "Path",
    "Sup",
    "Worker",
]

Path: TypeAlias = tuple[Hashable, ...]
"""Where a process sits in a tree: the child ids from the root down; the root is ``()``."""

Restart: TypeAlias = Literal["permanent", "transient", "temporary"]
Strategy: TypeAlias = Literal["one_for_one", "one_for_all", "rest_for_one"]
ShutdownValue: TypeAlias = "float | Literal['brutal_kill', 'infinity']"
StartFn: TypeAlias = Callable[[], Awaitable[Pid | None]]

Form: TypeAlias = Literal["list", "class", "dynamic"]

STRATEGIES: tuple[Strategy, ...] = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS: tuple[Restart, ...] = ("permanent", "transient", "temporary")
FORMS: tuple[Form, ...] = ("list", "class", "dynamic")


def _check_shutdown(_: Any, attribute: Any, value: Any) -> None:
    if value in ("brutal_kill", "infinity"):
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(
            f"{attribute.name} must be seconds > 0, 'brutal_kill' or 'infinity', got {value!r}"
        )


def _check_delay(_: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{attribute.name} must be seconds >= 0, got {value!r}")


@attrs.frozen
class Worker:
    """A worker child, as the model sees it and the harness starts it.

    With ``start=None`` (the default) the harness starts one of its own gen_servers, which
    logs every ``terminate`` and can be made to fail with any reason. ``trap_exit`` says
    whether it traps exits (then a shutdown runs its ``terminate``, which takes
    ``terminate_delay`` virtual seconds).

    Give ``start`` (an async callable returning the pid of a process linked to the caller,
    like :attr:`otp.supervisor.ChildSpec.start`) to put your own process in the tree. The
    model then assumes it exits at once when its supervisor shuts it down, and faults reach
    it as exit signals: set ``trap_exit=True`` if it traps exits, so that only ``kill`` is
    injected into it (a trapped signal would not make it exit).

    ``significant`` marks a significant child (transient or temporary, under a supervisor
    whose ``auto_shutdown`` is not ``"never"``): see :class:`otp.ChildSpec`.
    """

    id: Hashable
    restart: Restart = attrs.field(default="permanent")
    shutdown: ShutdownValue = attrs.field(default=5.0, validator=_check_shutdown)
    trap_exit: bool = True
    terminate_delay: float = attrs.field(default=0.0, validator=_check_delay)
    start: StartFn | None = attrs.field(default=None, eq=False)
    significant: bool = False

    @restart.validator
    def _check_restart(self, attribute: Any, value: Any) -> None:
        if value not in RESTARTS:
            raise ValueError(f"restart must be one of {RESTARTS}, got {value!r}")

    @property
    def type(self) -> Literal["worker"]:
        return "worker"

    @property
    def is_harness(self) -> bool:
        """True when the harness starts its own gen_server for this worker."""
        return self.start is None


def _as_children(value: Iterable[Worker | Sup]) -> tuple[Worker | Sup, ...]:
    return tuple(value)


@attrs.frozen
class Sup:
    """A supervisor: its flags, its children in start order, and how its parent treats it.

    ``restart``, ``shutdown`` and ``significant`` are its child spec in its parent (unused
    for the root). ``auto_shutdown`` is its flag (see :func:`otp.supervisor.start_link`).
    ``form`` chooses how the harness starts it: ``"list"`` with
    ``otp.supervisor.start_link(children, ...)``, ``"class"`` with an
    ``otp.supervisor.Supervisor`` subclass whose ``init`` returns a ``Spec``, ``"dynamic"``
    with ``otp.dynamic_supervisor.start_link(max_children=...)`` followed by a
    ``start_child`` of each child in order. A dynamic supervisor is one_for_one, its
    ``auto_shutdown`` is ``"never"``, its children are workers (any number of which may
    be added at run time, up to ``max_children``), and the harness must build it (not your
    own ``start``).
    """

    id: Hashable = "root"
    children: tuple[Worker | Sup, ...] = attrs.field(default=(), converter=_as_children)
    strategy: Strategy = attrs.field(default="one_for_one")
    intensity: int = 3
    period: float = 5.0
    restart: Restart = attrs.field(default="permanent")
    shutdown: ShutdownValue = attrs.field(default="infinity", validator=_check_shutdown)
    form: Form = "list"
    auto_shutdown: AutoShutdown = "never"
    significant: bool = False
    max_children: int | None = None

    @strategy.validator
    def _check_strategy(self, attribute: Any, value: Any) -> None:
        if value not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {value!r}")

    @restart.validator
    def _check_restart(self, attribute: Any, value: Any) -> None:
        if value not in RESTARTS:
            raise ValueError(f"restart must be one of {RESTARTS}, got {value!r}")

    @children.validator
    def _check_children(self, attribute: Any, value: tuple[Any, ...]) -> None:
        ids = [child.id for child in value]
        if len(set(ids)) != len(ids):
            raise ValueError(f"supervisor {self.id!r}: duplicate child ids in {ids!r}")
        for child in value:
            if not isinstance(child, Worker | Sup):
                raise TypeError(f"a child must be a Worker or a Sup, got {child!r}")

    def __attrs_post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}")
        if self.auto_shutdown not in AUTO_SHUTDOWNS:
            raise ValueError(
                f"auto_shutdown must be one of {AUTO_SHUTDOWNS}, got {self.auto_shutdown!r}"
            )
        if self.form == "dynamic":
            if self.strategy != "one_for_one" or self.auto_shutdown != "never":
                raise ValueError(
                    f"supervisor {self.id!r}: a dynamic supervisor is one_for_one with "
                    "auto_shutdown 'never'"
                )
            if any(isinstance(child, Sup) for child in self.children):
                raise ValueError(f"supervisor {self.id!r}: a dynamic supervisor's children "
                                 "are workers")
            if self.max_children is not None and (
                not isinstance(self.max_children, int) or self.max_children < len(self.children)
            ):
                raise ValueError(f"supervisor {self.id!r}: max_children must be an int >= the "
                                 f"number of children, got {self.max_children!r}")
        elif self.max_children is not None:
            raise ValueError(f"supervisor {self.id!r}: max_children is for dynamic supervisors")
        for child in self.children:
            if child.significant and child.restart == "permanent":
                raise ValueError(f"child {child.id!r}: a significant child must be transient "
                                 "or temporary")
            if child.significant and self.auto_shutdown == "never":
                raise ValueError(f"child {child.id!r} is significant, but supervisor "
                                 f"{self.id!r} has auto_shutdown 'never'")

    @property
    def dynamic(self) -> bool:
        """True for a dynamic supervisor (``form="dynamic"``)."""
        return self.form == "dynamic"

    @property
    def type(self) -> Literal["supervisor"]:
        return "supervisor"

    def walk(self, path: Path = ()) -> Iterator[tuple[Path, Worker | Sup]]:
        """Every node of the description with its path, parents before children."""
        yield path, self
        for child in self.children:
            if isinstance(child, Sup):
                yield from child.walk((*path, child.id))
            else:
                yield (*path, child.id), child

    def find(self, path: Path) -> Worker | Sup | None:
        """The description at ``path``, or None."""
        node: Worker | Sup = self
        for key in path:
            if not isinstance(node, Sup):
                return None
            node = next((c for c in node.children if c.id == key), None)  # type: ignore[assignment]
            if node is None:
                return None
        return node

    @property
    def all_harness(self) -> bool:
        """True when every worker in the tree is a harness worker."""
        return all(not isinstance(n, Worker) or n.is_harness for _, n in self.walk())


def is_ancestor(a: Path, b: Path) -> bool:
    """True when ``a`` is a strict ancestor of ``b``."""
    return len(a) < len(b) and b[: len(a)] == a


class InjectedFault(Exception):
    """The exception a fault makes a harness worker raise (its exit reason is the very
    instance), so injected crashes are easy to tell from real ones in logs."""


def _check_failed_starts(_: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


@attrs.frozen
class Fault:
    """One entry of a fault schedule: wait ``delay`` virtual seconds, then make the process
    at ``path`` fail with ``reason`` (see :meth:`otp.testing.Model.fault`).

    ``failed_starts`` (harness workers only): that many of the next starts of the process
    by the same supervisor fail (its ``init`` raises), so its restart is retried while it
    is *restarting*; they are forgotten once that supervisor has exited.
    """

    path: Path
    reason: Any
    delay: float = attrs.field(default=0.0, validator=_check_delay)
    failed_starts: int = attrs.field(default=0, validator=_check_failed_starts)


async def started_elsewhere() -> Pid | None:
    """The ``start`` of a :class:`Worker` that your own code starts (see :func:`as_own`)."""
    raise RuntimeError("this worker is started by your own supervisor, not by the harness")


def as_own(tree: Sup) -> Sup:
    """``tree`` with every worker marked as your own process (``start`` set to
    :func:`started_elsewhere` where it was None): for a tree your own code starts."""
    children: list[Worker | Sup] = []
    for child in tree.children:
        if isinstance(child, Sup):
            children.append(as_own(child))
        elif child.start is None:
            children.append(attrs.evolve(child, start=started_elsewhere))
        else:
            children.append(child)
    return attrs.evolve(tree, children=tuple(children))
