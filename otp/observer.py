"""observer: the node's processes as a tree, read at once, as Erlang's observer shows them.

:func:`snapshot` returns the supervision trees of the node (or the tree under one
process) as nested :class:`Entry` values, each with its process's :class:`ProcessInfo`
(:func:`otp.process_info`). It reads every supervisor's own record of its children and
restarts directly, synchronously: no supervisor is called, nothing waits, and a busy or
suspended supervisor is read like any other. It is meant to be polled (a console, a
metrics endpoint): its cost is a few microseconds per process, and it allocates nothing
but the result.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, Final, Literal, TypeAlias

import attrs
import trio

from ._child_spec import Restart
from ._introspection import ProcessInfo, _info
from ._names import Name, resolve
from ._process import DEAD, Pid, _Process, current_node
from ._supervision import Child, RestartIntensity
from .dynamic_supervisor import _DynamicSupervisor
from .supervisor import _StaticSupervisor

__all__ = ["Entry", "Kind", "ProcessInfo", "snapshot"]

Kind: TypeAlias = Literal["node", "supervisor", "worker"]
"""What an :class:`Entry` stands for: ``"node"`` only for the root of a whole node."""

_NO_ENTRIES: Final[tuple[Entry, ...]] = ()


@attrs.frozen(weakref_slot=False)
class Entry:
    """One process of a :func:`snapshot` (or one child of a supervisor that has no
    process now), with the entries under it.

    * ``pid``: the process; None for a child that is not running (stopped, or restarting:
      its supervisor retries a failed restart) and for the root of a whole node.
    * ``id``: its child id in its supervisor (the spec's id); None for a child of a
      dynamic supervisor (as ``which_children`` lists it), for a process no supervisor
      has, and for the node.
    * ``name``: its registered name (``str`` or via name), else None.
    * ``kind``: for a supervised child, its spec's ``type`` (``"supervisor"`` or
      ``"worker"``, as ``which_children`` says); for another process ``"supervisor"``
      if it is one, else ``"worker"``; ``"node"`` for the root of a whole node.
    * ``restart``: the child's restart type (``"permanent"``, ``"transient"``,
      ``"temporary"``); None for a process no supervisor has, and for the node.
    * ``restarts``: for a supervisor, the restarts it made that count toward its
      intensity now (those of the last ``period`` seconds: past ``intensity`` of them it
      gives up); 0 for anything else.
    * ``info``: the process's :class:`ProcessInfo`, read in the same instant; None when
      there is no live process (``pid`` None, or a child that has just ended and whose
      supervisor has not yet handled its exit).
    * ``children``: for a supervisor, an entry for each of its children, in the order of
      ``which_children`` (static: start order; dynamic: the order of their last starts);
      for the node, its processes that no supervisor has, in pid order (supervisors at
      the top of their trees, workers started outside any tree, the main process, the
      processes that workers spawned); else empty.
    """

    pid: Pid | None
    id: Any
    name: Any
    kind: Kind
    restart: Restart | None
    restarts: int
    info: ProcessInfo | None
    children: tuple[Entry, ...]

    def walk(self) -> Iterator[Entry]:
        """This entry and every entry under it, depth first, in order."""
        yield self
        for child in self.children:
            yield from child.walk()


def snapshot(root: Name | None = None) -> Entry:
    """The processes of the node as a tree of :class:`Entry`, read in one instant.

    With ``root`` None: an entry of kind ``"node"`` (no pid) whose children are the
    node's processes that no supervisor has, in pid order, each supervisor with its
    whole tree under it. Every live process of the node appears exactly once.

    With ``root`` (a pid or a name): the tree under that process (its own entry carries
    its id and restart type when a supervisor has it). Raises :class:`otp.NoProc` if it
    is not alive.

    Synchronous: it reads the supervisors' records directly, without calling them, so the
    whole tree is read in one instant (nothing runs meanwhile) and a busy or suspended
    supervisor is read too. A supervisor's children are its record of them: what
    ``which_children`` answers, except while the supervisor is in the middle of a
    restart (then the children it is stopping or starting show as not running). Call it
    from a process or a task of the node (:class:`otp.NotInProcess` otherwise).
    """
    if root is not None:
        proc = resolve(root)
        now = trio.current_time()
        child_id, restart, kind = _as_child(proc)
        return _entry(proc, child_id, restart, kind, now)
    node = current_node()
    now = trio.current_time()
    processes = node.processes.values()
    supervised: set[Pid] = set()
    for proc in processes:
        impl_type = type(proc.impl)
        if impl_type is _StaticSupervisor or impl_type is _DynamicSupervisor:
            children = _children_of(proc.impl)
            if children:
                supervised.update([c.pid for c in children if c.pid is not None])
    top = [
        _entry(proc, None, None, "supervisor" if proc.is_supervisor else "worker", now)
        for proc in list(processes)
        if proc.pid not in supervised
    ]
    return Entry(None, None, None, "node", None, 0, None, tuple(top))


def _children_of(impl: Any) -> Collection[Child] | None:
    """A supervisor's records of its children, in ``which_children`` order; None for
    anything that is not a supervisor."""
    kind = type(impl)
    if kind is _StaticSupervisor:
        children: list[Child] = impl.__dict__.get("children", [])  # none yet during init
        return children
    if kind is _DynamicSupervisor:
        table: dict[Pid, Child] = impl.__dict__.get("children", {})
        return table.values()
    return None


def _entry(
    proc: _Process, child_id: Any, restart: Restart | None, kind: Kind, now: float
) -> Entry:
    """The entry of ``proc`` (alive), with its children's if it is a supervisor.
    (Written for speed: a snapshot calls it for every process of the node.)"""
    impl = proc.impl
    impl_type = type(impl)
    if impl_type is not _StaticSupervisor and impl_type is not _DynamicSupervisor:
        return Entry(proc.pid, child_id, proc.name, kind, restart, 0, _info(proc), _NO_ENTRIES)
    attributes = impl.__dict__
    intensity: RestartIntensity | None = attributes.get("intensity")
    restarts = intensity.recent(now) if intensity is not None else 0
    info = _info(proc)
    with_ids = impl_type is _StaticSupervisor  # a dynamic one lists its children without
    entries: list[Entry] = []
    for child in _children_of(impl) or ():
        spec = child.spec
        pid = child.pid
        child_proc = pid._proc if pid is not None else None
        if child_proc is None or child_proc.state == DEAD:  # not running, or just ended
            entries.append(Entry(
                pid, spec.id if with_ids else None, None, spec.type, spec.restart, 0, None,
                _NO_ENTRIES,
            ))
        else:
            entries.append(_entry(
                child_proc, spec.id if with_ids else None, spec.restart, spec.type, now
            ))
    return Entry(proc.pid, child_id, proc.name, kind, restart, restarts, info, tuple(entries))


def _as_child(proc: _Process) -> tuple[Any, Restart | None, Kind]:
    """``(id, restart, kind)`` of ``proc`` in its supervisor, if one has it."""
    parent = proc.parent._proc if proc.parent is not None else None
    children = _children_of(parent.impl) if parent is not None else None
    if children is not None:
        dynamic = type(parent.impl) is _DynamicSupervisor if parent is not None else False
        for child in children:
            if child.pid is proc.pid:
                spec = child.spec
                return (None if dynamic else spec.id), spec.restart, spec.type
    return None, None, "supervisor" if proc.is_supervisor else "worker"
