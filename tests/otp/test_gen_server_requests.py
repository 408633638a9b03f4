"""gen_server's asynchronous requests (OTP 25): send_request, wait_response,
receive_response, check_response and request id collections.

Ported from the single-node parts of OTP's lib/stdlib/test/gen_server_SUITE.erl
(``send_request``, ``send_request_receive_reqid_collection``,
``send_request_wait_reqid_collection``, ``send_request_check_reqid_collection``), with
seconds for the suite's milliseconds and virtual time instead of sleeps.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import otp
from otp import gen_server

from .core_helpers import drain, settle


class Suite(otp.GenServer):
    """The requests of gen_server_SUITE's own server that the request cases use."""

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        match request:
            case "started_p":
                return "ok"
            case ("delayed_answer", seconds):  # answered later, by a linked helper
                otp.spawn_link(reply_later, from_, seconds)
                return otp.NoReply()
            case "stop_shutdown":
                return otp.Stop(otp.SHUTDOWN)
            case "badreturn":
                return otp.Continue("not from handle_call")
            case "noreply":
                return otp.NoReply()
        return ("echo", request)


async def reply_later(from_: gen_server.From, seconds: float) -> None:
    await trio.sleep(seconds)
    gen_server.reply(from_, "delayed")


async def start_three() -> list[Any]:
    """Three servers, not linked to the test (one of them is stopped with SHUTDOWN)."""
    return [await gen_server.start(Suite, name=f"my_test_name{i}") for i in (1, 2, 3)]


# -- one request (gen_server_SUITE:send_request) -----------------------------------------------


async def test_send_request_returns_at_once_and_wait_response_returns_the_reply():
    """gen_server_SUITE:send_request: ``{reply, ok} = Async(my_test_name, started_p)``."""
    async with otp.node():
        await gen_server.start_link(Suite, name="my_test_name")
        req_id = gen_server.send_request("my_test_name", "started_p")
        assert isinstance(req_id, gen_server.ReqId)
        assert await gen_server.wait_response(req_id, timeout="infinity") == "ok"


async def test_two_requests_in_flight_are_answered_each_to_its_own_id(autojump_clock):
    """gen_server_SUITE:send_request: Promise1 and Promise2 outstanding at once."""
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        first = gen_server.send_request(pid, ("delayed_answer", 1.0))
        second = gen_server.send_request(pid, "started_p")
        assert await gen_server.wait_response(second, timeout=5) == "ok"
        assert await gen_server.wait_response(first, timeout=5) == "delayed"


async def test_check_response_of_a_message_that_is_not_the_answer_returns_none():
    """gen_server_SUITE:send_request: ``no_reply = check_response({foo, bar}, Promise3)``."""
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        req_id = gen_server.send_request(pid, "started_p")
        assert gen_server.check_response(("foo", "bar"), req_id) is None


async def test_the_answer_arrives_as_a_message_that_check_response_recognises():
    """gen_server_SUITE:send_request: the reply is a message in the mailbox, and
    ``{reply, ok} = check_response(Msg, Promise3)``."""
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        req_id = gen_server.send_request(pid, "started_p")
        msg = await otp.receive(timeout=1)
        assert gen_server.check_response(msg, req_id) == ("reply", "ok")


async def test_check_response_of_the_answer_to_another_request_returns_none():
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        mine = gen_server.send_request(pid, "started_p")
        other = gen_server.send_request(pid, "started_p")
        msg = await otp.receive(timeout=1)
        assert gen_server.check_response(msg, mine) == ("reply", "ok")
        assert gen_server.check_response(msg, other) is None


async def test_wait_response_timing_out_leaves_the_request_outstanding(autojump_clock):
    """gen_server_SUITE:send_request: ``timeout = wait_response(Promise5, 0)``, then
    ``{reply, delayed} = wait_response(Promise5, infinity)``."""
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        req_id = gen_server.send_request(pid, ("delayed_answer", 0.05))
        with pytest.raises(otp.CallTimeout) as info:
            await gen_server.wait_response(req_id, timeout=0)
        assert info.value.server == pid
        assert await gen_server.wait_response(req_id, timeout="infinity") == "delayed"


async def test_receive_response_timing_out_abandons_the_request(autojump_clock):
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        req_id = gen_server.send_request(pid, ("delayed_answer", 1.0))
        with pytest.raises(otp.CallTimeout):
            await gen_server.receive_response(req_id, timeout=0.5)
        with pytest.raises(otp.CallTimeout):  # the answer, due at 1 s, never comes
            await gen_server.receive_response(req_id, timeout=5)


async def test_an_abandoned_requests_late_answer_never_reaches_the_mailbox(autojump_clock):
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        req_id = gen_server.send_request(pid, ("delayed_answer", 1.0))
        with pytest.raises(otp.CallTimeout):
            await gen_server.receive_response(req_id, timeout=0.5)
        await trio.sleep(2)  # the helper has answered, at 1 s
        assert await gen_server.call(pid, "started_p") == "ok"
        await settle()
        assert await drain() == []


async def test_a_server_that_crashes_on_the_request_gives_server_exited():
    """gen_server_SUITE:send_request: ``{error, {{bad_return_value, badreturn}, _}}``."""
    async with otp.node():
        pid = await gen_server.start(Suite)
        req_id = gen_server.send_request(pid, "badreturn")
        with pytest.raises(otp.ServerExited) as info:
            await gen_server.wait_response(req_id)
        assert isinstance(info.value.reason, TypeError)


async def test_a_request_to_a_dead_pid_gives_noproc():
    """gen_server_SUITE:send_request: ``{error, {noproc, _}} = Async(Pid, started_p)``."""
    async with otp.node():
        pid = await gen_server.start(Suite)
        await gen_server.stop(pid)
        req_id = gen_server.send_request(pid, "started_p")
        with pytest.raises(otp.NoProc):
            await gen_server.wait_response(req_id)


async def test_a_request_to_an_unknown_name_gives_noproc_from_the_response_not_the_send():
    """gen_server_SUITE:send_request: ``{error, {noproc, _}} = Async(my_test_name, ...)``,
    from ``wait_response``; ``send_request`` itself does not fail."""
    async with otp.node():
        req_id = gen_server.send_request("my_test_name", "started_p")
        with pytest.raises(otp.NoProc) as info:
            await gen_server.receive_response(req_id, timeout=1)
        assert info.value.name == "my_test_name"


async def test_check_response_reports_an_error_as_a_tuple():
    async with otp.node():
        req_id = gen_server.send_request("nobody", "started_p")
        kind, exc = gen_server.check_response(await otp.receive(timeout=0), req_id)
        assert kind == "error" and isinstance(exc, otp.NoProc)


async def test_a_request_to_a_server_killed_while_it_waits_gives_server_exited():
    async with otp.node():
        pid = await gen_server.start(Suite)
        req_id = gen_server.send_request(pid, "noreply")
        otp.exit(pid, otp.KILL)
        with pytest.raises(otp.ServerExited) as info:
            await gen_server.wait_response(req_id)
        assert info.value.reason is otp.KILLED


async def test_the_server_exiting_after_replying_sends_nothing_more():
    async with otp.node():
        pid = await gen_server.start(Suite)
        req_id = gen_server.send_request(pid, "started_p")
        assert await gen_server.wait_response(req_id) == "ok"
        await gen_server.stop(pid)
        assert await drain() == []


async def test_a_reply_from_another_process_answers_the_request():
    class Delegating(otp.GenServer):
        async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
            otp.spawn(self.answer, from_)
            return otp.NoReply()

        @staticmethod
        async def answer(from_: gen_server.From) -> None:
            gen_server.reply(from_, "from a helper")

    async with otp.node():
        pid = await gen_server.start_link(Delegating)
        req_id = gen_server.send_request(pid, "anything")
        assert await gen_server.wait_response(req_id, timeout=1) == "from a helper"


async def test_a_forwarded_request_is_answered_by_the_server_it_was_forwarded_to():
    class Front(otp.GenServer):
        async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
            target, inner = request
            gen_server.forward(target, inner, from_)
            return otp.NoReply()

    async with otp.node():
        front = await gen_server.start_link(Front)
        back = await gen_server.start_link(Suite)
        req_id = gen_server.send_request(front, (back, "started_p"))
        assert await gen_server.wait_response(req_id, timeout=1) == "ok"


async def test_a_server_can_send_a_request_to_itself_and_check_the_answer_in_handle_info():
    class Selfish(otp.GenServer):
        async def init(self, parent: otp.Pid) -> None:
            self.parent = parent
            self.req_id = gen_server.send_request(otp.self(), "ping")

        async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
            return "pong"

        async def handle_info(self, msg: Any) -> Any:
            otp.send(self.parent, gen_server.check_response(msg, self.req_id))

    async with otp.node():
        await gen_server.start_link(Selfish, otp.self())
        assert await otp.receive(timeout=1) == ("reply", "pong")


async def test_only_the_process_that_sent_a_request_can_wait_for_it():
    async def waiter(req_id: gen_server.ReqId, parent: otp.Pid) -> None:
        try:
            await gen_server.wait_response(req_id, timeout=0)
        except ValueError:
            otp.send(parent, "refused")

    async with otp.node():
        pid = await gen_server.start_link(Suite)
        req_id = gen_server.send_request(pid, "started_p")
        otp.spawn(waiter, req_id, otp.self())
        assert await otp.receive(match=lambda m: m == "refused", timeout=1) == "refused"
        assert await gen_server.wait_response(req_id) == "ok"


async def test_send_request_to_something_that_is_not_a_name_raises_type_error():
    async with otp.node():
        with pytest.raises(TypeError):
            gen_server.send_request(42, "started_p")  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", ["forever", -1, True, [1]])
async def test_wait_response_with_an_invalid_timeout_raises_and_keeps_the_request(timeout):
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        req_id = gen_server.send_request(pid, "started_p")
        with pytest.raises((TypeError, ValueError), match="timeout"):
            await gen_server.receive_response(req_id, timeout=timeout)
        assert await gen_server.receive_response(req_id) == "ok"


# -- collections (gen_server_SUITE:send_request_*_reqid_collection) ------------------------------


def test_reqids_new_is_empty():
    assert gen_server.reqids_size(gen_server.reqids_new()) == 0


async def test_reqids_add_returns_a_new_collection_and_leaves_the_old_one_alone():
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        empty = gen_server.reqids_new()
        req_id = gen_server.send_request(pid, "started_p")
        one = gen_server.reqids_add(req_id, "req1", empty)
        assert gen_server.reqids_size(one) == 1 and len(one) == 1
        assert gen_server.reqids_size(empty) == 0
        assert gen_server.reqids_to_list(one) == [(req_id, "req1")]


async def test_reqids_add_of_a_request_already_in_the_collection_raises_value_error():
    """send_request_*_reqid_collection_error: ``reqids_add(ReqId1, req2, ReqIdC1)`` is
    ``badarg``."""
    async with otp.node():
        pid = await gen_server.start_link(Suite)
        req_id = gen_server.send_request(pid, "started_p")
        coll = gen_server.reqids_add(req_id, "req1", gen_server.reqids_new())
        with pytest.raises(ValueError):
            gen_server.reqids_add(req_id, "req2", coll)


async def three_requests(
    pid1: otp.Pid, pid2: otp.Pid, pid3: otp.Pid, second: Any = ("delayed_answer", 0.001)
) -> gen_server.ReqIdCollection:
    """``req1`` answered after 0.4 s, ``req2`` after 0.001 s (or ``second``), ``req3``
    after 0.2 s, as the suite's collection cases send them."""
    coll = gen_server.reqids_new()
    coll = gen_server.reqids_add(
        gen_server.send_request(pid1, ("delayed_answer", 0.4)), "req1", coll
    )
    coll = gen_server.reqids_add(gen_server.send_request(pid2, second), "req2", coll)
    coll = gen_server.reqids_add(
        gen_server.send_request(pid3, ("delayed_answer", 0.2)), "req3", coll
    )
    assert gen_server.reqids_size(coll) == 3
    return coll


@pytest.mark.parametrize("wait", ["receive_response", "wait_response"])
async def test_a_collection_is_answered_in_the_order_the_answers_arrive(wait, autojump_clock):
    """gen_server_SUITE:send_request_receive_reqid_collection and
    send_request_wait_reqid_collection: req2, then req3, then req1, each with the
    collection that remains; a request outside the collection is still answered."""
    response = getattr(gen_server, wait)
    async with otp.node():
        pid1, pid2, pid3 = await start_three()
        req_id0 = gen_server.send_request(pid1, "started_p")
        coll = await three_requests(pid1, pid2, pid3)
        reply, label, coll = await response(coll, timeout="infinity")
        assert (reply, label, gen_server.reqids_size(coll)) == ("delayed", "req2", 2)
        reply, label, coll = await response(coll, timeout=5.678)
        assert (reply, label, gen_server.reqids_size(coll)) == ("delayed", "req3", 1)
        reply, label, coll = await response(coll, timeout=5)
        assert (reply, label, gen_server.reqids_size(coll)) == ("delayed", "req1", 0)
        assert await response(req_id0, timeout="infinity") == "ok"


@pytest.mark.parametrize("wait", ["receive_response", "wait_response"])
async def test_waiting_on_an_empty_collection_raises_value_error(wait):
    """The suite's ``no_request = receive_response(ReqIdC6, 5000, true)``: there is nothing
    to wait for, so it is an error at once rather than a wait."""
    async with otp.node():
        with pytest.raises(ValueError):
            await getattr(gen_server, wait)(gen_server.reqids_new(), timeout=5)


async def test_receive_response_timing_out_abandons_every_request_of_the_collection(
    autojump_clock,
):
    """gen_server_SUITE:send_request_receive_reqid_collection_timeout: after the first
    answer, a deadline passes; the rest are abandoned and never answered."""
    async with otp.node():
        pid1, pid2, pid3 = await start_three()
        req_id0 = gen_server.send_request(pid1, "started_p")
        coll = gen_server.reqids_new()
        req_id1 = gen_server.send_request(pid1, ("delayed_answer", 1.0))
        coll = gen_server.reqids_add(req_id1, "req1", coll)
        coll = gen_server.reqids_add(
            gen_server.send_request(pid2, ("delayed_answer", 0.001)), "req2", coll
        )
        req_id3 = gen_server.send_request(pid3, ("delayed_answer", 0.5))
        coll = gen_server.reqids_add(req_id3, "req3", coll)
        reply, label, coll = await gen_server.receive_response(coll, timeout=0.1)
        assert (reply, label) == ("delayed", "req2")
        with pytest.raises(otp.CallTimeout):
            await gen_server.receive_response(coll, timeout=0.099)
        assert sorted(gen_server.reqids_to_list(coll), key=lambda p: p[1]) == [
            (req_id1, "req1"), (req_id3, "req3"),
        ]
        with pytest.raises(otp.CallTimeout):  # abandoned: their answers never come
            await gen_server.receive_response(coll, timeout=1.1)
        assert await gen_server.receive_response(req_id0, timeout="infinity") == "ok"
        assert await drain() == []


async def test_wait_response_timing_out_leaves_every_request_of_the_collection_outstanding(
    autojump_clock,
):
    """gen_server_SUITE:send_request_wait_reqid_collection_timeout: the requests were not
    abandoned, so they are answered later."""
    async with otp.node():
        pid1, pid2, pid3 = await start_three()
        coll = gen_server.reqids_new()
        coll = gen_server.reqids_add(
            gen_server.send_request(pid1, ("delayed_answer", 1.0)), "req1", coll
        )
        coll = gen_server.reqids_add(
            gen_server.send_request(pid2, ("delayed_answer", 0.001)), "req2", coll
        )
        coll = gen_server.reqids_add(
            gen_server.send_request(pid3, ("delayed_answer", 0.5)), "req3", coll
        )
        _, label, coll = await gen_server.wait_response(coll, timeout=0.1)
        assert label == "req2"
        with pytest.raises(otp.CallTimeout) as info:
            await gen_server.wait_response(coll, timeout=0.099)
        assert info.value.server is coll
        _, label, rest = await gen_server.wait_response(coll, timeout=1.5)
        assert label == "req3"
        _, label, _ = await gen_server.wait_response(rest, timeout=1.5)
        assert label == "req1"


@pytest.mark.parametrize("wait", ["receive_response", "wait_response"])
async def test_an_error_in_a_collection_is_raised_with_its_label_and_the_rest(
    wait, autojump_clock
):
    """gen_server_SUITE:send_request_*_reqid_collection_error: the server of req2 stops
    with ``shutdown`` before answering: ``{{error, {shutdown, _}}, req2, ReqIdC4}``."""
    async with otp.node():
        pid1, pid2, pid3 = await start_three()
        coll = await three_requests(pid1, pid2, pid3, second="stop_shutdown")
        with pytest.raises(otp.ServerExited) as info:
            await getattr(gen_server, wait)(coll, timeout=2)
        assert info.value.reason is otp.SHUTDOWN
        assert info.value.label == "req2"
        rest = info.value.reqids
        assert gen_server.reqids_size(rest) == 2
        _, label, rest = await getattr(gen_server, wait)(rest, timeout="infinity")
        assert label == "req3"
        _, label, rest = await getattr(gen_server, wait)(rest, timeout="infinity")
        assert label == "req1"


async def test_check_response_finds_each_answer_of_a_collection(autojump_clock):
    """gen_server_SUITE:send_request_check_reqid_collection: the messages, taken one by
    one, answer req2, req3 and req1; another request's answer answers none of them."""
    async with otp.node():
        pid1, pid2, pid3 = await start_three()
        req_id0 = gen_server.send_request(pid1, "started_p")
        msg0 = await otp.receive(timeout=0.1)
        coll = await three_requests(pid1, pid2, pid3)
        assert gen_server.check_response(msg0, coll) is None
        results = []
        while gen_server.reqids_size(coll):
            answer = gen_server.check_response(await otp.receive(timeout=1), coll)
            assert answer is not None
            result, label, coll = answer
            results.append((result, label))
        assert results == [
            (("reply", "delayed"), "req2"),
            (("reply", "delayed"), "req3"),
            (("reply", "delayed"), "req1"),
        ]
        assert gen_server.check_response(msg0, coll) is None
        assert gen_server.check_response(msg0, req_id0) == ("reply", "ok")


async def test_check_response_reports_an_error_of_a_collection_with_its_label(autojump_clock):
    """gen_server_SUITE:send_request_check_reqid_collection_error."""
    async with otp.node():
        pid1, pid2, pid3 = await start_three()
        coll = await three_requests(pid1, pid2, pid3, second="stop_shutdown")
        answer = gen_server.check_response(await otp.receive(timeout=1), coll)
        assert answer is not None
        (kind, exc), label, rest = answer
        assert (kind, label, gen_server.reqids_size(rest)) == ("error", "req2", 2)
        assert isinstance(exc, otp.ServerExited) and exc.reason is otp.SHUTDOWN


async def test_only_the_process_that_sent_the_requests_can_wait_for_a_collection():
    async def waiter(coll: gen_server.ReqIdCollection, parent: otp.Pid) -> None:
        try:
            await gen_server.wait_response(coll, timeout=0)
        except ValueError:
            otp.send(parent, "refused")

    async with otp.node():
        pid = await gen_server.start_link(Suite)
        coll = gen_server.reqids_add(
            gen_server.send_request(pid, "started_p"), "a", gen_server.reqids_new()
        )
        otp.spawn(waiter, coll, otp.self())
        assert await otp.receive(match=lambda m: m == "refused", timeout=1) == "refused"
