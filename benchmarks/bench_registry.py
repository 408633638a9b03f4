"""Registry and pub/sub costs: lookups, via-name calls against pid calls, broadcasts.

Every figure is measured beside its floor in the same node and run:

* ``registry.lookup`` of a unique key, by the registry's name (floor: the same lookup by
  the registry's pid, which skips the name);
* ``otp.whereis`` of a via name (floor: ``otp.whereis`` of a local name);
* a ``gen_server.call`` through a via name (floor: the same call by pid; the issue's
  target is at most 1.15x);
* ``pubsub.broadcast`` per subscriber (floor: ``otp.send`` to each subscriber's pid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
import trio.testing

import otp
from otp import gen_server, pubsub, registry

from ._report import Result, now

__all__ = ["run"]

LOOKUPS = 200_000
CALLS = 10_000
SUBSCRIBERS = 1_000
BROADCASTS = 50
REPEATS = 5


class _Echo(gen_server.GenServer):
    async def handle_call(self, request: Any, from_: Any) -> Any:
        return request


def _per_op_ns(n: int, loop: Callable[[int], None]) -> float:
    start = now()
    loop(n)
    return (now() - start) / n * 1e9


def _best_pair(
    repeats: int, measure: Callable[[], float], floor: Callable[[], float]
) -> tuple[float, float]:
    """Best of ``repeats`` for each, measured alternately so both see the same machine."""
    values: list[float] = []
    floors: list[float] = []
    for _ in range(repeats):
        floors.append(floor())
        values.append(measure())
    return min(values), min(floors)


async def _bench() -> list[Result]:
    reg = await registry.start_link(keys="unique", name="bench_registry")
    registry.register("bench_registry", "key", 1)

    def lookup_by_name(n: int) -> None:
        lookup = registry.lookup
        for _ in range(n):
            lookup("bench_registry", "key")

    def lookup_by_pid(n: int) -> None:
        lookup = registry.lookup
        for _ in range(n):
            lookup(reg, "key")

    lookup_ns, lookup_floor = _best_pair(
        REPEATS,
        lambda: _per_op_ns(LOOKUPS, lookup_by_name),
        lambda: _per_op_ns(LOOKUPS, lookup_by_pid),
    )

    name = registry.via("bench_registry", "echo")
    server = await gen_server.start_link(_Echo, name=name)
    assert server is not None
    local = await gen_server.start_link(_Echo, name="bench_local")
    assert local is not None

    def whereis_via(n: int) -> None:
        whereis = otp.whereis
        for _ in range(n):
            whereis(name)

    def whereis_local(n: int) -> None:
        whereis = otp.whereis
        for _ in range(n):
            whereis("bench_local")

    whereis_ns, whereis_floor = _best_pair(
        REPEATS,
        lambda: _per_op_ns(LOOKUPS, whereis_via),
        lambda: _per_op_ns(LOOKUPS, whereis_local),
    )

    async def calls(target: Any) -> float:
        call = gen_server.call
        start = now()
        for i in range(CALLS):
            await call(target, i)
        return (now() - start) / CALLS * 1e6

    via_us: list[float] = []
    pid_us: list[float] = []
    await calls(server)  # warm up
    for _ in range(REPEATS):
        pid_us.append(await calls(server))
        via_us.append(await calls(name))

    ps = await pubsub.start_link("bench_pubsub")
    me = otp.self()

    async def sink() -> None:
        pubsub.subscribe(ps, "topic")  # subscribes the calling process: the sink
        otp.send(me, "subscribed")
        while True:
            await otp.receive()

    sinks = [otp.spawn(sink) for _ in range(SUBSCRIBERS)]
    for _ in sinks:
        await otp.receive(match=lambda m: m == "subscribed")

    def broadcast(n: int) -> None:
        for i in range(n):
            pubsub.broadcast(ps, "topic", i)

    def send_each(n: int) -> None:
        send = otp.send
        for i in range(n):
            for pid in sinks:
                send(pid, i)

    broadcast_ns: list[float] = []
    send_ns: list[float] = []
    for _ in range(REPEATS):
        send_ns.append(_per_op_ns(BROADCASTS, send_each) / SUBSCRIBERS)
        broadcast_ns.append(_per_op_ns(BROADCASTS, broadcast) / SUBSCRIBERS)
        await trio.testing.wait_all_tasks_blocked()  # the sinks drain their mailboxes

    return [
        Result("registry.lookup, unique key, by name", lookup_ns, "ns",
               floor=lookup_floor, target="floor: the same lookup by registry pid"),
        Result("otp.whereis(via name)", whereis_ns, "ns", floor=whereis_floor,
               target="floor: otp.whereis(local name)"),
        Result("gen_server.call through a via name", min(via_us), "us",
               floor=min(pid_us), target="<= 1.15x (floor: call by pid)"),
        Result(f"pubsub.broadcast per subscriber ({SUBSCRIBERS} subs)",
               min(broadcast_ns), "ns", floor=min(send_ns),
               target="floor: otp.send to each pid"),
    ]


def run() -> list[Result]:
    """Measure the registry and pub/sub figures in a fresh node; return them."""
    return otp.run(_bench)
