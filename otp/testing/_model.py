"""A reference model of OTP's supervision rules, in plain Python (no trio, no processes).

It keeps which processes of a described tree run, and predicts, for each action (a fault,
a run-time call, a shutdown), the order in which processes exit and with which reasons,
which children get a new pid, which supervisors give up or shut themselves down
(significant children), and the virtual time the action takes (shutdowns wait for
``terminate`` and for ``shutdown`` timeouts). Static supervisors restart by strategy and
stop their children one at a time; dynamic ones restart one child and signal all their
children at once. A restart whose start fails is retried, each try counting toward the
intensity, while the child is *restarting*.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Hashable, Sequence
from typing import Any

import attrs

from .._terms import KILL, KILLED, SHUTDOWN, is_normal_exit
from ._tree import Path, Sup, Worker, is_ancestor

__all__ = [
    "Ambiguous",
    "CallAfterExit",
    "Concurrently",
    "Exited",
    "ExitedTogether",
    "KilledTogether",
    "Model",
    "Step",
    "compare_exits",
    "compare_terminates",
]

EPSILON = 1e-6
"""Two virtual instants closer than this are a tie the model refuses to order."""

CALL_OPS = ("terminate_child", "restart_child", "delete_child", "start_child", "count_children")
"""The run-time calls :class:`CallAfterExit` can make."""


class Ambiguous(Exception):
    """Two timers would fire at the same virtual instant (or a restart sits exactly on the
    edge of the intensity window), so the outcome depends on scheduling: the model cannot
    predict it. Discard the step (the model is unchanged when :meth:`Model.try_` is used)."""


@attrs.frozen
class Exited:
    """The process at ``path`` exited with ``reason``."""

    path: Path
    reason: Any


@attrs.frozen
class KilledTogether:
    """Processes killed at once, because a supervisor above them was killed: they exit
    with ``otp.KILLED`` in any order, except that a supervisor exits after its children."""

    paths: frozenset[Path]


@attrs.frozen
class ExitedTogether:
    """Exits at the same virtual instant that no rule orders (a dynamic supervisor signals
    all its children at once): they happen one after the other, in any order."""

    exits: tuple[Exited, ...]


ExitEvent = Exited | KilledTogether | ExitedTogether


@attrs.frozen
class Concurrently:
    """``terminate`` calls that start at once, in any order (the children of a dynamic
    supervisor that shuts down)."""

    calls: tuple[tuple[Path, Any], ...]


TerminateEvent = tuple[Path, Any] | Concurrently


@attrs.frozen
class CallAfterExit:
    """A run-time call to the supervisor of a failing worker, made as soon as the worker's
    end is known (its ``DOWN``), so that the supervisor serves it right after its first
    reaction to the exit: after one restart round, while a failed restart leaves the child
    *restarting*. ``op`` is one of :data:`CALL_OPS`; ``spec`` is the worker
    ``start_child`` adds. ``terminate_child`` of a dynamic supervisor's child names it by
    the pid it had when it failed."""

    op: str
    spec: Worker | None = None

    def __attrs_post_init__(self) -> None:
        if self.op not in CALL_OPS:
            raise ValueError(f"op must be one of {CALL_OPS}, got {self.op!r}")
        if (self.op == "start_child") != (self.spec is not None):
            raise ValueError("start_child, and only it, takes a spec")


@attrs.define
class Step:
    """What the model predicts for one action.

    ``exits``: exits in the order they happen. ``terminates``: the ``(path, reason)``
    of each harness worker's ``terminate`` call, in order (:class:`Concurrently` for
    calls in any order). ``started``: processes started (a new pid), in start order.
    ``removed``: children dropped from their supervisor's list (temporaries that ended,
    deleted children, a dynamic supervisor's children that are not restarted).
    ``gave_up``: supervisors that exceeded their restart intensity. ``auto_shutdown``:
    supervisors that shut down because of significant children. ``root_exit``: the root's
    exit reason if it exited. ``error``: the exception class a run-time call raises (also
    that of a :class:`CallAfterExit`, whose ``count_children`` answer is ``counts``).
    ``end``: the virtual time it is all over.
    """

    start: float
    end: float = 0.0
    exits: list[ExitEvent] = attrs.Factory(list)
    terminates: list[TerminateEvent] = attrs.Factory(list)
    started: list[Path] = attrs.Factory(list)
    removed: list[Path] = attrs.Factory(list)
    gave_up: list[Path] = attrs.Factory(list)
    auto_shutdown: list[Path] = attrs.Factory(list)
    root_exited: bool = False
    root_exit: Any = None
    error: str | None = None
    result_started: bool = False  # restart_child/start_child: whether a pid comes back
    counts: dict[str, int] | None = None


class _Proc:
    """A running process of the model."""

    __slots__ = ("children", "desc", "path", "restarts", "token")

    def __init__(self, desc: Worker | Sup, path: Path, token: int) -> None:
        self.desc = desc
        self.path = path
        self.token = token
        self.children: list[_Slot] = []
        self.restarts: list[float] = []


class _Slot:
    """A child entry in a supervisor: its description, its process while it runs, whether
    a failed restart of it is being retried, and (dynamic supervisors) the token of the
    process whose pid it is kept under."""

    __slots__ = ("desc", "dynamic", "key", "proc", "restarting")

    def __init__(self, desc: Worker | Sup, dynamic: bool = False) -> None:
        self.desc = desc
        self.proc: _Proc | None = None
        self.dynamic = dynamic
        self.restarting = False
        self.key = 0


class _Call:
    """A pending :class:`CallAfterExit`: to the supervisor with token ``sup``, about the
    child that ran as ``token`` at ``path``."""

    __slots__ = ("call", "path", "sup", "token")

    def __init__(self, call: CallAfterExit, sup: int, path: Path, token: int) -> None:
        self.call = call
        self.sup = sup
        self.path = path
        self.token = token


class Model:
    """The expected state of one supervision tree, and what each action does to it.

    Every action takes ``now``, the virtual time it happens at, and returns a :class:`Step`.
    The model assumes harness workers exit at the end of their ``terminate`` (which takes
    ``terminate_delay`` when they trap exits and are shut down) and other workers at once.
    An action whose outcome depends on two timers firing at the same instant raises
    :class:`Ambiguous`; :meth:`try_` runs an action on a copy so the model stays usable.
    """

    def __init__(self, tree: Sup) -> None:
        self.tree = tree
        self.root: _Proc | None = None
        self._tokens = 0
        self._step: Step | None = None
        self._failing: dict[Path, tuple[int, int]] = {}  # path -> (supervisor token, count)
        self._call: _Call | None = None
        self._seen = 0  # the last token started before the current step

    # -- queries -------------------------------------------------------------------------
    @property
    def root_alive(self) -> bool:
        return self.root is not None

    def processes(self) -> dict[Path, tuple[int, Worker | Sup]]:
        """Every running process: ``path -> (token, description)``. A token changes each
        time the process at that path is started, so a new token means a new pid."""
        out: dict[Path, tuple[int, Worker | Sup]] = {}
        if self.root is None:
            return out
        stack = [self.root]
        while stack:
            proc = stack.pop()
            out[proc.path] = (proc.token, proc.desc)
            stack.extend(s.proc for s in proc.children if s.proc is not None)
        return out

    def listing(self, sup: Path) -> list[tuple[Hashable, bool, str]]:
        """What ``which_children`` of the running supervisor ``sup`` should show:
        ``(id, running, type)`` in order (for a dynamic supervisor, the id of the
        description each child was started from)."""
        proc = self._find(sup)
        if proc is None or not isinstance(proc.desc, Sup):
            raise KeyError(f"no running supervisor at {sup!r}")
        return [(s.desc.id, s.proc is not None, s.desc.type) for s in proc.children]

    def children(self, sup: Path) -> list[Worker | Sup]:
        """The child descriptions the running supervisor ``sup`` has, in order."""
        proc = self._find(sup)
        if proc is None:
            raise KeyError(f"no running supervisor at {sup!r}")
        return [s.desc for s in proc.children]

    def description(self, path: Path) -> Worker | Sup | None:
        """The description of the running process at ``path`` (run-time children too)."""
        proc = self._find(path)
        return proc.desc if proc is not None else None

    def running(self, path: Path) -> bool:
        return self._find(path) is not None

    def supervisors(self) -> list[Path]:
        """The paths of the running supervisors, sorted."""
        return sorted(
            (p for p, (_, d) in self.processes().items() if isinstance(d, Sup)), key=repr
        )

    def copy(self) -> Model:
        return copy.deepcopy(self)

    def try_(self, action: str, *args: Any, **kwargs: Any) -> tuple[Model, Step]:
        """Run ``getattr(model, action)(*args, **kwargs)`` on a copy; return the copy and
        its step.

        Raises :class:`Ambiguous` and leaves this model as it was when the outcome cannot
        be predicted."""
        trial = self.copy()
        step: Step = getattr(trial, action)(*args, **kwargs)
        return trial, step

    # -- actions -------------------------------------------------------------------------
    def start(self, now: float) -> Step:
        """Start the root and, in order, every child."""
        if self.root is not None:
            raise RuntimeError("the root is already running")
        step = self._begin(now)
        self.root = self._start_proc(self.tree, ())
        return self._end(step, now)

    def fault(
        self,
        path: Path,
        reason: Any,
        now: float,
        failed_starts: int = 0,
        then: CallAfterExit | None = None,
    ) -> Step:
        """The process at ``path`` fails with ``reason`` at ``now``.

        For a worker the reason is its exit reason (``otp.KILL``: killed, reason
        ``otp.KILLED``). For a supervisor, ``otp.KILL`` kills it (its children die with
        it, in no order) and any other reason stops it in order (as
        ``otp.supervisor.stop(sup, reason)`` does). Nothing happens if it is not running.

        For a harness worker, ``failed_starts`` of its next starts by the same supervisor
        fail (each retried restart counts toward the intensity), and ``then`` is a call to
        its supervisor served right after that supervisor's first reaction (see
        :class:`CallAfterExit`); its error and answer are in the step.
        """
        step = self._begin(now)
        proc = self._find(path)
        if proc is None:
            return self._end(step, now)
        if isinstance(proc.desc, Worker) and path:
            parent = self._find(path[:-1])
            assert parent is not None
            if failed_starts:
                self._failing[path] = (parent.token, failed_starts)
            if then is not None:
                self._call = _Call(then, parent.token, path, proc.token)
        if reason is KILL:
            self._detach(proc)
            self._kill(proc)
            now = self._exited(proc, KILLED, now)
        elif isinstance(proc.desc, Worker):
            if proc.desc.is_harness:
                step.terminates.append((path, reason))
            self._detach(proc)
            self._exit(proc, reason)
            now = self._exited(proc, reason, now)
        else:
            now = self._stop_children(proc, now, math.inf)[0]
            self._detach(proc)
            self._exit(proc, reason)
            now = self._exited(proc, reason, now)
        if self._call is not None:  # its supervisor did not restart anything, or is gone
            now = self._run_call(now)
        return self._end(step, now)

    def shutdown_root(self, now: float) -> Step:
        """The root's parent shuts the root down (``SHUTDOWN``, waiting for ever)."""
        step = self._begin(now)
        root = self.root
        if root is not None:
            now = self._stop_children(root, now, math.inf)[0]
            self._exit(root, SHUTDOWN)
            self.root = None
            step.root_exited, step.root_exit = True, SHUTDOWN
        return self._end(step, now)

    def terminate_child(self, sup: Path, child_id: Hashable, now: float) -> Step:
        """``otp.supervisor.terminate_child(sup, child_id)`` (a dynamic supervisor's child
        is named by the id of its description; the call passes its pid)."""
        step = self._begin(now)
        proc = self._sup(sup)
        slot = self._slot_by_id(proc, child_id)
        if slot is None:
            step.error = "NotFound"
        else:
            now = self._terminate(proc, slot, now)
        return self._end(step, now)

    def restart_child(self, sup: Path, child_id: Hashable, now: float) -> Step:
        """``otp.supervisor.restart_child(sup, child_id)`` (static supervisors)."""
        step = self._begin(now)
        now = self._restart_child(self._sup(sup), child_id, now)
        return self._end(step, now)

    def delete_child(self, sup: Path, child_id: Hashable, now: float) -> Step:
        """``otp.supervisor.delete_child(sup, child_id)`` (static supervisors)."""
        step = self._begin(now)
        self._delete_child(self._sup(sup), child_id)
        return self._end(step, now)

    def start_child(self, sup: Path, desc: Worker | Sup, now: float) -> Step:
        """``otp.supervisor.start_child(sup, spec)``: a run-time child, forgotten when
        ``sup`` itself restarts."""
        step = self._begin(now)
        self._start_child(self._sup(sup), desc)
        return self._end(step, now)

    # -- internals -----------------------------------------------------------------------
    def _begin(self, now: float) -> Step:
        self._step = Step(start=now)
        self._seen = self._tokens
        return self._step

    def _exit(self, proc: _Proc, reason: Any) -> None:
        """Record the exit of ``proc``, unless it was started during this step: such an
        exit is not observed (a live tree is watched only between steps)."""
        if proc.token <= self._seen:
            self._s.exits.append(Exited(proc.path, reason))

    def _end(self, step: Step, now: float) -> Step:
        step.end = now
        self._step = None
        self._call = None
        return step

    @property
    def _s(self) -> Step:
        assert self._step is not None
        return self._step

    def _find(self, path: Path) -> _Proc | None:
        proc = self.root
        for key in path:
            if proc is None:
                return None
            slot = next((s for s in proc.children if s.desc.id == key), None)
            proc = slot.proc if slot is not None else None
        return proc

    def _find_token(self, token: int) -> _Proc | None:
        stack = [self.root] if self.root is not None else []
        while stack:
            proc = stack.pop()
            if proc.token == token:
                return proc
            stack.extend(s.proc for s in proc.children if s.proc is not None)
        return None

    def _sup(self, path: Path) -> _Proc:
        proc = self._find(path)
        if proc is None or not isinstance(proc.desc, Sup):
            raise KeyError(f"no running supervisor at {path!r}")
        return proc

    @staticmethod
    def _slot_by_id(sup: _Proc, child_id: Hashable) -> _Slot | None:
        return next((s for s in sup.children if s.desc.id == child_id), None)

    @staticmethod
    def _is_dynamic(proc: _Proc) -> bool:
        return isinstance(proc.desc, Sup) and proc.desc.dynamic

    def _parent(self, proc: _Proc) -> tuple[_Proc, _Slot] | None:
        if not proc.path:
            return None
        parent = self._find(proc.path[:-1])
        assert parent is not None
        slot = next(s for s in parent.children if s.proc is proc)
        return parent, slot

    def _detach(self, proc: _Proc) -> None:
        """Mark ``proc`` as no longer running in its parent's slot (or as the root)."""
        found = self._parent(proc)
        if found is None:
            self.root = None
        else:
            found[1].proc = None

    def _remove(self, sup: Path, slot: _Slot) -> None:
        parent = self._find(sup)
        assert parent is not None
        parent.children.remove(slot)
        self._s.removed.append((*sup, slot.desc.id))

    def _start_proc(self, desc: Worker | Sup, path: Path) -> _Proc:
        self._tokens += 1
        proc = _Proc(desc, path, self._tokens)
        self._s.started.append(path)
        if isinstance(desc, Sup):
            proc.children = [_Slot(child) for child in desc.children]
            for slot in proc.children:
                slot.proc = self._start_proc(slot.desc, (*path, slot.desc.id))
                slot.key = slot.proc.token
        return proc

    def _try_start(self, sup: _Proc, slot: _Slot) -> bool:
        """``sup`` starts ``slot``'s child; False when the start fails (see
        :meth:`fault`'s ``failed_starts``)."""
        path = (*sup.path, slot.desc.id)
        pending = self._failing.get(path)
        if pending is not None and pending[0] == sup.token:
            if pending[1] <= 1:
                del self._failing[path]
            else:
                self._failing[path] = (sup.token, pending[1] - 1)
            return False
        slot.proc = self._start_proc(slot.desc, path)
        slot.key = slot.proc.token
        slot.restarting = False
        return True

    def _kill(self, proc: _Proc) -> None:
        """Record the exits of a killed process: its running descendants, in no order,
        then itself. The caller has already detached it from its parent."""
        below: list[Path] = []
        stack = [s for s in proc.children if s.proc is not None]
        while stack:
            slot = stack.pop()
            assert slot.proc is not None
            if slot.proc.token <= self._seen:
                below.append(slot.proc.path)
            stack.extend(s for s in slot.proc.children if s.proc is not None)
            slot.proc = None
        if below:
            self._s.exits.append(KilledTogether(frozenset(below)))
        self._exit(proc, KILLED)

    def _stop_children(self, proc: _Proc, now: float, deadline: float) -> tuple[float, bool]:
        """``proc`` shuts its running children down: one by one in reverse start order
        (a static supervisor), or all at once (a dynamic one).

        Returns the time it is done and True, or ``(deadline, False)`` when an ancestor's
        kill at ``deadline`` interrupts it (the children left running are then killed by
        that ancestor)."""
        if self._is_dynamic(proc):
            return self._stop_all_at_once(proc, now, deadline)
        for slot in reversed(proc.children):
            if slot.proc is not None:
                now, done = self._shutdown_slot(slot, now, deadline)
                if not done:
                    return deadline, False
        return now, True

    def _stop_all_at_once(self, proc: _Proc, now: float, deadline: float) -> tuple[float, bool]:
        """A dynamic supervisor's shutdown: every child (a worker) gets its exit signal at
        ``now`` and ends per its own ``shutdown``; exits at the same instant come in any
        order."""
        step = self._s
        ends: list[tuple[float, Exited, _Slot, bool]] = []
        calls: list[tuple[Path, Any]] = []
        for slot in reversed(proc.children):
            child = slot.proc
            if child is None:
                continue
            desc = child.desc
            assert isinstance(desc, Worker)
            seen = child.token <= self._seen
            if desc.shutdown == "brutal_kill":
                ends.append((now, Exited(child.path, KILLED), slot, seen))
                continue
            if not (desc.is_harness and desc.trap_exit):
                ends.append((now, Exited(child.path, SHUTDOWN), slot, seen))
                continue
            calls.append((child.path, SHUTDOWN))
            own = math.inf if desc.shutdown == "infinity" else now + float(desc.shutdown)
            finish = now + desc.terminate_delay
            if math.isfinite(own) and abs(finish - own) < EPSILON:
                raise Ambiguous(f"{child.path!r}: terminate ends as it is killed at {own}")
            if finish < own:
                ends.append((finish, Exited(child.path, SHUTDOWN), slot, seen))
            else:
                ends.append((own, Exited(child.path, KILLED), slot, seen))
        if len(calls) == 1:
            step.terminates.append(calls[0])
        elif calls:
            step.terminates.append(Concurrently(tuple(calls)))
        ends.sort(key=lambda end: end[0])
        index = 0
        while index < len(ends):
            at = ends[index][0]
            if math.isfinite(deadline) and abs(at - deadline) < EPSILON:
                raise Ambiguous(f"{proc.path!r}: a child ends as an ancestor kills at {at}")
            if at > deadline:
                return deadline, False
            group = [end for end in ends[index:] if abs(end[0] - at) < EPSILON]
            for _, _, slot, _ in group:
                slot.proc = None
            shown = [end[1] for end in group if end[3]]
            if len(shown) == 1:
                step.exits.append(shown[0])
            elif shown:
                step.exits.append(ExitedTogether(tuple(shown)))
            index += len(group)
            now = at
        return now, True

    def _shutdown_slot(self, slot: _Slot, now: float, deadline: float) -> tuple[float, bool]:
        """The supervisor of ``slot`` shuts its child down per the child's ``shutdown``,
        starting at ``now``; see :meth:`_stop_children` for ``deadline``."""
        proc = slot.proc
        assert proc is not None
        desc = proc.desc
        step = self._s
        if desc.shutdown == "brutal_kill":
            slot.proc = None
            self._kill(proc)
            return now, True
        own = math.inf if desc.shutdown == "infinity" else now + float(desc.shutdown)
        limit = min(own, deadline)
        # Its own kill and an ancestor's at the same instant matter only if it lasts that long.
        tied = math.isfinite(own) and abs(own - deadline) < EPSILON
        if isinstance(desc, Worker):
            if not (desc.is_harness and desc.trap_exit):
                slot.proc = None
                self._exit(proc, SHUTDOWN)
                return now, True
            step.terminates.append((proc.path, SHUTDOWN))
            finish = now + desc.terminate_delay
            if math.isfinite(limit) and abs(finish - limit) < EPSILON:
                raise Ambiguous(f"{proc.path!r}: terminate ends as it is killed at {finish}")
            if finish < limit:
                slot.proc = None
                self._exit(proc, SHUTDOWN)
                return finish, True
            if tied:
                raise Ambiguous(f"{proc.path!r}: its kill and an ancestor's kill at {own}")
            if own < deadline:
                slot.proc = None
                self._exit(proc, KILLED)
                return own, True
            return deadline, False
        end, done = self._stop_children(proc, now, limit)
        if done:
            slot.proc = None
            self._exit(proc, SHUTDOWN)
            return end, True
        if tied:
            raise Ambiguous(f"{proc.path!r}: its kill and an ancestor's kill at {own}")
        if own < deadline:
            slot.proc = None
            self._kill(proc)
            return own, True
        return deadline, False

    def _exited(self, proc: _Proc, reason: Any, now: float) -> float:
        """``proc`` (already detached, its exit recorded) ended with ``reason`` at ``now``:
        its supervisor reacts. Returns the time the reactions are over."""
        if not proc.path:
            self._s.root_exited, self._s.root_exit = True, reason
            return now
        sup = self._find(proc.path[:-1])
        assert sup is not None
        slot = next(s for s in sup.children if s.desc.id == proc.path[-1])
        restart = slot.desc.restart
        if self._is_dynamic(sup):
            if restart == "temporary" or (restart == "transient" and is_normal_exit(reason)):
                self._remove(sup.path, slot)
                return now
            return self._restart(sup, slot, now)
        if restart == "temporary":
            self._remove(sup.path, slot)
            return self._maybe_auto_shutdown(sup, slot, now)
        if restart == "transient" and is_normal_exit(reason):
            return self._maybe_auto_shutdown(sup, slot, now)
        return self._restart(sup, slot, now)

    def _maybe_auto_shutdown(self, sup: _Proc, slot: _Slot, now: float) -> float:
        """``slot``'s child ended on its own and is not restarted: if it is significant and
        ``sup``'s auto_shutdown condition holds, ``sup`` stops its children and exits with
        ``SHUTDOWN`` (which its own supervisor handles as a normal exit)."""
        desc = sup.desc
        assert isinstance(desc, Sup)
        if not slot.desc.significant or desc.auto_shutdown == "never":
            return now
        if desc.auto_shutdown == "all_significant" and any(
            s.desc.significant and (s.proc is not None or s.restarting) for s in sup.children
        ):
            return now
        self._s.auto_shutdown.append(sup.path)
        now = self._stop_children(sup, now, math.inf)[0]
        self._detach(sup)
        self._exit(sup, SHUTDOWN)
        return self._exited(sup, SHUTDOWN, now)

    def _restart(self, sup: _Proc, slot: _Slot, now: float) -> float:
        """Restart ``slot`` per ``sup``'s strategy, round after round while a start fails
        (each round counts toward the intensity); give up past the intensity."""
        desc = sup.desc
        assert isinstance(desc, Sup)
        while True:
            cutoff = now - desc.period
            if any(abs(t - cutoff) < EPSILON for t in sup.restarts):
                raise Ambiguous(f"{sup.path!r}: a restart exactly {desc.period} s ago")
            sup.restarts = [t for t in sup.restarts if t > cutoff]
            sup.restarts.append(now)
            if len(sup.restarts) > desc.intensity:
                slot.restarting = False
                self._s.gave_up.append(sup.path)
                now = self._stop_children(sup, now, math.inf)[0]
                self._detach(sup)
                self._exit(sup, SHUTDOWN)
                return self._exited(sup, SHUTDOWN, now)
            slot.restarting = False
            failed: _Slot | None = None
            if desc.dynamic:
                if self._try_start(sup, slot):
                    sup.children.remove(slot)  # kept under its new pid: now the last one
                    sup.children.append(slot)
                else:
                    failed = slot
            else:
                if desc.strategy == "one_for_one":
                    affected = [slot]
                else:
                    index = sup.children.index(slot)
                    affected = list(sup.children if desc.strategy == "one_for_all" else
                                    sup.children[index:])
                    for other in reversed(affected):
                        other.restarting = False
                        if other.proc is not None:
                            now = self._shutdown_slot(other, now, math.inf)[0]
                    for other in affected:
                        if other.desc.restart == "temporary" and other is not slot:
                            self._remove(sup.path, other)
                    affected = [s for s in affected if s in sup.children]
                for other in affected:
                    if not self._try_start(sup, other):
                        failed = other
                        break
            if failed is not None:
                failed.restarting = True
            if self._call is not None and self._call.sup == sup.token:
                now = self._run_call(now)
            if failed is None or not failed.restarting or failed not in sup.children:
                return now
            slot = failed

    # -- run-time calls ------------------------------------------------------------------
    def _run_call(self, now: float) -> float:
        """Serve the pending :class:`CallAfterExit` (its supervisor may be gone)."""
        pending, self._call = self._call, None
        assert pending is not None
        step = self._s
        sup = self._find_token(pending.sup)
        if sup is None:
            step.error = "ServerExited"
            return now
        op = pending.call.op
        child_id = pending.path[-1]
        if op == "count_children":
            kids = sup.children
            step.counts = {
                "specs": len(kids),
                "active": sum(1 for s in kids if s.proc is not None),
                "supervisors": sum(1 for s in kids if s.desc.type == "supervisor"),
                "workers": sum(1 for s in kids if s.desc.type == "worker"),
            }
        elif op == "start_child":
            assert pending.call.spec is not None
            self._start_child(sup, pending.call.spec)
        elif op == "terminate_child":
            if self._is_dynamic(sup):  # by the pid it had: its entry while it restarts
                slot = next((s for s in sup.children if s.key == pending.token), None)
            else:
                slot = self._slot_by_id(sup, child_id)
            if slot is None:
                step.error = "NotFound"
            else:
                now = self._terminate(sup, slot, now)
        elif op == "restart_child":
            now = self._restart_child(sup, child_id, now)
        else:
            self._delete_child(sup, child_id)
        return now

    def _terminate(self, sup: _Proc, slot: _Slot, now: float) -> float:
        slot.restarting = False
        if slot.proc is not None:
            now = self._shutdown_slot(slot, now, math.inf)[0]
        if slot.desc.restart == "temporary" or self._is_dynamic(sup):
            self._remove(sup.path, slot)
        return now

    def _restart_child(self, sup: _Proc, child_id: Hashable, now: float) -> float:
        step = self._s
        slot = self._slot_by_id(sup, child_id)
        if slot is None:
            step.error = "NotFound"
        elif slot.proc is not None:
            step.error = "Running"
        elif slot.restarting:
            step.error = "Restarting"
        elif self._try_start(sup, slot):
            step.result_started = True
        else:
            step.error = "StartChildError"
        return now

    def _delete_child(self, sup: _Proc, child_id: Hashable) -> None:
        step = self._s
        slot = self._slot_by_id(sup, child_id)
        if slot is None:
            step.error = "NotFound"
        elif slot.proc is not None:
            step.error = "Running"
        elif slot.restarting:
            step.error = "Restarting"
        else:
            self._remove(sup.path, slot)

    def _start_child(self, sup: _Proc, desc: Worker | Sup) -> None:
        step = self._s
        flags = sup.desc
        assert isinstance(flags, Sup)
        if flags.dynamic:
            if flags.max_children is not None and len(sup.children) >= flags.max_children:
                step.error = "MaxChildren"
                return
        else:
            existing = self._slot_by_id(sup, desc.id)
            if existing is not None:
                step.error = "AlreadyStarted" if existing.proc is not None else "AlreadyPresent"
                return
        if desc.significant and (desc.restart == "permanent" or flags.auto_shutdown == "never"):
            step.error = "ValueError"
            return
        slot = _Slot(desc, dynamic=True)
        sup.children.append(slot)
        if self._try_start(sup, slot):
            step.result_started = True
        else:  # a start that fails keeps nothing
            sup.children.remove(slot)
            step.error = "StartChildError"


def _same_reason(a: Any, b: Any) -> bool:
    return a is b or a == b


def compare_exits(
    predicted: Sequence[ExitEvent], observed: Sequence[tuple[Path, Any]]
) -> list[str]:
    """Compare the exits a step should cause with those observed, in order.

    Returns the differences, described for a person (empty when they match)."""
    problems: list[str] = []
    i = 0
    for event in predicted:
        if isinstance(event, Exited):
            if i >= len(observed):
                problems.append(f"missing exit of {event.path!r} ({event.reason!r})")
                continue
            path, reason = observed[i]
            if path != event.path or not _same_reason(reason, event.reason):
                problems.append(
                    f"exit #{i}: expected {event.path!r} with {event.reason!r}, "
                    f"got {path!r} with {reason!r}"
                )
            i += 1
        elif isinstance(event, ExitedTogether):
            chunk = list(observed[i : i + len(event.exits)])
            i += len(event.exits)
            if not _same_bag(chunk, [(e.path, e.reason) for e in event.exits]):
                problems.append(
                    f"expected {[(e.path, e.reason) for e in event.exits]!r} in any order, "
                    f"got {chunk!r}"
                )
        else:
            chunk = list(observed[i : i + len(event.paths)])
            i += len(event.paths)
            got = {path for path, _ in chunk}
            if got != event.paths:
                problems.append(
                    f"expected {sorted(event.paths, key=repr)!r} killed together, "
                    f"got {[p for p, _ in chunk]!r}"
                )
                continue
            for path, reason in chunk:
                if reason is not KILLED:
                    problems.append(f"{path!r} killed with its supervisor exited {reason!r}")
            order = {path: n for n, (path, _) in enumerate(chunk)}
            for a in event.paths:
                for b in event.paths:
                    if is_ancestor(a, b) and order[a] < order[b]:
                        problems.append(f"{a!r} exited before its descendant {b!r}")
    if i < len(observed):
        problems.append(f"unexpected exits: {list(observed[i:])!r}")
    return problems


def compare_terminates(
    predicted: Sequence[TerminateEvent], observed: Sequence[tuple[Path, Any]]
) -> list[str]:
    """Compare the ``terminate`` calls a step should cause with those observed, in order
    (any order inside a :class:`Concurrently`). Returns the differences (empty: match)."""
    i = 0
    for event in predicted:
        expected = list(event.calls) if isinstance(event, Concurrently) else [event]
        chunk = list(observed[i : i + len(expected)])
        i += len(expected)
        if not _same_bag(chunk, expected):
            return [f"terminate calls: expected {list(predicted)!r}, got {list(observed)!r}"]
    if i != len(observed):
        return [f"terminate calls: expected {list(predicted)!r}, got {list(observed)!r}"]
    return []


def _same_bag(got: Sequence[tuple[Path, Any]], want: Sequence[tuple[Path, Any]]) -> bool:
    """The same ``(path, reason)`` pairs, in any order."""
    left = list(want)
    if len(got) != len(left):
        return False
    for path, reason in got:
        match = next(
            (n for n, (p, r) in enumerate(left) if p == path and _same_reason(r, reason)), None
        )
        if match is None:
            return False
        left.pop(match)
    return True
