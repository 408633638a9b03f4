"""The gRPC server's limits against hostile clients, one behaviour at a time, in process
(:func:`serve` with a small test service, driven by a bare h2 client on 127.0.0.1):
calls counted until finished and the connection not read meanwhile, the output budget
and its stall, idle and slow-frame timeouts, the connection limit, accept errors, the
server-wide inbound budget, login lockout and the login queue's bounds, and the
configuration of the limits. The same attacks against ``python -m exesdb start`` with a
real client beside them are in ``test_hostile.py``.
"""

from __future__ import annotations

import errno
import logging
import resource
import struct
from typing import Any

import grpc
import h2.errors
import h2.events
import h2.settings
import pytest
import trio
import trio.testing

from exesdb.grpc import server as server_module
from exesdb.grpc.rpc import Call, Method, StatusCode, User
from exesdb.grpc.server import ServerConfig, default_max_connections, parse_limits, serve
from exesdb.options import resolve_options
from tests.exesdb.grpc.test_server_limits import (
    H2Client,
    Msg,
    Probe,
    _basic,
    _in_thread,
    _read_until_closed,
    _services,
    _unary,
)

E = h2.errors.ErrorCodes
MiB = 1 << 20


class Gate:
    """Handlers of ``/test.Abuse/Stubborn`` finish only once :attr:`open` is set, even
    when cancelled (like a handler stuck in a thread)."""

    def __init__(self) -> None:
        self.open = trio.Event()
        self.running = 0
        self.finished = 0
        self.changed = trio.Event()

    async def until_running(self, n: int) -> None:
        while self.running < n:
            await self.changed.wait()


async def _start(nursery: trio.Nursery, gate: Gate | None = None, **config: Any) -> int:
    services = _services(Probe())

    async def stubborn(call: Call) -> None:
        assert gate is not None
        gate.running += 1
        gate.changed.set()
        gate.changed = trio.Event()
        with trio.CancelScope(shield=True):
            await gate.open.wait()
        gate.running -= 1
        gate.finished += 1

    services["/test.Abuse/Stubborn"] = Method(Msg, Msg, "unary", stubborn)
    _host, port = await nursery.start(serve, services, ServerConfig(port=0, **config))
    assert isinstance(port, int)
    return port


def _goaway(data: bytes) -> tuple[int, bytes] | None:
    """The error code and debug data of the first GOAWAY frame in ``data``."""
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        if data[pos + 3] == 0x7:
            body = data[pos + 9 : pos + 9 + length]
            return struct.unpack(">L", body[4:8])[0], body[8:]
        pos += 9 + length
    return None


# -- calls counted until finished ----------------------------------------------------------


async def test_reset_calls_count_until_finished_and_the_connection_waits_unread(
    nursery: trio.Nursery,
) -> None:
    gate = Gate()
    port = await _start(nursery, gate, max_concurrent_streams=10)
    async with H2Client.connect(port) as client:
        for _ in range(10):
            sid = await client.start("/test.Abuse/Stubborn", end_stream=True)
            client.h2.reset_stream(sid)
        await client.flush()
        with trio.fail_after(10):
            await gate.until_running(10)
        # Ten reset calls still run: the next request is not read at all...
        later = await client.call("/test.Limits/Size", Msg(message="abc"))
        with trio.move_on_after(0.3):
            while True:
                await client.pump()
        assert later not in client.ended
        # ... until they have finished; then it is served.
        gate.open.set()
        with trio.fail_after(10):
            outcome = await client.outcome(later)
        assert outcome[b"grpc-status"] == b"0"
        assert gate.finished == 10


# -- output -------------------------------------------------------------------------------


async def test_a_client_that_reads_nothing_of_its_output_is_closed_after_the_stall(
    nursery: trio.Nursery,
) -> None:
    port = await _start(nursery, max_connection_output=1 << 16, send_stall_timeout=0.5)
    async with H2Client.connect(port) as client:
        client.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
        client.h2.increment_flow_control_window((1 << 31) - 1 - 65535)
        await client.flush()
        await client.call("/test.Limits/Batch", Msg(message="100000 1000"))  # 100 MB
        await trio.sleep(1.5)  # reading nothing meanwhile
        with trio.fail_after(10):
            await _read_until_closed(client.stream)


async def test_a_call_that_cannot_send_for_the_stall_timeout_is_reset(
    nursery: trio.Nursery,
) -> None:
    port = await _start(nursery, send_stall_timeout=0.5)
    async with H2Client.connect(port) as client:
        sid = await client.call("/test.Limits/Batch", Msg(message="1000 1000"))
        # The client answers PINGs but never gives window back (it acknowledges nothing).
        client.h2.acknowledge_received_data = lambda *args, **kwargs: None  # type: ignore[method-assign]
        with trio.fail_after(10):
            while sid not in client.ended:
                await client.pump()
        assert sid not in client.fields or b"grpc-status" not in client.fields[sid]  # reset
        client.h2.increment_flow_control_window(1 << 20)  # the connection's window back
        other = await client.call("/test.Limits/Size", Msg(message="x"))
        assert (await client.outcome(other))[b"grpc-status"] == b"0"  # the connection lives


# -- connections ----------------------------------------------------------------------------


async def test_a_connection_without_calls_is_closed_after_the_idle_timeout(
    nursery: trio.Nursery,
) -> None:
    port = await _start(nursery, idle_timeout=0.3)
    async with H2Client.connect(port) as client:
        outcome = await client.outcome(await client.call("/test.Limits/Size", Msg()))
        assert outcome[b"grpc-status"] == b"0"
        with trio.fail_after(10):
            rest = await _read_until_closed(client.stream)
        assert _goaway(rest) == (E.NO_ERROR, b"")


async def test_a_connection_with_a_call_in_progress_is_not_idle(nursery: trio.Nursery) -> None:
    port = await _start(nursery, idle_timeout=0.2)
    async with H2Client.connect(port) as client:
        sid = await client.call("/test.Limits/Later", Msg(message="0.8"))
        with trio.fail_after(10):
            assert (await client.outcome(sid))[b"grpc-status"] == b"0"


async def test_a_frame_begun_and_not_finished_in_time_closes_the_connection(
    nursery: trio.Nursery,
) -> None:
    port = await _start(nursery, frame_timeout=0.3, keepalive_interval=3600)
    async with H2Client.connect(port) as client:
        await client.pump()  # past the handshake
        await client.stream.send_all(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00\x01")  # half a PING
        with trio.fail_after(10):
            rest = await _read_until_closed(client.stream)
        code, debug = _goaway(rest) or (None, b"")
        assert code == E.ENHANCE_YOUR_CALM
        assert b"frame" in debug


async def test_at_the_connection_limit_a_new_connection_evicts_the_longest_idle(
    nursery: trio.Nursery,
) -> None:
    port = await _start(nursery, max_connections=2)
    async with H2Client.connect(port) as oldest, H2Client.connect(port) as newer:
        await oldest.pump()
        await newer.pump()
        async with H2Client.connect(port) as newest:
            outcome = await newest.outcome(await newest.call("/test.Limits/Size", Msg()))
            assert outcome[b"grpc-status"] == b"0"
            with trio.fail_after(10):
                rest = await _read_until_closed(oldest.stream)
            assert _goaway(rest) == (E.NO_ERROR, b"")
            outcome = await newer.outcome(await newer.call("/test.Limits/Size", Msg()))
            assert outcome[b"grpc-status"] == b"0"


async def test_at_the_connection_limit_with_every_connection_busy_a_new_one_is_closed(
    nursery: trio.Nursery,
) -> None:
    gate = Gate()
    port = await _start(nursery, gate, max_connections=1)
    async with H2Client.connect(port) as busy:
        await busy.call("/test.Abuse/Stubborn", Msg())
        with trio.fail_after(10):
            await gate.until_running(1)
        async with await trio.open_tcp_stream("127.0.0.1", port) as refused:
            with trio.fail_after(10):
                assert await _read_until_closed(refused) == b""
        gate.open.set()
        sid = await busy.call("/test.Limits/Size", Msg())
        assert (await busy.outcome(sid))[b"grpc-status"] == b"0"


class _FailingListener(trio.abc.Listener[trio.SocketStream]):
    """Accept fails with EMFILE ``failures`` times, then waits forever."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[float] = []

    async def accept(self) -> trio.SocketStream:
        self.attempts.append(trio.current_time())
        if len(self.attempts) <= self.failures:
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EMFILE, "Too many open files")
        await trio.sleep_forever()
        raise AssertionError

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_accept_errors_back_off_and_are_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    listener = _FailingListener(12)
    server = server_module._Server({}, ServerConfig(port=0), None)
    with caplog.at_level(logging.WARNING, logger="exesdb.grpc"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.accept_loop, listener, nursery)
            await trio.sleep(20)
            nursery.cancel_scope.cancel()
    pauses = [b - a for a, b in zip(listener.attempts, listener.attempts[1:], strict=False)]
    assert pauses[:8] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0])
    warnings = [r for r in caplog.records if "cannot accept" in r.getMessage()]
    assert 1 <= len(warnings) <= 3  # 12 errors over ~6 s: at most one per 10 s, and a recap


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def test_the_default_connection_limit_leaves_room_under_the_file_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for soft, expected in [(1024, 896), (256, 192), (64, 16), (1 << 20, 65_536)]:
        monkeypatch.setattr(resource, "getrlimit", lambda _, soft=soft: (soft, soft))
        assert default_max_connections() == expected
        assert ServerConfig().max_connections == expected


# -- memory -----------------------------------------------------------------------------------


async def test_big_messages_of_different_connections_share_the_server_budget_in_turn(
    nursery: trio.Nursery,
) -> None:
    port = await _start(nursery, max_inbound_buffer=2 * MiB, max_connection_buffer=2 * MiB)
    length = 3 * MiB // 2  # over a stream window: each needs the budget, one at a time

    def client() -> str:
        with grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            return str(_unary(channel, "Size")(Msg(message="z" * length), timeout=60).message)

    results: list[str] = []

    async def one() -> None:
        results.append(await _in_thread(client))

    async with trio.open_nursery() as clients:
        for _ in range(4):  # four connections
            clients.start_soon(one)
    assert results == [str(length)] * 4


# -- logins ---------------------------------------------------------------------------------


async def test_a_user_name_with_repeated_failures_is_locked_out_even_with_its_password(
    nursery: trio.Nursery,
) -> None:
    checked: list[str] = []

    def authenticator(username: str, password: str) -> User | None:
        checked.append(username)
        return User(username) if password == "right" else None

    port = await _start(nursery, authenticator=authenticator, login_lockout_failures=3,
                        login_lockout_seconds=0.5)
    statuses = []
    for user, password in [("admin", "wrong")] * 3 + [("admin", "right"), ("alice", "right")]:
        async with H2Client.connect(port) as client:
            sid = await client.call("/test.Limits/WhoAmI", Msg(), [_basic(user, password)])
            statuses.append((await client.outcome(sid))[b"grpc-status"])
    unauthenticated = b"%d" % StatusCode.UNAUTHENTICATED
    assert statuses == [unauthenticated] * 4 + [b"0"]
    assert checked == ["admin"] * 3 + ["alice"]  # the locked name was not even hashed
    await trio.sleep(0.6)  # the lockout ends
    async with H2Client.connect(port) as client:
        sid = await client.call("/test.Limits/WhoAmI", Msg(), [_basic("admin", "right")])
        assert (await client.outcome(sid))[b"grpc-status"] == b"0"


async def test_logins_beyond_an_addresss_share_are_unavailable_without_hashing(
    nursery: trio.Nursery,
) -> None:
    release = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def authenticator(username: str, password: str) -> User | None:
        trio.from_thread.run(release.wait, trio_token=token)
        return None

    port = await _start(nursery, authenticator=authenticator, max_logins_per_address=2)
    async with H2Client.connect(port) as client:
        sids = [await client.call("/test.Limits/WhoAmI", Msg(), [_basic(f"u{i}", "x")])
                for i in range(3)]
        with trio.fail_after(10):
            third = await client.outcome(sids[2])
        assert third[b"grpc-status"] == b"%d" % StatusCode.UNAVAILABLE
        release.set()
        with trio.fail_after(10):
            for sid in sids[:2]:
                assert (await client.outcome(sid))[b"grpc-status"] == (
                    b"%d" % StatusCode.UNAUTHENTICATED)


# -- configuration ----------------------------------------------------------------------------


def test_limits_are_given_as_text_and_checked_by_the_configs_rules() -> None:
    assert parse_limits("max_pings_per_window=5, idle_timeout=0.5") == {
        "max_pings_per_window": 5, "idle_timeout": 0.5}
    for text, message in [("foo=1", "'foo' is not a limit"),
                          ("max_pings_per_window=x", "not a number"),
                          ("max_pings_per_window=0", "max_pings_per_window"),
                          ("host=1", "'host' is not a limit")]:
        with pytest.raises(ValueError, match=message):
            parse_limits(text)


def test_the_store_option_takes_the_limits_from_its_variable() -> None:
    opts = resolve_options(store_id="s", environ={"EX_ESDB_GRPC_LIMITS": "idle_timeout=60"})
    assert opts.grpc_limits == "idle_timeout=60"
    with pytest.raises(Exception, match="grpc_limits"):
        resolve_options(store_id="s", grpc_limits="idle_timeout")


def test_the_defaults_are_the_documented_ones() -> None:
    config = ServerConfig()
    assert (config.max_concurrent_streams, config.max_header_list_size) == (100, 16 << 10)
    assert (config.flood_window, config.max_resets_per_window, config.max_pings_per_window,
            config.max_settings_per_window) == (10.0, 1000, 100, 100)
    assert (config.max_header_blocks_per_window, config.max_header_bytes_per_window,
            config.max_continuations_per_window, config.max_empty_frames_per_window) == (
        200_000, 16 * MiB, 1000, 10_000)
    assert (config.max_settings_entries, config.max_continuations_per_block,
            config.header_cache_bytes, config.reader_cpu_share) == (32, 16, 256 << 10, 0.25)
    assert (config.max_connection_output, config.max_send_buffer, config.max_inbound_buffer,
            config.send_stall_timeout) == (16 * MiB, 256 * MiB, 256 * MiB, 120.0)
    assert (config.idle_timeout, config.frame_timeout) == (300.0, 30.0)
    assert (config.login_lockout_failures, config.login_lockout_seconds,
            config.max_queued_logins, config.max_logins_per_address) == (10, 60.0, 64, 16)


