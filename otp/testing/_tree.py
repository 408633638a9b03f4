"""Descriptions of supervision trees: what the model reasons about and the harness builds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from typing import Any, Literal, TypeAlias

import attrs

from .._process import Pid

__all__ = [
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

STRATEGIES: tuple[Strategy, ...] = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS: tuple[Restart, ...] = ("permanent", "transient", "temporary")


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
    """

    id: Hashable
    restart: Restart = attrs.field(default="permanent")
    shutdown: ShutdownValue = attrs.field(default=5.0, validator=_check_shutdown)
    trap_exit: bool = True
    terminate_delay: float = attrs.field(default=0.0, validator=_check_delay)
    start: StartFn | None = attrs.field(default=None, eq=False)

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

    ``restart`` and ``shutdown`` are its child spec in its parent (unused for the root).
    ``form`` chooses how the harness starts it: ``"list"`` with
    ``otp.supervisor.start_link(children, ...)``, ``"class"`` with an
    ``otp.supervisor.Supervisor`` subclass whose ``init`` returns a ``Spec``.
    """

    id: Hashable = "root"
    children: tuple[Worker | Sup, ...] = attrs.field(default=(), converter=_as_children)
    strategy: Strategy = attrs.field(default="one_for_one")
    intensity: int = 3
    period: float = 5.0
    restart: Restart = attrs.field(default="permanent")
    shutdown: ShutdownValue = attrs.field(default="infinity", validator=_check_shutdown)
    form: Literal["list", "class"] = "list"

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


@attrs.frozen
class Fault:
    """One entry of a fault schedule: wait ``delay`` virtual seconds, then make the process
    at ``path`` fail with ``reason`` (see :meth:`otp.testing.Model.fault`)."""

    path: Path
    reason: Any
    delay: float = attrs.field(default=0.0, validator=_check_delay)


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
