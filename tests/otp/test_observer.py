"""otp.observer.snapshot: the node's processes as a tree, read from the supervisors' own
records without calling them; checked against which_children under random fault
schedules of otp.testing."""

from __future__ import annotations

import collections
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import dynamic_supervisor, gen_server, observer, partition_supervisor, supervisor
from otp import sys as otp_sys
from otp.observer import Entry
from otp.testing import NodeDriver, Path, TreeCheck, fault_schedules, trees

from .core_helpers import settle, sleep_forever


class Idle(otp.GenServer):
    """Answers every call with None."""

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        return None


class Tree(otp.Supervisor):
    """A worker "a", and a nested supervisor "inner" with workers "b" (transient) and "c"."""

    async def init(self) -> supervisor.Spec:
        return supervisor.Spec([
            Idle.child_spec(id="a", name="a"),
            otp.ChildSpec("inner", _start_inner, type="supervisor"),
        ], intensity=5, period=10.0)


async def _start_inner() -> otp.Pid | None:
    return await supervisor.start_link(
        [Idle.child_spec(id="b", restart="transient"), Idle.child_spec(id="c")],
        strategy="rest_for_one",
    )


def _listing(entry: Entry) -> list[tuple[Any, otp.Pid | None, str]]:
    return [(child.id, child.pid, child.kind) for child in entry.children]


# -- one tree -------------------------------------------------------------------------------


async def test_a_snapshot_of_a_supervisor_lists_its_children_as_which_children_does(otp_node):
    sup = await supervisor.start_link(Tree)
    tree = observer.snapshot(sup)
    assert _listing(tree) == await supervisor.which_children(sup)
    inner = tree.children[1]
    assert _listing(inner) == await supervisor.which_children(inner.pid)


async def test_an_entry_tells_pid_id_name_kind_and_restart_type(otp_node):
    sup = await supervisor.start_link(Tree)
    tree = observer.snapshot(sup)
    a, inner = tree.children
    assert (a.pid, a.id, a.name, a.kind, a.restart) == (
        otp.whereis("a"), "a", "a", "worker", "permanent")
    assert (inner.id, inner.kind, inner.restart) == ("inner", "supervisor", "permanent")
    assert [(c.id, c.restart) for c in inner.children] == [("b", "transient"), ("c", "permanent")]


async def test_the_root_of_a_snapshot_is_the_process_asked_for(otp_node):
    sup = await supervisor.start_link(Tree)
    tree = observer.snapshot(sup)
    assert (tree.pid, tree.id, tree.kind, tree.restart) == (sup, None, "supervisor", None)


async def test_a_supervised_root_carries_its_id_and_restart_type(otp_node):
    sup = await supervisor.start_link(Tree)
    inner = observer.snapshot(sup).children[1]
    again = observer.snapshot(inner.pid)
    assert (again.id, again.kind, again.restart) == ("inner", "supervisor", "permanent")
    assert observer.snapshot("a").id == "a"


async def test_every_live_entry_carries_the_process_info_of_that_instant(otp_node):
    sup = await supervisor.start_link(Tree)
    tree = observer.snapshot(sup)
    for entry in tree.walk():
        assert entry.info == otp.process_info(entry.pid)
    assert tree.info.behaviour is Tree


async def test_a_worker_has_no_children_and_no_restarts(otp_node):
    pid = otp.spawn(sleep_forever)
    entry = observer.snapshot(pid)
    assert (entry.children, entry.restarts, entry.kind) == ((), 0, "worker")


async def test_a_child_that_is_not_running_has_no_pid_and_no_info(otp_node):
    sup = await supervisor.start_link(Tree)
    inner = observer.snapshot(sup).children[1]
    b = inner.children[0]
    await gen_server.stop(b.pid)  # transient, normal exit: not restarted
    await settle()
    b = observer.snapshot(inner.pid).children[0]
    assert (b.id, b.pid, b.info, b.children) == ("b", None, None, ())


async def test_the_children_of_a_dynamic_supervisor_have_no_id_and_keep_its_order(otp_node):
    sup = await dynamic_supervisor.start_link()
    pids = [await dynamic_supervisor.start_child(sup, Idle.child_spec(restart="temporary"))
            for _ in range(3)]
    tree = observer.snapshot(sup)
    assert _listing(tree) == [(None, pid, "worker") for pid in pids]
    assert _listing(tree) == await supervisor.which_children(sup)
    assert [c.restart for c in tree.children] == ["temporary"] * 3


async def test_a_partition_supervisor_shows_its_partitions_and_their_children(otp_node):
    ps = await partition_supervisor.start_link(partitions=2, name="parts")
    child = await partition_supervisor.start_child("parts", "key", Idle.child_spec())
    tree = observer.snapshot("parts")
    assert [(c.id, c.kind) for c in tree.children] == [(0, "supervisor"), (1, "supervisor")]
    assert child in [e.pid for e in tree.walk()]
    assert tree.pid == ps


async def test_a_dead_root_is_noproc(otp_node):
    pid = otp.spawn(sleep_forever)
    ref = otp.monitor(pid)
    otp.exit(pid, otp.KILL)
    await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    with pytest.raises(otp.NoProc):
        observer.snapshot(pid)
    with pytest.raises(otp.NoProc):
        observer.snapshot("nobody")


# -- the whole node -------------------------------------------------------------------------


async def test_a_node_snapshot_holds_every_live_process_once(otp_node):
    await supervisor.start_link(Tree)
    await gen_server.start_link(Idle)
    otp.spawn(sleep_forever)
    tree = observer.snapshot()
    pids = [entry.pid for entry in tree.walk() if entry.pid is not None]
    assert collections.Counter(pids) == collections.Counter(
        proc.pid for proc in otp_node.processes.values())


async def test_a_node_snapshot_has_a_node_root_with_the_unsupervised_processes_in_pid_order(
        otp_node):
    sup = await supervisor.start_link(Tree)
    server = await gen_server.start_link(Idle)
    plain = otp.spawn(sleep_forever)
    tree = observer.snapshot()
    assert (tree.pid, tree.id, tree.name, tree.kind, tree.info) == (
        None, None, None, "node", None)
    assert [c.pid for c in tree.children] == [otp.self(), sup, server, plain]
    assert [c.kind for c in tree.children] == ["worker", "supervisor", "worker", "worker"]
    assert all(c.id is None and c.restart is None for c in tree.children)
    assert tree.children[1] == observer.snapshot(sup)


async def test_processes_a_worker_spawned_sit_under_the_node(otp_node):
    spawned: list[otp.Pid] = []

    class Spawner(otp.GenServer):
        async def init(self) -> None:
            spawned.append(otp.spawn(sleep_forever))

    sup = await supervisor.start_link([Spawner.child_spec()])
    tree = observer.snapshot()
    assert spawned[0] in [c.pid for c in tree.children]
    assert spawned[0] not in [e.pid for e in observer.snapshot(sup).walk()]


# -- restarts -------------------------------------------------------------------------------


async def test_restarts_counts_those_within_the_intensity_window(otp_node, autojump_clock):
    sup = await supervisor.start_link(Tree)  # intensity 5 in 10 s
    for _ in range(2):
        otp.exit(otp.whereis("a"), otp.KILL)
        await settle()
        await trio.sleep(4)
    assert observer.snapshot(sup).restarts == 2
    await trio.sleep(3)  # the first restart is now 11 s old
    assert observer.snapshot(sup).restarts == 1
    await trio.sleep(10)
    assert observer.snapshot(sup).restarts == 0


async def test_a_dynamic_supervisors_restarts_are_counted_too(otp_node, autojump_clock):
    sup = await dynamic_supervisor.start_link(period=5.0)
    pid = await dynamic_supervisor.start_child(sup, Idle.child_spec())
    otp.exit(pid, otp.KILL)
    await settle()
    assert observer.snapshot(sup).restarts == 1


# -- no calls -------------------------------------------------------------------------------


async def test_a_suspended_supervisor_is_read_all_the_same(otp_node):
    sup = await supervisor.start_link(Tree)
    before = observer.snapshot(sup)
    await otp_sys.suspend(sup)
    assert _listing(observer.snapshot(sup)) == _listing(before)
    await otp_sys.resume(sup)


async def test_a_snapshot_sends_no_message(otp_node):
    sup = await supervisor.start_link(Tree)
    await otp_sys.suspend(sup)
    observer.snapshot()
    assert otp.process_info(sup).message_queue_len == 0
    await otp_sys.resume(sup)


# -- against which_children, under random faults --------------------------------------------

fault_trees = trees(
    max_depth=2, max_width=3, intensities=st.integers(0, 6),
    forms=st.sampled_from(["list", "class", "dynamic"]),
)


@given(st.data())
def test_snapshot_agrees_with_which_children_after_any_fault_schedule(data):
    """Random trees (static, class-form and dynamic supervisors) under random fault
    schedules: after every fault, the snapshot of the root lists, supervisor by
    supervisor, what which_children lists, with the restart types of the model, the
    process info of that instant, and no more restarts than the intensity; the node's
    snapshot holds every live process once."""
    tree = data.draw(fault_trees, label="tree")
    schedule = data.draw(fault_schedules(tree, max_size=6), label="schedule")
    with NodeDriver() as driver:
        driver.run(_check_schedule, tree, schedule)


async def _check_schedule(tree: Any, schedule: list[Any]) -> None:
    check = TreeCheck(tree)
    try:
        await check.start()
        await _agrees(check)
        for fault in schedule:
            if not check.model.root_alive:
                break
            await check.fault(fault.path, fault.reason, fault.delay, fault.failed_starts)
            await _agrees(check)
        if check.model.root_alive:
            await check.shutdown()
    finally:
        check.close()


async def _agrees(check: TreeCheck) -> None:
    root = check.live.root
    if root is None or not otp.is_alive(root):
        return
    node = observer.snapshot()
    tree = observer.snapshot(root)
    infos = {e.pid: otp.process_info(e.pid) for e in tree.walk() if e.pid is not None}
    live = [proc.pid for proc in otp.lowlevel.current_node().processes.values()]
    assert collections.Counter(e.pid for e in node.walk() if e.pid is not None) == (
        collections.Counter(live))
    assert tree in node.children
    for entry in tree.walk():
        if entry.pid is not None:
            assert entry.info == infos[entry.pid]
    await _compare(check, tree, ())


async def _compare(check: TreeCheck, entry: Entry, path: Path) -> None:
    assert entry.kind == "supervisor"
    assert _listing(entry) == await supervisor.which_children(entry.pid)
    descs = check.model.children(path)
    assert [c.restart for c in entry.children] == [d.restart for d in descs]
    desc = check.model.description(path)
    assert 0 <= entry.restarts <= desc.intensity
    for child, child_desc in zip(entry.children, descs, strict=True):
        if child.pid is None:
            assert (child.info, child.children) == (None, ())
            continue
        assert child.info is not None and child.info.pid == child.pid
        if child.kind == "supervisor":
            await _compare(check, child, (*path, child_desc.id))
        else:
            assert child.children == ()
