"""The store's tree against its storage engine alone: 100 concurrent writers appending
single events durably, through :mod:`exesdb.gateway` (gateway worker, group-committing
writer) and straight to the writer, in the same run; and the same 100 writers through
the gateway against one writer appending 100-event batches through it, which is what
group commit lets many writers approach.

Events carry the storage benchmark's payload (pre-encoded JSON, 60 bytes, as bytes).

Both durable (WAL, ``synchronous=FULL``; checked before measuring). The three are
measured in :data:`ROUNDS` short rounds, one after the other, their order rotated every
round, and each figure is the median of its rounds' events/s, so all three meet the same
disturbances of a noisy machine and a stall during a few rounds does not decide.

Targets: the tree costs at most 1.25x, that is its events/s is at least 0.8x the
engine's (printed both ways: the events/s with the engine's as floor, and the wall time
per event with the engine's as floor, whose ratio is the tree cost); the 100 writers
reach at least 0.5x the 100-event batches' events/s.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

import otp
from exesdb import ANY, NewEvent, gateway, start_store, stop_store
from exesdb.storage import SQLiteBackend, writer
from exesdb.systems.store import backend_of

from ._report import Result, now
from .bench_storage import EVENT_TYPE, PAYLOAD

__all__ = ["run"]

WRITERS = 100
APPENDS_PER_WRITER = 20  # per round
BATCH = 100
BATCHES = 20  # per round
ROUNDS = 15


def _event() -> NewEvent:
    return NewEvent(EVENT_TYPE, PAYLOAD, content_type="application/json")


async def _concurrently(append: Callable[[str, int], Awaitable[object]]) -> tuple[int, float]:
    """(events, seconds) of WRITERS tasks, each appending APPENDS_PER_WRITER single
    events."""

    async def one_writer(w: int) -> None:
        for i in range(APPENDS_PER_WRITER):
            await append(f"writer-{w}", i)

    start = now()
    async with trio.open_nursery() as nursery:
        for w in range(WRITERS):
            nursery.start_soon(one_writer, w)
    return WRITERS * APPENDS_PER_WRITER, now() - start


async def _bench(root: Path) -> list[Result]:
    async with otp.node():
        backend = await SQLiteBackend.open(root / "engine", durable=True)
        pid = await writer.start_link(backend)
        # The batches go to a store of their own, so the tree's store holds what the
        # engine's holds (the same appends, the same file size and checkpoints).
        for store_id in ("bench", "bench-batches"):
            await start_store(store_id=store_id, data_dir=root / "stores", durable=True)
        for checked in (backend, backend_of("bench"), backend_of("bench-batches")):
            if not (isinstance(checked, SQLiteBackend) and checked.durable
                    and await checked.write_settings() == ("wal", 2)):  # 2: FULL
                raise RuntimeError(f"not durable (WAL, synchronous=FULL): {checked!r}")

        async def engine(stream: str, i: int) -> object:
            return await writer.append(pid, stream, ANY, [_event()])

        async def tree(stream: str, i: int) -> object:
            return await gateway.append_events("bench", stream, [_event()])

        async def batches() -> tuple[int, float]:
            """(events, seconds) of one writer appending BATCHES batches of BATCH events
            to one stream."""
            start = now()
            for _ in range(BATCHES):
                await gateway.append_events("bench-batches", "batches",
                                            [_event() for _ in range(BATCH)])
            return BATCHES * BATCH, now() - start

        figures = [(lambda: _concurrently(engine)), (lambda: _concurrently(tree)), batches]
        rates: list[list[float]] = [[] for _ in figures]  # per figure: each round's events/s
        for round_ in range(ROUNDS):  # in turn, so all see the same disk and load
            for i in range(len(figures)):
                which = (i + round_) % len(figures)
                events, seconds = await figures[which]()
                rates[which].append(events / seconds)
        await stop_store("bench")
        await stop_store("bench-batches")
        await otp.gen_server.stop(pid)
        await backend.close()
    engine_rate, tree_rate, batch_rate = (statistics.median(r) for r in rates)
    return [
        Result(f"gateway append 1 event, {WRITERS} writers, durable", tree_rate, "events/s",
               engine_rate, ">= 0.8x floor (floor: the storage engine alone)"),
        Result(f"tree cost: wall time per event, {WRITERS} writers", 1e6 / tree_rate, "us",
               1e6 / engine_rate, "<= 1.25x floor (floor: the storage engine alone)"),
        Result(f"gateway append 1 event, {WRITERS} writers, vs {BATCH}-event batches",
               tree_rate, "events/s", batch_rate,
               f">= 0.5x floor (floor: 1 writer's {BATCH}-event batches, same run)"),
    ]


def run() -> list[Result]:
    """Measure both in a temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="exesdb-bench-gateway-"))
    logging.getLogger("exesdb").setLevel(logging.WARNING)
    try:
        return trio.run(_bench, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
