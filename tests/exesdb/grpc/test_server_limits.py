"""The gRPC server's (exesdb.grpc.server) defences against dead, slow and hostile
clients: handshake timeout, PING keepalive, login throttling, per-connection buffer
budget, bounded ``send_many`` writes and garbage on the socket.

Each test starts :func:`serve` on a free port with a small test service
(``/test.Limits/*``; messages are ``shared_pb2.BadRequest`` with one string field), and
drives it with raw sockets, a bare h2 client (for what grpcio never does: stop answering
PINGs, stall half-way through a message) or grpcio in a worker thread. Time bounds are
functional (generous ``fail_after``), never measurements of speed.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
import trio
import trio.testing

import exesdb.logins as auth_cache
from exesdb.grpc._connection import SEND_MANY_CHUNK, STREAM_WINDOW, ServerCall
from exesdb.grpc.protos import shared_pb2
from exesdb.grpc.rpc import Call, Method, StatusCode, User
from exesdb.grpc.server import ServerConfig, TlsFiles, serve

Msg = shared_pb2.BadRequest

_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1)]
_MiB = 1 << 20


class Probe:
    """What the test service's handlers report to the test."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()


def _services(probe: Probe) -> dict[str, Method]:
    async def size(call: Call) -> None:
        request = await call.receive_one()
        await call.send(Msg(message=str(len(request.message))))

    async def whoami(call: Call) -> None:
        await call.receive_one()
        await call.send(Msg(message=call.user.name if call.user else "<nobody>"))

    async def peer(call: Call) -> None:
        await call.receive_one()
        await call.send(Msg(message=call.peer))

    async def later(call: Call) -> None:
        # request "SECONDS": answers after that long, sending nothing meanwhile
        seconds = float((await call.receive_one()).message)
        await trio.sleep(seconds)
        await call.send(Msg(message="later"))

    async def watch(call: Call) -> None:
        # a subscription: one message, then nothing until cancelled
        await call.receive_one()
        await call.send(Msg(message="first"))
        probe.started.set()
        try:
            await trio.sleep_forever()
        finally:
            probe.cancelled.set()

    async def batch(call: Call) -> None:
        # request "COUNT SIZE": COUNT numbered messages of about SIZE characters
        count, size = map(int, (await call.receive_one()).message.split())
        await call.send_many(Msg(message=f"{i}:" + "b" * size) for i in range(count))

    def method(handler: Callable[[Call], Any], kind: Any = "unary") -> Method:
        return Method(Msg, Msg, kind, handler)

    return {
        "/test.Limits/Size": method(size),
        "/test.Limits/WhoAmI": method(whoami),
        "/test.Limits/Peer": method(peer),
        "/test.Limits/Later": method(later),
        "/test.Limits/Watch": method(watch, "server_stream"),
        "/test.Limits/Batch": method(batch, "server_stream"),
    }


@pytest.fixture
def probe() -> Probe:
    return Probe()


async def _start(nursery: trio.Nursery, probe: Probe, **config: Any) -> int:
    _host, port = await nursery.start(serve, _services(probe), ServerConfig(port=0, **config))
    assert isinstance(port, int)
    return port


def _channel(port: int) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=_OPTIONS)


def _unary(channel: grpc.Channel, name: str) -> Any:
    return channel.unary_unary(
        f"/test.Limits/{name}",
        request_serializer=Msg.SerializeToString,
        response_deserializer=Msg.FromString,
    )


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


def _basic(username: str, password: str) -> tuple[bytes, bytes]:
    token = base64.b64encode(f"{username}:{password}".encode())
    return (b"authorization", b"Basic " + token)


def _framed(message: Msg) -> bytes:
    data = message.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data


async def _read_until_closed(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = bytearray()
    with contextlib.suppress(trio.BrokenResourceError):
        while data := await stream.receive_some(65536):
            received += data
    return bytes(received)


class H2Client:
    """A bare HTTP/2 client (h2 on a trio socket) that keeps every stream's outcome.

    It answers PINGs and takes window updates only while something :meth:`pump` s."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.fields: dict[int, dict[bytes, bytes]] = {}
        self.data: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.window_updates: list[int] = []
        self.pings = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, port: int, source: str | None = None) -> AsyncIterator[H2Client]:
        """Connect to 127.0.0.1 (from the loopback address ``source``, when given)."""
        async with await trio.open_tcp_stream("127.0.0.1", port, local_address=source) as stream:
            client = cls(stream)
            await client.flush()
            yield client

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.stream.send_all(data)

    def feed(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            sid = getattr(event, "stream_id", None)
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                self.fields.setdefault(event.stream_id, {}).update(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.data[event.stream_id] = self.data.get(event.stream_id, b"") + event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated) and sid:
                self.window_updates.append(sid)
            elif isinstance(event, h2.events.PingReceived):
                self.pings += 1

    async def pump(self) -> None:
        """Read once from the server, handle what came, answer."""
        data = await self.stream.receive_some(65536)
        assert data, "connection closed"
        self.feed(data)
        await self.flush()

    async def start(
        self, path: str, extra: list[tuple[bytes, bytes]] | None = None, end_stream: bool = False
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *(extra or []),
        ]
        self.h2.send_headers(sid, headers, end_stream=end_stream)
        await self.flush()
        return sid

    async def send(self, sid: int, data: bytes, end_stream: bool = False) -> None:
        """Send ``data`` on ``sid`` as flow control allows, pumping for window."""
        pos = 0
        while pos < len(data):
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if window <= 0:
                await self.pump()
                continue
            self.h2.send_data(sid, data[pos : pos + window])
            pos += window
            await self.flush()
        if end_stream:
            self.h2.end_stream(sid)
            await self.flush()

    async def call(
        self, path: str, message: Msg, extra: list[tuple[bytes, bytes]] | None = None
    ) -> int:
        sid = await self.start(path, extra)
        await self.send(sid, _framed(message), end_stream=True)
        return sid

    async def outcome(self, sid: int) -> dict[bytes, bytes]:
        """Every header and trailer of stream ``sid``, once it has ended."""
        while sid not in self.ended:
            await self.pump()
        return self.fields.get(sid, {})


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize("field", ["keepalive_interval", "keepalive_timeout", "handshake_timeout"])
@pytest.mark.parametrize("value", [0, -1.5])
def test_timeouts_must_be_positive_and_the_error_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        options: dict[str, Any] = {field: value}
        ServerConfig(**options)


def test_the_connection_buffer_must_be_positive_and_the_error_names_it() -> None:
    with pytest.raises(ValueError, match="max_connection_buffer"):
        ServerConfig(max_connection_buffer=0)


def test_the_defaults_detect_dead_peers_and_bound_memory() -> None:
    config = ServerConfig()
    assert config.keepalive_interval == 30.0
    assert config.keepalive_timeout == 20.0
    assert config.handshake_timeout == 10.0
    assert config.max_connection_buffer == 64 * _MiB


# -- handshake ------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b"PRI * HTTP/2.0\r\n"], ids=["nothing", "half-preface"])
async def test_a_connection_without_the_http2_preface_is_closed_after_the_handshake_timeout(
    nursery: trio.Nursery, probe: Probe, sent: bytes
) -> None:
    port = await _start(nursery, probe, handshake_timeout=0.2)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        if sent:
            await stream.send_all(sent)
        with trio.fail_after(10):
            await _read_until_closed(stream)  # the server's SETTINGS, then the end
    async with H2Client.connect(port) as client:  # the server keeps serving
        outcome = await client.outcome(await client.call("/test.Limits/Size", Msg(message="ab")))
        assert outcome[b"grpc-status"] == b"0"


async def test_a_tls_connection_without_a_tls_handshake_is_closed_after_the_handshake_timeout(
    nursery: trio.Nursery, probe: Probe, certificates: tuple[bytes, TlsFiles]
) -> None:
    port = await _start(nursery, probe, tls=certificates[1], handshake_timeout=0.2)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        with trio.fail_after(10):
            assert await _read_until_closed(stream) == b""


async def test_a_tls_connection_without_the_http2_preface_is_closed_after_the_handshake_timeout(
    nursery: trio.Nursery, probe: Probe, certificates: tuple[bytes, TlsFiles]
) -> None:
    root, files = certificates
    port = await _start(nursery, probe, tls=files, handshake_timeout=0.5)
    context = ssl.create_default_context(cadata=root.decode())
    context.set_alpn_protocols(["h2"])
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    async with trio.SSLStream(tcp, context, server_hostname="127.0.0.1") as stream:
        await stream.do_handshake()
        with trio.fail_after(10):
            with contextlib.suppress(trio.BrokenResourceError, ssl.SSLError):
                await _read_until_closed(stream)


# -- garbage ----------------------------------------------------------------------------


async def test_non_http2_bytes_close_the_connection_at_once_not_at_the_handshake_timeout(
    nursery: trio.Nursery, probe: Probe
) -> None:
    port = await _start(nursery, probe, handshake_timeout=3600, keepalive_interval=3600)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 64)
        with trio.fail_after(30):
            await _read_until_closed(stream)


async def test_garbage_after_the_preface_closes_the_connection_at_once(
    nursery: trio.Nursery, probe: Probe
) -> None:
    port = await _start(nursery, probe, handshake_timeout=3600, keepalive_interval=3600)
    async with H2Client.connect(port) as client:
        await client.stream.send_all(b"\xff" * 64)  # a frame of an unknown type, too long
        with trio.fail_after(30):
            await _read_until_closed(client.stream)


async def test_plain_text_to_a_tls_port_closes_the_connection_at_once(
    nursery: trio.Nursery, probe: Probe, certificates: tuple[bytes, TlsFiles]
) -> None:
    port = await _start(nursery, probe, tls=certificates[1], handshake_timeout=3600)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 64)
        with trio.fail_after(30):
            await _read_until_closed(stream)


# -- keepalive --------------------------------------------------------------------------


async def test_a_client_that_stops_answering_pings_is_closed_and_its_calls_cancelled(
    nursery: trio.Nursery, probe: Probe
) -> None:
    port = await _start(nursery, probe, keepalive_interval=0.2, keepalive_timeout=0.3)
    async with H2Client.connect(port) as client:
        sid = await client.call("/test.Limits/Watch", Msg())
        with trio.fail_after(10):
            while not client.data.get(sid):
                await client.pump()
        # From here on the client reads nothing and answers nothing.
        with trio.fail_after(30):
            await probe.cancelled.wait()
            rest = await _read_until_closed(client.stream)
        client.feed(rest)
        assert client.pings >= 1  # the server asked before giving up


async def test_a_client_that_answers_pings_keeps_its_quiet_connection_and_calls(
    nursery: trio.Nursery, probe: Probe
) -> None:
    port = await _start(nursery, probe, keepalive_interval=0.05, keepalive_timeout=5)
    async with H2Client.connect(port) as client:
        sid = await client.call("/test.Limits/Later", Msg(message="1.0"))  # 20 intervals
        with trio.fail_after(30):
            outcome = await client.outcome(sid)
        assert outcome[b"grpc-status"] == b"0"
        assert client.pings >= 2


async def test_a_grpcio_client_idle_longer_than_the_keepalive_interval_keeps_working(
    nursery: trio.Nursery, probe: Probe
) -> None:
    port = await _start(nursery, probe, keepalive_interval=0.05, keepalive_timeout=5)

    def client() -> tuple[str, str, str]:
        with _channel(port) as channel:
            before = _unary(channel, "Peer")(Msg(), timeout=10).message
            later = _unary(channel, "Later")(Msg(message="0.5"), timeout=10).message
            time.sleep(0.5)  # an idle channel: the server PINGs it, grpcio answers
            after = _unary(channel, "Peer")(Msg(), timeout=10).message
            return before, later, after

    before, later, after = await _in_thread(client)
    assert later == "later"
    assert after == before  # the same connection all along


# -- logins -----------------------------------------------------------------------------


async def test_failed_logins_hash_on_their_own_few_threads_never_on_trios_default_ones(
    nursery: trio.Nursery, probe: Probe
) -> None:
    gate = threading.Event()
    lock = threading.Lock()
    two_inside = trio.Event()
    inside = entered = most_inside = 0

    def authenticator(username: str, password: str) -> User | None:
        nonlocal inside, entered, most_inside
        with lock:
            inside += 1
            entered += 1
            most_inside = max(most_inside, inside)
            if entered == 2:
                trio.from_thread.run_sync(two_inside.set)
        try:
            gate.wait()  # a very slow hash
            return User(username) if password == "changeit" else None
        finally:
            with lock:
                inside -= 1

    port = await _start(nursery, probe, authenticator=authenticator)
    outcomes: list[dict[bytes, bytes]] = []

    async def wrong_login(i: int) -> None:
        # (logins of one address or one user name are checked one at a time)
        async with H2Client.connect(port, source=f"127.0.1.{i + 1}") as client:
            sid = await client.call("/test.Limits/WhoAmI", Msg(), [_basic(f"u{i}", "wrong")])
            outcomes.append(await client.outcome(sid))

    try:
        async with trio.open_nursery() as clients:
            for i in range(20):
                clients.start_soon(wrong_login, i)
            with trio.fail_after(10):
                await two_inside.wait()
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert trio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
            gate.set()
    finally:
        gate.set()
    assert entered == 20
    assert most_inside <= auth_cache.HASHING_THREADS
    assert [o[b"grpc-status"] for o in outcomes] == [b"%d" % StatusCode.UNAUTHENTICATED] * 20


async def test_a_flood_of_wrong_passwords_does_not_keep_another_users_first_login_out(
    nursery: trio.Nursery, probe: Probe
) -> None:
    def authenticator(username: str, password: str) -> User | None:
        time.sleep(0.02)  # hashing
        return User(username) if password == "changeit" else None

    port = await _start(nursery, probe, authenticator=authenticator)
    flooding = trio.Event()

    async def flood() -> None:
        async with H2Client.connect(port, source="127.0.0.2") as client:
            for _ in range(10):
                await client.call("/test.Limits/WhoAmI", Msg(), [_basic("admin", "wrong")])
            flooding.set()
            with contextlib.suppress(AssertionError, trio.BrokenResourceError):
                while True:
                    await client.pump()

    async with trio.open_nursery() as floods:
        for _ in range(20):  # 200 wrong logins on 20 connections
            floods.start_soon(flood)
        await flooding.wait()
        async with H2Client.connect(port) as client:
            with trio.fail_after(60):
                right = [_basic("alice", "changeit")]
                first = await client.outcome(await client.call("/test.Limits/WhoAmI", Msg(), right))
                again = await client.outcome(await client.call("/test.Limits/WhoAmI", Msg(), right))
        floods.cancel_scope.cancel()
    assert first[b"grpc-status"] == again[b"grpc-status"] == b"0"


async def test_a_connections_failed_logins_are_checked_one_at_a_time_with_growing_pauses(
    nursery: trio.Nursery, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_cache, "BACKOFF_MIN", 0.05)
    monkeypatch.setattr(auth_cache, "BACKOFF_MAX", 0.2)
    starts: list[float] = []

    def authenticator(username: str, password: str) -> User | None:
        starts.append(time.monotonic())
        return None

    port = await _start(nursery, probe, authenticator=authenticator)
    async with H2Client.connect(port) as client:
        wrong = [_basic("admin", "wrong")]
        sids = [await client.call("/test.Limits/WhoAmI", Msg(), wrong) for _ in range(5)]
        with trio.fail_after(30):
            for sid in sids:
                assert (await client.outcome(sid))[b"grpc-status"] == b"%d" % (
                    StatusCode.UNAUTHENTICATED
                )
    pauses = [b - a for a, b in itertools.pairwise(starts)]
    assert len(pauses) == 4
    for pause, backoff in zip(pauses, [0.05, 0.1, 0.2, 0.2], strict=True):
        assert pause >= backoff - 0.005


async def test_a_cached_right_password_does_not_wait_for_the_connections_backoff(
    nursery: trio.Nursery, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_cache, "BACKOFF_MIN", 3600.0)
    monkeypatch.setattr(auth_cache, "BACKOFF_MAX", 3600.0)

    def authenticator(username: str, password: str) -> User | None:
        return User(username) if password == "changeit" else None

    port = await _start(nursery, probe, authenticator=authenticator)
    right, wrong = [_basic("admin", "changeit")], [_basic("admin", "wrong")]
    async with H2Client.connect(port) as client:
        with trio.fail_after(30):
            await client.outcome(await client.call("/test.Limits/WhoAmI", Msg(), right))
            await client.outcome(await client.call("/test.Limits/WhoAmI", Msg(), wrong))
            held = await client.call("/test.Limits/WhoAmI", Msg(), wrong)  # an hour's wait
            sid = await client.call("/test.Limits/WhoAmI", Msg(), right)
            outcome = await client.outcome(sid)
        assert outcome[b"grpc-status"] == b"0"
        assert client.data[sid] == _framed(Msg(message="admin"))
        assert held not in client.ended


# -- the connection's buffer budget -------------------------------------------------------


async def test_a_message_larger_than_the_connection_buffer_is_resource_exhausted(
    nursery: trio.Nursery, probe: Probe
) -> None:
    port = await _start(nursery, probe, max_connection_buffer=2 * _MiB)

    def client() -> tuple[grpc.RpcError, str]:
        with _channel(port) as channel:
            size = _unary(channel, "Size")
            with pytest.raises(grpc.RpcError) as info:
                size(Msg(message="x" * (3 * _MiB)), timeout=30)
            return info.value, size(Msg(message="y" * (3 * _MiB // 2)), timeout=30).message

    error, answer = await _in_thread(client)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "connection's buffer" in error.details()
    assert answer == str(3 * _MiB // 2)


async def test_concurrent_messages_beyond_the_connection_buffer_wait_their_turn_and_succeed(
    nursery: trio.Nursery, probe: Probe
) -> None:
    port = await _start(nursery, probe, max_connection_buffer=2 * _MiB)
    length = 3 * _MiB // 2  # over a stream window: each needs the budget, one at a time

    def client() -> list[str]:
        with _channel(port) as channel:
            size = _unary(channel, "Size")
            futures = [size.future(Msg(message="z" * length), timeout=60) for _ in range(12)]
            return [future.result().message for future in futures]

    assert await _in_thread(client) == [str(length)] * 12


async def test_a_stalled_message_holds_back_only_its_own_connections_big_messages(
    nursery: trio.Nursery, probe: Probe
) -> None:
    port = await _start(nursery, probe, max_connection_buffer=2 * _MiB)
    big = _framed(Msg(message="s" * (3 * _MiB // 2)))
    async with H2Client.connect(port) as client:
        with trio.fail_after(30):
            stalled = await client.start("/test.Limits/Size")
            await client.send(stalled, big[: 600 << 10])  # and never the rest
            while stalled not in client.window_updates:  # the server let the rest in
                await client.pump()
            waiting = await client.start("/test.Limits/Size")
            await client.send(waiting, big[:STREAM_WINDOW])  # a stream window: all it may
            # Another connection's big message goes through meanwhile.
            async with H2Client.connect(port) as other:
                sid = await other.call("/test.Limits/Size", Msg(message="o" * (3 * _MiB // 2)))
                assert (await other.outcome(sid))[b"grpc-status"] == b"0"
        # The waiting stream is not let in while the stalled one holds the budget...
        with trio.move_on_after(0.3):
            while True:
                await client.pump()
        assert waiting not in client.window_updates
        assert waiting not in client.ended
        # ... and is, once it is gone: delayed, not failed.
        client.h2.reset_stream(stalled)
        await client.flush()
        with trio.fail_after(30):
            await client.send(waiting, big[STREAM_WINDOW:], end_stream=True)
            outcome = await client.outcome(waiting)
        assert outcome[b"grpc-status"] == b"0"
        assert client.data[waiting] == _framed(Msg(message=str(3 * _MiB // 2)))


# -- send_many --------------------------------------------------------------------------


async def test_send_many_writes_at_most_about_a_chunk_at_a_time_in_order(
    nursery: trio.Nursery, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    send_bytes = ServerCall._send_bytes

    async def recording(self: ServerCall, frame: bytes) -> None:
        writes.append(len(frame))
        await send_bytes(self, frame)

    monkeypatch.setattr(ServerCall, "_send_bytes", recording)
    port = await _start(nursery, probe)
    count, size = 3000, 1000  # about 3 MB

    def client() -> list[str]:
        with _channel(port) as channel:
            batch = channel.unary_stream(
                "/test.Limits/Batch",
                request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            return [m.message for m in batch(Msg(message=f"{count} {size}"), timeout=30)]

    messages = await _in_thread(client)
    assert [m.split(":")[0] for m in messages] == [str(i) for i in range(count)]
    assert len(writes) >= 3
    assert max(writes) <= SEND_MANY_CHUNK + size + 20  # a chunk and one message at most
    assert sum(writes) == sum(len(_framed(Msg(message=m))) for m in messages)
