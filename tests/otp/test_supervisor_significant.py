"""otp.supervisor: significant children and auto_shutdown (OTP 24, EEP 56).

Each test names the supervisor_SUITE case (group ``significant``, or ``child_specs`` /
``sup_flags`` for the checks) it ports. A significant child that ends on its own (a
transient one normally, a temporary one with any reason) makes a supervisor with
``auto_shutdown="any_significant"`` shut down, one with ``"all_significant"`` once no
significant child runs; ends the supervisor causes itself never count.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import otp
from otp import dynamic_supervisor, gen_server, supervisor
from otp.supervisor import ChildSpec, Spec

from .supervisor_helpers import Recorder, pids_of, settle, wait_down


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="otp")


def child(child_id: str, restart: Any, significant: bool) -> ChildSpec:
    return Recorder.child_spec([], child_id, id=child_id, restart=restart,
                               significant=significant, shutdown=1.0)


async def end(pid: otp.Pid, reason: Any) -> None:
    """End a child the way supervisor_SUITE's ``terminate/2`` does: ``kill`` kills it,
    any other reason makes it stop with that reason."""
    if reason is otp.KILL:
        otp.exit(pid, otp.KILL)
    else:
        gen_server.cast(pid, reason)


async def started(sup: otp.Pid, *specs: ChildSpec) -> dict[Any, otp.Pid]:
    for one in specs:
        await supervisor.start_child(sup, one)
    pids = await pids_of(sup)
    assert all(pid is not None for pid in pids.values())
    return {k: v for k, v in pids.items() if v is not None}


async def exits(pids: list[otp.Pid]) -> list[Any]:
    """Wait for each of ``pids`` to end; return their reasons."""
    return [await wait_down(pid) for pid in pids]


AUTO_SHUTDOWNS = ["never", "any_significant", "all_significant"]
CHILD_ENDINGS = [otp.KILL, RuntimeError("abnormal"), otp.NORMAL]


# -- refused combinations --------------------------------------------------------------------


async def test_child_specs_auto_shutdown_never_refuses_a_significant_child(otp_node):
    """supervisor_SUITE:child_specs: with auto_shutdown never, a significant child is a bad
    combination, at start_link and at start_child."""
    with pytest.raises(ValueError, match="never"):
        await supervisor.start_link([child("c", "transient", True)])
    sup = await supervisor.start_link([])
    with pytest.raises(ValueError, match="never"):
        await supervisor.start_child(sup, child("c", "transient", True))
    assert await supervisor.which_children(sup) == []
    assert otp.is_alive(sup)


@pytest.mark.parametrize("auto_shutdown", ["any_significant", "all_significant"])
async def test_a_permanent_child_cannot_be_significant(otp_node, auto_shutdown):
    """As OTP's check_childspecs: significant is for transient and temporary children."""
    with pytest.raises(ValueError, match="permanent"):
        await supervisor.start_link([child("c", "permanent", True)], auto_shutdown=auto_shutdown)
    sup = await supervisor.start_link([], auto_shutdown=auto_shutdown)
    with pytest.raises(ValueError, match="permanent"):
        await supervisor.start_child(sup, child("c", "permanent", True))


async def test_sup_flags_an_unknown_auto_shutdown_is_refused(otp_node):
    """supervisor_SUITE:sup_flags: ``auto_shutdown => sometimes`` is invalid."""
    with pytest.raises(ValueError, match="auto_shutdown"):
        await supervisor.start_link([], auto_shutdown="sometimes")  # type: ignore[arg-type]


async def test_significant_must_be_a_bool():
    async def start() -> None:
        return None

    with pytest.raises(TypeError, match="significant"):
        ChildSpec("c", start, restart="transient", significant="yes")  # type: ignore[arg-type]
    assert ChildSpec("c", start).significant is False


async def test_significant_simple_a_dynamic_supervisor_refuses_a_significant_child(otp_node):
    """supervisor_SUITE:significant_simple and Elixir's dynamic_supervisor_test "with invalid
    child spec": a dynamic supervisor's auto_shutdown is never, so it refuses them."""
    sup = await dynamic_supervisor.start_link()
    with pytest.raises(ValueError, match="significant"):
        await dynamic_supervisor.start_child(sup, child("c", "transient", True))
    assert await dynamic_supervisor.count_children(sup) == {
        "specs": 0, "active": 0, "supervisors": 0, "workers": 0,
    }


# -- non-significant children never shut the supervisor down ---------------------------------


@pytest.mark.parametrize("how", CHILD_ENDINGS, ids=["kill", "abnormal", "normal"])
@pytest.mark.parametrize("auto_shutdown", AUTO_SHUTDOWNS)
async def test_nonsignificant_temporary(otp_node, auto_shutdown, how):
    """supervisor_SUITE:nonsignificant_temporary: a temporary child that is not
    significant ends (terminated by the supervisor, killed, abnormal, normal): the
    supervisor carries on, whatever its auto_shutdown."""
    sup = await supervisor.start_link([], auto_shutdown=auto_shutdown)
    pid = (await started(sup, child("child1", "temporary", False)))["child1"]
    await supervisor.terminate_child(sup, "child1")
    assert not otp.is_alive(pid)
    pid = (await started(sup, child("child1", "temporary", False)))["child1"]
    await end(pid, how)
    await wait_down(pid)
    await settle()
    assert otp.is_alive(sup)
    assert await supervisor.which_children(sup) == []


@pytest.mark.parametrize("how", CHILD_ENDINGS, ids=["kill", "abnormal", "normal"])
@pytest.mark.parametrize("auto_shutdown", AUTO_SHUTDOWNS)
async def test_nonsignificant_transient(otp_node, auto_shutdown, how):
    """supervisor_SUITE:nonsignificant_transient: likewise for a transient child that is
    not significant (restarted after an abnormal end, left down after a normal one)."""
    sup = await supervisor.start_link([], intensity=5, auto_shutdown=auto_shutdown)
    await started(sup, child("child1", "transient", False))
    await supervisor.terminate_child(sup, "child1")
    pid = await supervisor.restart_child(sup, "child1")
    assert pid is not None
    await end(pid, how)
    await wait_down(pid)
    await settle()
    assert otp.is_alive(sup)
    restarted = (await pids_of(sup))["child1"]
    assert (restarted is None) == (how is otp.NORMAL)


# -- significant temporary children --------------------------------------------------------


def temporaries() -> list[ChildSpec]:
    return [child("child1", "temporary", True), child("child2", "temporary", True),
            child("child3", "temporary", False)]


async def test_significant_temporary_terminated_by_the_supervisor_does_not_shut_it_down(
    otp_node,
):
    """supervisor_SUITE:significant_temporary, first case: terminate_child of a
    significant child is the supervisor's own doing."""
    sup = await supervisor.start_link([], intensity=5, auto_shutdown="any_significant")
    pids = await started(sup, *temporaries())
    await supervisor.terminate_child(sup, "child1")
    await settle()
    assert otp.is_alive(sup) and otp.is_alive(pids["child2"]) and otp.is_alive(pids["child3"])


@pytest.mark.parametrize("how", CHILD_ENDINGS, ids=["kill", "abnormal", "normal"])
async def test_significant_temporary_ending_at_all_shuts_down_any_significant(otp_node, how):
    """supervisor_SUITE:significant_temporary: a temporary significant child killed, ending
    abnormally or normally makes an any_significant supervisor stop the others in reverse
    order and exit with shutdown."""
    otp.trap_exits(True)
    sup = await supervisor.start_link([], intensity=5, auto_shutdown="any_significant")
    pids = await started(sup, *temporaries())
    refs = {name: otp.monitor(pid) for name, pid in pids.items()}
    sup_ref = otp.monitor(sup)
    await end(pids["child1"], how)
    downs = []
    while len(downs) < 4:
        down = await otp.receive(match=lambda m: type(m) is otp.Down)
        downs.append(down)
    names = {ref: name for name, ref in refs.items()} | {sup_ref: "sup"}
    assert [names[d.ref] for d in downs] == ["child1", "child3", "child2", "sup"]
    assert [d.reason for d in downs[1:]] == [otp.SHUTDOWN] * 3


async def test_significant_temporary_all_significant_waits_for_the_last_one(otp_node):
    """supervisor_SUITE:significant_temporary, all_significant case: the end of one of two
    significant children changes nothing; the end of the last one shuts it down."""
    otp.trap_exits(True)
    sup = await supervisor.start_link([], intensity=5, auto_shutdown="all_significant")
    pids = await started(sup, *temporaries())
    await end(pids["child1"], otp.NORMAL)
    await wait_down(pids["child1"])
    await settle()
    assert otp.is_alive(sup) and otp.is_alive(pids["child2"]) and otp.is_alive(pids["child3"])
    await end(pids["child2"], otp.NORMAL)
    assert await exits([pids["child2"], pids["child3"], sup]) == [
        otp.NORMAL, otp.SHUTDOWN, otp.SHUTDOWN,
    ]


# -- significant transient children -----------------------------------------------------------


def transients() -> list[ChildSpec]:
    return [child("child1", "transient", True), child("child2", "transient", True),
            child("child3", "transient", False)]


async def test_significant_transient_terminated_by_the_supervisor_does_not_shut_it_down(
    otp_node,
):
    """supervisor_SUITE:significant_transient, first case."""
    sup = await supervisor.start_link([], intensity=5, auto_shutdown="any_significant")
    pids = await started(sup, *transients())
    await supervisor.terminate_child(sup, "child1")
    await settle()
    assert otp.is_alive(sup) and otp.is_alive(pids["child2"]) and otp.is_alive(pids["child3"])
    assert await supervisor.restart_child(sup, "child1") is not None


@pytest.mark.parametrize("how", [otp.KILL, RuntimeError("abnormal")], ids=["kill", "abnormal"])
async def test_significant_transient_ending_abnormally_is_restarted(otp_node, how):
    """supervisor_SUITE:significant_transient: a transient significant child killed or
    ending abnormally is restarted; the supervisor carries on."""
    sup = await supervisor.start_link([], intensity=5, auto_shutdown="any_significant")
    pids = await started(sup, *transients())
    await end(pids["child1"], how)
    await wait_down(pids["child1"])
    await settle()
    after = await pids_of(sup)
    assert otp.is_alive(sup)
    assert after["child1"] not in (None, pids["child1"])
    assert after["child2"] is pids["child2"] and after["child3"] is pids["child3"]


@pytest.mark.parametrize("reason", [otp.NORMAL, otp.SHUTDOWN, otp.shutdown("done")])
async def test_significant_transient_ending_normally_shuts_down_any_significant(
    otp_node, reason
):
    """supervisor_SUITE:significant_transient: a normal end (normal, shutdown,
    {shutdown, _}) of a transient significant child shuts an any_significant supervisor
    down: the others are stopped in reverse order, then it exits with shutdown."""
    otp.trap_exits(True)
    sup = await supervisor.start_link([], intensity=5, auto_shutdown="any_significant")
    pids = await started(sup, *transients())
    await end(pids["child1"], reason)
    assert await exits([pids["child1"], pids["child3"], pids["child2"], sup]) == [
        reason, otp.SHUTDOWN, otp.SHUTDOWN, otp.SHUTDOWN,
    ]
    msg = await otp.receive(match=lambda m: type(m) is otp.Exit and m.pid == sup)
    assert msg.reason is otp.SHUTDOWN


async def test_significant_transient_all_significant_waits_for_the_last_one(otp_node):
    """supervisor_SUITE:significant_transient, all_significant case."""
    otp.trap_exits(True)
    sup = await supervisor.start_link([], intensity=5, auto_shutdown="all_significant")
    pids = await started(sup, *transients())
    await end(pids["child1"], otp.NORMAL)
    await wait_down(pids["child1"])
    await settle()
    assert otp.is_alive(sup)
    assert await supervisor.which_children(sup) == [
        ("child1", None, "worker"), ("child2", pids["child2"], "worker"),
        ("child3", pids["child3"], "worker"),
    ]
    await end(pids["child2"], otp.NORMAL)
    assert await exits([pids["child3"], sup]) == [otp.SHUTDOWN, otp.SHUTDOWN]


async def test_all_significant_does_not_count_a_significant_child_stopped_by_terminate_child(
    otp_node,
):
    """Only running significant children hold an all_significant supervisor up: one that
    terminate_child stopped is not waited for (as OTP checks the running children)."""
    otp.trap_exits(True)
    sup = await supervisor.start_link([], intensity=5, auto_shutdown="all_significant")
    pids = await started(sup, *transients())
    await supervisor.terminate_child(sup, "child2")
    await end(pids["child1"], otp.NORMAL)
    assert await exits([pids["child3"], sup]) == [otp.SHUTDOWN, otp.SHUTDOWN]


# -- bystanders and escalation ----------------------------------------------------------------


@pytest.mark.parametrize("auto_shutdown", ["any_significant", "all_significant"])
@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
async def test_significant_bystander(otp_node, strategy, auto_shutdown):
    """supervisor_SUITE:significant_bystander: significant children stopped because a
    sibling died (one_for_all, rest_for_one) do not trigger auto_shutdown; they are
    restarted with the others."""
    sup = await supervisor.start_link([], strategy=strategy, intensity=5,
                                      auto_shutdown=auto_shutdown)
    pids = await started(sup, child("child1", "transient", True),
                         child("child2", "transient", False), child("child3", "transient", True))
    await end(pids["child2"], otp.KILL)
    await wait_down(pids["child2"])
    await settle()
    assert otp.is_alive(sup)
    after = await pids_of(sup)
    replaced = {"one_for_one": {"child2"}, "one_for_all": {"child1", "child2", "child3"},
                "rest_for_one": {"child2", "child3"}}[strategy]
    for name, pid in pids.items():
        assert after[name] is not None and otp.is_alive(after[name])
        assert (after[name] is not pid) == (name in replaced)


async def test_significant_escalation_a_significant_supervisor_shuts_its_parent_down(otp_node):
    """supervisor_SUITE:significant_escalation, first case: B (significant child of A, both
    any_significant) shuts down when its significant worker C ends normally; B's end (with
    shutdown, a normal reason) then shuts A down."""
    otp.trap_exits(True)

    async def start_b() -> otp.Pid | None:
        return await supervisor.start_link([], auto_shutdown="any_significant")

    top = await supervisor.start_link([], auto_shutdown="any_significant")
    middle = await supervisor.start_child(
        top, ChildSpec("sup1", start_b, restart="transient", type="supervisor", significant=True)
    )
    assert middle is not None
    worker = await supervisor.start_child(middle, child("child1", "transient", True))
    assert worker is not None
    await end(worker, otp.NORMAL)
    assert await exits([worker, middle, top]) == [otp.NORMAL, otp.SHUTDOWN, otp.SHUTDOWN]


async def test_significant_escalation_stops_at_a_non_significant_supervisor(otp_node):
    """supervisor_SUITE:significant_escalation, second case: when B is not significant, its
    auto-shutdown leaves A running (a transient B that ended with shutdown stays down)."""
    otp.trap_exits(True)

    async def start_b() -> otp.Pid | None:
        return await supervisor.start_link([], auto_shutdown="any_significant")

    top = await supervisor.start_link([], auto_shutdown="any_significant")
    middle = await supervisor.start_child(
        top, ChildSpec("sup1", start_b, restart="transient", type="supervisor")
    )
    assert middle is not None
    worker = await supervisor.start_child(middle, child("child1", "transient", True))
    assert worker is not None
    await end(worker, otp.NORMAL)
    assert await exits([worker, middle]) == [otp.NORMAL, otp.SHUTDOWN]
    await settle()
    assert otp.is_alive(top)
    assert await supervisor.which_children(top) == [("sup1", None, "supervisor")]


# -- the class form ---------------------------------------------------------------------------


class Session(supervisor.Supervisor):
    """A unit of work: the session ends when its connection (significant) ends."""

    async def init(self) -> Spec:
        return Spec(
            [child("connection", "transient", True), child("cache", "permanent", False)],
            strategy="one_for_all",
            auto_shutdown="any_significant",
        )


async def test_the_class_form_takes_auto_shutdown_from_its_spec(otp_node):
    otp.trap_exits(True)
    sup = await supervisor.start_link(Session)
    assert sup is not None
    pids = await pids_of(sup)
    connection = pids["connection"]
    assert connection is not None
    await end(connection, otp.NORMAL)
    assert await wait_down(sup) is otp.SHUTDOWN
