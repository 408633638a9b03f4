"""otp supervision: restart latency, memory per idle gen_server with 100,000 alive, and
the cost of observing such a node.

Restart latency is the time from a child's kill until its replacement answers a call
through the same name; its floor, measured in the same run, is starting a fresh server
and calling it once (the part of a restart no supervisor can avoid). Memory is measured
with tracemalloc over 100,000 idle servers, and as resident memory (RSS) growth.
``otp.observer.snapshot`` of a node of 100,000 processes (100 dynamic supervisors of
1,000 servers each, under one supervisor) is timed per process, in CPU time (the figure
a poller pays, whatever else the machine runs); its floor is ``otp.process_info`` of
every process, which each entry of a snapshot holds.
"""

from __future__ import annotations

import gc
import logging
import os
import time
import tracemalloc
from typing import Any

import trio

import otp
from otp import dynamic_supervisor, gen_server, observer, supervisor

from ._report import Result, now

__all__ = ["run"]

RESTARTS = 2_000
IDLE = 100_000
OBSERVED_SUPERVISORS = 100
OBSERVED_PER_SUPERVISOR = 1_000


class _Worker(otp.GenServer):
    """Answers every call with "ok"."""

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        return "ok"


class _Idle(otp.GenServer):
    """Does nothing: the cost of a process at rest."""


async def _restart_latency_us(n: int) -> float:
    sup = await supervisor.start_link(
        [_Worker.child_spec(name="bench.worker")], intensity=10 * n, period=3600
    )
    assert sup is not None
    total = 0.0
    for _ in range(n):
        pid = otp.whereis("bench.worker")
        assert pid is not None
        start = now()
        otp.exit(pid, otp.KILL)
        while True:
            try:
                await gen_server.call("bench.worker", "ping")
                break
            except (otp.NoProc, otp.ServerExited):
                await trio.lowlevel.checkpoint()
        total += now() - start
    await supervisor.stop(sup)
    return total / n * 1e6


async def _start_and_call_us(n: int) -> float:
    start = now()
    for _ in range(n):
        pid = await gen_server.start(_Worker)
        assert pid is not None
        await gen_server.call(pid, "ping")
    return (now() - start) / n * 1e6


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _idle_memory(n: int, traced: bool) -> float:
    """Bytes per idle server: tracemalloc's count, or RSS growth (without tracemalloc,
    whose own bookkeeping would inflate RSS)."""
    gc.collect()
    if traced:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss_bytes()
    pids = [await gen_server.start(_Idle) for _ in range(n)]
    await trio.lowlevel.checkpoint()
    gc.collect()
    if traced:
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    else:
        used = _rss_bytes() - before
    assert all(p is not None and otp.is_alive(p) for p in pids)
    return used / n


async def _snapshot_us_per_process() -> tuple[float, float, int]:
    """CPU µs per process of a whole-node snapshot, and of process_info of every process
    (the floor), best of 3 each; and how many processes the node has."""
    dynamic = [otp.ChildSpec(i, dynamic_supervisor.start_link, type="supervisor")
               for i in range(OBSERVED_SUPERVISORS)]
    top = await supervisor.start_link(dynamic)
    assert top is not None
    for _, sup, _ in await supervisor.which_children(top):
        assert sup is not None
        for _ in range(OBSERVED_PER_SUPERVISOR):
            await dynamic_supervisor.start_child(sup, _Idle.child_spec())
    processes = otp.lowlevel.current_node().processes
    count = len(processes)
    snapshots: list[float] = []
    floors: list[float] = []
    for _ in range(3):
        start = time.process_time()
        tree = observer.snapshot()
        snapshots.append(time.process_time() - start)
        start = time.process_time()
        infos = [otp.process_info(proc.pid) for proc in list(processes.values())]
        floors.append(time.process_time() - start)
        assert sum(1 for _ in tree.walk()) == count + 1 and len(infos) == count
        del tree, infos
    await supervisor.stop(top)
    return min(snapshots) / count * 1e6, min(floors) / count * 1e6, count


def run() -> list[Result]:
    """Measure restart latency (best of 3), memory per idle process and the cost of a
    snapshot per process."""

    async def restarts() -> tuple[float, float]:
        latency = min([await _restart_latency_us(RESTARTS) for _ in range(3)])
        floor = min([await _start_and_call_us(RESTARTS) for _ in range(3)])
        return latency, floor

    async def traced_memory() -> float:
        return await _idle_memory(IDLE, traced=True)

    async def rss_memory() -> float:
        return await _idle_memory(IDLE, traced=False)

    sup_log = logging.getLogger("otp.supervisor")
    level = sup_log.level
    sup_log.setLevel(logging.CRITICAL)  # thousands of deliberate restarts
    try:
        latency, floor = otp.run(restarts)
    finally:
        sup_log.setLevel(level)
    traced = otp.run(traced_memory)
    rss = otp.run(rss_memory)
    snapshot, snapshot_floor, observed = otp.run(_snapshot_us_per_process)
    return [
        Result("supervisor restart: kill -> replacement answers", latency, "us", floor,
               target="< 200 us (floor: start a server and call it)"),
        Result("idle gen_server memory (tracemalloc)", traced, "bytes/process",
               target="< 4096 bytes/process, 100,000 alive"),
        Result("idle gen_server memory (RSS growth)", rss, "bytes/process",
               target="< 4096 bytes/process, 100,000 alive"),
        Result(f"observer.snapshot, {observed:,} processes (CPU time)", snapshot,
               "µs/process", snapshot_floor,
               target="< 10 µs/process: 100,000 processes polled every second "
                      "(floor: process_info of each)"),
    ]
