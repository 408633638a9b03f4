"""NotificationSystem: leadership and the emitters that deliver events to subscribers.

``NotificationSystem`` (rest_for_one, 5 restarts in 30 s) runs ``LeaderSystem``
(:mod:`.leader`: rest_for_one, :class:`LeaderTracker` then :class:`LeaderWorker`),
``EmitterSystem`` (:mod:`.emitters`: one_for_one, a partitioned dynamic supervisor of
the emitter pools) and :class:`SubscriptionHealthMonitor` (:mod:`.health`), which reports
each subscription's lag (how far its stored position is behind the end of ``$all``).
"""

from __future__ import annotations

from otp import supervisor

from ...options import StoreOptions
from ..processes import StoreSupervisor
from .emitters import EmitterSystem, emitter_pools_name
from .health import SubscriptionHealthMonitor, health
from .leader import LeaderSystem, LeaderTracker, LeaderWorker, activate, deactivate, is_active

__all__ = [
    "EmitterSystem",
    "LeaderSystem",
    "LeaderTracker",
    "LeaderWorker",
    "NotificationSystem",
    "SubscriptionHealthMonitor",
    "activate",
    "deactivate",
    "emitter_pools_name",
    "health",
    "is_active",
]


class NotificationSystem(StoreSupervisor):
    """rest_for_one, 5 restarts in 30 s: LeaderSystem, EmitterSystem, the health monitor."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec(
            [LeaderSystem.child_spec(opts), EmitterSystem.child_spec(opts),
             SubscriptionHealthMonitor.child_spec(opts)],
            strategy="rest_for_one", intensity=5, period=30,
        )
