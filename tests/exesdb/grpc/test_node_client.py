"""A second language: the official Node.js client, ``@kurrent/kurrentdb-client``, drives
``python -m exesdb start`` through its own suite (``tests/node``, Node's built-in test
runner), and the server differences from KurrentDB it found stay fixed here.

The suite needs Node.js 20+ and its packages (``npm ci --prefix tests/node``, which
``.ci/run`` does): without them this test fails, saying so.

The difference found: grpc-js keeps HTTP/2's default 64 KiB connection window (it gives
back what it reads, never more), so a live subscription that kept the room its last
batch was promised (:meth:`exesdb.grpc.rpc.Call.writable`) while it waited for new
events left the connection's next call no room at all: it never got an answer.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.events import CaughtUp

from exesdb.grpc.protos import streams_pb2

from .conftest import Server

NODE_SUITE = Path(__file__).resolve().parents[2] / "node"
NODE_TIMEOUT = 300.0
"""Seconds the whole Node.js suite may take (it takes well under a minute)."""


@pytest.mark.slow
def test_the_official_nodejs_client_passes_its_suite() -> None:
    node = shutil.which("node")
    assert node is not None, (
        "node is not installed: the Node.js client suite needs Node.js 20 or later "
        "(e.g. apt-get install nodejs npm), then `npm ci --prefix tests/node`")
    client_package = NODE_SUITE / "node_modules" / "@kurrent" / "kurrentdb-client"
    assert client_package.is_dir(), (
        f"{client_package} is missing: install the suite's packages with "
        "`npm ci --prefix tests/node` (as .ci/run does)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EX_ESDB_")}
    env["EXESDB_PYTHON"] = sys.executable  # the servers run this interpreter's exesdb
    # A session of its own, so a timeout ends node and the servers it started together.
    process = subprocess.Popen([node, "--test", "--test-reporter=spec"], cwd=NODE_SUITE,
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"node --test took over {NODE_TIMEOUT:g} s:\n{output}")
    assert process.returncode == 0, f"node --test exited with {process.returncode}:\n{output}"


# -- what the Node.js client found, with Python clients ---------------------------------------


def _subscription(stream: str) -> bytes:
    """A length-prefixed ``ReadReq``: a catch-up subscription to ``stream`` from its start."""
    message = streams_pb2.ReadReq()
    options = message.options
    options.stream.stream_identifier.stream_name = stream.encode()
    options.stream.start.SetInParent()
    options.subscription.SetInParent()
    options.no_filter.SetInParent()
    options.uuid_option.string.SetInParent()
    data = message.SerializeToString()
    return b"\x00" + len(data).to_bytes(4, "big") + data


class SmallWindowClient:
    """An HTTP/2 client (h2's client side on a socket) with HTTP/2's default 64 KiB
    windows that, like grpc-js, gives back what it reads and never widens them."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.received: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self._flush()

    def _flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def subscribe(self, stream: str) -> int:
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [
            (":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
            (":path", "/event_store.client.streams.Streams/Read"),
            ("content-type", "application/grpc"), ("te", "trailers")])
        self.h2.send_data(sid, _subscription(stream), end_stream=True)
        self.received[sid] = bytearray()
        self._flush()
        return sid

    def responses(self, sid: int) -> list[streams_pb2.ReadResp]:
        data, found, pos = self.received[sid], [], 0
        while len(data) - pos >= 5:
            size = int.from_bytes(data[pos + 1 : pos + 5], "big")
            if len(data) - pos - 5 < size:
                break
            found.append(streams_pb2.ReadResp.FromString(bytes(data[pos + 5 : pos + 5 + size])))
            pos += 5 + size
        return found

    def caught_up(self, sid: int, timeout: float = 5.0) -> bool:
        """Read until ``sid`` says caught up (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not any(r.HasField("caught_up") for r in self.responses(sid)):
            left = deadline - time.monotonic()
            if left <= 0 or sid in self.ended:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            if not data:
                return False
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.received[event.stream_id] += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length,
                                                      event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.ended.add(event.stream_id)
            self._flush()
        return True

    def close(self) -> None:
        self.sock.close()


def test_a_live_subscription_leaves_room_for_the_next_call_on_a_64_kib_window(
        server: Server, client: KurrentDBClient) -> None:
    stream = f"window-{uuid.uuid4()}"
    client.append_to_stream(stream, events=[NewEvent(type="Placed", data=b"{}")],
                            current_version=StreamState.NO_STREAM)
    small = SmallWindowClient(server.port)
    try:
        first = small.subscribe(stream)
        assert small.caught_up(first)
        second = small.subscribe(stream)  # the first one now waits for new events
        assert small.caught_up(second), "the second subscription was never answered"
        assert [r.event.event.stream_revision for r in small.responses(second)
                if r.HasField("event")] == [0]
    finally:
        small.close()


def test_many_live_subscriptions_of_one_kurrentdbclient_all_catch_up(
        client: KurrentDBClient) -> None:
    stream = f"many-{uuid.uuid4()}"
    client.append_to_stream(stream, events=[NewEvent(type="Placed", data=b"{}")],
                            current_version=StreamState.NO_STREAM)
    subscriptions = [client.subscribe_to_stream(stream, include_caught_up=True, timeout=10)
                     for _ in range(10)]
    try:
        for subscription in subscriptions:
            events = iter(subscription)
            assert next(events).type == "Placed"
            assert isinstance(next(events), CaughtUp)
    finally:
        for subscription in subscriptions:
            subscription.stop()
