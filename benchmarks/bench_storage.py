"""Storage engine costs: durable appends (single, 100 concurrent writers, 100-event
batches) and reads (a 100,000-event stream, ``$all``).

Every figure is in events/s, beside its floor measured in the same run, alternately with
it, with the same durability settings (WAL, ``synchronous=FULL``: every transaction is
fsynced): raw ``sqlite3`` doing the same work in a plain table (position, stream id,
number, event id, type, data, metadata, content type, created) with a unique
(stream id, number) index, and no framework. The engine's figures go through the whole
path: events built as :class:`exesdb.NewEvent`, appends through the writer gen_server,
blocking work off the trio thread, checksums written and verified.

* single-event appends by one writer (floor: one row per transaction);
* 100 concurrent writers appending single events to their own streams (floor: the same
  one row per transaction, which is what 100 writers get from SQLite without group
  commit; the issue's target is absolute, 60,000 events/s);
* 100-event appends (floor: 100 rows per transaction);
* reading a 100,000-event stream forward, 1,000 events per read (floor: one plain SELECT
  of the same rows);
* reading ``$all`` forward, 1,000 events per read (floor: one plain SELECT in position
  order);
* the stream read again, touching every field of every record (records decode on first
  access; informational, no target).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

import otp
from exesdb import ANY, END, NewEvent
from exesdb.storage import SQLiteBackend, writer

from ._report import Result, now

__all__ = ["run"]

REPEATS = 3
SINGLE_APPENDS = 300
WRITERS = 100
APPENDS_PER_WRITER = 20
BATCHES = 40
BATCH = 100
READ_EVENTS = 100_000
PAGE = 1000


def _data(i: int) -> dict[str, Any]:
    return {"order_id": i, "customer": "c-42", "amount": 12.5, "currency": "EUR",
            "lines": [{"sku": "A-1", "qty": 2}]}


class _Floor:
    """Raw sqlite3: a plain events table, WAL, synchronous=FULL, on the calling thread."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(
            "CREATE TABLE events(position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, "
            "event_number INTEGER NOT NULL, event_id BLOB NOT NULL, event_type TEXT NOT NULL, "
            "data BLOB, metadata BLOB, content_type TEXT, created INTEGER, "
            "UNIQUE(stream_id, event_number))"
        )
        self.numbers: dict[str, int] = {}

    def rows(self, stream_id: str, events: list[NewEvent]) -> list[tuple[Any, ...]]:
        number = self.numbers.get(stream_id, -1)
        created = time.time_ns() // 1000
        out = []
        for event in events:
            number += 1
            out.append((stream_id, number, event.event_id.bytes, event.event_type,
                        json.dumps(event.data, separators=(",", ":")).encode(), None,
                        event.content_type, created))
        self.numbers[stream_id] = number
        return out

    def transaction(self, rows: list[tuple[Any, ...]]) -> None:
        execute = self.conn.execute
        execute("BEGIN")
        if len(rows) == 1:
            execute("INSERT INTO events VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?)", rows[0])
        else:
            self.conn.executemany("INSERT INTO events VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  rows)
        execute("COMMIT")


def _rate(events: int, seconds: float) -> float:
    return events / seconds


async def _best_pair(
    measure: Callable[[], Awaitable[float]], floor: Callable[[], float]
) -> tuple[float, float]:
    """Best events/s of REPEATS runs each, measured alternately so both see the same disk."""
    values: list[float] = []
    floors: list[float] = []
    for _ in range(REPEATS):
        floors.append(floor())
        values.append(await measure())
    return max(values), max(floors)


async def _bench(root: Path) -> list[Result]:
    floor = _Floor(root / "floor.sqlite3")
    backend = await SQLiteBackend.open(root / "store", durable=True)
    results: list[Result] = []
    try:
        async with otp.node():
            pid = await writer.start_link(backend)

            # -- one writer, single events ---------------------------------------------
            async def single() -> float:
                start = now()
                for i in range(SINGLE_APPENDS):
                    await writer.append(pid, "single", ANY, [NewEvent("Placed", _data(i))])
                return _rate(SINGLE_APPENDS, now() - start)

            def single_floor() -> float:
                start = now()
                for i in range(SINGLE_APPENDS):
                    floor.transaction(floor.rows("single", [NewEvent("Placed", _data(i))]))
                return _rate(SINGLE_APPENDS, now() - start)

            value, one_row_floor = await _best_pair(single, single_floor)
            results.append(Result("append 1 event, 1 writer, durable", value, "events/s",
                                  one_row_floor, ">= 0.8x floor"))

            # -- 100 concurrent writers ------------------------------------------------
            async def concurrent() -> float:
                async def one_writer(w: int) -> None:
                    stream = f"writer-{w}"
                    for i in range(APPENDS_PER_WRITER):
                        await writer.append(pid, stream, ANY, [NewEvent("Placed", _data(i))])

                start = now()
                async with trio.open_nursery() as nursery:
                    for w in range(WRITERS):
                        nursery.start_soon(one_writer, w)
                return _rate(WRITERS * APPENDS_PER_WRITER, now() - start)

            value, _ = await _best_pair(concurrent, single_floor)
            results.append(Result(f"append 1 event, {WRITERS} writers, durable", value,
                                  "events/s", one_row_floor, ">= 60,000 events/s"))

            # -- 100-event batches -----------------------------------------------------
            async def batches() -> float:
                start = now()
                for _ in range(BATCHES):
                    events = [NewEvent("Placed", _data(i)) for i in range(BATCH)]
                    await writer.append(pid, "batches", ANY, events)
                return _rate(BATCHES * BATCH, now() - start)

            def batches_floor() -> float:
                start = now()
                for _ in range(BATCHES):
                    events = [NewEvent("Placed", _data(i)) for i in range(BATCH)]
                    floor.transaction(floor.rows("batches", events))
                return _rate(BATCHES * BATCH, now() - start)

            value, batch_floor = await _best_pair(batches, batches_floor)
            results.append(Result(f"append {BATCH}-event batches, durable", value, "events/s",
                                  batch_floor, ">= 0.7x floor"))
            await otp.gen_server.stop(pid)
    finally:
        await backend.close()
        floor.conn.close()
    results.extend(await _bench_reads(root))
    return results


async def _bench_reads(root: Path) -> list[Result]:
    backend = await SQLiteBackend.open(root / "reads", durable=True)
    floor = _Floor(root / "reads-floor.sqlite3")
    try:
        for _ in range(READ_EVENTS // PAGE):
            events = [NewEvent("Placed", _data(i)) for i in range(PAGE)]
            await backend.append("big", ANY, events)
            floor.transaction(floor.rows("big", events))

        async def read_stream(touch: bool = False) -> float:
            start = now()
            version = 0
            total = 0
            while True:
                page = await backend.read_stream("big", version, PAGE)
                if touch:
                    for record in page:
                        _ = (record.data, record.metadata, record.event_id, record.created)
                total += len(page)
                if len(page) < PAGE:
                    break
                version += PAGE
            assert total == READ_EVENTS, total
            return _rate(total, now() - start)

        def read_stream_floor() -> float:
            start = now()
            rows = floor.conn.execute(
                "SELECT * FROM events WHERE stream_id = ? ORDER BY event_number", ("big",)
            ).fetchall()
            assert len(rows) == READ_EVENTS
            return _rate(len(rows), now() - start)

        async def read_all() -> float:
            start = now()
            position = 0
            total = 0
            while True:
                page = await backend.read_all(position, PAGE)
                total += len(page)
                if len(page) < PAGE:
                    break
                position = page[-1].position + 1
            assert total == READ_EVENTS, total
            return _rate(total, now() - start)

        def read_all_floor() -> float:
            start = now()
            rows = floor.conn.execute("SELECT * FROM events ORDER BY position").fetchall()
            assert len(rows) == READ_EVENTS
            return _rate(len(rows), now() - start)

        stream_value, stream_floor = await _best_pair(read_stream, read_stream_floor)
        all_value, all_floor = await _best_pair(read_all, read_all_floor)
        touched, _ = await _best_pair(lambda: read_stream(touch=True), read_stream_floor)
        assert (await backend.read_stream("big", END, 1, "backward"))[0].event_number == (
            READ_EVENTS - 1
        )
    finally:
        await backend.close()
        floor.conn.close()
    return [
        Result(f"read a {READ_EVENTS:,}-event stream forward", stream_value, "events/s",
               stream_floor, ">= 0.5x floor"),
        Result("read $all forward", all_value, "events/s", all_floor, ">= 0.5x floor"),
        Result("read the stream, every field decoded", touched, "events/s", stream_floor,
               "(informational)"),
    ]


def run() -> list[Result]:
    """Measure every figure (see the module docstring) in a temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="exesdb-bench-"))
    try:
        return trio.run(_bench, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
