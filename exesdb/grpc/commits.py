"""The last committed ``$all`` position of a store, and a way to wait for the next commit.

The gateway process of a store (:mod:`exesdb.grpc.listener`) feeds one
:class:`CommitSignal` from the store's commit notifications; catch-up subscriptions and
persistent subscription groups wait on it once they have read everything stored, then
read the storage again. Delivery always reads the storage, so a notification is only a
wake-up: a missed or coalesced one never loses an event.
"""

from __future__ import annotations

import trio

__all__ = ["CommitSignal"]


class CommitSignal:
    """The head of a store's ``$all`` (``head``: the last committed position, -1 before
    the first known commit), and the tasks waiting for it to move past a position.

    Guarantees: ``head`` never decreases; :meth:`wait_past` returns as soon as ``head`` is
    greater than the position it was given (at once if it already is), without polling.
    Both methods must be called from the trio thread of the node that owns the signal.
    """

    def __init__(self, head: int = -1) -> None:
        self.head = head
        self._moved = trio.Event()

    def advance(self, position: int) -> None:
        """Record that everything up to ``position`` is committed and wake the waiters
        (a position not past ``head``, e.g. a late notification, changes nothing)."""
        if position <= self.head:
            return
        self.head = position
        moved, self._moved = self._moved, trio.Event()
        moved.set()

    async def wait_past(self, position: int) -> int:
        """Wait until ``head`` is greater than ``position``; return ``head``."""
        while self.head <= position:
            await self._moved.wait()
        return self.head
