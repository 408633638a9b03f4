"""A reference model of OTP's supervision rules, in plain Python (no trio, no processes).

It keeps which processes of a described tree run, and predicts, for each action (a fault,
a run-time call, a shutdown), the order in which processes exit and with which reasons,
which children get a new pid, which supervisors give up, and the virtual time the action
takes (shutdowns wait for ``terminate`` and for ``shutdown`` timeouts).
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
    "Exited",
    "KilledTogether",
    "Model",
    "Step",
    "compare_exits",
]

EPSILON = 1e-6
"""Two virtual instants closer than this are a tie the model refuses to order."""


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


ExitEvent = Exited | KilledTogether


@attrs.define
class Step:
    """What the model predicts for one action.

    ``exits``: exits in the order they happen. ``terminates``: the ``(path, reason)``
    of each harness worker's ``terminate`` call, in order. ``started``: processes started
    (a new pid), in start order. ``removed``: children dropped from their supervisor's list
    (temporaries that ended, deleted children). ``gave_up``: supervisors that exceeded
    their restart intensity. ``root_exit``: the root's exit reason if it exited. ``error``:
    the exception class a run-time call raises. ``end``: the virtual time it is all over.
    """

    start: float
    end: float = 0.0
    exits: list[ExitEvent] = attrs.Factory(list)
    terminates: list[tuple[Path, Any]] = attrs.Factory(list)
    started: list[Path] = attrs.Factory(list)
    removed: list[Path] = attrs.Factory(list)
    gave_up: list[Path] = attrs.Factory(list)
    root_exited: bool = False
    root_exit: Any = None
    error: str | None = None
    result_started: bool = False  # restart_child/start_child: whether a pid comes back


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
    """A child entry in a supervisor: its description and its process while it runs."""

    __slots__ = ("desc", "dynamic", "proc")

    def __init__(self, desc: Worker | Sup, dynamic: bool = False) -> None:
        self.desc = desc
        self.proc: _Proc | None = None
        self.dynamic = dynamic


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
        ``(id, running, type)`` in order."""
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

    def running(self, path: Path) -> bool:
        return self._find(path) is not None

    def supervisors(self) -> list[Path]:
        """The paths of the running supervisors, sorted."""
        return sorted(
            (p for p, (_, d) in self.processes().items() if isinstance(d, Sup)), key=repr
        )

    def copy(self) -> Model:
        return copy.deepcopy(self)

    def try_(self, action: str, *args: Any) -> tuple[Model, Step]:
        """Run ``getattr(model, action)(*args)`` on a copy; return the copy and its step.

        Raises :class:`Ambiguous` and leaves this model as it was when the outcome cannot
        be predicted."""
        trial = self.copy()
        step: Step = getattr(trial, action)(*args)
        return trial, step

    # -- actions -------------------------------------------------------------------------
    def start(self, now: float) -> Step:
        """Start the root and, in order, every child."""
        if self.root is not None:
            raise RuntimeError("the root is already running")
        step = self._begin(now)
        self.root = self._start_proc(self.tree, ())
        return self._end(step, now)

    def fault(self, path: Path, reason: Any, now: float) -> Step:
        """The process at ``path`` fails with ``reason`` at ``now``.

        For a worker the reason is its exit reason (``otp.KILL``: killed, reason
        ``otp.KILLED``). For a supervisor, ``otp.KILL`` kills it (its children die with
        it, in no order) and any other reason stops it in order (as
        ``otp.supervisor.stop(sup, reason)`` does). Nothing happens if it is not running.
        """
        step = self._begin(now)
        proc = self._find(path)
        if proc is None:
            return self._end(step, now)
        if reason is KILL:
            self._detach(proc)
            self._kill(proc)
            now = self._exited(proc, KILLED, now)
        elif isinstance(proc.desc, Worker):
            if proc.desc.is_harness:
                step.terminates.append((path, reason))
            self._detach(proc)
            step.exits.append(Exited(path, reason))
            now = self._exited(proc, reason, now)
        else:
            now = self._stop_children(proc, now, math.inf)[0]
            self._detach(proc)
            step.exits.append(Exited(path, reason))
            now = self._exited(proc, reason, now)
        return self._end(step, now)

    def shutdown_root(self, now: float) -> Step:
        """The root's parent shuts the root down (``SHUTDOWN``, waiting for ever)."""
        step = self._begin(now)
        root = self.root
        if root is not None:
            now = self._stop_children(root, now, math.inf)[0]
            step.exits.append(Exited((), SHUTDOWN))
            self.root = None
            step.root_exited, step.root_exit = True, SHUTDOWN
        return self._end(step, now)

    def terminate_child(self, sup: Path, child_id: Hashable, now: float) -> Step:
        """``otp.supervisor.terminate_child(sup, child_id)``."""
        step = self._begin(now)
        slot = self._slot(sup, child_id, step)
        if slot is not None:
            if slot.proc is not None:
                now = self._shutdown_slot(slot, now, math.inf)[0]
            if slot.desc.restart == "temporary":
                self._remove(sup, slot)
        return self._end(step, now)

    def restart_child(self, sup: Path, child_id: Hashable, now: float) -> Step:
        """``otp.supervisor.restart_child(sup, child_id)``."""
        step = self._begin(now)
        slot = self._slot(sup, child_id, step)
        if slot is not None:
            if slot.proc is not None:
                step.error = "Running"
            else:
                slot.proc = self._start_proc(slot.desc, (*sup, slot.desc.id))
                step.result_started = True
        return self._end(step, now)

    def delete_child(self, sup: Path, child_id: Hashable, now: float) -> Step:
        """``otp.supervisor.delete_child(sup, child_id)``."""
        step = self._begin(now)
        slot = self._slot(sup, child_id, step)
        if slot is not None:
            if slot.proc is not None:
                step.error = "Running"
            else:
                self._remove(sup, slot)
        return self._end(step, now)

    def start_child(self, sup: Path, desc: Worker | Sup, now: float) -> Step:
        """``otp.supervisor.start_child(sup, spec)``: a run-time child, forgotten when
        ``sup`` itself restarts."""
        step = self._begin(now)
        proc = self._find(sup)
        if proc is None or not isinstance(proc.desc, Sup):
            raise KeyError(f"no running supervisor at {sup!r}")
        existing = next((s for s in proc.children if s.desc.id == desc.id), None)
        if existing is not None:
            step.error = "AlreadyStarted" if existing.proc is not None else "AlreadyPresent"
        else:
            slot = _Slot(desc, dynamic=True)
            proc.children.append(slot)
            slot.proc = self._start_proc(desc, (*sup, desc.id))
            step.result_started = True
        return self._end(step, now)

    # -- internals -----------------------------------------------------------------------
    def _begin(self, now: float) -> Step:
        self._step = Step(start=now)
        return self._step

    def _end(self, step: Step, now: float) -> Step:
        step.end = now
        self._step = None
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

    def _slot(self, sup: Path, child_id: Hashable, step: Step) -> _Slot | None:
        proc = self._find(sup)
        if proc is None or not isinstance(proc.desc, Sup):
            raise KeyError(f"no running supervisor at {sup!r}")
        slot = next((s for s in proc.children if s.desc.id == child_id), None)
        if slot is None:
            step.error = "NotFound"
        return slot

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
        return proc

    def _kill(self, proc: _Proc) -> None:
        """Record the exits of a killed process: its running descendants, in no order,
        then itself. The caller has already detached it from its parent."""
        below: list[Path] = []
        stack = [s for s in proc.children if s.proc is not None]
        while stack:
            slot = stack.pop()
            assert slot.proc is not None
            below.append(slot.proc.path)
            stack.extend(s for s in slot.proc.children if s.proc is not None)
            slot.proc = None
        if below:
            self._s.exits.append(KilledTogether(frozenset(below)))
        self._s.exits.append(Exited(proc.path, KILLED))

    def _stop_children(self, proc: _Proc, now: float, deadline: float) -> tuple[float, bool]:
        """``proc`` shuts its running children down one by one in reverse start order.

        Returns the time it is done and True, or ``(deadline, False)`` when an ancestor's
        kill at ``deadline`` interrupts it (the children left running are then killed by
        that ancestor)."""
        for slot in reversed(proc.children):
            if slot.proc is not None:
                now, done = self._shutdown_slot(slot, now, deadline)
                if not done:
                    return deadline, False
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
                step.exits.append(Exited(proc.path, SHUTDOWN))
                return now, True
            step.terminates.append((proc.path, SHUTDOWN))
            finish = now + desc.terminate_delay
            if math.isfinite(limit) and abs(finish - limit) < EPSILON:
                raise Ambiguous(f"{proc.path!r}: terminate ends as it is killed at {finish}")
            if finish < limit:
                slot.proc = None
                step.exits.append(Exited(proc.path, SHUTDOWN))
                return finish, True
            if tied:
                raise Ambiguous(f"{proc.path!r}: its kill and an ancestor's kill at {own}")
            if own < deadline:
                slot.proc = None
                step.exits.append(Exited(proc.path, KILLED))
                return own, True
            return deadline, False
        end, done = self._stop_children(proc, now, limit)
        if done:
            slot.proc = None
            step.exits.append(Exited(proc.path, SHUTDOWN))
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
        if restart == "temporary":
            self._remove(sup.path, slot)
            return now
        if restart == "transient" and is_normal_exit(reason):
            return now
        return self._restart(sup, slot, now)

    def _restart(self, sup: _Proc, slot: _Slot, now: float) -> float:
        desc = sup.desc
        assert isinstance(desc, Sup)
        cutoff = now - desc.period
        if any(abs(t - cutoff) < EPSILON for t in sup.restarts):
            raise Ambiguous(f"{sup.path!r}: a restart exactly {desc.period} s ago")
        sup.restarts = [t for t in sup.restarts if t > cutoff]
        sup.restarts.append(now)
        if len(sup.restarts) > desc.intensity:
            self._s.gave_up.append(sup.path)
            now = self._stop_children(sup, now, math.inf)[0]
            self._detach(sup)
            self._s.exits.append(Exited(sup.path, SHUTDOWN))
            return self._exited(sup, SHUTDOWN, now)
        if desc.strategy == "one_for_one":
            affected = [slot]
        else:
            index = sup.children.index(slot)
            affected = list(sup.children if desc.strategy == "one_for_all" else
                            sup.children[index:])
            for other in reversed(affected):
                if other.proc is not None:
                    now = self._shutdown_slot(other, now, math.inf)[0]
            for other in affected:
                if other.desc.restart == "temporary" and other is not slot:
                    self._remove(sup.path, other)
            affected = [s for s in affected if s in sup.children]
        for other in affected:
            other.proc = self._start_proc(other.desc, (*sup.path, other.desc.id))
        return now


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
