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

A :class:`StreamBatch` touches no database. The PostgreSQL backend uses it as it is; the SQLite
backend's batch is a subclass that stages its rows in its own layout and writes the other
operations of the transaction as they come (:meth:`StreamBatch._stage`,
:meth:`StreamBatch._other`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..constants import ANY
from ..errors import ExESDBError
from ..events import NewEvent
from . import records
from .ops import Append, Appended, DeleteStream, WriteOp
from .rules import check_append, check_delete, visible_version

__all__ = ["EventRow", "StreamBatch", "StreamState"]

EventRow = tuple[int, int, int, bytes, int, bytes]
"""An event row to insert: ``(position, stream key, number, event id, crc, blob)``."""

_NOTHING_FOUND: Final[dict[bytes, int]] = {}  # never changed
_new_int: Final = int.__new__


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

    def apply(self, op: WriteOp) -> Any:
        """Decide ``op`` and stage its effects; return its result, or the
        :class:`exesdb.ExESDBError` it failed with (then nothing was staged). An operation
        other than an append or a stream delete goes to :meth:`_other`."""
        try:
            kind = type(op)
            if kind is Append:
                return self._append(op)  # type: ignore[arg-type]
            if kind is DeleteStream:
                return self._delete(op)  # type: ignore[arg-type]
            return self._other(op)
        except ExESDBError as exc:
            return exc

    def _other(self, op: WriteOp) -> Any:
        """Apply an operation that is not a stream's (a backend that writes snapshots,
        checkpoints or subscription definitions in the same transaction overrides it)."""
        raise TypeError(f"not a stream operation: {op!r}")

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
        key = stream.key
        if known and key is not None:
            found: dict[bytes, int] = {}
            for event in events:
                event_id = event._encoded[0]
                for found_key, number in known.get(event_id, ()):
                    if found_key == key and number >= stream.first:
                        found[event_id] = number
        else:
            found = _NOTHING_FOUND
        if found or stream.hard or op.expected_version is not ANY:
            version = check_append(stream_id, op.expected_version, stream.last, stream.first,
                                   stream.hard, [event._encoded[0] for event in events], found)
            if version is not None:
                return version
        if key is None:
            key = self._key(stream_id, stream)
        last = stream.last
        recreated = stream.first > last >= 0  # it was soft-deleted
        position = self.position
        self._stage(stream_id, key, last + 1, position, events)
        if self.track_ids:  # later operations of this batch must see these ids
            number = last
            for event in events:
                number += 1
                known.setdefault(event._encoded[0], []).append((key, number))
        stream.last = number = last + len(events)
        self.position = position = position + len(events)
        # Appended(number, position - 1, recreated), without its __new__'s frame
        appended: Appended = _new_int(Appended, number)
        appended.position = position - 1
        appended.recreated = recreated
        return appended

    def _stage(self, stream_id: str, key: int, number: int, position: int,
               events: Sequence[NewEvent]) -> None:
        """Stage the rows of ``events``, appended to stream ``stream_id`` (key ``key``)
        with numbers from ``number`` at ``$all`` positions from ``position``: as
        :data:`EventRow` s in :attr:`rows` (a backend with a row layout of its own
        overrides it)."""
        prefix = records.stream_prefix(self.now, stream_id)
        encode = records.encode_event
        crc_of = records.event_crc
        append_row = self.rows.append
        for event in events:
            blob = encode(prefix, event)
            append_row((position, key, number, event._encoded[0],
                        crc_of(position, key, number, blob), blob))
            number += 1
            position += 1

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
