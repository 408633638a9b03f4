"""The stateful test: a hypothesis RuleBasedStateMachine over a live tree and the model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

import hypothesis
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis.strategies import SearchStrategy

from ._driver import NodeDriver
from ._live import TreeCheck
from ._strategies import (
    calls_after_exit,
    failed_starts,
    fault_delays,
    fault_reasons,
    reasons_for,
    workers,
)
from ._tree import Fault, Path, StartFn, Sup, Worker

__all__ = ["check_schedule", "run_supervision_machine", "supervision_machine"]

_UNKNOWN_ID = "no-such-child"


def _path_key(path: Path) -> tuple[int, str]:
    return len(path), repr(path)


def supervision_machine(
    tree: Sup | SearchStrategy[Sup],
    *,
    start: StartFn | None = None,
    reasons: SearchStrategy[Any] | None = None,
    delays: SearchStrategy[float] | None = None,
    failures: SearchStrategy[int] | None = None,
    runtime_api: bool = True,
    check_time: bool | None = None,
    timeout: float = 60.0,
) -> type[RuleBasedStateMachine]:
    """A :class:`hypothesis.stateful.RuleBasedStateMachine` class that tests a tree.

    ``tree`` is a :class:`Sup` description, or a strategy of them (such as
    :func:`otp.testing.trees`). Each example starts a node on a virtual clock (a
    :class:`NodeDriver`) and builds the tree: the harness way, or with ``start`` (your own
    async function that starts the root supervisor linked to the caller and returns its
    pid; ``tree`` then describes it). The rules inject faults (a target among the running
    processes, a reason from ``reasons``, after a virtual delay from ``delays``; a harness
    worker's next starts may fail, ``failures`` of them, so that its restart is retried),
    let virtual time pass, call the run-time API (``terminate_child``, ``restart_child``,
    ``delete_child``, ``start_child``; also right after a worker's exit, while its
    restart may be failing: see :class:`CallAfterExit`; off with ``runtime_api=False``)
    and start the tree again once its root has exited. After every rule the live tree is
    compared with the model (:class:`TreeCheck`); at the end the root is shut down, the
    order of every exit checked, and no process may be left on the node. ``timeout``
    bounds, in real seconds, each step (:class:`DriverTimeout` past it: something waits
    for ever).

    Use it as ``TestMyTree = supervision_machine(MY_TREE).TestCase`` or with
    :func:`run_supervision_machine`.
    """
    tree_st: SearchStrategy[Sup] = st.just(tree) if isinstance(tree, Sup) else tree
    reason_st = reasons if reasons is not None else fault_reasons()
    delay_st = delays if delays is not None else fault_delays()
    failure_st = failures if failures is not None else failed_starts()

    class SupervisionMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.driver = NodeDriver(timeout=timeout)
            self._check: TreeCheck | None = None
            self._fresh = 0
            self._failed = False

        def _run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
            try:
                self.driver.run(fn, *args)
            except BaseException:
                self._failed = True  # teardown must not hide this failure behind another
                raise

        @property
        def check(self) -> TreeCheck:
            assert self._check is not None
            return self._check

        def _alive(self) -> bool:
            return self._check is not None and self._check.model.root_alive

        def _dead(self) -> bool:
            return self._check is not None and not self._check.model.root_alive

        @initialize(tree=tree_st)
        def build(self, tree: Sup) -> None:
            self._check = TreeCheck(tree, start=start, check_time=check_time)
            self._run(self.check.start)

        @precondition(_alive)
        @rule(data=st.data())
        def inject_fault(self, data: st.DataObject) -> None:
            procs = self.check.model.processes()
            below = sorted((p for p in procs if p), key=_path_key)
            # The root only now and then: a fault there ends the whole tree.
            if not below or data.draw(st.integers(0, 9), label="aim at the root") == 9:
                path: Path = ()
            else:
                path = data.draw(st.sampled_from(below), label="target")
            desc = procs[path][1]
            reason = data.draw(reasons_for(desc, reason_st), label="reason")
            delay = data.draw(delay_st, label="delay")
            failing, then = 0, None
            if path and isinstance(desc, Worker) and desc.is_harness:
                failing = data.draw(failure_st, label="failed starts")
                if runtime_api and data.draw(st.integers(0, 3), label="call after") == 3:
                    sup = self.check.model.description(path[:-1])
                    self._fresh += 1
                    then = data.draw(
                        calls_after_exit(sup if isinstance(sup, Sup) else None,
                                         f"d{self._fresh}"),
                        label="call after exit",
                    )
            self._run(self.check.fault, path, reason, delay, failing, then)

        @precondition(_alive)
        @rule(delay=delay_st)
        def wait(self, delay: float) -> None:
            self._run(self.check.wait, delay)

        @precondition(lambda self: runtime_api and self._alive())
        @rule(data=st.data())
        def runtime_call(self, data: st.DataObject) -> None:
            model = self.check.model
            sup = data.draw(st.sampled_from(model.supervisors()), label="supervisor")
            ids: list[Hashable] = [c.id for c in model.children(sup)]
            flags = model.description(sup)
            dynamic = isinstance(flags, Sup) and flags.dynamic
            ops = (("terminate_child", "start_child") if dynamic else
                   ("terminate_child", "restart_child", "delete_child", "start_child"))
            op = data.draw(st.sampled_from(ops), label="call")
            if op == "start_child":
                self._fresh += 1
                fresh = f"d{self._fresh}"
                child_id = fresh if dynamic else data.draw(
                    st.sampled_from([*ids, fresh]), label="child id"
                )
                desc = data.draw(
                    workers(child_id, significant=st.integers(0, 3).map(lambda n: n == 3)),
                    label="spec",
                )
                self._run(self.check.start_child, sup, desc)
                return
            child_id = data.draw(st.sampled_from([*ids, _UNKNOWN_ID]), label="child id")
            self._run(getattr(self.check, op), sup, child_id)

        @precondition(_dead)
        @rule()
        def restart_tree(self) -> None:
            self._run(self.check.start)

        def teardown(self) -> None:
            if self._failed:
                self._close(quietly=True)
                return
            try:
                if self._alive():
                    self.driver.run(self.check.shutdown)
                node = self.driver.node
                if node is not None and len(node.processes) != 1:
                    raise AssertionError(
                        f"processes left after the tree shut down: {list(node.processes)!r}"
                    )
            except BaseException:
                self._close(quietly=True)
                raise
            self._close(quietly=False)

        def _close(self, quietly: bool) -> None:
            if self._check is not None:
                self._check.close()
            try:
                self.driver.close()
            except Exception:
                if not quietly:
                    raise

    SupervisionMachine.__name__ = SupervisionMachine.__qualname__ = "SupervisionMachine"
    return SupervisionMachine


def run_supervision_machine(
    tree: Sup | SearchStrategy[Sup],
    *,
    settings: hypothesis.settings | None = None,
    **options: Any,
) -> None:
    """Build :func:`supervision_machine` with ``options`` and run it now, under
    ``settings`` (by default the current profile, with at most 20 steps per example).

    Hypothesis's ``deadline`` and its ``too_slow`` health check are always off, as
    hypothesis itself has them for a state machine's ``TestCase``: an example runs a node
    through many steps and the draws are interleaved with it, so how long they take (on
    a busy machine) says nothing. The machine's own ``timeout`` (real seconds per step,
    :class:`DriverTimeout`) still bounds a step that never ends."""
    machine = supervision_machine(tree, **options)
    base = settings if settings is not None else hypothesis.settings(stateful_step_count=20)
    checks = [*base.suppress_health_check, hypothesis.HealthCheck.too_slow]
    run_state_machine_as_test(
        machine,
        settings=hypothesis.settings(base, deadline=None, suppress_health_check=checks),
    )


async def check_schedule(
    tree: Sup,
    schedule: Sequence[Fault],
    *,
    start: StartFn | None = None,
    check_time: bool | None = None,
) -> TreeCheck:
    """Build ``tree`` under the calling process, apply ``schedule`` fault by fault, then
    shut the tree down, checking the live tree against the model after every step.

    Call it from a node's main process (``async with otp.node():``), preferably on a
    virtual clock. Once the root has exited the remaining faults are skipped. Raises
    :class:`TreeMismatch` at the first difference; returns the :class:`TreeCheck`.
    """
    check = TreeCheck(tree, start=start, check_time=check_time)
    try:
        await check.start()
        for fault in schedule:
            if not check.model.root_alive:
                break
            await check.fault(fault.path, fault.reason, fault.delay, fault.failed_starts)
        if check.model.root_alive:
            await check.shutdown()
    finally:
        check.close()
    return check
