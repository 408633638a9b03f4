"""``Call.writable(at_most)``: the room promised to a call that says how much it means to
send is only that much, so the connection's other calls are not held up by room it will
not use (before, one call was promised all of the connection's room and the others of
the same connection waited until it had sent it or ended).

Driven by a grpcio client: the calls of one channel share one HTTP/2 connection.
"""

from __future__ import annotations

import grpc
import trio

from exesdb.grpc.protos import shared_pb2
from exesdb.grpc.rpc import Call, Method
from exesdb.grpc.server import ServerConfig, serve

Msg = shared_pb2.BadRequest


class _Holds:
    def __init__(self) -> None:
        self.rooms: dict[str, int] = {}
        self.held: dict[str, trio.Event] = {"a": trio.Event(), "b": trio.Event()}
        self.release = trio.Event()


def _services(holds: _Holds) -> dict[str, Method]:
    async def hold(call: Call) -> None:
        # request "NAME AT_MOST": ask for room, keep the promise until released
        name, at_most = (await call.receive_one()).message.split()
        holds.rooms[name] = await call.writable(int(at_most))
        holds.held[name].set()
        await holds.release.wait()
        await call.send(Msg(message=name))

    return {"/test.Room/Hold": Method(Msg, Msg, "unary", hold)}


async def test_a_call_promised_what_it_asked_for_leaves_the_rest_to_the_others(
    nursery: trio.Nursery,
) -> None:
    holds = _Holds()
    _host, port = await nursery.start(serve, _services(holds), ServerConfig(port=0))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                    options=[("grpc.enable_http_proxy", 0)])
    hold = channel.unary_unary("/test.Room/Hold", request_serializer=Msg.SerializeToString,
                               response_deserializer=Msg.FromString)
    try:
        first = hold.future(Msg(message="a 1000"))
        with trio.fail_after(10):  # (a hang guard, not a timing)
            await holds.held["a"].wait()
        second = hold.future(Msg(message="b 1000"))  # the same connection
        with trio.fail_after(10):
            await holds.held["b"].wait()  # while the first still holds its promise
        assert holds.rooms == {"a": 1000, "b": 1000}
        holds.release.set()
        replies = await trio.to_thread.run_sync(lambda: (first.result(10), second.result(10)))
        assert [reply.message for reply in replies] == ["a", "b"]
    finally:
        holds.release.set()
        channel.close()
