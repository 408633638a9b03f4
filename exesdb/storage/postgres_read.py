"""The PostgreSQL backend's reads: synchronous functions of a read connection.

Each read is one SQL statement (a stream's row and its events are read by one join), so
it sees one committed state of the store without a transaction around it. The one
exception, a filtered ``$all`` read that scans in chunks, is as consistent: ``$all`` only
grows at its end and its positions follow commit order, so a chunk read later sees what
an earlier one saw plus newer events beyond it. Every row is verified against its
checksum before it is decoded; a row that fails raises :class:`exesdb.StorageError` and
nothing is returned. Event records are decoded lazily, as the SQLite backend's are.
"""

from __future__ import annotations

from typing import Any, Final

from ..constants import END, Direction, End
from ..errors import StorageError, StreamDeleted
from ..events import EventRecord, Filter, Snapshot, lazy_record
from . import records
from .definitions import SubscriptionDefinition
from .fencing import verify_epoch
from .postgres_conn import Conn
from .postgres_schema import HARD_DELETED, LIVE, Queries, verify_head
from .rules import visible_version

__all__ = [
    "MAX_INT8",
    "all_events",
    "head",
    "leader_epoch",
    "list_checkpoints",
    "list_snapshots",
    "list_streams",
    "list_subscriptions",
    "read_all",
    "read_checkpoint",
    "read_snapshot",
    "read_stream",
    "read_subscription",
    "stats",
    "stream_events",
    "stream_version",
    "text",
]

MAX_INT8: Final = (1 << 63) - 1
"""The largest PostgreSQL bigint: a start or count beyond it reads as it."""
_FILTER_CHUNK: Final = 1000


def text(raw: object, what: str) -> str:
    """A stored UTF-8 name; raises :class:`exesdb.StorageError` naming ``what`` when the
    bytes are not UTF-8 (a damaged row)."""
    if type(raw) is not bytes:
        raise StorageError(f"corrupt {what}: a name is not stored as bytes")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise StorageError(f"corrupt {what}: a name is not UTF-8") from None


def _check_stream(stream_id: str, key: int, first: int, state: int, crc: int) -> None:
    records.verify_stream(key, stream_id, first, state, crc)
    if state == HARD_DELETED:
        raise StreamDeleted(stream_id)


def read_stream(conn: Conn, q: Queries, stream_id: str, start: int | End, count: int,
                direction: Direction) -> list[EventRecord]:
    """See :meth:`exesdb.storage.Backend.read_stream`. One statement reads the stream's
    row and its events together."""
    raw_id = stream_id.encode()
    if direction == "forward" and start is END:
        row = conn.execute(q.stream_row, (raw_id,)).fetchone()
        if row is not None:
            _check_stream(stream_id, *row)
        return []
    cursor = conn.cursor(binary=True)
    if direction == "forward":
        rows = cursor.execute(q.stream_forward, (start, count, raw_id)).fetchall()
    else:
        top = MAX_INT8 if start is END else start
        rows = cursor.execute(q.stream_backward, (top, count, raw_id)).fetchall()
    return stream_events(stream_id, rows, start, direction)


def stream_events(stream_id: str, rows: list[tuple[Any, ...]], start: int | End,
                  direction: Direction) -> list[EventRecord]:
    """The events of ``rows`` (of :attr:`Queries.stream_forward` or
    :attr:`Queries.stream_backward`, binary), verified."""
    if not rows:
        return []
    key, first, state, crc = rows[0][:4]
    _check_stream(stream_id, key, first, state, crc)
    if rows[0][4] is None:
        return []
    if direction == "forward":
        assert start is not END
        number, step = max(start, first), 1
    else:
        number, step = rows[0][5], -1  # the last number is not known in advance
    out: list[EventRecord] = []
    for row in rows:
        event = row[4:]
        if event[1] != number:
            raise StorageError(f"corrupt stream index: expected event {number}, found "
                               f"{event[1]!r} at $all position {event[0]!r}")
        records.verify_event(event, key)
        out.append(lazy_record(records.fill_event, event))
        number += step
    return out


def read_all(conn: Conn, q: Queries, start: int | End, count: int, direction: Direction,
             filter: Filter | None) -> list[EventRecord]:
    """See :meth:`exesdb.storage.Backend.read_all`."""
    forward = direction == "forward"
    if start is END:
        if forward:
            return []
        begin = MAX_INT8
    else:
        begin = start
    query = q.all_forward if forward else q.all_backward
    cursor = conn.cursor(binary=True)
    out: list[EventRecord] = []
    if filter is None or (not filter.event_types and not filter.stream_prefixes):
        return all_events(cursor.execute(query, (begin, count)).fetchall())
    matches = filter.matches
    while len(out) < count:
        rows = cursor.execute(query, (begin, _FILTER_CHUNK)).fetchall()
        if not rows:
            break
        for row in rows:
            records.verify_event(row, row[4])
            if matches(*records.peek_event(row[3])):
                out.append(lazy_record(records.fill_event, row))
                if len(out) == count:
                    break
        begin = rows[-1][0] + 1 if forward else rows[-1][0] - 1
        if begin < 0:
            break
    return out


def all_events(rows: list[tuple[Any, ...]]) -> list[EventRecord]:
    """The events of ``rows`` (of :attr:`Queries.all_forward` or
    :attr:`Queries.all_backward`, binary), verified."""
    out: list[EventRecord] = []
    for row in rows:
        records.verify_event(row, row[4])
        out.append(lazy_record(records.fill_event, row))
    return out


def stream_version(conn: Conn, q: Queries, stream_id: str) -> int:
    """See :meth:`exesdb.storage.Backend.stream_version`."""
    row = conn.execute(q.stream_version, (stream_id.encode(),)).fetchone()
    if row is None:
        return -1
    key, first, state, crc, last = row
    _check_stream(stream_id, key, first, state, crc)
    return visible_version(-1 if last is None else int(last), first)


def list_streams(conn: Conn, q: Queries) -> list[str]:
    """See :meth:`exesdb.storage.Backend.list_streams`."""
    out = []
    for key, raw, first, state, crc, last in conn.execute(q.list_streams):
        stream_id = text(raw, "stream record")
        records.verify_stream(key, stream_id, first, state, crc)
        if state == LIVE and last is not None and last >= first:
            out.append(stream_id)
    return out


def head(conn: Conn, q: Queries) -> int:
    """The position of the last event of ``$all`` (the head row), -1 when empty."""
    return verify_head(conn.execute(q.read_head).fetchone())[0]


def _snapshot(row: tuple[Any, ...]) -> Snapshot:
    source, stream, version, created, crc, blob = row
    return records.decode_snapshot(text(source, "snapshot record"),
                                   text(stream, "snapshot record"), version, created, crc,
                                   blob)


def read_snapshot(conn: Conn, q: Queries, source_uuid: str, stream_uuid: str,
                  version: int | None) -> Snapshot | None:
    """See :meth:`exesdb.storage.Backend.read_snapshot`."""
    keys = (source_uuid.encode(), stream_uuid.encode())
    if version is None:
        row = conn.execute(q.snapshot_latest, keys).fetchone()
    elif version > MAX_INT8:
        return None
    else:
        row = conn.execute(q.snapshot_exact, (*keys, version)).fetchone()
    return None if row is None else _snapshot(row)


def list_snapshots(conn: Conn, q: Queries, source_uuid: str | None,
                   stream_uuid: str | None) -> list[Snapshot]:
    """See :meth:`exesdb.storage.Backend.list_snapshots`."""
    where: list[bytes] = []
    args: list[bytes] = []
    if source_uuid is not None:
        where.append(b"source_uuid = %s")
        args.append(source_uuid.encode())
    if stream_uuid is not None:
        where.append(b"stream_uuid = %s")
        args.append(stream_uuid.encode())
    clause = b" WHERE " + b" AND ".join(where) if where else b""
    query = q.snapshot_select + clause + b" ORDER BY source_uuid, stream_uuid, version"
    return [_snapshot(row) for row in conn.execute(query, args).fetchall()]


def read_checkpoint(conn: Conn, q: Queries, name: str) -> int | None:
    """See :meth:`exesdb.storage.Backend.read_checkpoint`."""
    row = conn.execute(q.checkpoint_row, (name.encode(),)).fetchone()
    if row is None:
        return None
    records.verify_checkpoint(name, row[0], row[1])
    return int(row[0])


def list_checkpoints(conn: Conn, q: Queries) -> dict[str, int]:
    """See :meth:`exesdb.storage.Backend.list_checkpoints`."""
    out = {}
    for raw, position, crc in conn.execute(q.checkpoint_rows):
        name = text(raw, "checkpoint record")
        records.verify_checkpoint(name, position, crc)
        out[name] = position
    return out


def _subscription(row: tuple[Any, ...]) -> SubscriptionDefinition:
    raw, type_, selector, start_from, with_subscriber, crc = row
    return records.decode_subscription(text(raw, "subscription definition"), type_, selector,
                                       start_from, with_subscriber, crc)


def read_subscription(conn: Conn, q: Queries, name: str) -> SubscriptionDefinition | None:
    """See :meth:`exesdb.storage.Backend.read_subscription`."""
    row = conn.execute(q.subscription_row, (name.encode(),)).fetchone()
    return None if row is None else _subscription(row)


def list_subscriptions(conn: Conn, q: Queries) -> list[SubscriptionDefinition]:
    """See :meth:`exesdb.storage.Backend.list_subscriptions`."""
    return [_subscription(row) for row in conn.execute(q.subscription_rows).fetchall()]


def stats(conn: Conn, q: Queries) -> dict[str, int]:
    """See :meth:`exesdb.storage.Backend.stats`."""
    row = conn.execute(q.stats).fetchone()
    if row is None:
        raise StorageError("corrupt store: its head row is missing")
    events, streams = row[:2]
    return {"streams": int(streams), "events": int(events),
            "last_position": verify_head(row[2:])[0]}


def leader_epoch(conn: Conn, q: Queries) -> tuple[int, str]:
    """``(epoch, leader)`` of the store's leader epoch row, verified."""
    row = conn.execute(q.read_epoch).fetchone()
    if row is None:
        raise StorageError("corrupt store: its leader epoch row is missing")
    return verify_epoch(*row)
