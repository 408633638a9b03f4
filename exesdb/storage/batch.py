"""The backend-neutral decisions of one write transaction's stream operations.

A backend loads the state of the streams a transaction touches (:class:`StreamState`)
and the streams and numbers where its new event ids already occur, then hands each
:class:`~exesdb.storage.Append` and :class:`~exesdb.storage.DeleteStream` to
:meth:`StreamBatch.apply` in order. The batch decides each one by the rules of
:mod:`exesdb.storage.rules`, stages the event rows to insert and the stream rows to
insert or update, and returns each operation's result. Guarantees:

* Operations are decided in order, each seeing the effects of those before it (their
  events, numbers, deletes and ids).
* An operation that fails (its result is the :class:`exesdb.ExESDBError` it failed with)
  stages nothing.
* Event rows carry consecutive ``$all`` positions from the ``position`` the batch was
  given, in the order the operations were applied, and their checksums
  (:func:`exesdb.storage.records.event_crc`).
* The batch changes the :class:`StreamState` objects it was given in place: a backend
  that keeps them across transactions must drop them if the transaction does not commit.

The batch touches no database: the SQLite backend has its own copy of this logic, and the
PostgreSQL backend uses this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..constants import ANY
from ..errors import ExESDBError
from . import records
from .ops import Append, Appended, DeleteStream
from .rules import check_append, check_delete, visible_version

__all__ = ["EventRow", "StreamBatch", "StreamState"]

EventRow = tuple[int, int, int, bytes, int, bytes]
"""An event row to insert: ``(position, stream key, number, event id, crc, blob)``."""


class StreamState:
    """One stream as the rules see it: ``key`` (None until the stream has a row),
    ``last`` (number of the last event ever written, -1 when none), ``first`` (first
    visible number) and ``hard`` (hard-deleted)."""

    __slots__ = ("first", "hard", "key", "last")

    def __init__(self, key: int | None, last: int, first: int, hard: bool) -> None:
        self.key = key
        self.last = last
        self.first = first
        self.hard = hard

    def __repr__(self) -> str:
        return (f"StreamState(key={self.key}, last={self.last}, first={self.first}, "
                f"hard={self.hard})")


class StreamBatch:
    """The stream operations of one transaction in the making (see the module docstring).

    ``streams`` must hold a state for every stream an operation names; ``known`` maps
    each new event id already stored to its ``(stream key, number)`` pairs. ``position``
    is the ``$all`` position of the first event to write, ``next_key`` the first unused
    stream key, ``now`` the append time in microseconds since the epoch.
    """

    def __init__(self, streams: Mapping[str, StreamState],
                 known: dict[bytes, list[tuple[int, int]]], *, position: int, next_key: int,
                 now: int, track_ids: bool) -> None:
        self.streams = streams
        self.known = known
        self.position = position
        self.next_key = next_key
        self.now = now
        # Later operations can only meet an id an earlier one wrote if some id repeats.
        self.track_ids = track_ids
        self.rows: list[EventRow] = []
        self.dirty: dict[str, tuple[StreamState, bool]] = {}
        """Streams whose row must be written: ``stream_id -> (state, is_new)``."""

    def apply(self, op: Append | DeleteStream) -> Any:
        """Decide ``op`` and stage its effects; return its result, or the
        :class:`exesdb.ExESDBError` it failed with (then nothing was staged)."""
        try:
            if type(op) is Append:
                return self._append(op)
            return self._delete(op)  # type: ignore[arg-type]
        except ExESDBError as exc:
            return exc

    def _key(self, stream_id: str, stream: StreamState) -> int:
        if stream.key is None:
            stream.key = self.next_key
            self.next_key += 1
            self.dirty[stream_id] = (stream, True)
        return stream.key

    def _append(self, op: Append) -> int:
        stream_id = op.stream_id
        stream = self.streams[stream_id]
        events = op.events
        known = self.known
        found: dict[bytes, int] = {}
        if known and stream.key is not None:
            for event in events:
                event_id = event._encoded[0]
                for key, number in known.get(event_id, ()):
                    if key == stream.key and number >= stream.first:
                        found[event_id] = number
        if found or stream.hard or op.expected_version is not ANY:
            version = check_append(stream_id, op.expected_version, stream.last, stream.first,
                                   stream.hard, [event._encoded[0] for event in events], found)
            if version is not None:
                return version
        key = self._key(stream_id, stream)
        recreated = stream.first > stream.last >= 0  # it was soft-deleted
        number = stream.last
        position = self.position
        prefix = records.stream_prefix(self.now, stream_id)
        encode = records.encode_event
        crc_of = records.event_crc
        append_row = self.rows.append
        for event in events:
            number += 1
            blob = encode(prefix, event)
            append_row((position, key, number, event._encoded[0],
                        crc_of(position, key, number, blob), blob))
            position += 1
        if self.track_ids:
            number = stream.last
            for event in events:
                number += 1
                known.setdefault(event._encoded[0], []).append((key, number))
        self.position = position
        stream.last += len(events)
        return Appended(stream.last, position - 1, recreated)

    def _delete(self, op: DeleteStream) -> int:
        stream_id = op.stream_id
        stream = self.streams[stream_id]
        check_delete(stream_id, op.expected_version, stream.last, stream.first, stream.hard)
        if op.hard:
            stream.hard = True
        elif visible_version(stream.last, stream.first) >= 0:
            stream.first = stream.last + 1
        else:
            return stream.last
        if stream.key is None:
            self._key(stream_id, stream)
        elif stream_id not in self.dirty:
            self.dirty[stream_id] = (stream, False)
        return stream.last
