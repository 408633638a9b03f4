"""What stands between a group's subscription and its ledger: KurrentDB's stream buffer
(:class:`StreamBuffer`), which makes the settings ``history_buffer_size``,
``read_batch_size`` and ``live_buffer_size`` mean what they mean in KurrentDB.

The group's exesdb subscription hands it the events in order; they wait here (they are, for
the group, still in the store) until the group *reads* them into its ledger, where they
wait for a consumer (:class:`~exesdb.grpc.groups.ledger.Ledger`), as KurrentDB's
``PersistentSubscription`` reads its stream into its ``StreamBuffer``:

* while it is behind, the group reads :func:`read_count` events at a time, and only while
  the events waiting in its ledger (first deliveries and retries) leave room for a whole
  batch (``history_buffer_size - waiting > read_batch_size``, KurrentDB's ``CanAccept``):
  the events waiting for a consumer never exceed ``history_buffer_size``;
* a read that finds fewer than it asked for, at the end of the stream, makes the group live:
  from then on each event goes into the ledger as it arrives (as KurrentDB's live
  subscription hands its events over), while there is room (fewer than
  ``history_buffer_size`` waiting); the first that finds none makes the group behind again,
  and it reads once more from there;
* the last ``live_buffer_size`` events that arrived live are counted (KurrentDB's bounded
  live buffer, reported as ``live_buffer_count``); a switch from behind to live empties it.

Events a ``$all`` filter leaves out take no room and count for nothing: a read skips them
(they go to the ledger as done, so the checkpoint passes them).

Pure: no processes, no I/O; the group tells it when a read reached the end of the stream.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final, Literal, TypeAlias

import attrs

__all__ = ["MAX_PULL_BATCH", "Arrival", "StreamBuffer", "can_read", "read_count"]

MAX_PULL_BATCH: Final = 500
"""The most events KurrentDB's persistent subscription reader reads at a time."""

Arrival: TypeAlias = Literal["duplicate", "in", "wait"]
"""What became of an event that arrived (see :meth:`StreamBuffer.arrive`)."""


def read_count(read_batch_size: int) -> int:
    """How many (wanted) events one read takes: KurrentDB's ``min(max(b, 10), min(b or 20,
    500))`` for a read batch size ``b``, at least 1."""
    batch = read_batch_size if read_batch_size != 0 else 20
    return max(1, min(max(read_batch_size, 10), min(batch, MAX_PULL_BATCH)))


def can_read(waiting: int, history_buffer_size: int, read_batch_size: int) -> bool:
    """Whether a read may start with ``waiting`` events waiting in the ledger: KurrentDB's
    ``StreamBuffer.CanAccept(read_batch_size)``."""
    return history_buffer_size - waiting > read_batch_size


@attrs.define(eq=False)
class StreamBuffer:
    """The events of a group's subscription not read into its ledger yet, and whether the
    group is live (see the module docstring).

    Guarantees: events leave in the order they arrived, each once (an event arriving again,
    with a key not above the last one's, is a ``"duplicate"``); while behind, none enters
    the ledger but through :meth:`read`.
    """

    live: bool = False
    last_key: int | None = None
    source: deque[tuple[int, Any, bool]] = attrs.Factory(deque)
    """``(key, item, wanted)`` of each event waiting to be read."""
    live_keys: deque[int] = attrs.Factory(deque)
    """The keys of the last events that arrived live (at most ``live_buffer_size``)."""

    def arrive(self, key: int, item: Any, wanted: bool, room: bool,
               live_buffer_size: int) -> Arrival:
        """An event of the subscription arrived (``wanted`` False for one the filter leaves
        out; ``room`` True when fewer than ``history_buffer_size`` events wait in the
        ledger). ``"in"``: the group is live and it goes into the ledger now;
        ``"wait"``: it waits here to be read (the group was behind, or is now, finding no
        room); ``"duplicate"``: it arrived before."""
        if self.last_key is not None and key <= self.last_key:
            return "duplicate"
        self.last_key = key
        if self.live and not self.source:
            if not wanted:
                return "in"
            self.live_keys.append(key)
            while len(self.live_keys) > max(live_buffer_size, 0):
                self.live_keys.popleft()
            if room:
                return "in"
            self.live = False
        self.source.append((key, item, wanted))
        return "wait"

    def read(self, waiting: int, history_buffer_size: int,
             read_batch_size: int) -> tuple[list[tuple[int, Any, bool]], bool]:
        """Read the next batch while behind and there is room (:func:`can_read`): up to
        :func:`read_count` wanted events, with the left-out ones between them. Returns the
        events read, in order, and whether the read found fewer than it asked for (it
        reached the end of what arrived: the group then asks the store whether that is the
        end, see :meth:`caught_up`)."""
        if self.live or not can_read(waiting, history_buffer_size, read_batch_size):
            return [], False
        count = read_count(read_batch_size)
        out: list[tuple[int, Any, bool]] = []
        taken = 0
        source = self.source
        while source and taken < count:
            entry = source.popleft()
            out.append(entry)
            taken += entry[2]
        return out, taken < count

    def caught_up(self) -> None:
        """The last read reached the end of the stream: the group is live, and the live
        buffer starts empty (KurrentDB's switch to live)."""
        if not self.source:
            self.live = True
            self.live_keys.clear()

    @property
    def live_count(self) -> int:
        """KurrentDB's ``live_buffer_count``."""
        return len(self.live_keys)

    @property
    def unread(self) -> int:
        """Events arrived and not read yet."""
        return len(self.source)
