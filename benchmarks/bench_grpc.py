"""The network gateway: appends and reads over KurrentDB's gRPC protocol with the real
``kurrentdbclient``, beside the same work through the in-process API in the same run.

The server is ``python -m exesdb start`` in a subprocess (its own store, durable); the
clients are ``AsyncKurrentDBClient`` instances, one connection each, in this process.
The in-process floor is a store started in this process and driven by as many trio
tasks through :mod:`exesdb.gateway`.

Targets: 50 concurrent clients appending single events reach >= 20,000 events/s; reads
reach >= 50,000 events/s.

Beside the rates it reports the CPU time one event costs the client process and the
server process (Linux: the server's from ``/proc``), for 50 clients: client and server
share this machine's cores, so ``cores / (client + server CPU per event)`` bounds what
any run here can reach.

And, for 50 clients, the server's CPU per event against the in-process API's for the
same work, measured in the same run (the CPU time of this process, every thread, while
its 50 tasks append or read through :mod:`exesdb.gateway`): CPU time, unlike rates,
hardly moves with what else the machine runs. Targets (issue 15): single-event appends
at most 2x, 100-event batches at most 1.5x, reads of a 1,000-event stream at most 4x.
Informational beside them: the server's CPU per call of a call that does nothing
(``ServerFeatures.GetSupportedMethods`` from 50 grpcio clients), against twice the
in-process CPU of a single-event append: what the protocol alone costs a call, against
the whole budget of an append at the 2.0x target.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc as grpcio  # type: ignore[import-untyped]
import trio

import otp
from exesdb import NewEvent, gateway, start_store, stop_store
from exesdb.events import JSON_CONTENT_TYPE
from exesdb.grpc.protos import shared_pb2
from exesdb.payload import JsonText

from ._procs import process_cpu, stop_server
from ._report import Result, now

__all__ = ["run"]

APPENDS = 2_000  # single events per measurement, shared among the clients
BATCHES = 300  # 100-event batches per measurement (enough for the server CPU in clock ticks)
BATCH = 100
READ_STREAM_EVENTS = 1_000
READS = 40  # whole-stream reads per measurement
NOOP_CALLS = 4_000  # calls that do no work, shared among the clients
NOOP_METHOD = "/event_store.client.server_features.ServerFeatures/GetSupportedMethods"
_LISTENING = re.compile(r"listening on (\S+):(\d+)")


def _start_server(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    """``python -m exesdb start`` with a free port; returns it once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "exesdb", "start", "--store-id", "bench", "--data-dir",
         str(data_dir), "--grpc-port", "0", "--no-http"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = _LISTENING.search(line)
        if match:
            # keep reading its log so the server never blocks on a full pipe
            threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
            return proc, int(match.group(2))
    proc.kill()
    raise RuntimeError("the exesdb server did not start:\n" + "".join(seen))


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


# -- over the network ----------------------------------------------------------------------


async def _grpc_rates(port: int, server_pid: int) -> dict[str, float]:
    from kurrentdbclient import AsyncKurrentDBClient, StreamState
    from kurrentdbclient import NewEvent as KNewEvent

    uri = f"kurrentdb://127.0.0.1:{port}?Tls=false"
    clients = [AsyncKurrentDBClient(uri) for _ in range(50)]
    for client in clients:
        await client.connect()
    rates: dict[str, float] = {}
    cpu_used: dict[tuple[str, int], tuple[float, float]] = {}

    def event(i: int) -> Any:
        return KNewEvent(type="Placed", data=b'{"i": %d}' % i)

    async def timed(n_clients: int, per_client: int, work: Callable[[Any, int, int],
                    Awaitable[int]]) -> float:
        async def one(c: int) -> int:
            total = 0
            for i in range(per_client):
                total += await work(clients[c], c, i)
            return total

        start, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu(server_pid)
        counts = await asyncio.gather(*(one(c) for c in range(n_clients)))
        events = sum(counts)
        cpu_used[work.__name__, n_clients] = (
            (time.process_time() - cpu) / events, (process_cpu(server_pid) - server_cpu) / events)
        return events / (time.perf_counter() - start)

    async def append_one(client: Any, c: int, i: int) -> int:
        await client.append_to_stream(f"single-{c}", events=event(i),
                                      current_version=StreamState.ANY)
        return 1

    async def append_batch(client: Any, c: int, i: int) -> int:
        await client.append_to_stream(f"batch-{c}", events=[event(j) for j in range(BATCH)],
                                      current_version=StreamState.ANY)
        return BATCH

    async def read_stream(client: Any, c: int, i: int) -> int:
        return len(await client.get_stream("to-read"))

    await clients[0].append_to_stream(
        "to-read", events=[event(i) for i in range(READ_STREAM_EVENTS)],
        current_version=StreamState.NO_STREAM)
    for n in (1, 50):
        rates[f"append1-{n}"] = await timed(n, max(1, APPENDS // n), append_one)
        rates[f"batch-{n}"] = await timed(n, max(1, BATCHES // n), append_batch)
        rates[f"read-{n}"] = await timed(n, max(1, READS // n), read_stream)
    for client in clients:
        await client.close()
    rates["cpu-server-noop-50"] = await _noop_server_cpu(port, server_pid)
    for (kind, n), (client_cpu, server_cpu) in cpu_used.items():
        rates[f"cpu-client-{kind}-{n}"] = client_cpu
        rates[f"cpu-server-{kind}-{n}"] = server_cpu
    return rates


async def _noop_server_cpu(port: int, server_pid: int) -> float:
    """The server's CPU time per call of the cheapest call it serves (``NOOP_METHOD``: no
    credentials, no storage, a reply made once), :data:`NOOP_CALLS` calls from 50 grpcio
    clients, one connection each: what the protocol alone costs per call (an HTTP/2
    stream, its headers, one message each way, the trailers), whatever the call does."""
    channels = [grpcio.aio.insecure_channel(f"127.0.0.1:{port}",
                                            options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(50)]
    try:
        calls = [channel.unary_unary(NOOP_METHOD,
                                     request_serializer=shared_pb2.Empty.SerializeToString)
                 for channel in channels]
        for call in calls:  # every connection made before measuring
            await call(shared_pb2.Empty())

        async def one(call: Any) -> None:
            for _ in range(NOOP_CALLS // len(calls)):
                await call(shared_pb2.Empty())

        cpu = process_cpu(server_pid)
        await asyncio.gather(*(one(call) for call in calls))
        return (process_cpu(server_pid) - cpu) / NOOP_CALLS
    finally:
        for channel in channels:
            await channel.close()


# -- in process ------------------------------------------------------------------------------


def _event(i: int, event_id: uuid.UUID) -> NewEvent:
    """The event a gRPC client of this benchmark appends, as the server stores it: JSON
    data (the clients' default content type, application/json) as the client's bytes,
    and a random id (``kurrentdbclient.NewEvent``'s default is ``uuid4()``), not the
    time-ordered id the store makes by default: the store writes those at the end of its
    event-id index without looking them up, for about a third of the writer's CPU per
    event that random ids take (SQLite engine alone, 100-event appends: 3.2 against 9.5
    to 12 us)."""
    return NewEvent("Placed", JsonText(b'{"i": %d}' % i), event_id=event_id,
                    content_type=JSON_CONTENT_TYPE)


def _random_ids() -> Iterator[uuid.UUID]:
    """As many uuid4 ids as the in-process measurements append, made before they start
    (the gRPC clients make theirs in the client process, whose CPU is not the server's)."""
    total = READ_STREAM_EVENTS + sum(
        n * max(1, APPENDS // n) + n * max(1, BATCHES // n) * BATCH for n in (1, 50))
    return iter([uuid.uuid4() for _ in range(total)])


async def _in_process_rates(root: Path) -> dict[str, float]:
    rates: dict[str, float] = {}
    cpu_used: dict[tuple[str, int], float] = {}
    ids = _random_ids()
    async with otp.node():
        await start_store(store_id="floor", data_dir=root)

        async def timed(n_clients: int, per_client: int,
                        work: Callable[[int, int], Awaitable[int]]) -> float:
            counts = [0] * n_clients

            async def one(c: int) -> None:
                for i in range(per_client):
                    done = await work(c, i)  # not "+= await": that reads the count first
                    counts[c] += done

            start, cpu = now(), time.process_time()
            async with trio.open_nursery() as nursery:
                for c in range(n_clients):
                    nursery.start_soon(one, c)
            events = sum(counts)
            cpu_used[work.__name__, n_clients] = (time.process_time() - cpu) / events
            return events / (now() - start)

        async def append_one(c: int, i: int) -> int:
            await gateway.append_events("floor", f"single-{c}",
                                        [_event(i, next(ids))])
            return 1

        async def append_batch(c: int, i: int) -> int:
            await gateway.append_events(
                "floor", f"batch-{c}",
                [_event(j, next(ids)) for j in range(BATCH)])
            return BATCH

        async def read_stream(c: int, i: int) -> int:
            return len(await gateway.get_events("floor", "to-read", 0, READ_STREAM_EVENTS))

        await gateway.append_events(  # the events the gRPC clients append
            "floor", "to-read",
            [_event(i, next(ids)) for i in range(READ_STREAM_EVENTS)])
        for n in (1, 50):
            rates[f"append1-{n}"] = await timed(n, max(1, APPENDS // n), append_one)
            rates[f"batch-{n}"] = await timed(n, max(1, BATCHES // n), append_batch)
            rates[f"read-{n}"] = await timed(n, max(1, READS // n), read_stream)
        await stop_store("floor")
    for (kind, n), cpu in cpu_used.items():
        rates[f"cpu-{kind}-{n}"] = cpu
    return rates


def run() -> list[Result]:
    """Measure both, each in a temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="exesdb-bench-grpc-"))
    logging.getLogger("exesdb").setLevel(logging.WARNING)
    try:
        floor = trio.run(_in_process_rates, root / "floor")
        proc, port = _start_server(root / "server")
        try:
            grpc = asyncio.run(_grpc_rates(port, proc.pid))
        finally:
            stop_server(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    targets = {"append1-50": ">= 20,000 events/s", "read-50": ">= 50,000 events/s"}
    labels = {"append1": "append 1 event", "batch": f"append {BATCH}-event batches",
              "read": f"read a {READ_STREAM_EVENTS}-event stream"}
    out = []
    for key in ("append1-1", "append1-50", "batch-1", "batch-50", "read-1", "read-50"):
        kind, n = key.split("-")
        out.append(Result(f"gRPC {labels[kind]}, {n} client(s)", grpc[key], "events/s",
                          floor[key], targets.get(key, "(floor: the in-process API)")))
    for work, label in (("append_one", "append 1 event"), ("read_stream", "read")):
        for side in ("client", "server"):
            out.append(Result(f"gRPC {label}, 50 clients: {side} CPU per event",
                              grpc[f"cpu-{side}-{work}-50"] * 1e6, "us"))
    out.append(Result("gRPC a call that does nothing (GetSupportedMethods), 50 clients: "
                      "server CPU per call", grpc["cpu-server-noop-50"] * 1e6, "us",
                      2 * floor["cpu-append_one-50"] * 1e6,
                      "(informational; floor: 2x the in-process API's CPU per single-event "
                      "append, the whole budget of one at the 2.0x target)"))
    for work, label, target in _CPU_TARGETS:
        out.append(Result(f"gRPC {label}, 50 clients: server CPU per event",
                          grpc[f"cpu-server-{work}-50"] * 1e6, "us",
                          floor[f"cpu-{work}-50"] * 1e6,
                          f"{target} (floor: the in-process API's CPU per event)"))
    return out


_CPU_TARGETS = (
    ("append_one", "append 1 event", "<= 2.0x"),
    ("append_batch", f"append {BATCH}-event batches", "<= 1.5x"),
    ("read_stream", f"read a {READ_STREAM_EVENTS}-event stream", "<= 4.0x"),
)
"""The server's CPU per event against the in-process API's, for 50 clients (issue 15)."""


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    from ._report import render_table

    print(render_table(run()))
