"""The timer of the cluster's periodic processes: :class:`Periodic`.

A gen_server's idle timeout restarts with every message, so a process that must act every
``interval`` seconds whatever it receives keeps its own deadline: :class:`Periodic` runs
:meth:`Periodic.tick` when the deadline has passed (on the idle timeout, or on whatever
message comes first after it) and every callback returns the time left as its idle
timeout. Guarantee: ``tick`` runs at most ``interval`` seconds late after the previous
one ends, however many messages arrive, and never twice at once.
"""

from __future__ import annotations

from typing import Any

import trio

import otp

from ...options import StoreOptions
from ..processes import StoreServer

__all__ = ["Periodic"]


class Periodic(StoreServer):
    """A store process that runs :meth:`tick` every :attr:`interval` seconds (see the
    module docstring). Subclasses set ``interval`` in ``init`` (after calling this
    ``init``), handle their own messages in :meth:`on_message`, and return
    :meth:`idle` from their callbacks."""

    interval: float

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        self.interval = opts.election_interval_ms / 1000
        self.due = trio.current_time()  # the first tick runs at once
        self._again = False
        return self.idle()

    async def tick(self) -> None:
        """The periodic work; subclasses define it."""
        raise NotImplementedError

    async def on_message(self, msg: Any) -> Any:
        """A message other than the timer's; the default logs it as unexpected."""
        return await super().handle_info(msg)

    def soon(self) -> None:
        """Run the next tick at once (after the current callback)."""
        self.due = trio.current_time()
        self._again = True

    def idle(self) -> otp.NoReply:
        """The directive that waits until the next tick is due."""
        return otp.NoReply(timeout=max(0.0, self.due - trio.current_time()))

    async def tick_if_due(self) -> None:
        """Run :meth:`tick` if its time has come, and set the next deadline."""
        if trio.current_time() >= self.due:
            self._again = False
            await self.tick()
            if not self._again:
                self.due = trio.current_time() + self.interval

    async def handle_info(self, msg: Any) -> Any:
        if msg is not otp.TIMEOUT:
            result = await self.on_message(msg)
            if result is not None and not isinstance(result, otp.NoReply):
                return result
        await self.tick_if_due()
        return self.idle()
