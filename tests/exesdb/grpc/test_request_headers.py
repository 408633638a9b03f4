"""A connection remembers how it read the header lists of earlier requests (h2 hands
back the very list for a block it decoded before), for many clients sharing one
connection, each with headers of its own: every call still sees its own metadata, and
a changed metadata value is read afresh.

Driven by a grpcio client: the calls of one channel share one HTTP/2 connection.
"""

from __future__ import annotations

import grpc
import trio

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
