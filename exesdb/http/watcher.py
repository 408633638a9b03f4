"""TreeWatcher: the process that keeps the node's supervision tree for the console and the
metrics, and notices restarts.

Every ``interval`` seconds (and on :func:`refresh`) it takes a :func:`~.tree.tree_snapshot`
and compares it with the previous one: a child whose path had a pid and now has another
has restarted (see :mod:`.tree` for paths). It publishes the snapshot, a version that
grows whenever the tree changed, the restarts it observed per supervisor and when each
child last restarted on the node's :class:`TreeBoard` (:func:`board`), which the console's
live tree (Server-Sent Events) waits on and the metrics read.

Observed, not exact: two restarts of a child between two snapshots count as one, and a
restart of a supervisor counts each of its children. ``otp.observer.snapshot`` will give
the supervisors' own restart counts; until otp has it, this is what the node can see from
outside its supervisors. The board belongs to the node, so the counts outlive a restart
of the watcher.
"""

from __future__ import annotations

import time
from typing import Any, Final

import attrs
import trio

import otp
from otp import gen_server
from otp.lowlevel import NodeVar

from .tree import TreeNode, tree_snapshot

__all__ = ["DEFAULT_INTERVAL", "Refresh", "TreeBoard", "TreeWatcher", "board", "refresh"]

DEFAULT_INTERVAL: Final = 2.0
"""Seconds between two snapshots."""
WATCHER: Final = "exesdb.http.TreeWatcher"
"""The watcher's registered name."""


@attrs.define
class TreeBoard:
    """What the watcher publishes (see the module docstring): ``snapshot`` (None before the
    first), ``version``, ``changed`` (set, then replaced, when a new version is
    published), ``restarts`` (supervisor path -> children seen restarting),
    ``restarted_at`` (child path -> ``time.time()`` of its last restart seen), ``pids``
    (the text of each pid in the snapshot -> the pid)."""

    snapshot: TreeNode | None = None
    version: int = 0
    changed: trio.Event = attrs.Factory(trio.Event)
    restarts: dict[str, int] = attrs.Factory(dict)
    restarted_at: dict[str, float] = attrs.Factory(dict)
    pids: dict[str, otp.Pid] = attrs.Factory(dict)
    last_pid: dict[str, otp.Pid] = attrs.Factory(dict)
    """Each path's last pid seen (kept while it is not running, to see it restart)."""

    def publish(self, snapshot: TreeNode) -> None:
        """Take ``snapshot``: count the restarts it shows, and if anything changed make
        it the next version and wake the waiters."""
        now = time.time()
        changed = self.snapshot is None
        pids: dict[str, otp.Pid] = {}
        seen: set[str] = set()
        for parent in snapshot.walk():
            for node in parent.children:
                seen.add(node.path)
                if node.pid is None:
                    changed = changed or node.path in self.last_pid
                    continue
                pids[repr(node.pid)] = node.pid
                before = self.last_pid.get(node.path)
                if before != node.pid:
                    changed = True
                    if before is not None:
                        self.restarts[parent.path] = self.restarts.get(parent.path, 0) + 1
                        self.restarted_at[node.path] = now
                    self.last_pid[node.path] = node.pid
        if snapshot.pid is not None:
            pids[repr(snapshot.pid)] = snapshot.pid
        for gone in [path for path in self.last_pid if path not in seen]:
            changed = True  # a child that is no longer listed (deleted, temporary ended)
            del self.last_pid[gone]
            self.restarted_at.pop(gone, None)
        self.snapshot, self.pids = snapshot, pids
        if changed:
            self.version += 1
            event, self.changed = self.changed, trio.Event()
            event.set()


_board: NodeVar[TreeBoard] = NodeVar("exesdb.http.tree_board", factory=TreeBoard)


def board() -> TreeBoard:
    """This node's :class:`TreeBoard`."""
    return _board.get()


@attrs.frozen
class Refresh:
    """Take a snapshot now; reply with the board's version once published."""


class TreeWatcher(otp.GenServer):
    """The watcher (see the module docstring): ``start_link(interval)``."""

    async def init(self, interval: float = DEFAULT_INTERVAL) -> Any:
        if not isinstance(interval, int | float) or isinstance(interval, bool) or interval <= 0:
            raise ValueError(f"interval: must be a number of seconds > 0, got {interval!r}")
        self.interval = float(interval)
        return otp.Continue("snapshot")

    async def handle_continue(self, arg: Any) -> Any:
        await self._snapshot()
        return otp.NoReply(timeout=self.interval)

    async def handle_info(self, msg: Any) -> Any:
        if msg is otp.TIMEOUT:
            await self._snapshot()
        return otp.NoReply(timeout=self.interval)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if type(request) is not Refresh:
            raise ValueError(f"TreeWatcher: unknown request {request!r}")
        await self._snapshot()
        return otp.Reply(board().version, timeout=self.interval)

    async def _snapshot(self) -> None:
        board().publish(await tree_snapshot())

    @classmethod
    def child_spec(cls, interval: float = DEFAULT_INTERVAL,  # type: ignore[override]
                   **overrides: Any) -> otp.ChildSpec:
        """The watcher under its name :data:`WATCHER`."""

        async def start() -> otp.Pid | None:
            return await gen_server.start_link(cls, interval, name=WATCHER)

        return otp.ChildSpec(id=cls, start=start, **overrides)


async def refresh(timeout: float = 10.0) -> int:
    """Have the watcher take a snapshot now; return the board's version then. Raises
    :class:`otp.NoProc` when it does not run."""
    version: int = await gen_server.call(WATCHER, Refresh(), timeout)
    return version
