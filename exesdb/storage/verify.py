"""A full check of a SQLite store: SQLite's own integrity check and every record's checksum.

:func:`verify_store` (blocking; :func:`averify_store` runs it in a thread) opens the store
read-only (beside a running server or not; the check reads one consistent snapshot) and
reports, in a :class:`VerifyReport`, every damage it finds, each with where it is:

* what ``PRAGMA integrity_check`` reports (damaged pages and B-trees, indexes that do not
  match their table), as SQLite words it;
* every event whose checksum fails, by ``$all`` position, stream and version (the stream
  named from its row's stream key, never from the damaged record), and every event that
  breaks its stream's numbering (a gap or a repeat) or belongs to no stream;
* every stream, snapshot, checkpoint and subscription record whose checksum fails;
* a file that is not a readable exesdb store: not SQLite, a damaged header or meta table
  (then nothing else is checked);
* the ``$all`` positions that cannot be read at all (a damaged page), as ranges: the scan
  goes on past them, looking events up one by one until it can read runs again.

Guarantees: it never writes to the store; it finds every record whose checksum fails
among those it can read; a store it reports clean reads back every record without a
:class:`exesdb.StorageError`. A missing store raises :class:`exesdb.StorageError`
(nothing to check).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from ..errors import CorruptData, StorageError
from . import records
from .sqlite_schema import DB_FILE, connect, recognise

__all__ = ["Damage", "VerifyReport", "averify_store", "verify_store"]

_CHUNK: Final = 1000
_MAX_INTEGRITY_MESSAGES: Final = 100


@attrs.frozen
class Damage:
    """One damaged thing: ``kind`` (``"event"``, ``"stream"``, ``"snapshot"``,
    ``"checkpoint"``, ``"subscription"``, ``"unreadable"``, ``"sqlite"``, ``"file"``: a
    file that is not a readable exesdb store, a damaged header or meta table),
    ``message`` (one line: where and what), and for events ``position``, ``stream_id`` and
    ``event_number`` where known."""

    kind: str
    message: str
    position: int | None = None
    stream_id: str | None = None
    event_number: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The damage as a JSON object."""
        return attrs.asdict(self)


@attrs.frozen
class VerifyReport:
    """The result of :func:`verify_store`: the file checked, what was checked (counts of
    ``events``, ``streams``, ``snapshots``, ``checkpoints``, ``subscriptions``) and every
    :class:`Damage` found, in the order found."""

    path: Path
    events: int
    streams: int
    snapshots: int
    checkpoints: int
    subscriptions: int
    damage: tuple[Damage, ...]

    @property
    def ok(self) -> bool:
        """True when nothing is damaged."""
        return not self.damage

    def summary(self) -> str:
        """One line: what was checked and how many damages."""
        checked = (f"checked {self.events} events in {self.streams} streams, "
                   f"{self.snapshots} snapshots, {self.checkpoints} checkpoints, "
                   f"{self.subscriptions} subscriptions")
        if self.ok:
            return f"{self.path}: {checked}: no damage"
        return f"{self.path}: {checked}: {len(self.damage)} damaged"


def verify_store(directory: str | Path) -> VerifyReport:
    """Check the store in ``directory`` (see the module docstring). Blocking."""
    path = Path(directory) / DB_FILE
    if not path.is_file():
        raise StorageError(f"{directory}: no exesdb store here ({DB_FILE} is missing)")
    try:
        conn = connect(path, True, reader=True)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the store file ({exc})") from exc
    try:
        try:
            version = recognise(conn, path)
        except (sqlite3.Error, StorageError) as exc:
            message = str(exc) if isinstance(exc, StorageError) else (
                f"{path}: not a readable exesdb store ({exc})")
            return VerifyReport(path, 0, 0, 0, 0, 0, (Damage("file", message),))
        conn.execute("BEGIN")
        try:
            return _Checker(conn, path, version).run()
        finally:
            with contextlib.suppress(sqlite3.Error):  # a read transaction: nothing to lose
                conn.execute("COMMIT")
    finally:
        conn.close()


async def averify_store(directory: str | Path) -> VerifyReport:
    """:func:`verify_store` in a worker thread."""
    return await trio.to_thread.run_sync(verify_store, directory)


class _Checker:
    def __init__(self, conn: sqlite3.Connection, path: Path, version: int) -> None:
        self.conn = conn
        self.path = path
        self.version = version
        self.damage: list[Damage] = []
        self.stream_names: dict[int, str] = {}
        self.counts = dict.fromkeys(("events", "streams", "snapshots", "checkpoints",
                                     "subscriptions"), 0)

    def run(self) -> VerifyReport:
        self._integrity()
        self._guarded("the streams table", self._streams)
        self._events()
        self._guarded("the snapshots table", self._snapshots)
        self._guarded("the checkpoints table", self._checkpoints)
        if self.version >= 2:
            self._guarded("the subscriptions table", self._subscriptions)
        return VerifyReport(self.path, damage=tuple(self.damage), **self.counts)

    def _add(self, kind: str, message: str, **where: Any) -> None:
        self.damage.append(Damage(kind, message, **where))

    def _guarded(self, what: str, check: Any) -> None:
        try:
            check()
        except sqlite3.Error as exc:
            self._add("unreadable", f"cannot read {what}: {exc}")

    def _integrity(self) -> None:
        try:
            rows = self.conn.execute(
                f"PRAGMA integrity_check({_MAX_INTEGRITY_MESSAGES})").fetchall()
        except sqlite3.Error as exc:
            self._add("sqlite", f"SQLite integrity check failed to run: {exc}")
            return
        for (message,) in rows:
            if message != "ok":
                self._add("sqlite", f"SQLite integrity check: {message}")

    def _streams(self) -> None:
        for key, stream_id, first, state, crc in self.conn.execute(
                "SELECT skey, stream_id, first, state, crc FROM streams ORDER BY skey"):
            self.counts["streams"] += 1
            if type(stream_id) is str:
                self.stream_names[key] = stream_id
            try:
                records.verify_stream(key, stream_id, first, state, crc)
            except CorruptData as exc:
                self._add("stream", f"{exc} (stream key {key})",
                          stream_id=stream_id if type(stream_id) is str else None)

    def _events(self) -> None:
        last_number: dict[int, int] = {}
        for row in self._event_rows():
            position, number, crc, blob, key = row
            self.counts["events"] += 1
            stream_id = self.stream_names.get(key)
            if (type(blob) is not bytes or type(number) is not int or type(key) is not int
                    or records.event_crc(position, key, number, blob) != crc):
                error = records.corrupt_event(position, number, stream_id)
                self._add("event", str(error), position=position, stream_id=stream_id,
                          event_number=error.event_number)
                if type(number) is int and type(key) is int:  # keys the checksum covers
                    last_number[key] = max(number, last_number.get(key, -1))
                continue
            if stream_id is None:
                self._add("event", f"event at $all position {position} (version {number}) "
                                   f"belongs to no stream (stream key {key})",
                          position=position, event_number=number)
                continue
            expected = last_number.get(key, -1) + 1
            if number != expected:
                self._add("event", f"stream {stream_id!r}: event version {number} at $all "
                                   f"position {position} where version {expected} was "
                                   "expected (a gap or a repeat in the stream)",
                          position=position, stream_id=stream_id, event_number=number)
            last_number[key] = max(number, last_number.get(key, -1))

    def _event_rows(self) -> Iterator[tuple[Any, ...]]:
        """Every readable event row in ``$all`` order; the positions that cannot be read
        are reported as ranges and skipped."""
        select = f"SELECT {records.EVENT_ROW_COLUMNS}, skey FROM events"
        begin = 0
        while True:
            try:
                rows = self.conn.execute(f"{select} WHERE pos >= ? ORDER BY pos LIMIT ?",
                                         (begin, _CHUNK)).fetchall()
            except sqlite3.Error as exc:
                resumed = yield from self._skip_unreadable(select, begin, exc)
                if resumed is None:
                    return
                begin = resumed
                continue
            yield from rows
            if len(rows) < _CHUNK:
                return
            begin = rows[-1][0] + 1

    def _skip_unreadable(self, select: str, begin: int, error: sqlite3.Error
                         ) -> Generator[tuple[Any, ...], None, int | None]:
        """Look events up one position at a time from ``begin`` until one reads; report
        the run of unreadable positions. Returns where to resume the scan, None at the
        end (a generator's return value)."""
        try:
            top = self.conn.execute("SELECT max(pos) FROM events").fetchone()[0]
        except sqlite3.Error as exc:
            self._add("unreadable", f"cannot read $all from position {begin} on ({error}; "
                                    f"its end cannot be read either: {exc})",
                      position=begin)
            return None
        position = begin
        first_bad: int | None = None
        while top is not None and position <= top:
            try:
                row = self.conn.execute(f"{select} WHERE pos = ?", (position,)).fetchone()
            except sqlite3.Error:
                if first_bad is None:
                    first_bad = position
                position += 1
                continue
            if first_bad is not None:
                self._unreadable(first_bad, position - 1, error)
                first_bad = None
            if row is not None:
                yield row
                return position + 1
            position += 1
        if first_bad is not None:
            self._unreadable(first_bad, position - 1, error)
        return None

    def _unreadable(self, first: int, last: int, error: sqlite3.Error) -> None:
        span = f"position {first}" if first == last else f"positions {first} to {last}"
        self._add("unreadable", f"$all {span}: cannot be read ({error})", position=first)

    def _snapshots(self) -> None:
        for row in self.conn.execute("SELECT source_uuid, stream_uuid, version, created, crc, "
                                     "rec FROM snapshots"):
            self.counts["snapshots"] += 1
            try:
                records.decode_snapshot(*row)
            except CorruptData as exc:
                self._add("snapshot", str(exc))
            except Exception as exc:  # a checksum that matches damaged-then-decoded data
                self._add("snapshot", f"snapshot {row[:3]!r}: cannot be decoded ({exc})")

    def _checkpoints(self) -> None:
        for name, position, crc in self.conn.execute(
                "SELECT name, position, crc FROM checkpoints"):
            self.counts["checkpoints"] += 1
            try:
                records.verify_checkpoint(name, position, crc)
            except CorruptData as exc:
                self._add("checkpoint", str(exc))

    def _subscriptions(self) -> None:
        for row in self.conn.execute("SELECT name, type, selector, start_from, "
                                     "with_subscriber, crc FROM subscriptions"):
            self.counts["subscriptions"] += 1
            try:
                records.decode_subscription(*row)
            except CorruptData as exc:
                self._add("subscription", str(exc))
