"""Hypothesis strategies: supervision trees, fault reasons, delays and fault schedules."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .._terms import KILL, NORMAL, SHUTDOWN, is_normal, shutdown
from ._model import CALL_OPS, CallAfterExit
from ._tree import AUTO_SHUTDOWNS, RESTARTS, STRATEGIES, Fault, InjectedFault, Sup, Worker

__all__ = [
    "calls_after_exit",
    "failed_starts",
    "fault_delays",
    "fault_reasons",
    "fault_schedules",
    "faults",
    "reasons_for",
    "trees",
    "workers",
]

# The timing values are chosen so that no two timers of a step can fire at the same
# virtual instant: worker terminates take 0, 1 or 3 s, worker shutdown timeouts are 0.5, 2
# or 5 s, a supervisor's is 9.7 s. (The model still detects a tie and refuses it.)
WORKER_SHUTDOWNS: tuple[Any, ...] = ("brutal_kill", 0.5, 2.0, 5.0, "infinity")
SUPERVISOR_SHUTDOWNS: tuple[Any, ...] = ("infinity", "infinity", "brutal_kill", 9.7)
TERMINATE_DELAYS: tuple[float, ...] = (0.0, 0.0, 1.0, 3.0)
PERIODS: tuple[float, ...] = (1.0, 5.0, 30.0)
FAULT_DELAYS: tuple[float, ...] = (0.0, 0.0, 0.3, 1.3, 7.9)
FAILED_STARTS: tuple[int, ...] = (0, 0, 0, 1, 2, 8)


def workers(
    id: Any,
    *,
    restarts: SearchStrategy[Any] | None = None,
    shutdowns: SearchStrategy[Any] | None = None,
    trap_exits: SearchStrategy[bool] | None = None,
    terminate_delays: SearchStrategy[float] | None = None,
    significant: SearchStrategy[bool] | None = None,
) -> SearchStrategy[Worker]:
    """Harness workers with the given id: restart type, shutdown, whether they trap exits,
    how long their ``terminate`` takes on shutdown, and whether they are significant
    (never by default; any combination drawn, so a supervisor may refuse one)."""
    return st.builds(
        Worker,
        id=st.just(id),
        restart=restarts if restarts is not None else st.sampled_from(RESTARTS),
        shutdown=shutdowns if shutdowns is not None else st.sampled_from(WORKER_SHUTDOWNS),
        trap_exit=trap_exits if trap_exits is not None else st.booleans(),
        terminate_delay=(
            terminate_delays if terminate_delays is not None
            else st.sampled_from(TERMINATE_DELAYS)
        ),
        significant=significant if significant is not None else st.just(False),
    )


def trees(
    *,
    max_depth: int = 2,
    min_width: int = 1,
    max_width: int = 3,
    strategies: SearchStrategy[Any] | None = None,
    restarts: SearchStrategy[Any] | None = None,
    intensities: SearchStrategy[int] | None = None,
    periods: SearchStrategy[float] | None = None,
    worker_shutdowns: SearchStrategy[Any] | None = None,
    supervisor_shutdowns: SearchStrategy[Any] | None = None,
    trap_exits: SearchStrategy[bool] | None = None,
    terminate_delays: SearchStrategy[float] | None = None,
    forms: SearchStrategy[Any] | None = None,
    auto_shutdowns: SearchStrategy[Any] | None = None,
    significant: SearchStrategy[bool] | None = None,
    max_children: SearchStrategy[int | None] | None = None,
    supervisor_probability: float = 0.3,
) -> SearchStrategy[Sup]:
    """Supervision trees of harness workers, rooted at a :class:`Sup` with id ``"root"``.

    ``max_depth`` is how many levels of supervisors may sit below the root;
    every supervisor has ``min_width`` to ``max_width`` children, each a supervisor with
    ``supervisor_probability`` (while the depth allows). Every other argument overrides
    the strategy for one field: ``strategies``, ``intensities`` (default 0-3), ``periods``
    (supervisors), ``restarts`` (every child), ``worker_shutdowns``,
    ``supervisor_shutdowns``, ``trap_exits``, ``terminate_delays`` (workers), ``forms``
    (``"list"`` or ``"class"`` by default; add ``"dynamic"`` for dynamic supervisors,
    which get workers only, one_for_one, and ``max_children`` extra places drawn from
    ``max_children`` (None: no limit)), ``auto_shutdowns`` (``"never"`` half the time by
    default) and ``significant`` (drawn for each transient or temporary child of a
    supervisor whose auto_shutdown allows it). Child ids are unique in the tree:
    ``"w1"``, ``"s2"``, ...
    """
    strategy_st = strategies if strategies is not None else st.sampled_from(STRATEGIES)
    restart_st = restarts if restarts is not None else st.sampled_from(RESTARTS)
    intensity_st = intensities if intensities is not None else st.integers(0, 3)
    period_st = periods if periods is not None else st.sampled_from(PERIODS)
    sup_shutdown_st = (
        supervisor_shutdowns if supervisor_shutdowns is not None
        else st.sampled_from(SUPERVISOR_SHUTDOWNS)
    )
    form_st: SearchStrategy[Any] = (
        forms if forms is not None else st.sampled_from(("list", "class"))
    )
    auto_st: SearchStrategy[Any] = (
        auto_shutdowns if auto_shutdowns is not None
        else st.sampled_from(("never", *AUTO_SHUTDOWNS))
    )
    significant_st = significant if significant is not None else st.booleans()
    spare_st: SearchStrategy[int | None] = (
        max_children if max_children is not None else st.sampled_from((None, 0, 1, 2))
    )
    threshold = round(100 * (1 - supervisor_probability))

    @st.composite
    def tree(draw: st.DrawFn) -> Sup:
        counter = [0]

        def new_id(prefix: str) -> str:
            counter[0] += 1
            return f"{prefix}{counter[0]}"

        def supervisor(
            id: Any, depth: int, restart: Any, shutdown_value: Any, significant: bool
        ) -> Sup:
            form = draw(form_st)
            dynamic = form == "dynamic"
            auto_shutdown: Any = "never" if dynamic else draw(auto_st)
            width = draw(st.integers(min_width, max_width))
            children: list[Worker | Sup] = []
            for _ in range(width):
                # Shrinks towards 0, that is towards a worker.
                if not dynamic and depth < max_depth and draw(st.integers(0, 99)) >= threshold:
                    child_restart = draw(restart_st)
                    children.append(
                        supervisor(
                            new_id("s"), depth + 1, child_restart, draw(sup_shutdown_st),
                            may_be_significant(child_restart, auto_shutdown),
                        )
                    )
                else:
                    worker = draw(
                        workers(
                            new_id("w"),
                            restarts=restart_st,
                            shutdowns=worker_shutdowns,
                            trap_exits=trap_exits,
                            terminate_delays=terminate_delays,
                        )
                    )
                    if may_be_significant(worker.restart, auto_shutdown):
                        worker = attrs.evolve(worker, significant=True)
                    children.append(worker)
            spare = draw(spare_st) if dynamic else None
            return Sup(
                id=id,
                children=tuple(children),
                strategy="one_for_one" if dynamic else draw(strategy_st),
                intensity=draw(intensity_st),
                period=draw(period_st),
                restart=restart,
                shutdown=shutdown_value,
                form=form,
                auto_shutdown=auto_shutdown,
                significant=significant,
                max_children=None if spare is None else width + spare,
            )

        def may_be_significant(restart: Any, auto_shutdown: Any) -> bool:
            if restart == "permanent" or auto_shutdown == "never":
                return False
            return draw(significant_st)

        return supervisor("root", 0, "permanent", "infinity", False)

    return tree()


def fault_reasons(
    *, normal: bool = True, shutdowns: bool = True, exceptions: bool = True, kill: bool = True
) -> SearchStrategy[Any]:
    """Exit reasons to inject: ``otp.NORMAL``, ``otp.SHUTDOWN``, ``otp.shutdown(term)``,
    an :class:`InjectedFault` exception and ``otp.KILL``; turn any kind off."""
    options: list[SearchStrategy[Any]] = []
    if normal:
        options.append(st.just(NORMAL))
    if shutdowns:
        options.append(st.just(SHUTDOWN))
        options.append(st.builds(shutdown, st.sampled_from(("bye", 1, ("tag", 2)))))
    if exceptions:
        options.append(st.builds(InjectedFault, st.sampled_from(("boom", "crash", "bad state"))))
    if kill:
        options.append(st.just(KILL))
    if not options:
        raise ValueError("fault_reasons: every kind of reason is turned off")
    return st.one_of(options)


def fault_delays() -> SearchStrategy[float]:
    """Virtual seconds to wait before a fault: often none, sometimes past a restart window."""
    return st.sampled_from(FAULT_DELAYS)


def reasons_for(desc: Worker | Sup, reasons: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """The reasons that can be injected into ``desc``: all of them for supervisors and
    harness workers; for your own workers (given as exit signals) ``otp.KILL`` only if
    they trap exits, else anything but ``otp.NORMAL`` (which an exit signal ignores)."""
    if isinstance(desc, Worker) and not desc.is_harness:
        if desc.trap_exit:
            return st.just(KILL)
        return reasons.filter(lambda r: not is_normal(r))
    return reasons


def failed_starts() -> SearchStrategy[int]:
    """How many of a harness worker's next starts fail: mostly none, sometimes a few,
    sometimes more than any intensity allows."""
    return st.sampled_from(FAILED_STARTS)


def calls_after_exit(sup: Sup | None, fresh_id: Any) -> SearchStrategy[CallAfterExit]:
    """A :class:`CallAfterExit` for a worker of ``sup`` (None: a static supervisor): any
    of :data:`CALL_OPS` (a dynamic supervisor: no ``restart_child``/``delete_child``),
    ``start_child`` of a worker with id ``fresh_id``."""
    dynamic = sup is not None and sup.dynamic
    ops = [op for op in CALL_OPS
           if not (dynamic and op in ("restart_child", "delete_child"))]

    @st.composite
    def call(draw: st.DrawFn) -> CallAfterExit:
        op = draw(st.sampled_from(ops))
        spec = draw(workers(fresh_id)) if op == "start_child" else None
        return CallAfterExit(op, spec)

    return call()


def faults(
    tree: Sup,
    *,
    reasons: SearchStrategy[Any] | None = None,
    delays: SearchStrategy[float] | None = None,
    failures: SearchStrategy[int] | None = None,
) -> SearchStrategy[Fault]:
    """One :class:`Fault` aimed at any process of ``tree`` (the root included); one aimed
    at a harness worker also makes ``failures`` (default :func:`failed_starts`) of its
    next starts fail."""
    nodes = list(tree.walk())
    reason_st = reasons if reasons is not None else fault_reasons()
    delay_st = delays if delays is not None else fault_delays()
    failure_st = failures if failures is not None else failed_starts()

    @st.composite
    def fault(draw: st.DrawFn) -> Fault:
        path, desc = draw(st.sampled_from(nodes))
        failing = draw(failure_st) if isinstance(desc, Worker) and desc.is_harness else 0
        return Fault(path, draw(reasons_for(desc, reason_st)), draw(delay_st), failing)

    return fault()


def fault_schedules(
    tree: Sup,
    *,
    min_size: int = 0,
    max_size: int = 8,
    reasons: SearchStrategy[Any] | None = None,
    delays: SearchStrategy[float] | None = None,
    failures: SearchStrategy[int] | None = None,
) -> SearchStrategy[list[Fault]]:
    """Lists of :class:`Fault` for ``tree``, applied in order (a fault whose target is not
    running at that moment does nothing)."""
    return st.lists(
        faults(tree, reasons=reasons, delays=delays, failures=failures),
        min_size=min_size, max_size=max_size,
    )
