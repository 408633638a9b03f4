"""A connection remembers how it read the header lists of earlier requests (h2 hands
back the very list for a block it decoded before), for many clients sharing one
connection, each with headers of its own: every call still sees its own metadata, and
a changed metadata value is read afresh. What it keeps is bounded (64 lists, within the
header decoding cache's budget), and it keeps no large list (a hostile client's blocks
are decoded anew every time: keeping their lists would only hold memory).

Driven by a grpcio client: the calls of one channel share one HTTP/2 connection.
"""

from __future__ import annotations

import grpc
import h2.events
import trio

from exesdb.grpc._connection import Connection, Shared
from exesdb.grpc.protos import shared_pb2
from exesdb.grpc.rpc import Call, Method
from exesdb.grpc.server import ServerConfig, serve

Msg = shared_pb2.BadRequest


async def _echo_metadata(call: Call) -> None:
    await call.receive_one()
    await call.send(Msg(message=call.metadata.get("connection-name", "")))


async def test_interleaved_clients_each_get_their_own_metadata(nursery: trio.Nursery) -> None:
    services = {"/test.Meta/Echo": Method(Msg, Msg, "unary", _echo_metadata)}
    _host, port = await nursery.start(serve, services, ServerConfig(port=0))

    def client() -> list[str]:
        with grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.enable_http_proxy", 0)]) as channel:
            echo = channel.unary_unary("/test.Meta/Echo",
                                       request_serializer=Msg.SerializeToString,
                                       response_deserializer=Msg.FromString)
            names = [f"client-{i % 70}" for i in range(300)]  # more than it remembers
            return [echo(Msg(), metadata=[("connection-name", name)], timeout=10).message
                    for name in names]

    seen = await trio.to_thread.run_sync(client)
    assert seen == [f"client-{i % 70}" for i in range(300)]



def _request_headers(extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/test.Meta/Echo"),
            (b"content-type", b"application/grpc"), *extra]


async def test_the_readings_kept_are_bounded_and_large_header_lists_are_not_kept() -> None:
    config = ServerConfig(port=0)
    conn = Connection(None, "127.0.0.1:1", {}, config,  # type: ignore[arg-type]
                      Shared(config, None))
    # (no connection runs: each request is refused at once, after its headers are read)
    small = _request_headers([(b"connection-name", b"client-1")])
    conn._request(h2.events.RequestReceived(stream_id=1, headers=small))
    assert conn._readings[id(small)][0] is small
    big = _request_headers([(b"x-big", b"v" * 4000)])  # a hostile client's lists: each new
    conn._request(h2.events.RequestReceived(stream_id=3, headers=big))
    assert id(big) not in conn._readings
    kept = []
    for i in range(200):
        headers = _request_headers([(b"connection-name", b"client-%d" % i)])
        kept.append(headers)
        conn._request(h2.events.RequestReceived(stream_id=5 + 2 * i, headers=headers))
    assert 0 < len(conn._readings) <= 64
    assert conn._readings_cost == sum(cost for _l, _r, cost in conn._readings.values())
    assert conn._readings_cost <= config.header_cache_bytes
    assert conn._readings[id(kept[-1])][0] is kept[-1]  # the newest kept, the oldest gone
    assert id(small) not in conn._readings
