"""Subscriptions: live delivery latency and catch-up throughput, in one store.

* **Latency**: 10 live subscribers (transient, ``by_stream "$all"``, each its own
  process) while 10 processes append single events, durably, paced together at 1,000
  appends/s (one process cannot: each durable append waits for its fsync); the rate
  reached is reported too;
  for every event and subscriber, the time from the append's acknowledgement (when
  ``append_events`` returned) to the subscriber's receipt of the event (0 when the
  event arrived first). p50 and p99 in ms. Target: p99 under 10 ms.
* **Catch-up**: a subscriber reading 100,000 stored events from position 0 (a transient
  ``$all`` subscription: the emitter reads them from the storage in batches and sends
  them), in events/s, beside reading ``$all`` straight from the storage backend in
  batches of the same size (``backend.read_all``) in the same run, alternately. Target:
  at least 0.7x the direct read. The same for a persistent subscription acknowledging
  each batch (at most ``MAX_IN_FLIGHT`` events in flight) is reported beside it
  (informational, no target).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import trio

import otp
from exesdb import Events, NewEvent, gateway, start_store, stop_store
from exesdb.systems.notification.emitters import BATCH
from exesdb.systems.store import backend_of

from ._report import Result, now

__all__ = ["run"]

SUBSCRIBERS = 10
APPENDERS = 10
RATE = 1000  # appends/s, all appenders together
SECONDS = 3.0
WARMUP = 200  # appends not measured (the first reads, the pools settling)
CATCH_UP = 100_000
REPEATS = 3


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _receiver(parent: otp.Pid, expected: int, received: dict[tuple[str, int], float]
                    ) -> None:
    """Record when each event arrives; tell ``parent`` once ``expected`` have."""
    await gateway.save_subscription("bench", "by_stream", "$all", subscriber=otp.self())
    otp.send(parent, "subscribed")
    count = 0
    while count < expected:
        batch = await otp.receive()
        if type(batch) is not Events:
            continue
        at = now()
        for event in batch.events:
            received[(event.stream_id, event.event_number)] = at
        count += len(batch.events)
    otp.send(parent, "received")


async def _appender(parent: otp.Pid, k: int, start: float, appends: int,
                    acked: dict[tuple[str, int], float]) -> None:
    """Append events k, k + APPENDERS, ... each at its time in the paced sequence."""
    stream = f"s-{k}"
    for i in range(k, appends, APPENDERS):
        await trio.sleep_until(start + i / RATE)
        version = await gateway.append_events("bench", stream, [NewEvent("Tick", {"i": i})])
        acked[(stream, version)] = now()
    otp.send(parent, "appended")


async def _latency() -> tuple[float, float, float]:
    """p50 and p99 of append-acknowledged-to-received in ms, and the appends/s reached."""
    me = otp.self()
    appends = int(RATE * SECONDS)
    acked: dict[tuple[str, int], float] = {}
    receipts: list[dict[tuple[str, int], float]] = [{} for _ in range(SUBSCRIBERS)]
    for received in receipts:
        otp.spawn(_receiver, me, appends, received)
    for _ in receipts:
        await otp.receive(match=lambda m: m == "subscribed")
    start = trio.current_time() + 0.01
    for k in range(APPENDERS):
        otp.spawn(_appender, me, k, start, appends, acked)
    with trio.fail_after(60):
        for _ in range(APPENDERS):
            await otp.receive(match=lambda m: m == "appended")
        rate = appends / (trio.current_time() - start)
        for _ in receipts:
            await otp.receive(match=lambda m: m == "received")
    measured = [key for key, _ in sorted(acked.items(), key=lambda kv: kv[1])][WARMUP:]
    delays = [max(received[key] - acked[key], 0.0) * 1000
              for received in receipts for key in measured]
    return _percentile(delays, 0.50), _percentile(delays, 0.99), rate


async def _fill(count: int) -> None:
    for start in range(0, count, 1000):
        await gateway.append_events("bench", f"fill-{start // 1000 % 10}", [
            NewEvent("Filled", {"i": i, "customer": "c-42", "amount": 12.5})
            for i in range(start, start + 1000)])


async def _direct(first: int, count: int) -> float:
    """events/s reading ``$all`` from ``first`` straight from the backend, in batches."""
    backend = backend_of("bench")
    begin = now()
    position, seen = first, 0
    while seen < count:
        events = await backend.read_all(position, BATCH)
        seen += len(events)
        position = events[-1].position + 1
    return count / (now() - begin)


async def _catch_up(first: int, count: int, name: str = "transient") -> float:
    """events/s of a subscription catching up from ``first``; a persistent one (any
    ``name`` but ``"transient"``) acknowledges each batch as it arrives."""
    me = otp.self()
    begin = now()
    await gateway.save_subscription("bench", "by_stream", "$all", name=name,
                                    start_from=first, subscriber=me)
    seen = 0
    while seen < count:
        batch = await otp.receive(match=lambda m: type(m) is Events and m.subscription == name)
        seen += len(batch.events)
        if name != "transient":
            await gateway.ack_event("bench", name, me, batch.events[-1])
    elapsed = now() - begin
    await gateway.remove_subscription("bench", "by_stream", "$all", name=name, subscriber=me)
    return count / elapsed


async def _bench(root: Path) -> list[Result]:
    async with otp.node():
        await start_store(store_id="bench", data_dir=root)
        p50, p99, rate = await _latency()
        await stop_store("bench")
        await start_store(store_id="bench", data_dir=root / "catch-up")
        await _fill(CATCH_UP)
        direct_rates: list[float] = []
        catch_up_rates: list[float] = []
        acked_rates: list[float] = []
        for n in range(REPEATS):  # alternate, so all see the same caches
            direct_rates.append(await _direct(0, CATCH_UP))
            catch_up_rates.append(await _catch_up(0, CATCH_UP))
            acked_rates.append(await _catch_up(0, CATCH_UP, name=f"persistent-{n}"))
        await stop_store("bench")
    direct, catch_up, acked = max(direct_rates), max(catch_up_rates), max(acked_rates)
    return [
        Result(f"live delivery latency p50, {SUBSCRIBERS} subscribers, {RATE} appends/s",
               p50, "ms", target="(p99 is the target)"),
        Result(f"live delivery latency p99, {SUBSCRIBERS} subscribers, {RATE} appends/s",
               p99, "ms", target="< 10 ms"),
        Result("appends/s reached during the latency run", rate, "appends/s",
               target=f"~{RATE} (paced)"),
        Result(f"catch-up of {CATCH_UP:,} events, one subscriber", catch_up, "events/s",
               direct, ">= 0.7x floor (floor: backend.read_all in batches)"),
        Result(f"catch-up of {CATCH_UP:,} events, persistent, acking each batch", acked,
               "events/s", direct, "(informational)"),
    ]


def run() -> list[Result]:
    """Measure both in a temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="exesdb-bench-subscriptions-"))
    logging.getLogger("exesdb").setLevel(logging.WARNING)
    try:
        result: Any = trio.run(_bench, root)
        return list(result)
    finally:
        shutil.rmtree(root, ignore_errors=True)
