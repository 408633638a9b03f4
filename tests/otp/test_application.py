"""otp.application: start order, environment, stop."""

import pytest
import trio

import otp
from otp import application, gen_server


class Holder(otp.GenServer):
    async def init(self, value):
        self.value = value

    async def handle_call(self, request, from_):
        return self.value


def make_app(name, started, needs=(), stopped=None):
    async def start(env):
        started.append(name)
        return await otp.supervisor.start_link([Holder.child_spec(env.get("value"),
                                                                   name=f"{name}.holder")])

    async def stop(env):
        if stopped is not None:
            stopped.append(name)

    return application.Application(name, start, env={"value": name.upper()},
                                   applications=needs, stop=stop)


async def test_start_returns_the_top_supervisor_pid():
    async with otp.node():
        pid = await application.start(make_app("a", []))
        assert otp.is_alive(pid)
        assert await otp.supervisor.which_children(pid) != []


async def test_applications_needed_are_started_first_and_once():
    started = []
    base = make_app("base", started)
    mid = make_app("mid", started, needs=[base])
    top = make_app("top", started, needs=[base, mid])
    async with otp.node():
        await application.start(top)
        assert started == ["base", "mid", "top"]
        assert [a.name for a in application.which_applications()] == ["base", "mid", "top"]


async def test_the_environment_reaches_start_and_get_env():
    async with otp.node():
        await application.start(make_app("a", []))
        assert await gen_server.call("a.holder", "value") == "A"
        assert application.get_env("a", "value") == "A"
        assert application.get_env("a", "missing", 5) == 5


async def test_the_environment_is_read_only():
    app = make_app("a", [])
    with pytest.raises(TypeError):
        app.env["value"] = "changed"  # type: ignore[index]


async def test_starting_a_running_application_raises_already_started():
    async with otp.node():
        app = make_app("a", [])
        pid = await application.start(app)
        with pytest.raises(otp.AlreadyStarted) as info:
            await application.start(app)
        assert info.value.pid == pid


async def test_stop_stops_the_tree_then_runs_the_stop_callback():
    stopped = []
    async with otp.node():
        app = make_app("a", [], stopped=stopped)
        pid = await application.start(app)
        holder = otp.whereis("a.holder")
        await application.stop("a")
        assert not otp.is_alive(pid) and not otp.is_alive(holder)
        assert stopped == ["a"]
        assert application.which_applications() == []


async def test_stopping_an_application_that_is_not_running_raises_noproc():
    async with otp.node():
        with pytest.raises(otp.NoProc):
            await application.stop("nothing")


async def test_an_application_whose_tree_ended_is_no_longer_listed():
    async with otp.node():
        otp.trap_exits(True)
        pid = await application.start(make_app("a", []))
        otp.exit(pid, otp.KILL)
        await otp.receive(match=lambda m: isinstance(m, otp.Exit))
        assert application.which_applications() == []


def test_an_application_needs_a_name():
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        application.Application("", lambda env: None)  # type: ignore[arg-type, return-value]


async def test_two_nodes_side_by_side_each_run_their_own_applications():
    listed = {}
    both_started = trio.Event()
    started = []

    async def run_node(label):
        async with otp.node():
            await application.start(make_app("a", started))
            if len(started) == 2:
                both_started.set()
            await both_started.wait()
            listed[label] = [app.name for app in application.which_applications()]
            await application.stop("a")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_node, 1)
        nursery.start_soon(run_node, 2)
    assert listed == {1: ["a"], 2: ["a"]}
