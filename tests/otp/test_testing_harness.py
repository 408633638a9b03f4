"""otp.testing: the fixtures, the node driver, the strategies, the model and the checks."""

from __future__ import annotations

import time

import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import otp
from otp import supervisor
from otp.testing import (
    Ambiguous,
    CallAfterExit,
    Concurrently,
    DriverTimeout,
    Exited,
    ExitedTogether,
    Fault,
    InjectedFault,
    KilledTogether,
    Model,
    NodeDriver,
    Sup,
    TreeCheck,
    TreeMismatch,
    Worker,
    check_schedule,
    compare_exits,
    compare_terminates,
    fault_reasons,
    fault_schedules,
    reasons_for,
    run_supervision_machine,
    trees,
)

FEW = settings(max_examples=10, stateful_step_count=8, deadline=None)


def three_workers(strategy="one_for_one", intensity=3, period=5.0, **worker):
    return Sup(
        "root", strategy=strategy, intensity=intensity, period=period,
        children=tuple(Worker(f"w{i}", **worker) for i in (1, 2, 3)),
    )


# -- fixtures --------------------------------------------------------------------------------


async def test_otp_node_fixture_runs_the_test_as_the_main_process(otp_node):
    assert otp.self() == otp_node.main
    otp.send(otp.self(), "hello")
    assert await otp.receive(timeout=0) == "hello"


async def test_otp_node_fixture_runs_in_virtual_time_with_autojump_clock(otp_node, autojump_clock):
    start = time.monotonic()
    with pytest.raises(otp.ReceiveTimeout):
        await otp.receive(timeout=3600)
    assert trio.current_time() >= 3600
    assert time.monotonic() - start < 5


async def test_otp_node_fixture_shuts_down_what_the_test_started(otp_node):
    sup = await supervisor.start_link([])
    assert otp.is_alive(sup)
    # the node stops it after the test; nothing to assert here but that teardown is clean


def test_otp_driver_fixture_keeps_the_node_between_calls(otp_driver):
    sup = otp_driver.run(supervisor.start_link, [])
    assert otp_driver.run(supervisor.count_children, sup)["specs"] == 0
    assert otp.is_alive(sup)


# -- NodeDriver --------------------------------------------------------------------------------


def test_node_driver_returns_results_and_reraises_exceptions():
    async def boom():
        raise KeyError("x")

    async def self_pid():
        return otp.self()

    with NodeDriver() as driver:
        assert driver.run(self_pid) == driver.node.main
        with pytest.raises(KeyError):
            driver.run(boom)
        assert isinstance(driver.run(self_pid), otp.Pid)


def test_node_driver_runs_on_a_virtual_clock():
    async def sleep_an_hour():
        await trio.sleep(3600)
        return trio.current_time()

    with NodeDriver() as driver:
        assert driver.run(sleep_an_hour) >= 3600


def test_node_driver_reports_a_call_that_never_finishes():
    driver = NodeDriver(timeout=0.3)
    with pytest.raises(DriverTimeout):
        driver.run(trio.sleep_forever)
    assert driver.closed  # cancelled, so that the thread can run trio again
    driver.close()
    with NodeDriver() as again:
        assert again.run(trio.sleep, 0) is None


def test_node_driver_close_shuts_the_node_down_in_order():
    log = []

    class Logged(otp.GenServer):
        async def init(self, tag):
            otp.trap_exits(True)
            self.tag = tag

        async def terminate(self, reason):
            log.append((self.tag, reason))

    driver = NodeDriver()
    driver.run(supervisor.start_link, [Logged.child_spec(i, id=i) for i in (1, 2, 3)])
    driver.close()
    assert log == [(3, otp.SHUTDOWN), (2, otp.SHUTDOWN), (1, otp.SHUTDOWN)]
    with pytest.raises(RuntimeError, match="closed"):
        driver.run(trio.sleep, 0)


# -- descriptions and strategies ---------------------------------------------------------------


def test_sup_rejects_duplicate_child_ids():
    with pytest.raises(ValueError, match="duplicate"):
        Sup(children=(Worker("a"), Worker("a")))


def test_descriptions_reject_bad_values():
    with pytest.raises(ValueError):
        Worker("a", restart="sometimes")
    with pytest.raises(ValueError):
        Worker("a", shutdown=0)
    with pytest.raises(ValueError):
        Sup(strategy="one_for_some")


def test_walk_and_find_give_every_node_by_path():
    tree = Sup(children=(Worker("a"), Sup("s", children=(Worker("b"),))))
    assert [p for p, _ in tree.walk()] == [(), ("a",), ("s",), ("s", "b")]
    assert tree.find(("s", "b")) == Worker("b")
    assert tree.find(("a", "b")) is None
    assert tree.find(("nope",)) is None


@given(trees(max_depth=2, min_width=1, max_width=3))
def test_trees_respect_the_depth_and_width_bounds(tree):
    ids = [p[-1] for p, _ in tree.walk() if p]
    assert len(ids) == len(set(ids))
    for path, node in tree.walk():
        assert len(path) <= 3
        if isinstance(node, Sup):
            assert 1 <= len(node.children) <= 3
            assert len(path) <= 2


@given(trees(strategies=st.just("rest_for_one"), restarts=st.just("transient")))
def test_trees_take_a_strategy_for_any_field(tree):
    for path, node in tree.walk():
        if isinstance(node, Sup):
            assert node.strategy == "rest_for_one"
        if path:
            assert node.restart == "transient"


@given(st.data())
def test_fault_schedules_aim_at_processes_of_the_tree(data):
    tree = data.draw(trees())
    schedule = data.draw(fault_schedules(tree, max_size=5))
    paths = {p for p, _ in tree.walk()}
    for fault in schedule:
        assert fault.path in paths
        assert fault.delay >= 0


@given(st.data())
def test_own_workers_get_only_reasons_an_exit_signal_can_carry(data):
    trapping = Worker("w", trap_exit=True, start=supervisor.start_link)
    plain = Worker("w", trap_exit=False, start=supervisor.start_link)
    assert data.draw(reasons_for(trapping, fault_reasons())) is otp.KILL
    assert data.draw(reasons_for(plain, fault_reasons())) is not otp.NORMAL
    assert data.draw(reasons_for(Worker("w"), st.just(otp.NORMAL))) is otp.NORMAL


# -- the model -----------------------------------------------------------------------------------


def test_model_one_for_one_restarts_only_the_failed_child():
    model = Model(three_workers())
    model.start(0.0)
    before = model.processes()
    step = model.fault(("w2",), otp.KILL, 1.0)
    after = model.processes()
    assert step.exits == [Exited(("w2",), otp.KILLED)]
    assert step.started == [("w2",)]
    assert after[("w1",)] == before[("w1",)] and after[("w3",)] == before[("w3",)]
    assert after[("w2",)][0] != before[("w2",)][0]


def test_model_one_for_all_stops_the_others_in_reverse_then_restarts_all():
    model = Model(three_workers("one_for_all"))
    model.start(0.0)
    step = model.fault(("w2",), InjectedFault("x"), 0.0)
    assert [e.path for e in step.exits] == [("w2",), ("w3",), ("w1",)]
    assert step.started == [("w1",), ("w2",), ("w3",)]


def test_model_rest_for_one_restarts_the_failed_child_and_later_ones():
    model = Model(three_workers("rest_for_one"))
    model.start(0.0)
    step = model.fault(("w2",), otp.KILL, 0.0)
    assert [e.path for e in step.exits] == [("w2",), ("w3",)]
    assert step.started == [("w2",), ("w3",)]


def test_model_transient_is_not_restarted_after_a_normal_exit():
    model = Model(three_workers(restart="transient"))
    model.start(0.0)
    step = model.fault(("w1",), otp.shutdown("done"), 0.0)
    assert step.started == []
    assert model.listing(())[0] == ("w1", False, "worker")


def test_model_temporary_is_removed_when_it_ends():
    model = Model(three_workers(restart="temporary"))
    model.start(0.0)
    step = model.fault(("w1",), InjectedFault("x"), 0.0)
    assert step.removed == [("w1",)]
    assert [i for i, _, _ in model.listing(())] == ["w2", "w3"]


def test_model_gives_up_past_the_intensity_and_the_parent_restarts_the_supervisor():
    tree = Sup(children=(Worker("a"), Sup("s", intensity=1, period=5.0, children=(Worker("b"),))))
    model = Model(tree)
    model.start(0.0)
    model.fault(("s", "b"), otp.KILL, 1.0)
    step = model.fault(("s", "b"), otp.KILL, 2.0)
    assert step.gave_up == [("s",)]
    assert step.exits == [Exited(("s", "b"), otp.KILLED), Exited(("s",), otp.SHUTDOWN)]
    assert step.started == [("s",), ("s", "b")]


def test_model_restarts_outside_the_period_do_not_add_up():
    model = Model(three_workers(intensity=1, period=5.0))
    model.start(0.0)
    model.fault(("w1",), otp.KILL, 1.0)
    step = model.fault(("w1",), otp.KILL, 7.0)
    assert step.gave_up == []


def test_model_kills_the_children_of_a_killed_supervisor_together():
    tree = Sup(children=(Sup("s", children=(Worker("a"), Worker("b"))),))
    model = Model(tree)
    model.start(0.0)
    step = model.fault(("s",), otp.KILL, 0.0)
    assert step.exits == [
        KilledTogether(frozenset({("s", "a"), ("s", "b")})), Exited(("s",), otp.KILLED)
    ]


def test_model_times_a_shutdown_that_kills_a_slow_terminate():
    tree = Sup(children=(Worker("a", shutdown=2.0, terminate_delay=3.0),))
    model = Model(tree)
    model.start(0.0)
    step = model.shutdown_root(10.0)
    assert step.exits == [Exited(("a",), otp.KILLED), Exited((), otp.SHUTDOWN)]
    assert step.terminates == [(("a",), otp.SHUTDOWN)]
    assert step.end == 12.0


def test_model_refuses_to_order_two_timers_at_the_same_instant():
    tree = Sup(children=(Sup("s", shutdown=2.0, children=(Worker("a", shutdown=2.0,
                                                                    terminate_delay=3.0),)),))
    model = Model(tree)
    model.start(0.0)
    with pytest.raises(Ambiguous):
        model.try_("shutdown_root", 1.0)
    assert model.root_alive  # unchanged


def test_model_run_time_calls_report_the_errors_of_the_contract():
    model = Model(three_workers())
    model.start(0.0)
    assert model.restart_child((), "w1", 0.0).error == "Running"
    assert model.delete_child((), "w1", 0.0).error == "Running"
    assert model.terminate_child((), "nope", 0.0).error == "NotFound"
    assert model.start_child((), Worker("w1"), 0.0).error == "AlreadyStarted"
    model.terminate_child((), "w1", 0.0)
    assert model.start_child((), Worker("w1"), 0.0).error == "AlreadyPresent"
    assert model.restart_child((), "w1", 0.0).result_started


def test_descriptions_refuse_what_a_supervisor_refuses():
    with pytest.raises(ValueError, match="transient or temporary"):
        Sup(auto_shutdown="any_significant", children=(Worker("w", significant=True),))
    with pytest.raises(ValueError, match="never"):
        Sup(children=(Worker("w", restart="transient", significant=True),))
    with pytest.raises(ValueError, match="workers"):
        Sup(form="dynamic", children=(Sup("s"),))
    with pytest.raises(ValueError, match="one_for_one"):
        Sup(form="dynamic", strategy="one_for_all")
    with pytest.raises(ValueError, match="max_children"):
        Sup(form="dynamic", max_children=1, children=(Worker("a"), Worker("b")))
    with pytest.raises(ValueError, match="max_children"):
        Sup(max_children=3)
    with pytest.raises(ValueError, match="failed_starts"):
        Fault(("w",), otp.KILL, failed_starts=-1)


def significant_pair(auto_shutdown="any_significant"):
    return Sup("root", auto_shutdown=auto_shutdown, children=(
        Worker("a", restart="transient", significant=True),
        Worker("b", restart="temporary", significant=True),
        Worker("c"),
    ))


def test_model_a_significant_child_ending_normally_shuts_an_any_significant_sup_down():
    model = Model(significant_pair())
    model.start(0.0)
    step = model.fault(("a",), otp.NORMAL, 1.0)
    assert step.auto_shutdown == [()]
    assert step.exits == [Exited(("a",), otp.NORMAL), Exited(("c",), otp.SHUTDOWN),
                          Exited(("b",), otp.SHUTDOWN), Exited((), otp.SHUTDOWN)]
    assert step.root_exited and step.root_exit is otp.SHUTDOWN and step.gave_up == []


def test_model_a_transient_significant_child_that_crashes_is_restarted_instead():
    model = Model(significant_pair())
    model.start(0.0)
    step = model.fault(("a",), InjectedFault("x"), 1.0)
    assert step.auto_shutdown == [] and step.started == [("a",)]


def test_model_all_significant_waits_for_the_last_significant_child():
    model = Model(significant_pair("all_significant"))
    model.start(0.0)
    assert model.fault(("b",), InjectedFault("x"), 1.0).auto_shutdown == []  # temporary
    assert model.terminate_child((), "a", 2.0).auto_shutdown == []  # not on its own
    model.restart_child((), "a", 3.0)
    step = model.fault(("a",), otp.shutdown("done"), 4.0)
    assert step.auto_shutdown == [()] and step.root_exited


def test_model_auto_shutdown_escalates_through_a_significant_supervisor():
    tree = Sup("root", auto_shutdown="any_significant", children=(
        Worker("w"),
        Sup("s", restart="transient", significant=True, auto_shutdown="any_significant",
            children=(Worker("x", restart="transient", significant=True),)),
    ))
    model = Model(tree)
    model.start(0.0)
    step = model.fault(("s", "x"), otp.NORMAL, 1.0)
    assert step.auto_shutdown == [("s",), ()]
    assert [e.path for e in step.exits] == [("s", "x"), ("s",), ("w",), ()]


def test_model_retries_a_failed_restart_each_try_counting_toward_the_intensity():
    model = Model(three_workers(intensity=3, period=5.0))
    model.start(0.0)
    step = model.fault(("w1",), otp.KILL, 1.0, failed_starts=2)
    assert step.started == [("w1",)] and step.gave_up == []  # 3rd try works: 3 restarts
    step = model.fault(("w2",), otp.KILL, 2.0)
    assert step.gave_up == [()]  # a 4th restart within 5 s


def test_model_one_for_all_retry_stops_what_the_failed_round_started():
    model = Model(three_workers("one_for_all", intensity=5))
    model.start(0.0)
    step = model.fault(("w2",), otp.KILL, 1.0, failed_starts=1)
    # round 1: w3, w1 stopped; w1 started, w2 fails; round 2: w1 stopped, all started
    assert step.started == [("w1",), ("w1",), ("w2",), ("w3",)]
    assert [e.path for e in step.exits] == [("w2",), ("w3",), ("w1",)]  # new w1's: unseen


def test_model_a_call_after_the_exit_sees_the_child_restarting():
    model = Model(three_workers(intensity=10))
    model.start(0.0)
    step = model.fault(("w1",), otp.KILL, 1.0, failed_starts=5,
                       then=CallAfterExit("count_children"))
    assert step.counts == {"specs": 3, "active": 2, "supervisors": 0, "workers": 3}
    assert step.started == [("w1",)]  # it keeps trying until its start works
    step = model.fault(("w1",), otp.KILL, 2.0, failed_starts=5,
                       then=CallAfterExit("delete_child"))
    assert step.error == "Restarting"


def test_model_terminate_child_while_restarting_ends_the_retries():
    model = Model(three_workers(intensity=10))
    model.start(0.0)
    step = model.fault(("w1",), otp.KILL, 1.0, failed_starts=5,
                       then=CallAfterExit("terminate_child"))
    assert step.error is None and step.started == []
    assert model.listing(())[0] == ("w1", False, "worker")
    # 1 of its 5 failing starts was used; restart_child's start, by the same supervisor,
    # uses the next one
    assert model.restart_child((), "w1", 2.0).error == "StartChildError"


def test_model_a_dynamic_supervisor_lists_a_restarted_child_last():
    tree = Sup("root", form="dynamic", children=(Worker("a"), Worker("b"), Worker("c")))
    model = Model(tree)
    model.start(0.0)
    model.fault(("a",), otp.KILL, 1.0)
    assert [i for i, _, _ in model.listing(())] == ["b", "c", "a"]


def test_model_a_dynamic_supervisor_forgets_a_child_that_is_not_restarted():
    tree = Sup("root", form="dynamic", children=(Worker("a", restart="transient"),))
    model = Model(tree)
    model.start(0.0)
    step = model.fault(("a",), otp.NORMAL, 1.0)
    assert step.removed == [("a",)] and model.listing(()) == []


def test_model_a_dynamic_supervisor_stops_its_children_at_once():
    tree = Sup("root", form="dynamic", children=(
        Worker("a", trap_exit=False), Worker("b", trap_exit=False),
        Worker("slow", terminate_delay=3.0, shutdown=5.0),
        Worker("slower", terminate_delay=3.0, shutdown=2.0),
    ))
    model = Model(tree)
    model.start(0.0)
    step = model.shutdown_root(10.0)
    assert step.exits == [
        ExitedTogether((Exited(("b",), otp.SHUTDOWN), Exited(("a",), otp.SHUTDOWN))),
        Exited(("slower",), otp.KILLED), Exited(("slow",), otp.SHUTDOWN),
        Exited((), otp.SHUTDOWN),
    ]
    assert step.terminates == [
        Concurrently(((("slower",), otp.SHUTDOWN), (("slow",), otp.SHUTDOWN)))
    ]
    assert step.end == 13.0


def test_model_a_restarting_dynamic_child_counts_against_max_children():
    tree = Sup("root", form="dynamic", intensity=10, max_children=2,
               children=(Worker("a"), Worker("b")))
    model = Model(tree)
    model.start(0.0)
    step = model.fault(("a",), otp.KILL, 1.0, failed_starts=5,
                       then=CallAfterExit("start_child", Worker("c")))
    assert step.error == "MaxChildren"
    step = model.fault(("b",), otp.KILL, 2.0, failed_starts=5,
                       then=CallAfterExit("terminate_child"))
    assert step.error is None and [i for i, _, _ in model.listing(())] == ["a"]


def test_compare_terminates_accepts_any_order_inside_concurrently_only():
    calls = [(("x",), otp.SHUTDOWN), Concurrently(((("a",), 1), (("b",), 2)))]
    assert compare_terminates(calls, [(("x",), otp.SHUTDOWN), (("b",), 2), (("a",), 1)]) == []
    assert compare_terminates(calls, [(("b",), 2), (("x",), otp.SHUTDOWN), (("a",), 1)])
    assert compare_terminates(calls, [(("x",), otp.SHUTDOWN)])


def test_compare_exits_accepts_any_order_inside_a_group_but_children_first():
    group = [KilledTogether(frozenset({("s", "a"), ("s", "t"), ("s", "t", "b")}))]
    killed = otp.KILLED
    ok = [(("s", "t", "b"), killed), (("s", "a"), killed), (("s", "t"), killed)]
    bad = [(("s", "t"), killed), (("s", "t", "b"), killed), (("s", "a"), killed)]
    assert compare_exits(group, ok) == []
    assert compare_exits(group, bad)
    assert compare_exits([Exited(("a",), killed)], [(("a",), otp.SHUTDOWN)])
    assert compare_exits([], [(("a",), killed)])


# -- the checks against a live tree -----------------------------------------------------------


async def test_tree_check_passes_for_a_tree_that_follows_the_rules(otp_node, autojump_clock):
    check = TreeCheck(three_workers("rest_for_one", trap_exit=True, terminate_delay=1.0))
    await check.start()
    await check.fault(("w1",), InjectedFault("boom"))
    await check.fault(("w3",), otp.NORMAL, delay=1.3)
    await check.shutdown()
    check.close()
    assert check.steps == 4


async def test_tree_check_checks_calls_made_while_a_child_is_restarting(
    otp_node, autojump_clock
):
    check = TreeCheck(three_workers(intensity=20))
    await check.start()
    for op in ("count_children", "delete_child", "restart_child", "terminate_child"):
        step = await check.fault(("w1",), InjectedFault("boom"), failed_starts=3,
                                 then=CallAfterExit(op))
        assert step is not None
        if op == "terminate_child":
            assert step.error is None and step.started == []
        else:
            assert step.error in (None, "Restarting") and step.started == [("w1",)]
    await check.shutdown()
    check.close()


async def test_tree_check_follows_a_dynamic_supervisor(otp_node, autojump_clock):
    tree = Sup("root", children=(
        Worker("w"),
        Sup("pool", form="dynamic", intensity=10, max_children=3,
            children=(Worker("a"), Worker("b", terminate_delay=1.0, shutdown=0.5))),
    ))
    check = TreeCheck(tree)
    await check.start()
    await check.fault(("pool", "a"), otp.KILL, failed_starts=2,
                      then=CallAfterExit("count_children"))
    await check.start_child(("pool",), Worker("c"))
    step = await check.start_child(("pool",), Worker("d"))
    assert step is not None and step.error == "MaxChildren"
    await check.terminate_child(("pool",), "c")
    await check.fault(("pool",), otp.SHUTDOWN)
    await check.shutdown()
    check.close()


async def test_tree_check_follows_an_auto_shutdown(otp_node, autojump_clock):
    otp.trap_exits(True)
    check = TreeCheck(Sup("root", children=(
        Worker("w"),
        Sup("s", restart="transient", significant=False, auto_shutdown="all_significant",
            children=(Worker("x", restart="temporary", significant=True), Worker("y"))),
    ), auto_shutdown="never"))
    await check.start()
    step = await check.fault(("s", "x"), InjectedFault("x"))
    assert step is not None and step.auto_shutdown == [("s",)]
    await check.shutdown()
    check.close()


@given(st.data())
def test_generated_fault_schedules_match_the_model(data):
    tree = data.draw(trees(max_depth=1), label="tree")
    schedule = data.draw(fault_schedules(tree, max_size=6), label="schedule")
    with NodeDriver() as driver:
        driver.run(check_schedule, tree, schedule)


class Db(otp.GenServer):
    async def init(self):
        otp.trap_exits(True)


class Acceptor(otp.GenServer):
    pass


class Web(supervisor.Supervisor):
    async def init(self):
        return supervisor.Spec(
            [Acceptor.child_spec(id="acceptor"),
             Acceptor.child_spec(id="cache", restart="transient")],
            strategy="one_for_one",
        )


class App(supervisor.Supervisor):
    async def init(self):
        return supervisor.Spec(
            [Db.child_spec(id="db"), Web.child_spec(id="web")],
            strategy="rest_for_one", intensity=2, period=5.0,
        )


APP_TREE = Sup("app", strategy="rest_for_one", intensity=2, period=5.0, children=(
    Worker("db", trap_exit=True),
    Sup("web", children=(Worker("acceptor", trap_exit=False),
                         Worker("cache", restart="transient", trap_exit=False))),
))


async def start_app():
    return await supervisor.start_link(App)


def test_run_supervision_machine_turns_off_the_deadline_and_the_too_slow_check(monkeypatch):
    """An example runs a node through many steps and its draws interleave with it: their
    timing is no signal (as for hypothesis's own state machine TestCase); the caller's
    other settings stay."""
    import otp.testing._machine as machine_module

    seen = []
    monkeypatch.setattr(machine_module, "run_state_machine_as_test",
                        lambda machine, settings: seen.append(settings))
    mine = settings(max_examples=3, deadline=200,
                    suppress_health_check=[HealthCheck.filter_too_much])
    run_supervision_machine(three_workers(), settings=mine)
    [used] = seen
    assert set(used.suppress_health_check) == {HealthCheck.filter_too_much,
                                               HealthCheck.too_slow}
    assert used.deadline is None and used.max_examples == 3


def test_the_machine_checks_a_users_own_tree_started_by_their_own_code():
    run_supervision_machine(APP_TREE, start=start_app, settings=FEW)


def test_the_machine_checks_a_harness_built_tree_of_a_users_own_workers():
    tree = Sup(children=(
        Worker("db", trap_exit=True, start=Db.child_spec().start),
        Worker("acceptor", trap_exit=False, start=Acceptor.child_spec().start),
    ), strategy="one_for_all")
    run_supervision_machine(tree, settings=FEW)


async def test_tree_check_reports_a_tree_that_differs_from_its_description(
    otp_node, autojump_clock
):
    wrong = Sup("app", strategy="one_for_one", intensity=2, period=5.0,
                children=APP_TREE.children)
    check = TreeCheck(wrong, start=start_app)
    await check.start()
    with pytest.raises(TreeMismatch, match=r"exit #1: expected|unexpected exits"):
        await check.fault(("db",), otp.KILL)
    check.close()


def test_the_machine_finds_a_supervisor_that_shuts_down_in_the_wrong_order(monkeypatch):
    async def forward(children):
        for child in children:
            if child.pid is not None:
                pid, child.pid = child.pid, None
                await otp._supervision.shutdown_child(pid, child.spec.shutdown)

    monkeypatch.setattr(supervisor, "shutdown_children", forward)
    with pytest.raises(TreeMismatch, match="exit #0"):
        run_supervision_machine(
            three_workers(), runtime_api=False,
            settings=settings(max_examples=5, stateful_step_count=2, phases=[Phase.generate],
                              database=None, deadline=None),
        )


async def test_check_schedule_skips_faults_once_the_root_has_exited(otp_node, autojump_clock):
    schedule = [Fault((), otp.SHUTDOWN), Fault(("w1",), otp.KILL)]
    check = await check_schedule(three_workers(), schedule)
    assert not check.model.root_alive
    assert check.steps == 2


async def test_a_fault_an_exit_signal_cannot_deliver_is_skipped(otp_node, autojump_clock):
    check = TreeCheck(APP_TREE, start=start_app)
    await check.start()
    assert await check.fault(("web", "acceptor"), otp.NORMAL) is None
    assert await check.fault(("db",), otp.SHUTDOWN) is None  # db traps exits
    assert await check.fault(("db",), otp.KILL) is not None
    check.close()


@given(fault_schedules(APP_TREE, max_size=5))
def test_fault_schedules_check_a_users_own_tree(schedule):
    with NodeDriver() as driver:
        driver.run(check_schedule, APP_TREE, schedule, start=start_app)
