"""The gRPC server (exesdb.grpc.server), driven by real grpcio clients on 127.0.0.1.

Each test starts :func:`serve` in the test's nursery on a free port with a small test
service (``/test.Echo/*``, messages are ``shared_pb2.BadRequest`` with one string field)
and makes blocking grpcio calls from a worker thread.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
import trio

from exesdb.grpc.protos import shared_pb2
from exesdb.grpc.rpc import Call, Method, RpcError, StatusCode, User
from exesdb.grpc.server import ServerConfig, TlsConfigError, TlsFiles, serve

Msg = shared_pb2.BadRequest

_OPTIONS = [("grpc.enable_http_proxy", 0)]


class Probe:
    """What the test service's handlers report to the test."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()
        self.sent = 0
        self.sending = trio.Event()
        self.release = trio.Event()


def _services(probe: Probe) -> dict[str, Method]:
    async def say(call: Call) -> None:
        request = await call.receive_one()
        await call.send(Msg(message=request.message))

    async def many(call: Call) -> None:
        # request "COUNT SIZE": COUNT messages of SIZE characters
        count, size = map(int, (await call.receive_one()).message.split())
        payload = "x" * size
        for i in range(count):
            await call.send(Msg(message=payload))
            probe.sent = i + 1
            probe.sending.set()

    async def collect(call: Call) -> None:
        parts = []
        while (message := await call.receive()) is not None:
            parts.append(message.message)
        await call.send(Msg(message=",".join(parts)))

    async def slow_upload(call: Call) -> None:
        total = len((await call.receive_one()).message)
        probe.started.set()
        await probe.release.wait()
        while (message := await call.receive()) is not None:
            total += len(message.message)
        await call.send(Msg(message=str(total)))

    async def chat(call: Call) -> None:
        while (message := await call.receive()) is not None:
            await call.send(Msg(message=message.message.upper()))

    async def fail(call: Call) -> None:
        await call.receive_one()
        raise RpcError(
            StatusCode.NOT_FOUND,
            "stream 'é%' not found",
            trailers={"exception": "stream-deleted", "stream-name": "abc"},
            details=b"\x08\x05",
        )

    async def bug(call: Call) -> None:
        await call.receive_one()
        raise ZeroDivisionError("a bug in the handler")

    async def hang(call: Call) -> None:
        await call.receive_one()
        probe.started.set()
        try:
            await trio.sleep_forever()
        finally:
            probe.cancelled.set()

    async def early(call: Call) -> None:
        first = await call.receive_one()
        await call.send(Msg(message=f"got {first.message}"))  # and never reads the rest

    async def headers(call: Call) -> None:
        await call.receive_one()
        pairs = sorted(f"{k}={v}" for k, v in call.metadata.items() if k != "user-agent")
        await call.send(Msg(message=" ".join(pairs)))
        await call.send(Msg(message=call.peer))

    async def whoami(call: Call) -> None:
        await call.receive_one()
        user = call.user
        await call.send(Msg(message=user.name if user else "<nobody>"))

    def method(handler: Callable[[Call], Any], kind: Any = "unary") -> Method:
        return Method(Msg, Msg, kind, handler)

    return {
        "/test.Echo/Say": method(say),
        "/test.Echo/Many": method(many, "server_stream"),
        "/test.Echo/Collect": method(collect, "client_stream"),
        "/test.Echo/SlowUpload": method(slow_upload, "client_stream"),
        "/test.Echo/Chat": method(chat, "bidi"),
        "/test.Echo/Fail": method(fail),
        "/test.Echo/Bug": method(bug),
        "/test.Echo/Hang": method(hang),
        "/test.Echo/WhoAmI": method(whoami),
        "/test.Echo/Early": method(early, "client_stream"),
        "/test.Echo/Headers": method(headers, "server_stream"),
    }


async def _start(nursery: trio.Nursery, probe: Probe, **config: Any) -> int:
    _host, port = await nursery.start(serve, _services(probe), ServerConfig(port=0, **config))
    assert isinstance(port, int)
    return port


def _unary(channel: grpc.Channel, name: str) -> Any:
    return channel.unary_unary(
        f"/test.Echo/{name}",
        request_serializer=Msg.SerializeToString,
        response_deserializer=Msg.FromString,
    )


def _channel(port: int) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=_OPTIONS)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


def _error(fn: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
async def port(nursery: trio.Nursery, probe: Probe) -> int:
    return await _start(nursery, probe)


async def test_unary_call_echoes_its_request(port: int) -> None:
    def client() -> str:
        with _channel(port) as channel:
            return _unary(channel, "Say")(Msg(message="héllo"), timeout=10).message

    assert await _in_thread(client) == "héllo"


async def test_server_streaming_sends_more_than_the_flow_control_windows(port: int) -> None:
    count, size = 500, 10_000  # 5 MB

    def client() -> list[int]:
        with _channel(port) as channel:
            stream = channel.unary_stream(
                "/test.Echo/Many",
                request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            return [len(m.message) for m in stream(Msg(message=f"{count} {size}"), timeout=10)]

    assert await _in_thread(client) == [size] * count


async def test_client_streaming_receives_every_message_until_half_close(port: int) -> None:
    def client() -> str:
        with _channel(port) as channel:
            collect = channel.stream_unary(
                "/test.Echo/Collect",
                request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            requests = (Msg(message=str(i)) for i in range(1000))
            return collect(requests, timeout=10).message

    assert await _in_thread(client) == ",".join(str(i) for i in range(1000))


async def test_a_client_streaming_faster_than_its_handler_reads_is_held_back(
    port: int, probe: Probe
) -> None:
    count, size = 300, 100_000  # 30 MB
    yielded = 0

    def requests() -> Iterator[Msg]:
        nonlocal yielded
        for _ in range(count):
            yield Msg(message="y" * size)
            yielded += 1

    def client() -> str:
        with _channel(port) as channel:
            upload = channel.stream_unary(
                "/test.Echo/SlowUpload",
                request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            return upload(requests(), timeout=10).message

    async with trio.open_nursery() as nursery:
        answer: list[str] = []

        async def run_client() -> None:
            answer.append(await _in_thread(client))

        nursery.start_soon(run_client)
        with trio.fail_after(5):
            await probe.started.wait()  # the handler took one message and waits
        held = -1
        while held != yielded:  # until the client's sender stalls
            held = yielded
            await trio.sleep(0.2)
        assert held < count // 3  # a few window's worth, not the whole upload
        probe.release.set()
    assert answer == [str(count * size)]


async def test_bidi_streaming_answers_each_message(port: int) -> None:
    def client() -> list[str]:
        with _channel(port) as channel:
            chat = channel.stream_stream(
                "/test.Echo/Chat",
                request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            requests = (Msg(message=w) for w in ["a", "b", "c"])
            return [m.message for m in chat(requests, timeout=10)]

    assert await _in_thread(client) == ["A", "B", "C"]


async def test_unknown_method_is_unimplemented_and_the_connection_stays_up(port: int) -> None:
    def client() -> tuple[grpc.RpcError, str]:
        with _channel(port) as channel:
            error = _error(lambda: _unary(channel, "Nope")(Msg(), timeout=10))
            return error, _unary(channel, "Say")(Msg(message="still"), timeout=10).message

    error, answer = await _in_thread(client)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "unknown method /test.Echo/Nope"
    assert answer == "still"


async def test_rpc_error_code_message_and_trailers_reach_the_client(port: int) -> None:
    def client() -> grpc.RpcError:
        with _channel(port) as channel:
            return _error(lambda: _unary(channel, "Fail")(Msg(), timeout=10))

    error = await _in_thread(client)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "stream 'é%' not found"
    trailers = dict(error.trailing_metadata())
    assert trailers["exception"] == "stream-deleted"
    assert trailers["stream-name"] == "abc"
    assert trailers["grpc-status-details-bin"] == b"\x08\x05"


async def test_handler_bug_is_internal_error_logged_and_the_server_keeps_serving(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    def client() -> tuple[grpc.RpcError, str]:
        with _channel(port) as channel:
            error = _error(lambda: _unary(channel, "Bug")(Msg(), timeout=10))
            return error, _unary(channel, "Say")(Msg(message="alive"), timeout=10).message

    with caplog.at_level(logging.ERROR, logger="exesdb.grpc"):
        error, answer = await _in_thread(client)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"
    assert answer == "alive"
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)


async def test_malformed_message_is_invalid_argument_naming_its_type(port: int) -> None:
    def client() -> grpc.RpcError:
        with _channel(port) as channel:
            say = channel.unary_unary("/test.Echo/Say")  # raw bytes in and out
            return _error(lambda: say(b"\xff\xff\xff\xff", timeout=10))

    error = await _in_thread(client)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "event_store.client.BadRequest" in error.details()


async def test_compressed_message_is_unimplemented(port: int) -> None:
    def client() -> grpc.RpcError:
        with _channel(port) as channel:
            say = _unary(channel, "Say")
            gzip = grpc.Compression.Gzip
            return _error(lambda: say(Msg(message="z" * 10_000), timeout=10, compression=gzip))

    error = await _in_thread(client)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "compression not supported"


async def test_oversize_message_is_resource_exhausted(nursery: trio.Nursery, probe: Probe) -> None:
    port = await _start(nursery, probe, max_receive_message_size=1000)

    def client() -> tuple[grpc.RpcError, str]:
        with _channel(port) as channel:
            error = _error(lambda: _unary(channel, "Say")(Msg(message="o" * 5000), timeout=10))
            return error, _unary(channel, "Say")(Msg(message="small"), timeout=10).message

    error, answer = await _in_thread(client)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details()
    assert answer == "small"


async def test_deadline_exceeded_cancels_the_handler(port: int, probe: Probe) -> None:
    def client() -> grpc.RpcError:
        with _channel(port) as channel:
            return _error(lambda: _unary(channel, "Hang")(Msg(), timeout=0.3))

    error = await _in_thread(client)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with trio.fail_after(5):
        await probe.cancelled.wait()


async def test_client_cancel_cancels_the_handler(port: int, probe: Probe) -> None:
    with _channel(port) as channel:
        future = _unary(channel, "Hang").future(Msg())
        with trio.fail_after(5):
            await probe.started.wait()
        future.cancel()
        with trio.fail_after(5):
            await probe.cancelled.wait()
    assert future.cancelled()


async def test_a_client_that_never_reads_does_not_slow_another_clients_calls(
    port: int, probe: Probe
) -> None:
    total = 20_000
    with _channel(port) as stuck:
        many = stuck.unary_stream(
            "/test.Echo/Many",
            request_serializer=Msg.SerializeToString,
            response_deserializer=Msg.FromString,
        )
        unread = many(Msg(message=f"{total} 10000"))  # 200 MB, never read
        with trio.fail_after(5):
            await probe.sending.wait()

        def other_client() -> float:
            with _channel(port) as channel:
                say = _unary(channel, "Say")
                start = time.monotonic()
                for i in range(200):
                    assert say(Msg(message=str(i)), timeout=10).message == str(i)
                return time.monotonic() - start

        elapsed = await _in_thread(other_client)
        assert elapsed < 5
        assert probe.sent < total  # the unread call is held up by its own window
        unread.cancel()


def _basic(username: str, password: str) -> list[tuple[str, str]]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return [("authorization", f"Basic {token}")]


@pytest.fixture
async def auth_port(nursery: trio.Nursery, probe: Probe) -> int:
    def authenticator(username: str, password: str) -> User | None:
        return User(username) if (username, password) == ("admin", "changeit") else None

    return await _start(nursery, probe, authenticator=authenticator)


async def test_missing_credentials_are_unauthenticated(auth_port: int) -> None:
    def client() -> grpc.RpcError:
        with _channel(auth_port) as channel:
            return _error(lambda: _unary(channel, "WhoAmI")(Msg(), timeout=10))

    error = await _in_thread(client)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "invalid credentials"


async def test_wrong_credentials_are_unauthenticated_without_running_the_handler(
    auth_port: int, probe: Probe
) -> None:
    def client() -> grpc.RpcError:
        with _channel(auth_port) as channel:
            hang = _unary(channel, "Hang")
            return _error(lambda: hang(Msg(), timeout=10, metadata=_basic("admin", "wrong")))

    error = await _in_thread(client)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not probe.started.is_set()


async def test_right_credentials_make_the_user_the_calls_user(auth_port: int) -> None:
    def client() -> list[str]:
        with _channel(auth_port) as channel:
            who = _unary(channel, "WhoAmI")
            return [
                who(Msg(), timeout=10, metadata=_basic("admin", "changeit")).message
                for _ in range(3)
            ]

    assert await _in_thread(client) == ["admin"] * 3


async def test_tls_serves_calls_over_a_secure_channel(
    nursery: trio.Nursery, probe: Probe, certificates: tuple[bytes, TlsFiles]
) -> None:
    root, files = certificates
    port = await _start(nursery, probe, tls=files)

    def client() -> str:
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=_OPTIONS) as channel:
            return _unary(channel, "Say")(Msg(message="secret"), timeout=10).message

    assert await _in_thread(client) == "secret"


async def test_unreadable_tls_files_fail_before_binding(tmp_path: Path, probe: Probe) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    async with trio.open_nursery() as nursery:
        with pytest.raises(TlsConfigError, match=r"bad\.pem"):
            await _start(nursery, probe, tls=TlsFiles(str(bad), str(bad)))


async def test_stopping_the_server_ends_in_flight_calls_with_unavailable(probe: Probe) -> None:
    results: list[grpc.RpcError] = []
    async with trio.open_nursery() as outer:
        with trio.CancelScope() as server_scope:
            async with trio.open_nursery() as server_nursery:
                port = await _start(server_nursery, probe)

                def client() -> None:
                    with _channel(port) as channel:
                        results.append(_error(lambda: _unary(channel, "Hang")(Msg(), timeout=10)))

                outer.start_soon(_in_thread, client)
                with trio.fail_after(5):
                    await probe.started.wait()
                server_scope.cancel()
    assert probe.cancelled.is_set()
    [error] = results
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "server shutting down"


async def test_a_handler_may_answer_before_the_client_finishes_sending(port: int) -> None:
    def client() -> tuple[str, str]:
        with _channel(port) as channel:
            early = channel.stream_unary(
                "/test.Echo/Early",
                request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            requests = (Msg(message=str(i)) for i in range(10_000))
            answer = early(requests, timeout=10).message
            return answer, _unary(channel, "Say")(Msg(message="next"), timeout=10).message

    assert await _in_thread(client) == ("got 0", "next")


async def test_handler_sees_the_custom_metadata_and_the_peer(auth_port: int) -> None:
    def client() -> list[str]:
        with _channel(auth_port) as channel:
            headers = channel.unary_stream(
                "/test.Echo/Headers",
                request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            metadata = [("x-request-id", "42"), *_basic("admin", "changeit")]
            return [m.message for m in headers(Msg(), timeout=10, metadata=metadata)]

    custom, peer = await _in_thread(client)
    assert custom == "x-request-id=42"  # no authorization, te, content-type or grpc-*
    assert peer.startswith("127.0.0.1:")


class RawClient:
    """A bare HTTP/2 client (h2 on a trio socket), for requests grpcio never makes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[RawClient]:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            client = cls(stream)
            await client.flush()
            yield client

    async def flush(self) -> None:
        await self.stream.send_all(self.h2.data_to_send())

    async def request(
        self,
        path: str,
        *,
        method: bytes = b"POST",
        content_type: bytes = b"application/grpc",
        extra: list[tuple[bytes, bytes]] | None = None,
        message: bytes | None = b"",
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"localhost"),
            (b"content-type", content_type),
            (b"te", b"trailers"),
            *(extra or []),
        ]
        self.h2.send_headers(sid, headers, end_stream=message is None)
        if message is not None:
            framed = b"\x00" + len(message).to_bytes(4, "big") + message
            self.h2.send_data(sid, framed, end_stream=True)
        await self.flush()
        return sid

    async def response(self, sid: int) -> dict[bytes, bytes]:
        """Every header and trailer of stream ``sid``, once it has ended."""
        fields: dict[bytes, bytes] = {}
        with trio.fail_after(5):
            while True:
                data = await self.stream.receive_some(65536)
                assert data, "connection closed"
                for event in self.h2.receive_data(data):
                    if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                        if event.stream_id == sid:
                            fields.update(event.headers)
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                        return fields
                await self.flush()


async def test_a_request_that_is_not_a_post_gets_http_405(port: int) -> None:
    async with RawClient.connect(port) as client:
        response = await client.response(await client.request("/test.Echo/Say", method=b"GET"))
        assert response[b":status"] == b"405"
        assert response[b"grpc-status"] == b"%d" % StatusCode.INTERNAL


async def test_a_request_that_is_not_grpc_gets_http_415(port: int) -> None:
    async with RawClient.connect(port) as client:
        sid = await client.request("/test.Echo/Say", content_type=b"application/json")
        response = await client.response(sid)
        assert response[b":status"] == b"415"
        assert response[b"grpc-status"] == b"%d" % StatusCode.INTERNAL


async def test_the_servers_own_deadline_cancels_the_handler(port: int, probe: Probe) -> None:
    async with RawClient.connect(port) as client:
        sid = await client.request("/test.Echo/Hang", extra=[(b"grpc-timeout", b"200m")])
        response = await client.response(sid)
        assert response[b"grpc-status"] == b"%d" % StatusCode.DEADLINE_EXCEEDED
        assert probe.cancelled.is_set()


async def test_an_invalid_timeout_is_invalid_argument(port: int) -> None:
    async with RawClient.connect(port) as client:
        sid = await client.request("/test.Echo/Say", extra=[(b"grpc-timeout", b"soon")])
        response = await client.response(sid)
        assert response[b"grpc-status"] == b"%d" % StatusCode.INVALID_ARGUMENT


async def test_closing_the_connection_cancels_its_handlers(port: int, probe: Probe) -> None:
    async with RawClient.connect(port) as client:
        await client.request("/test.Echo/Hang")
        with trio.fail_after(5):
            await probe.started.wait()
        await client.stream.aclose()
        with trio.fail_after(5):
            await probe.cancelled.wait()


async def test_a_request_without_its_message_is_invalid_argument(port: int) -> None:
    async with RawClient.connect(port) as client:
        response = await client.response(await client.request("/test.Echo/Say", message=None))
        assert response[b"grpc-status"] == b"%d" % StatusCode.INVALID_ARGUMENT
        assert b"missing request message" in response[b"grpc-message"]


async def test_a_garbage_connection_is_closed_and_the_server_keeps_serving(port: int) -> None:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            while await stream.receive_some(65536):
                pass  # the server answers GOAWAY and closes
    async with RawClient.connect(port) as client:
        response = await client.response(await client.request("/test.Echo/Say", message=b""))
        assert response[b"grpc-status"] == b"0"
