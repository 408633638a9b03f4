"""otp.testing: property-test supervision trees against a model of OTP's restart rules.

Needs ``hypothesis`` (and pytest-trio for the fixtures). The pieces:

* **Descriptions** -- :class:`Sup` and :class:`Worker` describe a tree: each supervisor's
  form (static, or ``form="dynamic"`` with ``max_children``), strategy, intensity,
  period, ``auto_shutdown`` and children; each child's id, restart type, shutdown and
  whether it is ``significant``. A :class:`Worker` is a harness gen_server (it logs its
  starts and ``terminate`` calls, optionally traps exits, takes ``terminate_delay``
  virtual seconds to shut down, and can be made to fail its next starts) or your own
  process (``start=``).
* **Strategies** -- :func:`trees` (bounded depth and width; every field can be
  overridden), :func:`workers`, :func:`fault_reasons` (``NORMAL``, ``SHUTDOWN``,
  ``shutdown(term)``, an :class:`InjectedFault`, ``KILL``), :func:`fault_delays`,
  :func:`failed_starts`, :func:`calls_after_exit`, :func:`faults` and
  :func:`fault_schedules` (lists of :class:`Fault`: which process, which reason, after
  how many virtual seconds, how many of its next starts fail).
* **The model** -- :class:`Model`, pure Python: given a tree and an action it predicts a
  :class:`Step`: which processes exit, in which order and with which reasons (children
  of a killed supervisor die together in no order: :class:`KilledTogether`; those a
  dynamic supervisor stops at the same instant: :class:`ExitedTogether`), which
  children get a new pid, which supervisors give up (more than ``intensity`` restarts in
  ``period`` seconds: they stop their children in reverse order and exit with
  ``SHUTDOWN``, which their parent handles as a child exit) or shut down because of
  significant children (``auto_shutdown``), temporaries removed, transients not
  restarted after a normal exit, restarts that fail and are retried (each try counting
  toward the intensity, the child *restarting* meanwhile, as seen by a
  :class:`CallAfterExit`), and the virtual time it takes.
* **The live side** -- :class:`TreeCheck` runs the tree on a node next to the model,
  applies each action to both, lets the node settle and compares (exits and their order
  through monitors, ``which_children`` of every supervisor, pids kept or replaced,
  ``terminate`` order, give-ups from the ``otp.supervisor`` log records, that no process
  outlives its supervisor, virtual time); a difference raises :class:`TreeMismatch`.
* **The stateful test** -- :func:`supervision_machine` builds a hypothesis
  ``RuleBasedStateMachine`` that generates (or takes) a tree, injects faults, waits,
  calls the run-time API and checks after every step. It keeps the node alive between
  rules with :class:`NodeDriver` (trio in guest mode on a virtual clock, on the test's
  own thread).
* **pytest** -- ``pytest_plugins = ["otp.testing.pytest_plugin"]`` in your top-level
  ``conftest.py`` gives the ``otp_node`` (a running node whose main process is the async
  test; add pytest-trio's ``autojump_clock`` for virtual time) and ``otp_driver``
  fixtures.

Testing otp itself with generated trees::

    from otp.testing import supervision_machine, trees

    TestGeneratedTrees = supervision_machine(trees(max_depth=2, max_width=3)).TestCase

Pointing it at your own tree: describe it with the ids, flags and restart types your
code uses, and pass ``start``, which starts your real root supervisor linked to the
caller. Faults reach your workers as exit signals (say ``trap_exit=True`` for those that
trap exits, so only ``kill`` is sent to them); the model assumes they exit at once when
shut down::

    import otp
    from otp.testing import Sup, Worker, supervision_machine

    MY_TREE = Sup("app", strategy="rest_for_one", intensity=2, period=5.0, children=(
        Worker("db", shutdown=5.0, trap_exit=True),
        Sup("web", strategy="one_for_one", children=(
            Worker("acceptor"), Worker("cache", restart="transient"),
        )),
    ))

    async def start_my_app():
        return await otp.supervisor.start_link(MyApp)   # your Supervisor subclass

    TestMyApp = supervision_machine(MY_TREE, start=start_my_app).TestCase

Or leave ``start`` out and give the workers your own start functions
(``Worker("db", start=Db.child_spec().start)``): the harness then builds the
supervisors from the description. For fault schedules instead of stateful steps, run
:func:`check_schedule` in a node, or drive a :class:`TreeCheck` by hand::

    from hypothesis import given
    from otp.testing import NodeDriver, check_schedule, fault_schedules

    @given(fault_schedules(MY_TREE, max_size=6))
    def test_my_tree_survives_any_schedule(schedule):
        with NodeDriver() as driver:             # a node on a virtual clock
            driver.run(check_schedule, MY_TREE, schedule, start=start_my_app)

    async def test_db_crash_restarts_web(otp_node, autojump_clock):
        check = TreeCheck(MY_TREE, start=start_my_app)
        await check.start()
        step = await check.fault(("db",), otp.KILL)    # raises TreeMismatch on a difference
        assert ("web",) in step.started                # rest_for_one: web got a new pid
        check.close()

Limits: the model covers static and dynamic supervisors (not partition supervisors; a
dynamic supervisor's children are workers, and a tree with one must be built by the
harness), starts that fail only when a :class:`Fault` says so (harness workers), and
workers that exit when told to. A process started and stopped within one step is not
watched, so its exit is not checked (its start and ``terminate`` are).
"""

from .._util import fixup_module_metadata
from ._driver import DriverTimeout, NodeDriver
from ._live import (
    HarnessSupervisor,
    HarnessWorker,
    LiveTree,
    Observation,
    TreeCheck,
    TreeMismatch,
    can_inject,
)
from ._machine import check_schedule, run_supervision_machine, supervision_machine
from ._model import (
    CALL_OPS,
    Ambiguous,
    CallAfterExit,
    Concurrently,
    Exited,
    ExitedTogether,
    KilledTogether,
    Model,
    Step,
    compare_exits,
    compare_terminates,
)
from ._strategies import (
    calls_after_exit,
    failed_starts,
    fault_delays,
    fault_reasons,
    fault_schedules,
    faults,
    reasons_for,
    trees,
    workers,
)
from ._tree import (
    AUTO_SHUTDOWNS,
    FORMS,
    RESTARTS,
    STRATEGIES,
    Fault,
    InjectedFault,
    Path,
    Sup,
    Worker,
    as_own,
)

__all__ = [
    "AUTO_SHUTDOWNS",
    "CALL_OPS",
    "FORMS",
    "RESTARTS",
    "STRATEGIES",
    "Ambiguous",
    "CallAfterExit",
    "Concurrently",
    "DriverTimeout",
    "Exited",
    "ExitedTogether",
    "Fault",
    "HarnessSupervisor",
    "HarnessWorker",
    "InjectedFault",
    "KilledTogether",
    "LiveTree",
    "Model",
    "NodeDriver",
    "Observation",
    "Path",
    "Step",
    "Sup",
    "TreeCheck",
    "TreeMismatch",
    "Worker",
    "as_own",
    "calls_after_exit",
    "can_inject",
    "check_schedule",
    "compare_exits",
    "compare_terminates",
    "failed_starts",
    "fault_delays",
    "fault_reasons",
    "fault_schedules",
    "faults",
    "reasons_for",
    "run_supervision_machine",
    "supervision_machine",
    "trees",
    "workers",
]

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
