"""Spike (not a benchmark suite, not imported by the package): grpcio's C-core server in
front of the trio node, measured against exesdb's own gRPC transport in the same run.

``python -m benchmarks.spike_grpcio`` starts one server process holding a store with
exesdb's own listener *and* a ``grpc.aio`` server running on a thread of its own, whose
Append and Read calls run the very same handlers (:mod:`exesdb.grpc.streams_service`) on
the trio node: each call's requests are collected on the asyncio side, the handler is
started on trio through the node's :class:`trio.lowlevel.TrioToken` (what
``trio.from_thread`` uses), and each ``send``/``send_many`` hands its messages back to
the asyncio loop in one ``call_soon_threadsafe``. So both transports serve the same
work; only the HTTP/2 and gRPC layers differ.

It then drives each port in turn with 50 ``AsyncKurrentDBClient`` connections (single
event appends, and reads of a 1,000-event stream) and reports the server process's CPU
time per call (``/proc/<pid>/stat``), best of two rounds; and runs a few of
:mod:`benchmarks.bench_hostile`'s attacks against each port while one client keeps
appending and reading, reporting that client's p99 before and during the attack, when
(if ever) the attacker was cut off, and the server's RSS growth.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from ._procs import process_cpu, process_rss

__all__ = ["main"]

STORE = "spike"


# -- the server process ------------------------------------------------------------------


class _BridgedCall:
    """A call as the handler sees it (:class:`exesdb.grpc.rpc.Call`), on trio, for a
    call received by grpc.aio: requests arrive on a trio channel, responses go back to
    the asyncio loop with ``put``."""

    def __init__(self, path: str, requests: trio.MemoryReceiveChannel[Any],
                 metadata: Mapping[str, str], peer: str, put: Callable[[Any], None]) -> None:
        self._path = path
        self._requests = requests
        self._metadata = metadata
        self._peer = peer
        self._put = put

    @property
    def method(self) -> str:
        return self._path

    @property
    def metadata(self) -> Mapping[str, str]:
        return self._metadata

    @property
    def user(self) -> None:
        return None

    @property
    def peer(self) -> str:
        return self._peer

    async def receive(self) -> Any | None:
        try:
            return await self._requests.receive()
        except trio.EndOfChannel:
            return None

    async def receive_one(self) -> Any:
        from exesdb.grpc.rpc import RpcError, StatusCode

        message = await self.receive()
        if message is None:
            raise RpcError(StatusCode.INVALID_ARGUMENT, "missing request message")
        return message

    async def send(self, message: Any) -> None:
        self._put([message])

    async def send_many(self, messages: Any) -> None:
        self._put(list(messages))

    async def writable(self, at_most: int | None = None) -> int:
        return 1 << 20 if at_most is None else max(1, min(at_most, 1 << 20))

    def idle(self) -> None:
        pass


_END = object()


def _grpcio_server(services: Mapping[str, Any], token: trio.lowlevel.TrioToken,
                   spawn: trio.MemorySendChannel[Any], ready: Callable[[int], None]) -> None:
    """Run a grpc.aio server (this thread's own asyncio loop) serving ``services``'
    Append and Read by running their handlers on the trio node."""
    import grpc  # type: ignore[import-untyped]
    import grpc.aio  # type: ignore[import-untyped]

    from exesdb.grpc.rpc import RpcError, StatusCode

    codes = {code.value[0]: code for code in grpc.StatusCode}

    def serialize(message: Any) -> bytes:
        return message if type(message) is bytes else bytes(message.SerializeToString())

    async def run_handler(handler: Any, call: _BridgedCall,
                          put: Callable[[Any], None]) -> None:
        try:
            await handler(call)
        except RpcError as e:
            put(e)
            return
        except Exception as e:  # the bridge reports it as INTERNAL
            put(RpcError(StatusCode.INTERNAL, str(e)))
            return
        put(_END)

    def start(loop: asyncio.AbstractEventLoop, path: str, method: Any,
              context: Any) -> tuple[asyncio.Queue[Any], trio.MemorySendChannel[Any]]:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        send, receive = trio.open_memory_channel[Any](float("inf"))
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        call = _BridgedCall(path, receive, metadata, context.peer(), put)
        token.run_sync_soon(spawn.send_nowait, (run_handler, method.handler, call, put))
        return queue, send

    async def pump(requests: AsyncIterator[Any], send: trio.MemorySendChannel[Any]) -> None:
        async for request in requests:
            token.run_sync_soon(send.send_nowait, request)
        token.run_sync_soon(send.close)

    async def fail(context: Any, error: RpcError) -> None:
        if error.trailers:
            context.set_trailing_metadata(tuple(error.trailers.items()))
        await context.abort(codes[int(error.code)], error.message)

    async def responses(queue: asyncio.Queue[Any], context: Any) -> AsyncIterator[Any]:
        while True:
            item = await queue.get()
            if type(item) is list:
                for message in item:
                    yield message
            elif item is _END:
                return
            else:
                await fail(context, item)

    def handler_of(path: str, method: Any) -> Any:
        options = {"request_deserializer": method.request_type.FromString,
                   "response_serializer": serialize}
        if method.kind == "client_stream":
            async def client_stream(requests: AsyncIterator[Any], context: Any) -> Any:
                queue, send = start(asyncio.get_running_loop(), path, method, context)
                await pump(requests, send)
                (response,) = [m async for m in responses(queue, context)]
                return response
            return grpc.stream_unary_rpc_method_handler(client_stream, **options)
        if method.kind == "server_stream":
            async def server_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                queue, send = start(asyncio.get_running_loop(), path, method, context)
                token.run_sync_soon(send.send_nowait, request)
                token.run_sync_soon(send.close)
                async for message in responses(queue, context):
                    yield message
            return grpc.unary_stream_rpc_method_handler(server_stream, **options)

        async def bidi(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            queue, send = start(asyncio.get_running_loop(), path, method, context)
            pumping = asyncio.ensure_future(pump(requests, send))
            async for message in responses(queue, context):
                yield message
            pumping.cancel()
        return grpc.stream_stream_rpc_method_handler(bidi, **options)

    async def main() -> None:
        server = grpc.aio.server()
        handlers: dict[str, Any] = {}
        for path, method in services.items():
            handlers[path.rsplit("/", 1)[1]] = handler_of(path, method)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "event_store.client.streams.Streams", handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        ready(port)
        await server.wait_for_termination()

    asyncio.run(main())


async def _serve(data_dir: str) -> None:
    import otp
    from exesdb import start_store
    from exesdb.grpc import address
    from exesdb.grpc.streams_service import service
    from exesdb.systems.commits import commit_signal

    async with otp.node():
        await start_store(store_id=STORE, data_dir=data_dir, grpc_port=0)
        ours = address(STORE)[1]
        services = service(STORE, commit_signal(STORE))
        token = trio.lowlevel.current_trio_token()
        ported = trio.Event()
        box: list[int] = []

        def ready(port: int) -> None:
            box.append(port)
            token.run_sync_soon(ported.set)

        spawn, spawned = trio.open_memory_channel[Any](float("inf"))
        async with trio.open_nursery() as nursery:
            # Handlers start from this task, so they run in the node's context.
            threading.Thread(target=_grpcio_server, args=(services, token, spawn, ready),
                             daemon=True).start()
            await ported.wait()
            print(f"PORTS {ours} {box[0]}", flush=True)
            async for fn, *args in spawned:
                nursery.start_soon(fn, *args)


# -- the driver --------------------------------------------------------------------------


async def _fill(port: int) -> None:
    from kurrentdbclient import AsyncKurrentDBClient, NewEvent, StreamState

    client = AsyncKurrentDBClient(f"kurrentdb://127.0.0.1:{port}?Tls=false")
    await client.connect()
    await client.append_to_stream(
        "to-read", events=[NewEvent(type="T", data=b"{}") for _ in range(1000)],
        current_version=StreamState.ANY)
    await client.close()


async def _load(port: int, pid: int, clients: int = 50) -> dict[str, float]:
    from kurrentdbclient import AsyncKurrentDBClient, NewEvent, StreamState

    uri = f"kurrentdb://127.0.0.1:{port}?Tls=false"
    conns = [AsyncKurrentDBClient(uri) for _ in range(clients)]
    for conn in conns:
        await conn.connect()
    stream = "to-read"
    out: dict[str, float] = {}

    async def measure(name: str, per_client: int, work: Callable[[Any, int, int], Any]) -> None:
        async def one(c: int) -> None:
            for i in range(per_client):
                await work(conns[c], c, i)

        cpu, wall = process_cpu(pid), time.perf_counter()
        await asyncio.gather(*(one(c) for c in range(clients)))
        calls = per_client * clients
        out[f"{name} server CPU per call (us)"] = (process_cpu(pid) - cpu) / calls * 1e6
        out[f"{name} calls/s"] = calls / (time.perf_counter() - wall)

    async def append(client: Any, c: int, i: int) -> None:
        await client.append_to_stream(f"s-{port}-{c}", events=NewEvent(type="T", data=b"{}"),
                                      current_version=StreamState.ANY)

    async def read(client: Any, c: int, i: int) -> None:
        assert len(await client.get_stream(stream)) == 1000

    await measure("append 1 event", 40, append)
    await measure("read 1,000 events", 2, read)
    for conn in conns:
        await conn.close()
    return out


def _good_client(port: int, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

    client = KurrentDBClient(f"kurrentdb://127.0.0.1:{port}?Tls=false")
    try:
        i = 0
        while not stop.is_set():
            t = time.time()
            client.append_to_stream(f"good-{port}", events=NewEvent(type="G", data=b"{}"),
                                    current_version=StreamState.ANY, timeout=30)
            client.get_stream(f"good-{port}", backwards=True, limit=10, timeout=30)
            samples.append((t, time.time() - t))
            i += 1
    finally:
        client.close()


def _p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _attack(name: str, port: int, pid: int, seconds: float = 8.0) -> dict[str, Any]:
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    good = threading.Thread(target=_good_client, args=(port, stop, samples), daemon=True)
    good.start()
    time.sleep(3.0)
    rss_before = process_rss(pid)
    started = time.time()
    attacker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_hostile", "attack", name, str(port),
         str(seconds)], stdout=subprocess.PIPE, text=True)
    peak = rss_before
    while attacker.poll() is None:
        peak = max(peak, process_rss(pid))
        time.sleep(0.05)
    assert attacker.stdout is not None
    seen = json.loads(attacker.stdout.read() or "{}")
    ended = time.time()
    time.sleep(1.0)
    stop.set()
    good.join(60)
    before = [lat for t, lat in samples if t < started]
    during = [lat for t, lat in samples if started <= t < ended]
    cut = seen.get("goaway_at") or seen.get("closed_at")
    return {"attack": name, "p99 before (ms)": _p99(before) * 1e3,
            "p99 during (ms)": _p99(during) * 1e3, "calls during": len(during),
            "max during (ms)": max(during, default=float("nan")) * 1e3,
            "cut off after (s)": cut, "goaway code": seen.get("goaway_code"),
            "attack frames": seen.get("frames"), "RSS growth (MiB)": (peak - rss_before) / 2**20}


def main() -> int:
    """Start the server, measure CPU per call on both transports, then the attacks."""
    if sys.argv[1:2] == ["serve"]:
        trio.run(_serve, sys.argv[2])
        return 0
    root = Path(tempfile.mkdtemp(prefix="exesdb-spike-"))
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.spike_grpcio", "serve",
                               str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        ours, theirs = map(int, line.split()[1:3])
        print(f"server pid {server.pid}: exesdb transport on {ours}, grpcio on {theirs}")
        asyncio.run(_fill(ours))
        figures: dict[str, dict[str, float]] = {"exesdb": {}, "grpcio": {}}
        for _round in range(2):
            for label, port in (("exesdb", ours), ("grpcio", theirs)):
                for key, value in asyncio.run(_load(port, server.pid)).items():
                    previous = figures[label].get(key)
                    better = min if "CPU" in key else max
                    figures[label][key] = value if previous is None else better(previous, value)
        for key in figures["exesdb"]:
            print(f"{key:40s} exesdb {figures['exesdb'][key]:10.1f}   "
                  f"grpcio {figures['grpcio'][key]:10.1f}")
        attacks = [a for a in sys.argv[1:] if a != "cpu"] if sys.argv[1:] else [
            "rapid-reset", "rapid-reset-no-data", "ping-flood", "ping-flood-no-read",
            "continuation-flood"]
        for name in attacks:
            for label, port in (("exesdb", ours), ("grpcio", theirs)):
                print(label, json.dumps(_attack(name, port, server.pid)), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
