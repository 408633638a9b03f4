"""NotificationSystem: leadership and the emitters that deliver events to subscribers.

``NotificationSystem`` (rest_for_one, 5 restarts in 30 s) runs ``LeaderSystem``
(rest_for_one: :class:`LeaderTracker`, then :class:`LeaderWorker`), ``EmitterSystem``
(one_for_one: a partitioned dynamic supervisor for the emitter pools) and
:class:`SubscriptionHealthMonitor`.

:class:`LeaderWorker` activates when its node leads the store (always, in ``single``
mode) and stands down when it stops leading; :class:`LeaderTracker` keeps the store's
subscriptions. :class:`SubscriptionHealthMonitor` reports each subscription's lag (how far
its stored position is behind the end of ``$all``).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import otp
from otp import gen_server, partition_supervisor, supervisor
from otp.supervisor import ChildSpec

from .errors import ExESDBError
from .naming import child_spec_id, genserver_name, partition_name
from .options import StoreOptions
from .persistence import PARTITIONS
from .processes import StoreServer, StoreSupervisor
from .pubsub_system import store_log
from .store import backend_of, is_leader

__all__ = [
    "EmitterSystem",
    "LeaderSystem",
    "LeaderTracker",
    "LeaderWorker",
    "NotificationSystem",
    "SubscriptionHealthMonitor",
    "emitter_pools_name",
    "health",
]

log: Final = logging.getLogger("exesdb.notification")

HEALTH_INTERVAL: Final = 5.0
"""Seconds between two health checks."""


class LeaderTracker(StoreServer):
    """Keeps the store's persistent subscriptions (name -> stored position), loaded from
    the storage when it starts, for the leader to serve; ``"subscriptions"`` returns them.
    """

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        self.subscriptions: dict[str, int] = {}
        return otp.Continue("load")

    async def handle_continue(self, arg: Any) -> Any:
        self.subscriptions = await backend_of(self.store_id).list_checkpoints()
        return None

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if request == "subscriptions":
            return dict(self.subscriptions)
        return await super().handle_call(request, from_)


class LeaderWorker(StoreServer):
    """Active while this node leads the store: it asks :class:`~exesdb.store.StoreCluster`
    when it starts, and ``activate`` / ``deactivate`` follow leadership changes."""

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        self.active = False
        return otp.Continue("check_leadership")

    async def handle_continue(self, arg: Any) -> Any:
        if await is_leader(self.store_id, self.opts.timeout_s):
            self._activate()
        return None

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if request == "activate":
            self._activate()
            return True
        if request == "deactivate":
            self.active = False
            log.info("store %r: this node no longer leads", self.store_id)
            return True
        if request == "active":
            return self.active
        return await super().handle_call(request, from_)

    def _activate(self) -> None:
        if not self.active:
            self.active = True
            log.info("store %r: this node leads", self.store_id)
            store_log(self.store_id, logging.INFO, "this node leads the store")


async def is_active(store_id: str, timeout: float = 5.0) -> bool:
    """Whether the store's leader worker on this node is active."""
    return bool(await gen_server.call(genserver_name(LeaderWorker, store_id), "active",
                                      timeout))


class LeaderSystem(StoreSupervisor):
    """rest_for_one: LeaderTracker, then LeaderWorker."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec([LeaderTracker.child_spec(opts), LeaderWorker.child_spec(opts)],
                               strategy="rest_for_one")


def emitter_pools_name(store_id: str) -> Any:
    """The partitioned supervisor that runs the store's emitter pools."""
    return partition_name(EmitterSystem, store_id, "pools")


class EmitterSystem(StoreSupervisor):
    """one_for_one: the partitioned dynamic supervisor of the store's emitter pools."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        name = emitter_pools_name(opts.store_id)

        async def start() -> otp.Pid | None:
            return await partition_supervisor.start_link(partitions=PARTITIONS, name=name,
                                                         intensity=100, period=5)

        return supervisor.Spec([ChildSpec(id=(child_spec_id(EmitterSystem, opts.store_id),
                                              "pools"), start=start, type="supervisor")])


class SubscriptionHealthMonitor(StoreServer):
    """Checks every :data:`HEALTH_INTERVAL` s how far each persistent subscription's stored
    position is behind the end of ``$all``; ``("health",)`` returns the last report."""

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        self.report: dict[str, dict[str, int]] = {}
        return otp.Continue("check")

    async def handle_continue(self, arg: Any) -> Any:
        await self._check()
        return otp.NoReply(timeout=HEALTH_INTERVAL)

    async def handle_info(self, msg: Any) -> Any:
        if msg is otp.TIMEOUT:
            await self._check()
        return otp.NoReply(timeout=HEALTH_INTERVAL)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if request == "health":
            await self._check()
            return otp.Reply(dict(self.report), timeout=HEALTH_INTERVAL)
        return await super().handle_call(request, from_)

    async def _check(self) -> None:
        try:
            backend = backend_of(self.store_id)
            head = await backend.head_position()
            checkpoints = await backend.list_checkpoints()
        except ExESDBError as exc:
            log.warning("store %r: health check failed: %s", self.store_id, exc)
            return
        self.report = {
            name: {"position": position, "head": head, "lag": max(head - position, 0)}
            for name, position in checkpoints.items()
        }
        for name, entry in self.report.items():
            if entry["lag"]:
                log.debug("store %r: subscription %r lags %d", self.store_id, name,
                          entry["lag"])


async def health(store_id: str, timeout: float = 5.0) -> dict[str, dict[str, int]]:
    """Each persistent subscription's position, the head of ``$all`` and the lag."""
    report: dict[str, dict[str, int]] = await gen_server.call(
        genserver_name(SubscriptionHealthMonitor, store_id), "health", timeout)
    return report


class NotificationSystem(StoreSupervisor):
    """rest_for_one, 5 restarts in 30 s: LeaderSystem, EmitterSystem, the health monitor."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec(
            [LeaderSystem.child_spec(opts), EmitterSystem.child_spec(opts),
             SubscriptionHealthMonitor.child_spec(opts)],
            strategy="rest_for_one", intensity=5, period=30,
        )
