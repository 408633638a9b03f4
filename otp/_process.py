"""Processes: the pid handle, the per-process state and its life cycle; the node.

A process is a trio task with a mailbox, links, monitors and an exit reason. This module
holds the state and the two transitions the rest of ``otp`` builds on: starting a process
(:func:`spawn_process`) and ending one (``_Process.finish``), which releases its local
name, runs its exit hooks (:func:`on_exit`), then signals its links and monitors, in that
order, without a checkpoint in between. It also holds what :mod:`otp.lowlevel` publishes:
:func:`current_node`, :func:`on_exit` and :class:`NodeVar`.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from heapq import heapify, heappop, heappush
from typing import Any, Final, Generic, TypeVar

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule

from ._errors import NoProc, NotInProcess, ProcessExited
from ._messages import Down, Exit
from ._terms import KILLED, NORMAL, is_normal, is_normal_exit

__all__ = ["Node", "NodeVar", "Pid", "current_node", "on_exit"]

T = TypeVar("T")

log: Final = logging.getLogger("otp")

RUNNING: Final = 0
EXITING: Final = 1  # an exit signal was accepted; the task is unwinding
DEAD: Final = 2

_current: contextvars.ContextVar[_Process] = contextvars.ContextVar("otp.current_process")
_current_node: contextvars.ContextVar[Node] = contextvars.ContextVar("otp.current_node")


class Pid:
    """The identity of a process, like an Erlang pid: hashable, printable, cheap to copy.

    A pid stays valid after its process ended: sending to it is then a no-op.
    """

    __slots__ = ("_id", "_proc")

    def __init__(self, id: int, proc: _Process) -> None:
        self._id = id
        self._proc: _Process | None = proc

    def __repr__(self) -> str:
        return f"<0.{self._id}.0>"

    def __lt__(self, other: Pid) -> bool:
        return self._id < other._id


class Node:
    """One runtime: the processes, the local names and the nursery they run in.

    Created by :func:`otp.node` or :func:`otp.run`; every process belongs to exactly one.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.processes: dict[int, _Process] = {}
        self.names: dict[str, _Process] = {}
        self._ids = itertools.count(0)
        self.main: Pid | None = None
        self.timers = _Timers(nursery)
        self._vars: dict[NodeVar[Any], Any] = {}
        """The values of the :class:`NodeVar` set in this node: they go with the node."""

    def __repr__(self) -> str:
        return f"<otp.Node with {len(self.processes)} processes>"


class _NoDefault:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no default>"


_NO_DEFAULT: Final = _NoDefault()


class NodeVar(Generic[T]):
    """One value per otp node, like :class:`trio.lowlevel.RunVar` is one per ``trio.run``.

    For state that belongs to a node rather than to a process: tables that several
    processes share, and that must outlive any one of them but not the node. The values are
    kept on the :class:`otp.Node` itself, so two nodes in one OS process never see each
    other's, and a node's values go away with it.

    :meth:`get` returns the current node's value. In a node where it was never set, it
    stores and returns ``factory()`` if a ``factory`` was given (so each node gets its
    own), else returns ``default`` if one was given (without storing it), else raises
    ``LookupError``. Both methods need a node: they raise :class:`otp.NotInProcess`
    outside any process or node task. ``name`` only serves ``repr``.
    """

    __slots__ = ("_default", "_factory", "name")

    def __init__(
        self,
        name: str,
        *,
        default: T | _NoDefault = _NO_DEFAULT,
        factory: Callable[[], T] | None = None,
    ) -> None:
        self.name = name
        self._default = default
        self._factory = factory

    def get(self) -> T:
        """The current node's value (see the class docstring for a node that has none)."""
        proc = _current.get(None)
        node = proc.node if proc is not None else current_node()
        try:
            return node._vars[self]  # type: ignore[no-any-return]
        except KeyError:
            return self._missing(node)

    def set(self, value: T) -> None:
        """Make ``value`` the current node's value."""
        proc = _current.get(None)
        node = proc.node if proc is not None else current_node()
        node._vars[self] = value

    def _get_in(self, node: Node) -> T:
        """The value in ``node``, which need not be the current node (for otp's own use)."""
        try:
            return node._vars[self]  # type: ignore[no-any-return]
        except KeyError:
            return self._missing(node)

    def _missing(self, node: Node) -> T:
        if self._factory is not None:
            value = node._vars[self] = self._factory()
            return value
        default = self._default
        if isinstance(default, _NoDefault):
            raise LookupError(self)
        return default

    def __repr__(self) -> str:
        return f"<NodeVar {self.name!r}>"


class _Waiter:
    """A one-shot slot a task sleeps on until a process answers it or exits.

    Waiters sit in the target's monitor table under their own key, so a target that exits
    wakes them through :meth:`target_exited` instead of a DOWN message. This is how
    calls, starts and stops watch their server without touching the caller's mailbox,
    and how a late answer is dropped instead of reaching a later receive.
    """

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: Task | None = current_task()

    def abort(self, _: Any) -> Abort:
        self.task = None
        return Abort.SUCCEEDED

    def resolve(self, result: outcome.Outcome[Any]) -> bool:
        """Wake the waiting task with ``result``; False if it already left or was woken."""
        task = self.task
        if task is None:
            return False
        self.task = None
        reschedule(task, result)
        return True

    def target_exited(self, pid: Pid, reason: Any) -> None:
        """Called when the watched process exits; the default answers with the reason."""
        self.resolve(outcome.Value(reason))

    def expire(self, timers: _Timers, deadline: float) -> None:
        """Called by :class:`_Timers` when the deadline it was added with has passed."""
        self.resolve(outcome.Error(_Expired()))

    async def wait(self, timeout: float | None) -> tuple[bool, Any]:
        """Sleep until resolved: ``(True, value)``, or ``(False, None)`` on timeout."""
        if timeout is None:
            return True, await trio.lowlevel.wait_task_rescheduled(self.abort)
        with trio.CancelScope(deadline=trio.current_time() + timeout):
            return True, await trio.lowlevel.wait_task_rescheduled(self.abort)
        return False, None


class _Expired(Exception):
    """Thrown into a waiter whose deadline in :class:`_Timers` has passed."""


class _Timers:
    """The deadlines of a node's calls, kept by one task instead of a cancel scope per call.

    Arming a trio cancel scope costs more than the rest of a call; pushing the deadline on
    a heap costs a fraction of that. One task (started on first use, in the node's nursery)
    sleeps until the earliest deadline and wakes its waiter with :class:`_Expired`.
    Entries whose waiter was answered are dropped when they reach the top of the heap, or
    all at once when they outnumber the live ones (as trio does for its own deadlines).
    """

    __slots__ = ("_heap", "_nursery", "_scope", "_seq", "_started", "_wake_at", "live")

    def __init__(self, nursery: trio.Nursery) -> None:
        self._heap: list[tuple[float, int, _Waiter | IdleTimer]] = []
        self._nursery = nursery
        self._scope: trio.CancelScope | None = None
        self._seq = itertools.count()
        self._started = False
        self._wake_at = math.inf
        self.live = 0
        """Waits in progress: :meth:`add` counts one up, the waiter counts it down when done."""

    def add(self, deadline: float, waiter: _Waiter | IdleTimer) -> None:
        """Wake ``waiter`` with :class:`_Expired` at ``deadline`` unless it is resolved first.

        The caller must decrement :attr:`live` once its wait is over, however it ended.
        """
        heap = self._heap
        while heap and heap[0][2].task is None:
            heappop(heap)
        heappush(heap, (deadline, next(self._seq), waiter))
        self.live += 1
        if len(heap) > 2 * self.live + 1000:
            heap[:] = [entry for entry in heap if entry[2].task is not None]
            heapify(heap)
        if deadline < self._wake_at:
            self._wake_at = deadline
            if self._scope is not None:
                self._scope.deadline = deadline
            elif not self._started:
                self._started = True
                self._nursery.start_soon(self._run, name="otp timers")

    async def _run(self) -> None:
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap:
                deadline, _, waiter = heap[0]
                if waiter.task is not None and deadline > now:
                    break
                heappop(heap)
                if waiter.task is not None:
                    waiter.expire(self, deadline)
            self._wake_at = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=self._wake_at) as self._scope:
                await trio.sleep_forever()
            self._scope = None


class IdleTimer:
    """The reusable deadline of one process's timed receives.

    A server that asks for an idle timeout receives with a timeout after every message.
    Instead of a heap entry (or a cancel scope) per receive, the process keeps this one
    timer: a later deadline only moves :attr:`deadline`, and the entry already in the heap
    re-arms itself for it when it fires early. Its heap entries stay until they fire (its
    ``task`` is never None), at most one per deadline that had to come earlier.
    """

    __slots__ = ("armed", "deadline", "proc", "task", "waiting")

    def __init__(self, proc: _Process) -> None:
        self.proc = proc
        self.task = self  # not None: _Timers keeps its entries until they fire
        self.armed: list[float] = []
        self.deadline = math.inf
        self.waiting: Task | None = None

    def arm(self, timers: _Timers, deadline: float, task: Task) -> None:
        """Make ``task`` (about to wait in a receive) wake with :class:`_Expired` at
        ``deadline`` unless a message wakes it first; :attr:`waiting` = None disarms."""
        self.deadline = deadline
        self.waiting = task
        if not self.armed or min(self.armed) > deadline:
            self.armed.append(deadline)
            timers.add(deadline, self)

    def expire(self, timers: _Timers, deadline: float) -> None:
        self.armed.remove(deadline)
        timers.live -= 1
        task = self.waiting
        if task is None:  # no timed receive in progress
            return
        if self.deadline > deadline:  # the deadline moved on since this entry was armed
            if not self.armed or min(self.armed) > self.deadline:
                self.armed.append(self.deadline)
                timers.add(self.deadline, self)
            return
        proc = self.proc
        if proc._waiting is task:  # parked in receive: wake it; else it checks on its own
            proc._waiting = None
            self.waiting = None
            reschedule(task, outcome.Error(_Expired()))

    def resolve(self, result: outcome.Outcome[Any]) -> bool:
        raise AssertionError("an IdleTimer is only expired")  # pragma: no cover


class _Process:
    """The state of one process. Internal: users hold its :class:`Pid`."""

    __slots__ = (
        "_credit",
        "_waiting",
        "children",
        "exit_hooks",
        "exit_reason",
        "idle_timer",
        "impl",
        "is_supervisor",
        "links",
        "mailbox",
        "monitors",
        "name",
        "node",
        "parent",
        "pid",
        "result",
        "scope",
        "self_exit",
        "spawn_nursery",
        "state",
        "task",
        "trap_exit",
        "watching",
    )

    def __init__(self, node: Node, parent: _Process | None) -> None:
        self.node = node
        self.pid = Pid(next(node._ids), self)
        self.parent = parent.pid if parent is not None else None
        self.spawn_nursery: trio.Nursery = (
            parent.spawn_nursery if parent is not None else node.nursery
        )
        self.state = RUNNING
        self.mailbox: deque[Any] | None = None
        self._waiting: Task | None = None
        self._credit = _CREDIT
        self.trap_exit = False
        self.links: set[_Process] | None = None
        self.monitors: dict[Any, Any] | None = None  # key -> watcher _Process or _Waiter
        self.watching: dict[Any, _Process] | None = None  # my monitors: ref -> target
        self.name: Any = None
        self.exit_hooks: list[Callable[[Any], object]] | None = None  # see on_exit
        self.exit_reason: Any = None
        self.self_exit = False
        self.scope = trio.CancelScope()
        self.result: Any = None
        self.children: dict[Pid, None] | None = None  # main's live children, in start order
        self.is_supervisor = False
        self.idle_timer: IdleTimer | None = None
        self.impl: Any = None
        """What runs the process, for introspection: the function given to spawn, or a
        gen_server's instance (set by the server once made)."""
        self.task: Task | None = None  # its trio task, once it has started
        node.processes[self.pid._id] = self

    def __repr__(self) -> str:
        return f"<process {self.pid!r} {self.name!r}>"

    # -- mailbox -------------------------------------------------------------------------
    def deliver(self, msg: Any) -> None:
        """Append ``msg`` to the mailbox and wake the process if it waits in receive."""
        if self.state == DEAD:
            return
        mailbox = self.mailbox
        if mailbox is None:
            mailbox = self.mailbox = deque()
        mailbox.append(msg)
        task = self._waiting
        if task is not None:
            self._waiting = None
            reschedule(task)

    def _abort_wait(self, _: Any) -> Abort:
        self._waiting = None
        return Abort.SUCCEEDED

    # -- signals -------------------------------------------------------------------------
    def exit_signal(self, sender: Pid | None, reason: Any) -> None:
        """Receive an exit signal from ``sender`` (a link, or :func:`otp.exit`).

        Trapping turns it into an :class:`Exit` message; otherwise a normal reason
        (``NORMAL`` or ``"normal"``) is ignored (unless the process sent it to itself) and
        any other reason ends the process with that reason.
        """
        if self.state != RUNNING:
            return
        if self.trap_exit:
            self.deliver(Exit(sender, reason))
        elif not is_normal(reason) or sender is self.pid:
            self.terminate(reason)

    def terminate(self, reason: Any) -> None:
        """End the process with ``reason``: cancel its task, which unwinds to ``finish``."""
        if self.state != RUNNING:
            return
        self.state = EXITING
        self.exit_reason = reason
        self.scope.cancel()

    def kill(self) -> None:
        """End the process with KILLED, whatever it is doing (a supervisor's last resort)."""
        if self.state == RUNNING:
            self.terminate(KILLED)
        elif self.state == EXITING:
            self.exit_reason = KILLED

    # -- life cycle ----------------------------------------------------------------------
    async def main(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        """The body of the process's task: run ``fn(*args)``, then :meth:`finish`."""
        _current.set(self)
        self.task = current_task()
        reason: Any = NORMAL
        try:
            with self.scope:
                if self.state == RUNNING:
                    self.result = await fn(*args)
        except ProcessExited as exc:
            reason = exc.reason
            self.self_exit = getattr(exc, "report", True)
        except Exception as exc:
            reason = exc
            self.self_exit = True
        except BaseException as exc:  # cancelled from outside, KeyboardInterrupt, ...
            self.finish(self.exit_reason if self.state == EXITING else _outer_reason(exc))
            raise
        self.finish(self.exit_reason if self.state == EXITING else reason)

    def finish(self, reason: Any) -> None:
        """Record the exit: release the local name, run the exit hooks, then signal links,
        then monitors. Never awaits. A hook that raises is logged and changes nothing else
        (a BaseException such as KeyboardInterrupt is raised once all of it is done)."""
        if self.state == DEAD:
            return
        self.state = DEAD
        self.exit_reason = reason
        pid = self.pid
        node = self.node
        if self.self_exit and not is_normal_exit(reason):
            _crash_report(self, reason)
        name = self.name
        if type(name) is str and node.names.get(name) is self:
            del node.names[name]
        hooks = self.exit_hooks
        interrupt: BaseException | None = None
        if hooks is not None:
            self.exit_hooks = None
            for hook in hooks:
                try:
                    hook(reason)
                except Exception:
                    log.exception("process %r: exit hook %r raised", pid, hook)
                except BaseException as exc:  # KeyboardInterrupt...: raised once done
                    if interrupt is None:
                        interrupt = exc
        watching = self.watching
        if watching is not None:
            self.watching = None
            for ref, target in watching.items():
                if target.monitors is not None:
                    target.monitors.pop(ref, None)
        links = self.links
        if links is not None:
            self.links = None
            for other in links:
                if other.links is not None:
                    other.links.discard(self)
                other.exit_signal(pid, reason)
        monitors = self.monitors
        if monitors is not None:
            self.monitors = None
            for key, watcher in monitors.items():
                if type(watcher) is _Process:
                    if watcher.watching is not None:
                        watcher.watching.pop(key, None)
                    watcher.deliver(Down(key, pid, reason))
                else:
                    watcher.target_exited(pid, reason)
        parent = self.parent
        if parent is not None:
            owner = parent._proc
            if owner is not None and owner.children is not None:
                owner.children.pop(pid, None)
        self.mailbox = None
        self._waiting = None
        self.task = None  # its context refers to this process: no cycle left for the gc
        node.processes.pop(pid._id, None)
        pid._proc = None
        if interrupt is not None:
            raise interrupt


_CREDIT: Final = 32  # receives served from the mailbox between two schedule points


def _outer_reason(exc: BaseException) -> Any:
    if isinstance(exc, trio.Cancelled):
        return KILLED
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        if rest is None:  # only cancellations, from nurseries the process opened
            return KILLED
    return exc


def _crash_report(proc: _Process, reason: Any) -> None:
    name = f" ({proc.name!r})" if proc.name is not None else ""
    if isinstance(reason, BaseException):
        log.error(
            "process %r%s crashed: %r", proc.pid, name, reason,
            exc_info=(type(reason), reason, reason.__traceback__),
        )
    else:
        log.error("process %r%s exited: %r", proc.pid, name, reason)


def current() -> _Process:
    """The current process; raises :class:`NotInProcess` outside one."""
    try:
        return _current.get()
    except LookupError:
        raise NotInProcess("this must be called from inside an otp process") from None


def current_or_none() -> _Process | None:
    return _current.get(None)


def current_node() -> Node:
    """The node of the current process, or of the current task inside ``otp.node()``.

    Raises :class:`otp.NotInProcess` outside any process or node.
    """
    proc = _current.get(None)
    if proc is not None:
        return proc.node
    try:
        return _current_node.get()
    except LookupError:
        raise NotInProcess(
            "no otp node is running in this task (use otp.run or otp.node)"
        ) from None


def on_exit(pid: Pid, fn: Callable[[Any], object]) -> None:
    """Call ``fn(reason)`` when the process ``pid`` ends, however it ends (killed too).

    The hooks of a process run in the order they were added, synchronously, when it ends:
    after its local name is released and before its exit signals reach its links and
    monitors (so no process can observe the exit before they ran). They run in the ending
    process's own task, so :func:`current_node` and :class:`NodeVar` work in them, and
    ``otp.self()`` is that process. A hook cannot await; what it returns is ignored.

    A hook that raises is logged (logger ``"otp"``, with the traceback) and stops nothing:
    the other hooks run, and the process's links, monitors, names and exit signals are
    released and sent as usual.

    Raises :class:`otp.NoProc` if the process has already ended (its hooks have run, or
    are running). A process that is exiting but has not ended yet (it accepted an exit
    signal and is unwinding) still takes hooks, and runs them when it ends.
    """
    proc = pid._proc
    if proc is None or proc.state == DEAD:
        raise NoProc(pid)
    hooks = proc.exit_hooks
    if hooks is None:
        proc.exit_hooks = [fn]
    else:
        hooks.append(fn)


def link_pair(a: _Process, b: _Process) -> None:
    if a.links is None:
        a.links = set()
    if b.links is None:
        b.links = set()
    a.links.add(b)
    b.links.add(a)


def spawn_process(
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    *,
    link: bool = False,
    nursery: trio.Nursery | None = None,
) -> _Process:
    """Create a process running ``fn(*args)`` in the spawner's nursery; return its state."""
    parent = _current.get(None)
    node = parent.node if parent is not None else current_node()
    proc = _Process(node, parent)
    proc.impl = fn
    if parent is not None:
        if link:
            link_pair(parent, proc)
        if parent.children is not None:
            parent.children[proc.pid] = None
    target = nursery or proc.spawn_nursery
    target.start_soon(proc.main, fn, args, name=getattr(fn, "__qualname__", None))
    return proc
