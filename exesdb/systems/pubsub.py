"""PubSubSystem: the store's pub/sub instances, and LoggingSystem, which logs what is
published on the store's logging topic."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Final, Literal

import attrs

import otp
from otp import pubsub, supervisor

from ..naming import child_spec_id, partition_name
from ..options import StoreOptions
from .processes import StoreServer, StoreSupervisor

__all__ = ["KINDS", "LogLine", "LogWorker", "LoggingSystem", "PubSubSystem", "pubsub_name",
           "store_log"]

Kind = Literal["events", "system", "health", "metrics", "logging"]
KINDS: Final[tuple[Kind, ...]] = ("events", "system", "health", "metrics", "logging")
"""The pub/sub instances every store runs, as in ExESDB."""


def pubsub_name(store_id: str, kind: Kind) -> Any:
    """The name of the store's ``kind`` pub/sub (``"events"`` carries subscriptions)."""
    return partition_name(PubSubSystem, store_id, kind)


class PubSubSystem(StoreSupervisor):
    """one_for_one: one pub/sub per kind in :data:`KINDS`."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec([
            pubsub.child_spec(pubsub_name(opts.store_id, kind),
                              id=(child_spec_id(PubSubSystem, opts.store_id), kind))
            for kind in KINDS
        ])


@attrs.frozen
class LogLine:
    """A line published on a store's logging topic: ``message`` at ``level`` (a
    :mod:`logging` level)."""

    level: int
    message: str


def store_log(store_id: str, level: int, message: str) -> None:
    """Publish a log line (:class:`LogLine`) on the store's logging topic (its LogWorker
    writes it out).

    Does nothing when the store's logging pub/sub is not running.
    """
    with contextlib.suppress(otp.NoProc):
        pubsub.broadcast(pubsub_name(store_id, "logging"), f"{store_id}:log",
                         LogLine(level, message))


class LogWorker(StoreServer):
    """Subscribes to the store's logging topic and writes each :class:`LogLine` to the
    logger ``exesdb.systems.store.<store_id>``."""

    async def init(self, opts: StoreOptions) -> None:
        await super().init(opts)
        self.log = logging.getLogger(f"exesdb.systems.store.{opts.store_id}")
        pubsub.subscribe(pubsub_name(opts.store_id, "logging"), f"{opts.store_id}:log")

    async def handle_info(self, msg: Any) -> Any:
        match msg:
            case LogLine(level, message):
                self.log.log(level, "%s", message)
                return None
            case _:  # anything else is unexpected: logged as such
                return await super().handle_info(msg)


class LoggingSystem(StoreSupervisor):
    """one_for_one: the store's log workers."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec([LogWorker.child_spec(opts)])
