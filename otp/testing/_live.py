"""The live side: a described tree running on a node, faults injected into it, and the
comparison of what it did with what the model predicted."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

import attrs
import trio
import trio.testing

from .. import dynamic_supervisor as dyn_api
from .. import gen_server
from .. import supervisor as sup_api
from .._child_spec import ChildSpec
from .._errors import AlreadyStarted, NoProc, OTPError, ReceiveTimeout, ServerExited
from .._messages import Down, Exit
from .._primitives import exit as send_exit
from .._primitives import is_alive, monitor, receive, trap_exits
from .._process import Pid, current
from .._supervision import AlreadyPresent, NotFound, Restarting, Running, StartChildError
from .._terms import KILL, SHUTDOWN, Ref, is_normal
from ._model import Ambiguous, CallAfterExit, Model, Step, compare_exits, compare_terminates
from ._tree import InjectedFault, Path, StartFn, Sup, Worker, as_own

__all__ = [
    "HarnessSupervisor",
    "HarnessWorker",
    "LiveTree",
    "Observation",
    "TreeCheck",
    "TreeMismatch",
    "can_inject",
]


class TreeMismatch(AssertionError):
    """The live tree did not do what the model predicted; the message says what differs
    and lists the steps so far."""


# -- what the harness starts ---------------------------------------------------------------


@attrs.frozen
class _Fail:
    reason: Any


class HarnessWorker(gen_server.GenServer):
    """The gen_server the harness starts for a :class:`Worker` without ``start``.

    It logs its start and every ``terminate`` in its :class:`LiveTree`, traps exits if
    told to, fails on demand (also to start, see :attr:`LiveTree.failing`), and answers
    any call with its path.
    """

    async def init(self, live: LiveTree, path: Path, desc: Worker) -> None:
        failing = live.failing.get(path)
        if failing is not None and failing[0] == current().parent:
            sup, count = failing
            if count <= 1:
                del live.failing[path]
            else:
                live.failing[path] = (sup, count - 1)
            raise InjectedFault(f"{path!r} fails to start")
        self.live = live
        self.path = path
        self.desc = desc
        self.failing = False
        if desc.trap_exit:
            trap_exits(True)
        live.start_log.append(path)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        return self.path

    async def handle_cast(self, msg: Any) -> Any:
        if type(msg) is _Fail:
            self.failing = True
            reason = msg.reason
            if isinstance(reason, BaseException):
                raise reason.with_traceback(None)
            return gen_server.Stop(reason)
        return await super().handle_cast(msg)

    async def terminate(self, reason: Any) -> None:
        live = self.live
        live.terminate_log.append((self.path, reason))
        if self.failing or self.desc.terminate_delay <= 0:
            return
        live._terminating += 1
        try:
            await trio.sleep(self.desc.terminate_delay)
        finally:
            live._terminating -= 1
            if live._terminating == 0 and live._idle is not None:
                live._idle.set()


class HarnessSupervisor(sup_api.Supervisor):
    """The class form the harness uses for a :class:`Sup` with ``form="class"``."""

    async def init(self, children: list[ChildSpec], desc: Sup) -> sup_api.Spec:
        return sup_api.Spec(
            children, strategy=desc.strategy, intensity=desc.intensity, period=desc.period,
            auto_shutdown=desc.auto_shutdown,
        )


def child_spec(desc: Worker | Sup, path: Path, live: LiveTree) -> ChildSpec:
    """The child spec that starts ``desc`` (at ``path``) the harness way; each start
    records the new pid's path in ``live.pid_paths``."""
    spec = _child_spec(desc, path, live)
    start = spec.start

    async def recorded(*extra: Any) -> Pid | None:
        pid = await start(*extra)
        if pid is not None:
            live.pid_paths[pid] = path
        return pid

    return attrs.evolve(spec, start=recorded)


def _child_spec(desc: Worker | Sup, path: Path, live: LiveTree) -> ChildSpec:
    if isinstance(desc, Worker):
        if desc.start is not None:
            return ChildSpec(desc.id, desc.start, desc.restart, desc.shutdown, "worker",
                             desc.significant)
        return HarnessWorker.child_spec(
            live, path, desc, id=desc.id, restart=desc.restart, shutdown=desc.shutdown,
            significant=desc.significant,
        )
    children = [child_spec(c, (*path, c.id), live) for c in desc.children]
    if desc.form == "class":
        return HarnessSupervisor.child_spec(
            children, desc, id=desc.id, restart=desc.restart, shutdown=desc.shutdown,
            significant=desc.significant,
        )

    async def start() -> Pid | None:
        if desc.dynamic:
            pid = await dyn_api.start_link(
                max_children=desc.max_children, intensity=desc.intensity, period=desc.period
            )
            assert pid is not None
            for child in children:
                await dyn_api.start_child(pid, child)
            return pid
        return await sup_api.start_link(
            children, strategy=desc.strategy, intensity=desc.intensity, period=desc.period,
            auto_shutdown=desc.auto_shutdown,
        )

    return ChildSpec(desc.id, start, desc.restart, desc.shutdown, "supervisor", desc.significant)


# -- observing -----------------------------------------------------------------------------


@attrs.define
class Observation:
    """What the live tree did since the previous observation, and how it stands now."""

    now: float
    pids: dict[Path, Pid]
    listing: dict[Path, list[tuple[Hashable, Pid | None, str]]]
    exits: list[tuple[Path, Any]]
    root_exits: list[Any]
    terminates: list[tuple[Path, Any]]
    starts: list[Path]
    gave_up: list[Path]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "restarts in" in str(record.msg):  # only give-ups are of interest
            self.records.append(record)


class LiveTree:
    """A tree described by ``tree``, started under the calling process (which then traps
    exits): by the harness, or by your ``start`` (which must start the root supervisor
    linked to the caller and return its pid)."""

    def __init__(self, tree: Sup, start: StartFn | None = None) -> None:
        self.tree = tree
        self._start = start
        self.root: Pid | None = None
        self.start_log: list[Path] = []
        self.terminate_log: list[tuple[Path, Any]] = []
        self._terminating = 0
        self._idle: trio.Event | None = None
        self._handler = _Records()
        self._logger = logging.getLogger("otp.supervisor")
        self._refs: dict[Ref, Path] = {}
        self._monitored: set[Pid] = set()
        self._labels: dict[Any, Path] = {}
        self._roots: set[Pid] = set()
        self._early: list[tuple[Path, Any]] = []
        self.pids: dict[Path, Pid] = {}
        self.pid_paths: dict[Pid, Path] = {}
        """Where every process the harness started sits (how a dynamic supervisor's
        children, listed without ids, are found)."""
        self.failing: dict[Path, tuple[Pid, int]] = {}
        """``path -> (supervisor, count)``: that many of the next starts of the harness
        worker at ``path`` by that supervisor fail."""

    async def start(self) -> Pid | None:
        """Start the root (again, if it ended) and every child."""
        trap_exits(True)
        if self._handler not in self._logger.handlers:
            self._logger.addHandler(self._handler)
        if self._start is not None:
            root = await self._start()
        else:
            root = await child_spec(self.tree, (), self).start()
        self.root = root
        if root is not None:
            self._roots.add(root)
        return root

    def close(self) -> None:
        """Stop collecting the supervisors' log records."""
        self._logger.removeHandler(self._handler)

    async def inject(self, path: Path, reason: Any, desc: Worker | Sup) -> None:
        """Make the process at ``path`` fail with ``reason`` (no-op if it does not run):
        ``otp.KILL`` kills it; a supervisor is stopped with the reason; a harness worker
        raises it (an exception) or stops with it; your own worker gets it as an exit
        signal."""
        pid = self.pids.get(path)
        if pid is None or not is_alive(pid):
            return
        if reason is KILL:
            send_exit(pid, KILL)
        elif isinstance(desc, Sup):
            await sup_api.stop(pid, reason)
        elif desc.is_harness:
            gen_server.cast(pid, _Fail(reason))
        else:
            send_exit(pid, reason)

    async def wait_exit(self, path: Path) -> Any:
        """Wait for the exit of the process at ``path`` (monitored since the last
        :meth:`observe`); return its reason. :meth:`observe` still reports it, first."""
        refs = self._refs
        down = await receive(match=lambda m: type(m) is Down and refs.get(m.ref) == path)
        self._early.append((refs.pop(down.ref), down.reason))
        return down.reason

    async def shutdown(self) -> None:
        """Shut the root down as its parent does (exit signal ``SHUTDOWN``), and wait."""
        root = self.root
        if root is not None and is_alive(root):
            ref = monitor(root)
            send_exit(root, SHUTDOWN)
            await receive(match=lambda m: type(m) is Down and m.ref is ref)
            self._refs.pop(ref, None)

    async def settle(self) -> None:
        """Wait until nothing is left to happen: every task blocked and no harness worker
        in the middle of a slow ``terminate`` (virtual time runs on meanwhile)."""
        while True:
            await trio.testing.wait_all_tasks_blocked()
            if self._terminating == 0:
                return
            self._idle = trio.Event()
            await self._idle.wait()
            self._idle = None

    async def observe(self) -> Observation:
        """Collect the exits, terminates, starts and give-ups since the last call, then walk
        the tree with ``which_children`` and monitor every process in it."""
        exits: list[tuple[Path, Any]] = self._early
        self._early = []
        root_exits: list[Any] = []
        refs, roots = self._refs, self._roots

        def ours(m: Any) -> bool:
            kind = type(m)
            return (kind is Down and m.ref in refs) or (kind is Exit and m.pid in roots)

        while True:
            try:
                msg = await receive(timeout=0, match=ours)
            except ReceiveTimeout:
                break
            if type(msg) is Down:
                exits.append((refs.pop(msg.ref), msg.reason))
            else:
                root_exits.append(msg.reason)
        pids: dict[Path, Pid] = {}
        listing: dict[Path, list[tuple[Hashable, Pid | None, str]]] = {}
        if self.root is not None and is_alive(self.root):
            pending: list[tuple[Path, Pid]] = [((), self.root)]
            pids[()] = self.root
            while pending:
                path, pid = pending.pop(0)
                proc = pid._proc
                self._labels[pid] = path
                if proc is not None and proc.name is not None:
                    self._labels[proc.name] = path
                children = await sup_api.which_children(pid)
                desc = self.tree.find(path)
                if isinstance(desc, Sup) and desc.dynamic:  # listed as (None, pid, type)
                    children = [
                        (self.pid_paths.get(p, (*path, "?"))[-1] if p is not None else None,
                         p, kind)
                        for _, p, kind in children
                    ]
                listing[path] = children
                for child_id, child_pid, kind in children:
                    if child_pid is not None:
                        pids[(*path, child_id)] = child_pid
                        if kind == "supervisor":
                            pending.append(((*path, child_id), child_pid))
        for path, pid in pids.items():
            if pid not in self._monitored:
                self._monitored.add(pid)
                self._refs[monitor(pid)] = path
        self.pids = pids
        gave_up = []
        for record in self._handler.records:
            if "restarts in" in str(record.msg) and isinstance(record.args, tuple):
                label = record.args[0]
                gave_up.append(self._labels.get(label, ("?", label)))
        self._handler.records.clear()
        terminates, self.terminate_log = self.terminate_log, []
        starts, self.start_log = self.start_log, []
        return Observation(
            now=trio.current_time(), pids=pids, listing=listing, exits=exits,
            root_exits=root_exits, terminates=terminates, starts=starts, gave_up=gave_up,
        )


def can_inject(desc: Worker | Sup, reason: Any) -> bool:
    """Whether :meth:`LiveTree.inject` can make ``desc`` fail with ``reason``: always,
    except for your own workers, which get exit signals: ``otp.NORMAL`` is ignored by
    them, and any reason but ``otp.KILL`` is a mere message to one that traps exits."""
    if isinstance(desc, Sup) or desc.is_harness or reason is KILL:
        return True
    return not desc.trap_exit and not is_normal(reason)


# -- model and live tree side by side -------------------------------------------------------

_CALL_ERRORS = (
    AlreadyStarted, AlreadyPresent, Running, Restarting, NotFound, StartChildError,
    dyn_api.MaxChildren, ValueError,
)


class TreeCheck:
    """A :class:`Model` and a :class:`LiveTree` of the same description, driven together.

    Each action is applied to both; then the live tree is left to settle and compared with
    the model: the processes running and where (``which_children`` of every supervisor),
    which got a new pid, the exits in order with their reasons, the harness workers'
    starts and ``terminate`` calls in order, the supervisors that gave up (from their log
    records), that no process outlives its supervisor, and (for trees of harness workers
    only, unless ``check_time`` says otherwise) the virtual time the action took. A
    difference raises :class:`TreeMismatch`.

    With ``start`` (your function that starts the real root, linked to the caller),
    ``tree`` describes your tree and every worker in it counts as your own process.
    Call the actions from the process that owns the tree (a test's main process).
    """

    def __init__(
        self, tree: Sup, *, start: StartFn | None = None, check_time: bool | None = None
    ) -> None:
        if start is not None:
            if any(isinstance(d, Sup) and d.dynamic for _, d in tree.walk()):
                raise ValueError("a tree with dynamic supervisors must be built by the harness")
            tree = as_own(tree)
        self.tree = tree
        self.model = Model(tree)
        self.live = LiveTree(tree, start)
        self.check_time = (start is None and tree.all_harness) if check_time is None else check_time
        self.history: list[str] = []
        self.steps = 0
        self._token_pids: dict[int, Pid] = {}
        self._seen: dict[Pid, Path] = {}

    def close(self) -> None:
        """Stop listening to the supervisors' log records (the tree itself is left alone)."""
        self.live.close()

    # -- actions -------------------------------------------------------------------------
    async def start(self) -> Step:
        """Start the tree (again, once the root has ended)."""
        self.model, step = self.model.try_("start", trio.current_time())
        await self.live.start()
        await self._check(step, "start the tree")
        return step

    async def wait(self, delay: float) -> None:
        """Let ``delay`` virtual seconds pass."""
        await trio.sleep(delay)
        self.history.append(f"wait {delay} s")

    async def fault(
        self,
        path: Path,
        reason: Any,
        delay: float = 0.0,
        failed_starts: int = 0,
        then: CallAfterExit | None = None,
    ) -> Step | None:
        """Wait ``delay`` s, then make ``path`` fail with ``reason``; check the outcome.

        For a harness worker, ``failed_starts`` of its next starts by its supervisor fail
        (its restart is retried meanwhile) and ``then`` is a run-time call made as soon as
        its exit is known, which its supervisor serves after one restart round (see
        :class:`CallAfterExit`): its error and answer are checked too.

        Returns the model's step, or None when the fault is not injected: its outcome
        cannot be predicted (two timers at the same instant), it is aimed at one of your
        own workers with a reason an exit signal cannot deliver (see :func:`can_inject`),
        or ``failed_starts``/``then`` are given for something else than a running harness
        worker."""
        if delay:
            await trio.sleep(delay)
        now = trio.current_time()
        info = self.model.processes().get(path)
        label = f"at {now:.3f}: fault {path!r} with {reason!r}"
        if failed_starts:
            label += f", its next {failed_starts} start(s) failing"
        if then is not None:
            label += f", then {then.op}"
        if info is not None and not can_inject(info[1], reason):
            self.history.append(f"{label}: skipped (an exit signal cannot carry it there)")
            return None
        harness_worker = info is not None and isinstance(info[1], Worker) and info[1].is_harness
        if (failed_starts or then is not None) and not (harness_worker and path):
            self.history.append(f"{label}: skipped (not a running harness worker)")
            return None
        try:
            model, step = self.model.try_("fault", path, reason, now, failed_starts, then)
        except Ambiguous as exc:
            self.history.append(f"{label}: skipped ({exc})")
            return None
        self.model = model
        problems: list[str] = []
        if info is not None:
            sup_pid = self.live.pids.get(path[:-1])
            old_pid = self.live.pids.get(path)
            if failed_starts and sup_pid is not None:
                self.live.failing[path] = (sup_pid, failed_starts)
            try:
                await self.live.inject(path, reason, info[1])
            except OTPError as exc:
                problems.append(f"injecting the fault raised {exc!r}")
            if then is not None and sup_pid is not None and old_pid is not None:
                await self.live.wait_exit(path)
                problems += await self._call_after_exit(step, then, path, sup_pid, old_pid)
        await self._check(step, label, problems)
        return step

    async def _call_after_exit(
        self, step: Step, then: CallAfterExit, path: Path, sup: Pid, old: Pid
    ) -> list[str]:
        """Make ``then``'s call to ``sup`` (the supervisor of ``path``, which ran as
        ``old``); compare its error and answer with ``step``."""
        result: Any = None
        error: str | None = None
        sup_desc = self.model.description(path[:-1])
        dynamic = isinstance(sup_desc, Sup) and sup_desc.dynamic
        try:
            if then.op == "count_children":
                result = await sup_api.count_children(sup)
            elif then.op == "start_child":
                assert then.spec is not None
                spec = child_spec(then.spec, (*path[:-1], then.spec.id), self.live)
                result = await sup_api.start_child(sup, spec)
            elif then.op == "terminate_child":
                await sup_api.terminate_child(sup, old if dynamic else path[-1])
            elif then.op == "restart_child":
                result = await sup_api.restart_child(sup, path[-1])
            else:
                await sup_api.delete_child(sup, path[-1])
        except _CALL_ERRORS as exc:
            error = type(exc).__name__
        except (ServerExited, NoProc):
            error = "ServerExited"  # the supervisor was gone, or went while serving it
        problems = []
        if error != step.error:
            problems.append(f"{then.op} (after the exit) raised {error}, expected {step.error}")
        if then.op == "count_children" and error is None and result != step.counts:
            problems.append(f"count_children (after the exit) gave {result!r}, "
                            f"expected {step.counts!r}")
        started = isinstance(result, Pid)
        if then.op in ("start_child", "restart_child") and error is None and (
            step.result_started != started
        ):
            problems.append(f"{then.op} (after the exit) returned {result!r}")
        return problems

    async def shutdown(self) -> Step | None:
        """The root's parent shuts it down; check the order of every exit (unless the
        model cannot predict it: then return None)."""
        now = trio.current_time()
        label = f"at {now:.3f}: shut the root down"
        try:
            self.model, step = self.model.try_("shutdown_root", now)
        except Ambiguous as exc:
            self.history.append(f"{label}: not checked ({exc})")
            await self.live.shutdown()
            return None
        await self.live.shutdown()
        await self._check(step, label)
        return step

    async def terminate_child(self, sup: Path, child_id: Hashable) -> Step | None:
        """``otp.supervisor.terminate_child`` on the supervisor at ``sup`` (a dynamic
        supervisor is given the child's pid, or its own pid for an unknown id)."""
        desc = self.model.description(sup)
        live_arg = None
        if isinstance(desc, Sup) and desc.dynamic:
            live_arg = self.live.pids.get((*sup, child_id), self.live.pids[sup])
        return await self._call(
            "terminate_child", sup, child_id, sup_api.terminate_child, live_arg
        )

    async def restart_child(self, sup: Path, child_id: Hashable) -> Step | None:
        """``otp.supervisor.restart_child`` on the supervisor at ``sup``."""
        return await self._call("restart_child", sup, child_id, sup_api.restart_child)

    async def delete_child(self, sup: Path, child_id: Hashable) -> Step | None:
        """``otp.supervisor.delete_child`` on the supervisor at ``sup``."""
        return await self._call("delete_child", sup, child_id, sup_api.delete_child)

    async def start_child(self, sup: Path, desc: Worker | Sup) -> Step | None:
        """``otp.supervisor.start_child`` of ``desc`` (started the harness way)."""
        spec = child_spec(desc, (*sup, desc.id), self.live)
        return await self._call("start_child", sup, desc, sup_api.start_child, spec)

    async def _call(
        self, action: str, sup: Path, arg: Any, fn: Callable[..., Awaitable[Any]],
        live_arg: Any = None,
    ) -> Step | None:
        now = trio.current_time()
        shown = arg.id if isinstance(arg, Worker | Sup) else arg
        label = f"at {now:.3f}: {action}({sup!r}, {shown!r})"
        try:
            model, step = self.model.try_(action, sup, arg, now)
        except Ambiguous as exc:
            self.history.append(f"{label}: skipped ({exc})")
            return None
        self.model = model
        problems: list[str] = []
        pid = self.live.pids[sup]
        result: Any = None
        error: str | None = None
        try:
            result = await fn(pid, arg if live_arg is None else live_arg)
        except _CALL_ERRORS as exc:
            error = type(exc).__name__
        if error != step.error:
            problems.append(f"{action} raised {error}, expected {step.error}")
        await self._check(step, label, problems, result=(action, result))
        return step

    # -- the comparison ------------------------------------------------------------------
    async def _check(
        self, step: Step, label: str, problems: list[str] | None = None,
        result: tuple[str, Any] | None = None,
    ) -> None:
        self.steps += 1
        self.history.append(label)
        await self.live.settle()
        obs = await self.live.observe()
        problems = list(problems or [])
        problems += self._compare(step, obs)
        if result is not None and result[0] in ("restart_child", "start_child"):
            pid = result[1]
            if step.result_started and not isinstance(pid, Pid):
                problems.append(f"{result[0]} returned {pid!r}, expected a pid")
            if not step.result_started and pid is not None:
                problems.append(f"{result[0]} returned {pid!r}, expected None")
            if isinstance(pid, Pid) and pid not in obs.pids.values():
                problems.append(f"{result[0]} returned {pid!r}, which is not in the tree")
        if problems:
            raise TreeMismatch(self._report(problems, step, obs))

    def _compare(self, step: Step, obs: Observation) -> list[str]:
        problems = compare_exits(step.exits, obs.exits)
        problems += compare_terminates(step.terminates, obs.terminates)
        expected = self.model.processes()
        expected_starts = [p for p in step.started if self._is_harness_worker(p, expected)]
        if obs.starts != expected_starts:
            problems.append(f"worker starts: expected {expected_starts!r}, got {obs.starts!r}")
        if obs.gave_up != step.gave_up:
            problems.append(f"gave up: expected {step.gave_up!r}, got {obs.gave_up!r}")
        expected_root = [step.root_exit] if step.root_exited else []
        if not _same_list(obs.root_exits, expected_root):
            problems.append(f"root exit: expected {expected_root!r}, got {obs.root_exits!r}")
        if set(expected) != set(obs.pids):
            missing = sorted(set(expected) - set(obs.pids), key=repr)
            extra = sorted(set(obs.pids) - set(expected), key=repr)
            problems.append(f"running: missing {missing!r}, unexpected {extra!r}")
        for path, children in obs.listing.items():
            if path in expected and isinstance(expected[path][1], Sup):
                want = self.model.listing(path)
                got = [(i, p is not None, t) for i, p, t in children]
                if got != want:
                    problems.append(f"which_children({path!r}): expected {want!r}, got {got!r}")
        tokens: dict[int, Pid] = {}
        for path, (token, _) in expected.items():
            pid = obs.pids.get(path)
            if pid is None:
                continue
            if not is_alive(pid):
                problems.append(f"{path!r}: {pid!r} is listed but not alive")
            old = self._token_pids.get(token)
            if old is not None and old is not pid:
                problems.append(f"{path!r}: expected the same pid {old!r}, got {pid!r}")
            if old is None and pid in self._seen:
                problems.append(f"{path!r}: expected a new pid (restarted), still {pid!r}")
            tokens[token] = pid
        self._token_pids = tokens
        current = set(obs.pids.values())
        for pid, path in self._seen.items():
            if pid not in current and is_alive(pid):
                problems.append(f"{pid!r} (was {path!r}) outlived its place in the tree")
        self._seen = {pid: path for pid, path in self._seen.items() if is_alive(pid)}
        self._seen.update((pid, path) for path, pid in obs.pids.items())
        if self.check_time and not math.isclose(obs.now, step.end, abs_tol=1e-6):
            problems.append(f"it ended at virtual time {obs.now}, expected {step.end}")
        return problems

    def _is_harness_worker(
        self, path: Path, procs: dict[Path, tuple[int, Worker | Sup]]
    ) -> bool:
        if path in procs:
            desc = procs[path][1]
        else:
            found = self.tree.find(path)
            if found is None:
                return True  # a run-time child the harness started, since gone
            desc = found
        return isinstance(desc, Worker) and desc.is_harness

    def _report(self, problems: list[str], step: Step, obs: Observation) -> str:
        lines = ["the live tree differs from the model:"]
        lines += [f"  - {p}" for p in problems]
        lines.append("steps so far:")
        lines += [f"  {n + 1}. {h}" for n, h in enumerate(self.history)]
        lines.append(f"predicted exits: {step.exits!r}")
        lines.append(f"observed exits:  {obs.exits!r}")
        lines.append(f"tree: {self.tree!r}")
        return "\n".join(lines)


def _same(a: Any, b: Any) -> bool:
    return a is b or a == b


def _same_list(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
