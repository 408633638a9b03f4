"""NodeDriver: a node kept alive across synchronous calls, with trio in guest mode.

Hypothesis's stateful tests call their rules synchronously, one after the other, while a
supervision tree must stay alive from one rule to the next. The driver runs ``trio`` as a
guest of a tiny host loop on the calling thread (``trio.lowlevel.start_guest_run``):
:meth:`NodeDriver.run` hands an async function to the node's main process and runs the
host loop until it has finished. Between calls the trio run is simply paused; no thread
runs otp code (trio's guest mode only waits for I/O in a helper thread).
"""

from __future__ import annotations

import functools
import queue
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio
import trio.testing

from .._node import node as otp_node
from .._process import Node

__all__ = ["DriverTimeout", "NodeDriver"]

T = TypeVar("T")


class DriverTimeout(AssertionError):
    """A call into the node did not finish within the driver's real-time ``timeout``:
    something in the node waits for ever (a deadlock), or loops."""


class NodeDriver:
    """Run an otp node (``otp.node()``) in trio guest mode and call into it synchronously.

    ``clock`` is passed to trio (by default a :class:`trio.testing.MockClock` with
    ``autojump_threshold=0``, so timers run in virtual time); ``timeout`` bounds, in real
    seconds, how long one :meth:`run` may take. Use it as a context manager, or call
    :meth:`close`::

        with NodeDriver() as driver:
            pid = driver.run(otp.supervisor.start_link, [MyServer.child_spec()])
            assert driver.run(otp.supervisor.count_children, pid)["active"] == 1
    """

    def __init__(self, *, clock: trio.abc.Clock | None = None, timeout: float = 60.0) -> None:
        self.clock = clock if clock is not None else trio.testing.MockClock(autojump_threshold=0)
        self.timeout = timeout
        self.node: Node | None = None
        self._callbacks: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._done: outcome.Outcome[None] | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._wake: trio.Event | None = None
        self._request: tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]] | None = None
        self._result: outcome.Outcome[Any] | None = None
        self._closing = False
        self._scope = trio.CancelScope()
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=self._callbacks.put,
            done_callback=self._finished,
            clock=self.clock,
        )
        self._pump(lambda: self._wake is not None)
        if self._wake is None:
            self._raise_done()

    def __enter__(self) -> NodeDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._done is not None

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run ``await fn(*args, **kwargs)`` in the node's main process; return or raise
        its result."""
        if self._done is not None or self._closing:
            raise RuntimeError("the node driver is closed")
        self._request = (functools.partial(fn, **kwargs) if kwargs else fn, args)
        self._result = None
        self._poke()
        self._pump(lambda: self._result is not None)
        result = self._take_result()
        if result is None:  # the node ended while fn ran
            self._raise_done()
        return result.unwrap()  # type: ignore[union-attr,no-any-return]

    def _take_result(self) -> outcome.Outcome[Any] | None:
        result, self._result = self._result, None
        return result

    def close(self) -> None:
        """Leave the node (its processes shut down in order) and finish the trio run.

        Re-raises what ended the node, if not normal."""
        if self._done is None and self._closing:
            raise DriverTimeout("the node could not be shut down")
        if self._done is None:
            self._closing = True
            self._request = None
            self._poke()
            self._pump(lambda: False)
        assert self._done is not None
        self._done.unwrap()

    # -- the trio side -------------------------------------------------------------------
    async def _main(self) -> None:
        with self._scope:
            await self._serve()

    async def _serve(self) -> None:
        async with otp_node() as the_node:
            self.node = the_node
            self._token = trio.lowlevel.current_trio_token()
            while True:
                self._wake = trio.Event()
                await self._wake.wait()
                request = self._request
                if request is None:
                    return
                self._request = None
                fn, args = request
                result = await outcome.acapture(fn, *args)
                if isinstance(result, outcome.Error) and isinstance(result.error, trio.Cancelled):
                    result.unwrap()  # main itself was ended: let the node handle it
                self._result = result

    def _finished(self, result: outcome.Outcome[None]) -> None:
        self._done = result

    # -- the host side -------------------------------------------------------------------
    def _poke(self) -> None:
        assert self._token is not None
        wake = self._wake
        assert wake is not None
        self._token.run_sync_soon(wake.set)

    def _pump(self, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready() and self._done is None:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise queue.Empty
                callback = self._callbacks.get(timeout=remaining)
            except queue.Empty:
                error = DriverTimeout(
                    f"the node did not finish within {self.timeout} real seconds "
                    f"(virtual time {self.clock.current_time():.3f})"
                )
                self._abort()
                raise error from None
            callback()

    def _abort(self) -> None:
        """Cancel everything and give the node ``timeout`` more seconds to end, so that the
        thread is not left inside an unfinished trio run."""
        if self._token is None or self._done is not None:
            return
        self._closing = True
        self._token.run_sync_soon(self._scope.cancel)
        deadline = time.monotonic() + self.timeout
        while self._done is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                callback = self._callbacks.get(timeout=remaining)
            except queue.Empty:
                return
            callback()

    def _raise_done(self) -> None:
        assert self._done is not None
        self._done.unwrap()
        raise RuntimeError("the node ended before the call finished")
