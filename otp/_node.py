"""Running a node: :func:`run` for programs and :func:`node` for tests and embedding."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from ._errors import ProcessExited
from ._process import (
    DEAD,
    EXITING,
    RUNNING,
    Node,
    _current,
    _current_node,
    _Process,
    _Waiter,
)
from ._terms import NORMAL, SHUTDOWN, is_normal_exit

__all__ = ["node", "run"]

T = TypeVar("T")

SHUTDOWN_GRACE = 5.0
"""Seconds a non-supervisor process gets to exit after SHUTDOWN before it is killed."""


@asynccontextmanager
async def node() -> AsyncIterator[Node]:
    """Run a node inside the current trio task, which becomes its main process.

    Inside the block the task is a process (``otp.self()``, ``otp.receive()``, links and
    monitors all work), so a pytest-trio test needs no ``trio.run`` of its own::

        async with otp.node():
            pid = otp.spawn(worker)

    On leaving the block, the processes main started are stopped one at a time in reverse
    start order, then main's exit reaches its links, then every other process still
    running is shut down. An exception from the block is re-raised afterwards (and not
    logged as a crash, since the caller gets it), except
    that :class:`otp.ProcessExited` ends main with its ``reason`` as in any process; if
    main was ended by an exit signal or such a reason, :class:`otp.ProcessExited` is
    raised (or the exception that was the reason), unless the reason was normal.
    """
    reason: Any = NORMAL
    raised: ProcessExited | None = None
    async with trio.open_nursery() as nursery:
        the_node = Node(nursery)
        main = _Process(the_node, None)
        main.children = {}
        the_node.main = main.pid
        node_token = _current_node.set(the_node)
        token = _current.set(main)
        try:
            with main.scope:
                yield the_node
        # Main's own exception is not crash-reported: it is raised to whoever ran the node.
        except ProcessExited as exc:  # main's own exit(reason), as in any process
            reason = exc.reason
            raised = exc
        except Exception as exc:
            reason = exc
        finally:
            if main.state == EXITING:  # ended by an exit signal
                reason = main.exit_reason
                main.state = RUNNING  # still main while it stops its children
            main.trap_exit = True  # children's exits must not interrupt the shutdown
            try:
                await _shutdown(the_node, main, reason)
            finally:
                _current.reset(token)
                _current_node.reset(node_token)
                nursery.cancel_scope.cancel()
    if not is_normal_exit(reason):
        if isinstance(reason, BaseException):
            raise reason
        if raised is not None and raised.reason is reason:
            raise raised
        raise ProcessExited(reason)


def run(main: Callable[..., Awaitable[T]], *args: Any, clock: trio.abc.Clock | None = None) -> T:
    """Run a node with ``await main(*args)`` as its first process; return main's result.

    When main ends, the node shuts down in order (see :func:`node`) before this returns.
    Main's exception is re-raised; a main ended by a reason that is neither normal nor an
    exception raises :class:`otp.ProcessExited`. ``clock`` is passed to ``trio.run``.
    """

    result: Any = None

    async def _main() -> None:
        nonlocal result
        async with node():
            result = await main(*args)

    trio.run(_main, clock=clock)
    return result  # type: ignore[no-any-return]



async def _shutdown(the_node: Node, main: _Process, reason: Any) -> None:
    """Stop main's children in reverse start order, end main, then stop the rest."""
    with trio.CancelScope(shield=True):
        for pid in list(reversed(main.children or {})):
            proc = pid._proc
            if proc is not None and proc.state == RUNNING:
                proc.exit_signal(main.pid, SHUTDOWN)
                grace = math.inf if proc.is_supervisor else SHUTDOWN_GRACE
                await await_exit(proc, grace)
        main.finish(reason)
        rest = sorted(the_node.processes.values(), key=lambda p: p.pid._id, reverse=True)
        for proc in rest:
            if proc.state == RUNNING:
                # As from its parent, so a trapping gen_server shuts down (and runs
                # terminate) instead of taking it for a stray message.
                proc.exit_signal(proc.parent, SHUTDOWN)
        with trio.move_on_after(SHUTDOWN_GRACE):
            for proc in rest:
                if proc.state != DEAD:
                    await await_exit(proc, None)
        for proc in list(the_node.processes.values()):
            proc.kill()


async def await_exit(proc: _Process, timeout: float | None) -> Any:
    """Wait until ``proc`` has ended; kill it after ``timeout`` seconds. Returns its reason."""
    if proc.state == DEAD:
        return proc.exit_reason
    waiter = _Waiter()
    if proc.monitors is None:
        proc.monitors = {}
    proc.monitors[waiter] = waiter
    done, reason = await waiter.wait(timeout)
    if done:
        return reason
    if proc.monitors is not None:
        proc.monitors.pop(waiter, None)
    proc.kill()
    return await await_exit(proc, None)
