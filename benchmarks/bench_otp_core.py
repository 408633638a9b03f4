"""otp core: gen_server call round trip, cast throughput, spawn-and-exit, and the trio floor.

The floor is bare trio doing the same work as a call: one task asks another over memory
channels and waits for the answer. It is measured in the same run and process as the
figures it is compared with, so the ratio holds on any machine.
"""

from __future__ import annotations

from typing import Any

import trio

import otp
from otp import gen_server

from ._report import Result, now

__all__ = ["run"]

CALLS = 20_000
CASTS = 100_000
SPAWNS = 10_000
REPEATS = 5


class _Echo(otp.GenServer):
    """Answers a call with its request; counts casts."""

    async def init(self) -> None:
        self.casts = 0

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if request == "casts":
            return self.casts
        return request

    async def handle_cast(self, msg: Any) -> None:
        self.casts += 1


async def _trio_round_trip_us(n: int) -> float:
    """µs per round trip: a task sends a request on one channel, waits for the answer.

    One-slot channels: a little faster than unbuffered ones, so the stricter floor.
    """
    req_send, req_recv = trio.open_memory_channel[int](1)
    resp_send, resp_recv = trio.open_memory_channel[int](1)

    async def server() -> None:
        async for request in req_recv:
            await resp_send.send(request)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = now()
        for i in range(n):
            await req_send.send(i)
            await resp_recv.receive()
        elapsed = now() - start
        nursery.cancel_scope.cancel()
    return elapsed / n * 1e6


async def _call_us(pid: otp.Pid, n: int) -> float:
    """µs per gen_server call, with the default 5 s timeout armed."""
    call = gen_server.call
    start = now()
    for i in range(n):
        await call(pid, i)
    return (now() - start) / n * 1e6


async def _casts_per_s(pid: otp.Pid, n: int) -> float:
    """Casts per second: n casts, then one call that proves they were all handled."""
    cast = gen_server.cast
    before = await gen_server.call(pid, "casts")
    start = now()
    for i in range(n):
        cast(pid, i)
    handled = await gen_server.call(pid, "casts")
    elapsed = now() - start
    if handled - before != n:
        raise AssertionError(f"{handled - before} of {n} casts handled")
    return n / elapsed


async def _noop() -> None:
    return None


async def _spawn_exit_us(n: int) -> float:
    """µs per process spawned, run to its end and seen to exit (its DOWN received)."""
    spawn_monitor = otp.spawn_monitor
    receive = otp.receive
    start = now()
    for _ in range(n):
        spawn_monitor(_noop)
    for _ in range(n):
        await receive()
    return (now() - start) / n * 1e6


async def _measure() -> list[Result]:
    floors: list[float] = []
    calls: list[float] = []
    casts: list[float] = []
    spawns: list[float] = []
    pid = await gen_server.start_link(_Echo)
    assert pid is not None
    await _call_us(pid, 1000)  # warm up
    for _ in range(REPEATS):
        # interleaved, so a disturbance of the machine hits every figure alike
        floors.append(await _trio_round_trip_us(CALLS))
        calls.append(await _call_us(pid, CALLS))
        casts.append(await _casts_per_s(pid, CASTS))
        spawns.append(await _spawn_exit_us(SPAWNS))
    await gen_server.stop(pid)
    floor = min(floors)
    return [
        Result("trio round trip (floor)", floor, "µs"),
        Result("gen_server call", min(calls), "µs", floor=floor, target="<= 1.3x floor"),
        Result("gen_server cast", max(casts), "msgs/s", target="> 300,000/s"),
        Result("spawn and exit", min(spawns), "µs", floor=floor),
    ]


def run() -> list[Result]:
    """Measure every figure (the best of a few repeats) in one node."""
    return otp.run(_measure)
