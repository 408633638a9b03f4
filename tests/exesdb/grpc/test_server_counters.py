"""The gRPC server counts its calls by method and status code, and its open connections
(exesdb.grpc.stats), driven by a real grpcio client on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import trio

import otp
from exesdb.grpc.protos import shared_pb2
from exesdb.grpc.rpc import Call, Method, RpcError, StatusCode
from exesdb.grpc.server import ServerConfig, serve
from exesdb.grpc.stats import UNKNOWN_METHOD, GrpcStats, grpc_counters

Msg = shared_pb2.BadRequest


async def _say(call: Call) -> None:
    await call.send(Msg(message=(await call.receive_one()).message))


async def _fail(call: Call) -> None:
    await call.receive_one()
    raise RpcError(StatusCode.NOT_FOUND, "nothing here")


SERVICES = {"/test.Echo/Say": Method(Msg, Msg, "unary", _say),
            "/test.Echo/Fail": Method(Msg, Msg, "unary", _fail)}


async def until(condition: Callable[[], bool], limit: float = 15.0) -> None:
    """Return once ``condition()`` holds; fail after ``limit`` seconds."""
    with trio.fail_after(limit):
        while True:
            if condition():
                return
            await trio.sleep(0.01)


def _call(port: int, path: str) -> Any:
    # A local subchannel pool: each channel makes its own connection (grpc-core otherwise
    # may hand a channel the connection a closed one left in its global pool).
    with grpc.insecure_channel(f"127.0.0.1:{port}",
                               options=[("grpc.enable_http_proxy", 0),
                                        ("grpc.use_local_subchannel_pool", 1)]) as channel:
        method = channel.unary_unary(path, request_serializer=Msg.SerializeToString,
                                     response_deserializer=Msg.FromString)
        try:
            return method(Msg(message="hi"), timeout=10).message
        except grpc.RpcError as exc:
            return exc.code()


async def test_calls_are_counted_by_method_and_status_and_unknown_paths_as_one_label(
        nursery: trio.Nursery) -> None:
    counters = GrpcStats()
    _host, port = await nursery.start(serve, SERVICES, ServerConfig(port=0, counters=counters))
    for path in ["/test.Echo/Say", "/test.Echo/Say", "/test.Echo/Fail", "/no.Such/Method",
                 "/other.Unknown/Path"]:
        await trio.to_thread.run_sync(_call, port, path)
    assert counters.calls == {
        ("/test.Echo/Say", StatusCode.OK): 2,
        ("/test.Echo/Fail", StatusCode.NOT_FOUND): 1,
        (UNKNOWN_METHOD, StatusCode.UNIMPLEMENTED): 2,
    }
    assert counters.connections_total == 5
    await until(lambda: counters.connections == 0)  # each client closed its channel


async def test_an_open_connection_is_counted_while_it_is_open(nursery: trio.Nursery) -> None:
    counters = GrpcStats()
    _host, port = await nursery.start(serve, SERVICES, ServerConfig(port=0, counters=counters))
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await until(lambda: counters.connections == 1)
    await stream.aclose()
    await until(lambda: counters.connections == 0)
    assert counters.connections_total == 1


async def test_each_store_id_has_its_own_counters_for_the_life_of_the_node() -> None:
    async with otp.node():
        first = grpc_counters("a")
        assert grpc_counters("a") is first and grpc_counters("b") is not first
    async with otp.node():
        assert grpc_counters("a") is not first


def test_a_copy_does_not_move_with_the_counters() -> None:
    counters = GrpcStats()
    counters.call_ended("/m", StatusCode.OK)
    copy = counters.copy()
    counters.call_ended("/m", StatusCode.OK)
    assert copy.calls == {("/m", StatusCode.OK): 1}
