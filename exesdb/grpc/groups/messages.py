"""What the persistent subscription groups' processes and their clients say to each other.

* the requests a group's process (:class:`exesdb.grpc.groups.group.PersistentGroup`)
  serves: the calls :data:`GroupRequest` and the cast :class:`Disconnect`; a
  :class:`Pull` is answered with a :data:`PullReply`;
* the requests the group manager (:class:`exesdb.grpc.groups.manager.GroupManager`)
  serves, :data:`ManagerRequest`, and the name it is registered under
  (:func:`manager_name`);
* what a group reports: :class:`GroupInfo`, :class:`ConsumerInfo`, :class:`Connection`.

Every message is a small frozen attrs class. Each server matches the union it serves and
ends on ``typing.assert_never``, and the client functions
(:mod:`exesdb.grpc.groups.client`) build them, so a misspelled or unhandled request
fails mypy. Values only: no processes, no I/O.
"""

from __future__ import annotations

import uuid
from typing import Any, Final, TypeAlias

import attrs

from ...events import EventRecord
from ...naming import partition_name
from ..rpc import RpcError
from .config import GroupConfig, GroupSettings, StartSpec
from .ledger import NackAction

__all__ = [
    "CALL_TIMEOUT",
    "Ack",
    "ApplySettings",
    "Connect",
    "Connection",
    "ConsumerInfo",
    "CreateGroup",
    "DeleteGroup",
    "DeliveredEvent",
    "Delivery",
    "DescribeGroup",
    "Disconnect",
    "Drop",
    "Dropped",
    "FindGroup",
    "GetInfo",
    "GroupInfo",
    "GroupKey",
    "GroupRequest",
    "ListGroups",
    "ManagerRequest",
    "Nack",
    "Pull",
    "PullReply",
    "ReplayGroupParked",
    "ReplayParked",
    "RestartGroups",
    "Stopped",
    "UpdateGroup",
    "manager_name",
]

CALL_TIMEOUT: Final = 30.0
"""Seconds a request to the manager or a group may take."""

GroupKey: TypeAlias = tuple[str, str]
"""A group's ``(stream, group)``: its event source (a stream or ``$all``) and its name."""


# -- what a group reports --------------------------------------------------------------------



@attrs.frozen
class Connection:
    """Who a consumer is: its peer address, user name and connection name."""

    peer: str = ""
    username: str = ""
    name: str = "<unknown>"


@attrs.frozen
class ConsumerInfo:
    """A connected consumer's statistics; the rates are over the time since the group's
    last measurement."""

    connection: Connection
    total_items: int
    in_flight: int
    available_slots: int
    average_items_per_second: int = 0
    count_since_last_measurement: int = 0


@attrs.frozen
class GroupInfo:
    """A group's settings and live statistics, as GetInfo and List report them.

    Positions are keys of the subscription's order (stream revisions, or ``$all``
    positions); None when there is none yet. ``waiting`` and ``retrying`` are KurrentDB's
    read and retry buffer counts, ``live_buffer_count`` its live buffer's; the rates are
    over the time since the group's last measurement (KurrentDB's
    ``average_per_second`` and ``count_since_last_measurement``).
    """

    config: GroupConfig
    status: str
    connections: tuple[ConsumerInfo, ...] = ()
    total_items: int = 0
    last_checkpoint: int | None = None
    last_known: int | None = None
    waiting: int = 0
    retrying: int = 0
    in_flight: int = 0
    parked: int = 0
    live_buffer_count: int = 0
    average_per_second: int = 0
    count_since_last_measurement: int = 0


# -- a group's process -----------------------------------------------------------------------


@attrs.frozen
class Connect:
    """Join the group as a consumer with room for ``buffer_size`` events in flight;
    answered with the consumer's id, or an :class:`RpcError` (``FAILED_PRECONDITION``)
    when the group has its maximum of consumers."""

    connection: Connection
    buffer_size: int


@attrs.frozen
class Pull:
    """Consumer ``cid``'s next events; answered with a :data:`PullReply` once there is one
    (held until then)."""

    cid: int


@attrs.frozen
class Ack:
    """Consumer ``cid`` processed the events ``ids``: any of them in flight to the group
    counts, whichever consumer it went to (as in KurrentDB)."""

    cid: int
    ids: tuple[uuid.UUID, ...]


@attrs.frozen
class Nack:
    """Consumer ``cid`` failed the events ``ids`` (any of them in flight to the group
    counts): ``action`` as :meth:`exesdb.grpc.groups.ledger.Ledger.nack` says; ``stop``
    also ends consumer ``cid`` (its pull gets :class:`Stopped`)."""

    cid: int
    ids: tuple[uuid.UUID, ...]
    action: NackAction
    reason: str = ""


@attrs.frozen
class GetInfo:
    """Answered with the group's :class:`GroupInfo`."""


@attrs.frozen
class ApplySettings:
    """Use ``settings`` from the next event on; the consumers stay connected."""

    settings: GroupSettings


@attrs.frozen
class ReplayParked:
    """Deliver the parked events again (at most ``stop_at``; None: all), ahead of new
    ones; answered with None, or an :class:`RpcError` when the store could not be read."""

    stop_at: int | None


@attrs.frozen
class Drop:
    """The group is being deleted: its consumers are dropped (``NOT_FOUND``) and it
    writes nothing more (no checkpoint, no parked-stream truncation)."""


GroupRequest: TypeAlias = (
    Connect | Pull | Ack | Nack | GetInfo | ApplySettings | ReplayParked | Drop
)
"""Every call a group's process serves."""


@attrs.frozen
class Disconnect:
    """Cast: consumer ``cid`` leaves (its call ended, however it ended); its events in
    flight go to the others."""

    cid: int


DeliveredEvent: TypeAlias = tuple[EventRecord, EventRecord | None, int]
"""An event as a consumer receives it: ``(event, link or None, retry_count)``."""


@attrs.frozen
class Delivery:
    """A :class:`Pull`'s answer: the consumer's next events, in order."""

    events: tuple[DeliveredEvent, ...]


@attrs.frozen
class Stopped:
    """A :class:`Pull`'s answer: the consumer asked to stop (nack ``stop``)."""


@attrs.frozen
class Dropped:
    """A :class:`Pull`'s answer: the group dropped the consumer, which ends with
    ``error`` (the group deleted, restarting, or the consumer unknown)."""

    error: RpcError


PullReply: TypeAlias = Delivery | Stopped | Dropped
"""What a :class:`Pull` is answered with."""


# -- the manager -----------------------------------------------------------------------------


class _Manager:
    """Keys the group manager's registered name (:func:`manager_name`): its clients find it
    without importing its process (and the store API that process uses)."""


def manager_name(store_id: str) -> Any:
    """The name store ``store_id``'s group manager is registered under."""
    return partition_name(_Manager, store_id, "manager")


@attrs.frozen
class CreateGroup:
    """Create the group ``config`` describes (``ALREADY_EXISTS`` if it does)."""

    config: GroupConfig


@attrs.frozen
class UpdateGroup:
    """Change group ``key``'s settings, and its start unless ``start`` is None (see
    :func:`exesdb.grpc.groups.client.update_group`)."""

    key: GroupKey
    settings: GroupSettings
    start: StartSpec | None


@attrs.frozen
class DeleteGroup:
    """Delete group ``key``: consumers, checkpoint, settings, parked events."""

    key: GroupKey


@attrs.frozen
class DescribeGroup:
    """Answered with group ``key``'s :class:`GroupInfo` (its settings as stored)."""

    key: GroupKey


@attrs.frozen
class ListGroups:
    """Answered with the :class:`GroupInfo` of every group (on ``stream`` unless None)."""

    stream: str | None


@attrs.frozen
class FindGroup:
    """Answered with the pid of group ``key``'s process (started if it is not running):
    where a consumer connects."""

    key: GroupKey


@attrs.frozen
class ReplayGroupParked:
    """Have group ``key`` deliver its parked events again (at most ``stop_at``)."""

    key: GroupKey
    stop_at: int | None


@attrs.frozen
class RestartGroups:
    """Restart every group's process (their consumers are dropped)."""


ManagerRequest: TypeAlias = (
    CreateGroup | UpdateGroup | DeleteGroup | DescribeGroup | ListGroups | FindGroup
    | ReplayGroupParked | RestartGroups
)
"""Every call the group manager serves; it answers with a value or an :class:`RpcError`."""
