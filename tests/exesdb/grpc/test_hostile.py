"""Hostile network traffic (issue 13, section 1): each attack of one client on a raw
HTTP/2 connection to ``python -m exesdb start`` (an OS process on 127.0.0.1, small
limits given through ``EX_ESDB_GRPC_LIMITS``) while a well-behaved ``kurrentdbclient``
keeps appending and reading on another connection.

Each test asserts that the attacker is cut off (GOAWAY ``ENHANCE_YOUR_CALM``, or the
connection closed when it reads nothing) within 1 s of crossing its threshold (the
server's backlog left out, plus a few round trips of a PING just before crossing when
the machine is slow: see ``hostile_helpers``), that the
server's RSS grows by no more than its budget (64 MiB per attacking connection), and
that every call of the good client succeeds, none taking over 5 s. How much the attacks
slow the good client down is a benchmark (``python -m benchmarks --only hostile``).
"""

from __future__ import annotations

import base64
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from exesdb.grpc.auth import add_user
from exesdb.grpc.protos import streams_pb2
from tests.exesdb.grpc.conftest import Server, start_server
from tests.exesdb.grpc.hostile_helpers import (
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    HEADERS,
    PING,
    PROTOCOL_ERROR,
    RST_STREAM,
    SETTINGS,
    Attacker,
    GoodClient,
    PeakRss,
    block,
    frame,
    read_all,
    request,
)

pytestmark = pytest.mark.slow

MiB = 1 << 20
CONNECTION_BUDGET = 64 * MiB
"""What one attacking connection may cost the server (the documented default bound)."""
LIMITS = {
    "max_resets_per_window": 200,
    "max_pings_per_window": 50,
    "max_settings_per_window": 50,
    "max_header_bytes_per_window": MiB,
    "max_continuations_per_window": 200,
    "send_stall_timeout": 3,
}
"""Small thresholds, so the attacks cross them fast (each per 10 s window)."""


def _env(limits: dict[str, float]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EX_ESDB_")}
    env["EX_ESDB_GRPC_LIMITS"] = ",".join(f"{k}={v}" for k, v in limits.items())
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with start_server(tmp_path_factory.mktemp("hostile"), env=_env(LIMITS)) as running:
        yield running


@pytest.fixture(scope="module")
def good(server: Server) -> Iterator[GoodClient]:
    client = GoodClient(server.uri)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def pid(server: Server) -> int:
    assert server.process is not None
    return server.process.pid


def _cut_off_calmly(attacker: Attacker) -> None:
    assert attacker.goaway is not None, "no GOAWAY"
    assert attacker.goaway[1] == ENHANCE_YOUR_CALM
    assert attacker.cut_off_after() <= attacker.cut_off_bound(), (
        attacker.cut_off_after(), attacker.rtt)


def _attack(server: Server, good: GoodClient, pid: int, run: Callable[[], object],
            connections: int = 1) -> None:
    """Run ``run()`` while the good client works and the server's RSS is sampled; then
    check the good client and the memory."""
    with PeakRss(pid) as memory, good.working():
        run()
        time.sleep(0.3)  # the good client goes on after the attack
    good.check()
    assert memory.growth <= connections * CONNECTION_BUDGET, memory.growth / MiB


# -- floods cut off ----------------------------------------------------------------------


@pytest.mark.parametrize("with_data", [True, False], ids=["with-data", "without-data"])
def test_rapid_reset_is_cut_off_and_others_go_on(server: Server, good: GoodClient, pid: int,
                                                 with_data: bool) -> None:
    attacker = Attacker(server.port)
    headers, body, rst = request(), read_all(10), struct.pack(">L", CANCEL)

    def batch(i: int) -> bytes:
        out = []
        for k in range(50):
            sid = 2 * (50 * i + k) + 1
            out.append(frame(HEADERS, END_HEADERS, sid, headers))
            if with_data:
                out.append(frame(DATA, END_STREAM, sid, body))
            out.append(frame(RST_STREAM, 0, sid, rst))
        return b"".join(out)

    _attack(server, good, pid, lambda: attacker.flood(batch, 50, LIMITS["max_resets_per_window"]))
    attacker.close()
    _cut_off_calmly(attacker)


def _different_blocks(headers: int, size: int) -> Callable[[int], bytes]:
    """Requests whose header blocks are all different: ``headers`` headers of ``size``
    random characters each, one of them numbered."""
    extra = [(b"x-h%04d" % k, os.urandom(size // 2).hex().encode()) for k in range(headers)]

    def blocks(i: int) -> bytes:
        numbered = [(b"x-n", b"%08d" % i), *extra[1:]]
        return frame(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1,
                     request("/test.Hostile/Unknown", numbered))

    return blocks


def test_different_header_blocks_near_the_size_limit_are_cut_off(
        server: Server, good: GoodClient, pid: int) -> None:
    attacker = Attacker(server.port)
    batch = _different_blocks(170, 48)  # just under the 16 KiB header list limit

    size = len(batch(0)) - 9
    _attack(server, good, pid,
            lambda: attacker.flood(batch, size, LIMITS["max_header_bytes_per_window"]))
    attacker.close()
    _cut_off_calmly(attacker)


def test_many_connections_of_different_header_blocks_hold_no_decoding_cache(
        server: Server, good: GoodClient, pid: int) -> None:
    attackers = [Attacker(server.port) for _ in range(10)]

    def run() -> None:
        threads = []
        for attacker in attackers:  # 256 different blocks each, small enough to cache
            blocks = _different_blocks(40, 48)
            threads.append(threading.Thread(
                target=lambda a=attacker, b=blocks: [a.send(b(i)) for i in range(256)],
                daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    _attack(server, good, pid, run, connections=len(attackers))
    for attacker in attackers:
        attacker.close()


def test_empty_continuation_frames_without_end_are_cut_off(
        server: Server, good: GoodClient, pid: int) -> None:
    attacker = Attacker(server.port)
    attacker.sync()  # (not once the header block is open: a PING then is a protocol error)
    attacker.send(frame(HEADERS, 0, 1, request()[:10]))
    empties = frame(CONTINUATION, 0, 1) * 1000
    _attack(server, good, pid,
            lambda: attacker.flood(lambda i: empties, 1000, 16, sync=False))
    attacker.close()
    _cut_off_calmly(attacker)


def test_a_ping_flood_that_reads_the_answers_is_cut_off(
        server: Server, good: GoodClient, pid: int) -> None:
    attacker = Attacker(server.port)
    pings = b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(100))
    _attack(server, good, pid,
            lambda: attacker.flood(lambda i: pings, 100, LIMITS["max_pings_per_window"]))
    attacker.close()
    _cut_off_calmly(attacker)


def test_a_ping_flood_that_never_reads_is_closed(
        server: Server, good: GoodClient, pid: int) -> None:
    attacker = Attacker(server.port, reading=False)
    pings = b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(1000))
    attacker.sock.settimeout(5)
    _attack(server, good, pid,
            lambda: attacker.flood(lambda i: pings, 1000, LIMITS["max_pings_per_window"]))
    attacker.drain()
    attacker.close()
    assert attacker.closed_at is not None, "the connection was not closed"
    assert attacker.cut_off_after() <= attacker.cut_off_bound(), (
        attacker.cut_off_after(), attacker.rtt)


def test_a_small_settings_flood_is_cut_off(server: Server, good: GoodClient, pid: int) -> None:
    attacker = Attacker(server.port)
    settings = frame(SETTINGS, 0, 0, struct.pack(">HL", 0x2, 0)) * 100  # ENABLE_PUSH 0
    _attack(server, good, pid,
            lambda: attacker.flood(lambda i: settings, 100, LIMITS["max_settings_per_window"]))
    attacker.close()
    _cut_off_calmly(attacker)


def test_a_megabyte_settings_frame_with_100_streams_open_is_cut_off(
        server: Server, good: GoodClient, pid: int) -> None:
    attacker = Attacker(server.port)
    headers = request()
    attacker.send(b"".join(frame(HEADERS, END_HEADERS, 2 * k + 1, headers) for k in range(100)))
    entries = b"".join(struct.pack(">HL", 0x4, 65535 + (k & 1)) for k in range((1 << 20) // 6))
    _attack(server, good, pid,
            lambda: attacker.flood(lambda i: frame(SETTINGS, 0, 0, entries), 1, 0))
    attacker.close()
    _cut_off_calmly(attacker)
    assert b"entries" in attacker.goaway[2]  # type: ignore[index]


# -- memory ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled(server: Server) -> None:
    """16 MiB of events in ``$all`` (4,000 of 4 KiB)."""
    with KurrentDBClient(server.uri) as client:
        for i in range(40):
            client.append_to_stream(
                f"fill-{i}", events=[NewEvent(type="Fill", data=b"f" * 4096) for _ in range(100)],
                current_version=StreamState.ANY)


def test_reads_a_client_never_makes_room_for_hold_little_and_are_reset_after_the_stall(
        server: Server, good: GoodClient, pid: int, filled: None) -> None:
    attackers: list[Attacker] = []
    headers, body = request(), read_all()

    def run() -> None:
        for _ in range(2):
            attacker = Attacker(server.port)  # windows of 64 KiB, never a WINDOW_UPDATE
            attacker.send(b"".join(frame(HEADERS, END_HEADERS, 2 * k + 1, headers)
                                   + frame(DATA, END_STREAM, 2 * k + 1, body)
                                   for k in range(100)))
            attackers.append(attacker)
        deadline = time.monotonic() + LIMITS["send_stall_timeout"] + 3
        while time.monotonic() < deadline and not all(
                len(a.resets) == 100 for a in attackers):
            time.sleep(0.05)

    _attack(server, good, pid, run, connections=2)
    for attacker in attackers:
        attacker.close()
        assert attacker.goaway is None  # the connection itself is fine
        assert sorted(attacker.resets) == [2 * k + 1 for k in range(100)]
        assert set(attacker.resets.values()) == {CANCEL}


# -- stream errors ---------------------------------------------------------------------------


def test_a_malformed_header_resets_only_its_stream(server: Server, good: GoodClient,
                                                   pid: int) -> None:
    attacker = Attacker(server.port)

    def run() -> None:
        attacker.send(frame(HEADERS, END_HEADERS, 1, request()))
        bad = block([(b":method", b"POST"), (b":path", b"/x"), (b"Upper-Case", b"1")])
        attacker.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, bad))
        attacker.send(frame(DATA, END_STREAM, 1, read_all(1)))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (3 in attacker.resets and 1 in
                                                   attacker.headers):
            time.sleep(0.02)

    _attack(server, good, pid, run)
    attacker.close()
    assert attacker.resets.get(3) == PROTOCOL_ERROR
    assert 1 in attacker.headers and 1 not in attacker.resets  # the other call was served
    assert attacker.goaway is None


# -- connections ------------------------------------------------------------------------------


def test_trickling_connections_beyond_the_limit_neither_keep_clients_out_nor_stay(
        tmp_path: Path) -> None:
    limits = {"max_connections": 20, "frame_timeout": 1, "idle_timeout": 2}
    with start_server(tmp_path, env=_env(limits)) as server:
        assert server.process is not None
        attackers = [Attacker(server.port, reading=False) for _ in range(30)]
        ping = frame(PING, 0, 0, b"\0" * 8)
        latencies: list[float] = []
        with PeakRss(server.process.pid) as memory:
            for step in range(8):  # a byte of a PING frame on each, every 0.5 s
                for attacker in attackers:
                    if attacker.closed_at is None:
                        attacker.send(ping[step:step + 1])
                started = time.monotonic()
                with KurrentDBClient(server.uri) as client:  # a new client connects
                    client.append_to_stream("trickled", events=NewEvent(type="T", data=b"{}"),
                                            current_version=StreamState.ANY, timeout=10)
                latencies.append(time.monotonic() - started)
                time.sleep(0.5)
        for attacker in attackers:
            attacker.drain(0.5)
            attacker.close()
        assert max(latencies) <= 5.0
        assert all(a.closed_at is not None for a in attackers)
        assert memory.growth <= len(attackers) * CONNECTION_BUDGET


def _basic(user: str, password: str) -> tuple[str, str]:
    return ("authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


def _read_call(port: int, user: str, password: str) -> grpc.StatusCode:
    """One Read of a stream with basic credentials; its status code."""
    with grpc.insecure_channel(f"127.0.0.1:{port}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        read = channel.unary_stream(
            "/event_store.client.streams.Streams/Read",
            request_serializer=streams_pb2.ReadReq.SerializeToString,
            response_deserializer=streams_pb2.ReadResp.FromString)
        message = streams_pb2.ReadReq()
        message.options.stream.stream_identifier.stream_name = b"logins"
        message.options.stream.start.SetInParent()
        message.options.count = 1
        message.options.no_filter.SetInParent()
        message.options.uuid_option.string.SetInParent()
        try:
            list(read(message, metadata=[_basic(user, password)], timeout=10))
        except grpc.RpcError as e:
            return e.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


def test_password_guesses_from_many_connections_lock_the_user_out_not_the_others(
        tmp_path: Path) -> None:
    users = tmp_path / "users"
    for name in ["admin", *(f"user{i}" for i in range(6))]:
        add_user(users, name, "right-password", groups=["$admins"])
    with start_server(tmp_path / "data", "--users-file", str(users),
                      env=_env({"login_lockout_failures": 5})) as server:
        stop = threading.Event()
        guesses = [0]
        headers = request(extra=[(b"authorization", b"Basic " + base64.b64encode(
            b"admin:guess"))])

        def guess() -> None:  # one guess per new connection, from another address
            while not stop.is_set():
                attacker = Attacker(server.port, source="127.0.0.2")
                attacker.send(frame(HEADERS, END_HEADERS, 1, headers)
                              + frame(DATA, END_STREAM, 1, read_all(1)))
                deadline = time.monotonic() + 5
                while 1 not in attacker.headers and not attacker.over and (
                        time.monotonic() < deadline):
                    time.sleep(0.005)
                attacker.close()
                guesses[0] += 1

        threads = [threading.Thread(target=guess, daemon=True) for _ in range(16)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            for i in range(6):  # first logins of other users, during the flood
                started = time.monotonic()
                assert _read_call(server.port, f"user{i}", "right-password") in (
                    grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)
                assert time.monotonic() - started <= 5.0
            # The guessed name is locked out: even its right password is refused.
            assert _read_call(server.port, "admin", "right-password") == (
                grpc.StatusCode.UNAUTHENTICATED)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert guesses[0] >= len(threads)  # every attacker guessed
