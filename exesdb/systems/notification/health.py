"""SubscriptionHealthMonitor: each subscription's lag, subscriber and in-flight count."""

from __future__ import annotations

import logging
from typing import Any, Final, TypeAlias, assert_never

import attrs

import otp
from otp import gen_server

from ...errors import ExESDBError
from ...naming import genserver_name
from ...options import StoreOptions
from ..processes import StoreServer
from .leader import ComputeHealth, call_tracker

__all__ = ["HEALTH_INTERVAL", "GetHealth", "HealthRequest", "SubscriptionHealthMonitor",
           "health"]

log: Final = logging.getLogger("exesdb.systems.notification")

HEALTH_INTERVAL: Final = 5.0
"""Seconds between two health checks."""


@attrs.frozen
class GetHealth:
    """Check now and reply with the report (what :func:`health` returns)."""


HealthRequest: TypeAlias = GetHealth
"""Every request :class:`SubscriptionHealthMonitor` serves."""


class SubscriptionHealthMonitor(StoreServer):
    """Checks every :data:`HEALTH_INTERVAL` s each subscription's lag (how far its position
    is behind the end of ``$all``, or of its stream), whether its subscriber is alive, and
    how many events it has in flight; logs the problems (a dead subscriber, a growing lag)
    and keeps the report, which :func:`health` returns (:data:`HealthRequest`)."""

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        self.report: dict[str, dict[str, Any]] = {}
        return otp.Continue("check")

    async def handle_continue(self, arg: Any) -> Any:
        await self._check()
        return otp.NoReply(timeout=HEALTH_INTERVAL)

    async def handle_info(self, msg: Any) -> Any:
        if msg is otp.TIMEOUT:
            await self._check()
        return otp.NoReply(timeout=HEALTH_INTERVAL)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not isinstance(request, HealthRequest):
            return await super().handle_call(request, from_)
        match request:
            case GetHealth():
                await self._check()
                return otp.Reply(dict(self.report), timeout=HEALTH_INTERVAL)
            case _:
                assert_never(request)

    async def _check(self) -> None:
        try:
            report = await call_tracker(self.store_id, ComputeHealth(), self.opts.timeout_s)
        except (otp.OTPError, ExESDBError) as exc:
            report = exc
        if isinstance(report, Exception):  # the store is restarting: keep the last report
            log.info("store %r: health check skipped: %s", self.store_id, report)
            return
        previous = self.report
        self.report = report
        for key, entry in report.items():
            if entry["subscriber"] is not None and not entry["subscriber_alive"]:
                log.warning("store %r: subscription %r: its subscriber is gone",
                            self.store_id, key)
            old = previous.get(key)
            if entry["lag"] and old is not None and entry["lag"] > old["lag"]:
                log.warning("store %r: subscription %r lags %d events (was %d)",
                            self.store_id, key, entry["lag"], old["lag"])


async def health(store_id: str, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """Each subscription's health, by name (transient ones by ``"transient:<type>:<selector>:
    <subscriber>"``): ``position``, ``head`` (the end of ``$all``, or of the stream for a
    single-stream subscription), ``lag`` (``head - position``), ``subscriber``,
    ``subscriber_alive``, ``in_flight`` and ``running`` (its emitter runs)."""
    report: dict[str, dict[str, Any]] = await gen_server.call(
        genserver_name(SubscriptionHealthMonitor, store_id), GetHealth(), timeout)
    return report
