"""The node's supervision tree as data: :func:`tree_snapshot`.

It reads the tree with :func:`otp.observer.snapshot`, which reads the supervisors'
records directly, in one instant, without calling them (a busy supervisor is read all the
same). It is the one place the console and the metrics read the tree from.

Guarantees: a root supervisor that is not running when it is read (a store's System that
ends meanwhile) shows with no children (``unreachable`` true) instead of failing the
snapshot; a supervisor with more than :data:`MAX_CHILDREN` children lists the first ones
and counts the rest in ``more`` (per-stream workers can be many); a child's ``path``
names it by its parent's path and its child id, so it stays the same when the child
restarts under a new pid (children of dynamic supervisors, whose id is None, are named by
their pid: they are new children).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import attrs

import otp
from otp import observer

from ..gateway import list_stores
from ..naming import child_label as label
from ..systems import system_name

__all__ = ["APPLICATION_SUPERVISOR", "MAX_CHILDREN", "TreeNode", "tree_snapshot"]

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
    ``more`` (children not listed) and ``unreachable`` (a supervisor whose process had
    ended when the tree was read)."""

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


async def tree_snapshot(root: otp.Name | None = None) -> TreeNode:
    """The tree under ``root`` (a supervisor's pid or name). With None: the exesdb
    application's top supervisor when it runs (``python -m exesdb start``), else a node
    ``"node"`` (pid None) holding each running store's System (a program that starts its
    stores itself)."""
    if root is not None:
        pid = otp.whereis(root) if not isinstance(root, otp.Pid) else root
        name = root if isinstance(root, str) else label(root)
        return _supervisor(pid, name, name)
    top = otp.whereis(APPLICATION_SUPERVISOR)
    if top is not None:
        return _supervisor(top, APPLICATION_SUPERVISOR, APPLICATION_SUPERVISOR)
    children = []
    for info in await list_stores():
        pid = otp.whereis(system_name(info.store_id))
        if pid is not None:
            name = f"System[{info.store_id}]"
            children.append(_supervisor(pid, name, f"node/{name}"))
    return TreeNode(None, "node", "node", "node", tuple(children))


def _supervisor(pid: otp.Pid | None, name: str, path: str) -> TreeNode:
    if pid is None:
        return TreeNode(None, name, path, "supervisor")
    try:
        entry = observer.snapshot(pid)
    except otp.NoProc:  # it ended: shown as such
        return TreeNode(pid, name, path, "supervisor", unreachable=True)
    return _from_entry(entry, name, path)


def _from_entry(entry: observer.Entry, name: str, path: str) -> TreeNode:
    """The supervisor ``entry`` of a snapshot as a :class:`TreeNode`."""
    children = []
    for child in entry.children[:MAX_CHILDREN]:
        child_label = label(child.id) if child.id is not None else child.kind
        child_path = f"{path}/{child_label if child.id is not None else repr(child.pid)}"
        if child.kind == "supervisor":
            children.append(_from_entry(child, child_label, child_path))
        else:
            children.append(TreeNode(child.pid, child_label, child_path, "worker"))
    return TreeNode(entry.pid, name, path, "supervisor", tuple(children),
                    more=max(len(entry.children) - MAX_CHILDREN, 0),
                    unreachable=entry.pid is not None and entry.info is None)
