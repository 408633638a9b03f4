"""The node's supervision tree as data: :func:`tree_snapshot`.

It walks the tree with :func:`otp.supervisor.which_children`, supervisor by supervisor
(as ``python -m exesdb start`` logs it). It is the one place the console and the metrics
read the tree from, so that it can become a call of ``otp.observer.snapshot`` (which also
gives each process's info and restart count) once otp has it.

Guarantees: a supervisor that ends or does not answer while it is walked shows with no
children (``unreachable`` true) instead of failing the snapshot; a supervisor with more
than :data:`MAX_CHILDREN` children lists the first ones and counts the rest in ``more``
(per-stream workers can be many); a child's ``path`` names it by its parent's path and
its child id, so it stays the same when the child restarts under a new pid (children of
dynamic supervisors, whose id is None, are named by their pid: they are new children).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

import attrs

import otp
from otp import supervisor

from ..gateway import list_stores
from ..systems import system_name

__all__ = ["APPLICATION_SUPERVISOR", "MAX_CHILDREN", "TreeNode", "label", "tree_snapshot"]

APPLICATION_SUPERVISOR: Final = "exesdb"
"""The registered name of the exesdb application's top supervisor."""
MAX_CHILDREN: Final = 100
"""The most children of one supervisor a snapshot lists."""


@attrs.frozen
class TreeNode:
    """One process of the tree: ``pid`` (None for a child that is not running), ``label``
    (readable child id), ``path`` (stable across restarts: see the module docstring),
    ``kind`` (``"supervisor"``, ``"worker"``, or ``"node"`` for the node itself when no
    supervisor holds every store), its ``children`` (supervisors only),
    ``more`` (children not listed) and ``unreachable`` (a supervisor that did not answer)."""

    pid: otp.Pid | None
    label: str
    path: str
    kind: str
    children: tuple[TreeNode, ...] = ()
    more: int = 0
    unreachable: bool = False

    def walk(self) -> Iterator[TreeNode]:
        """This node and every node under it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def as_json(self) -> dict[str, Any]:
        """The node as JSON values (pids as their text, ``<0.12.0>``)."""
        return {"pid": None if self.pid is None else repr(self.pid), "label": self.label,
                "path": self.path, "kind": self.kind, "more": self.more,
                "unreachable": self.unreachable,
                "children": [child.as_json() for child in self.children]}


def label(child_id: Any) -> str:
    """A child id as text: ``Module[store] extra`` for the store-specific ids of exesdb's
    trees (``(Module, store_id, ...)``, ``((Module, store_id), kind)``), a class's name,
    else ``str``. (A child of a dynamic supervisor has no id: its label is its kind.)"""
    if isinstance(child_id, tuple) and child_id:
        head, *rest = child_id
        if isinstance(head, tuple):
            return f"{label(head)} {' '.join(map(str, rest))}".strip()
        if isinstance(head, type) and rest:
            extra = f" {' '.join(map(str, rest[1:]))}" if len(rest) > 1 else ""
            return f"{head.__qualname__}[{rest[0]}]{extra}"
    return getattr(child_id, "__qualname__", None) or str(child_id)


async def tree_snapshot(root: otp.Name | None = None) -> TreeNode:
    """The tree under ``root`` (a supervisor's pid or name). With None: the exesdb
    application's top supervisor when it runs (``python -m exesdb start``), else a node
    ``"node"`` (pid None) holding each running store's System (a program that starts its
    stores itself)."""
    if root is not None:
        pid = otp.whereis(root) if not isinstance(root, otp.Pid) else root
        name = root if isinstance(root, str) else label(root)
        return await _supervisor(pid, name, name)
    top = otp.whereis(APPLICATION_SUPERVISOR)
    if top is not None:
        return await _supervisor(top, APPLICATION_SUPERVISOR, APPLICATION_SUPERVISOR)
    children = []
    for info in await list_stores():
        pid = otp.whereis(system_name(info.store_id))
        if pid is not None:
            name = f"System[{info.store_id}]"
            children.append(await _supervisor(pid, name, f"node/{name}"))
    return TreeNode(None, "node", "node", "node", tuple(children))


async def _supervisor(pid: otp.Pid | None, name: str, path: str) -> TreeNode:
    if pid is None:
        return TreeNode(None, name, path, "supervisor")
    listed: list[tuple[Any, otp.Pid | None, str]] | None = None
    with contextlib.suppress(otp.OTPError):  # ended, restarting or busy: shown as such
        listed = await supervisor.which_children(pid)
    if listed is None:
        return TreeNode(pid, name, path, "supervisor", unreachable=True)
    children = []
    for child_id, child_pid, kind in listed[:MAX_CHILDREN]:
        child_label = label(child_id) if child_id is not None else kind
        child_path = f"{path}/{child_label if child_id is not None else repr(child_pid)}"
        if kind == "supervisor":
            children.append(await _supervisor(child_pid, child_label, child_path))
        else:
            children.append(TreeNode(child_pid, child_label, child_path, "worker"))
    return TreeNode(pid, name, path, "supervisor", tuple(children),
                    more=max(len(listed) - MAX_CHILDREN, 0))
