"""What the gRPC service (:mod:`exesdb.grpc.persistent_service`) calls to run a store's
persistent subscription groups: :func:`create_group`, :func:`update_group`,
:func:`delete_group`, :func:`group_info`, :func:`list_groups`, :func:`replay_parked`,
:func:`restart_groups`, and :func:`connect`, which gives a :class:`Consumer` (a ``Read``
call's hold on its group).

Every function builds its request (:mod:`exesdb.grpc.groups.messages`) and calls the
store's group manager, or the group's process; every error is raised as an
:class:`exesdb.grpc.rpc.RpcError` with the protocol's status: ``UNAVAILABLE`` when the
manager does not answer (not running, restarting, no answer within
:data:`~exesdb.grpc.groups.messages.CALL_TIMEOUT` seconds), KurrentDB's persistent
subscription dropped (``CANCELLED``) when a consumer's group process does not, or what
the process answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, assert_never

import otp
from otp import gen_server

from ..rpc import RpcError
from .config import GroupConfig, GroupSettings, StartSpec
from .ledger import NackAction
from .messages import (
    CALL_TIMEOUT,
    Ack,
    Connect,
    Connection,
    CreateGroup,
    DeleteGroup,
    DeliveredEvent,
    Delivery,
    DescribeGroup,
    Disconnect,
    Dropped,
    FindGroup,
    GroupInfo,
    GroupRequest,
    ListGroups,
    ManagerRequest,
    Nack,
    Pull,
    PullReply,
    ReplayGroupParked,
    RestartGroups,
    Stopped,
    UpdateGroup,
    manager_name,
)
from .rpc_errors import dropped, unavailable

__all__ = [
    "Consumer",
    "connect",
    "create_group",
    "delete_group",
    "group_info",
    "list_groups",
    "replay_parked",
    "restart_groups",
    "update_group",
]


async def _call_manager(store_id: str, request: ManagerRequest) -> Any:
    """Call store ``store_id``'s group manager; raise the :class:`RpcError` it answers."""
    try:
        result = await gen_server.call(manager_name(store_id), request, CALL_TIMEOUT)
    except (otp.NoProc, otp.ServerExited, otp.CallTimeout) as exc:
        raise unavailable(f"persistent subscriptions of store {store_id!r} are not "
                          f"running ({exc})") from None
    if isinstance(result, RpcError):
        raise result
    return result


async def create_group(store_id: str, config: GroupConfig) -> None:
    """Create a group (``ALREADY_EXISTS`` if it does)."""
    await _call_manager(store_id, CreateGroup(config))


async def update_group(store_id: str, stream: str, group: str, settings: GroupSettings,
                       start: StartSpec | None = None) -> None:
    """Change a group's settings (``NOT_FOUND`` if there is no such group); its
    consumers stay connected and the new settings apply from the next event.

    ``start`` (None: unchanged) is stored and reported, and, as KurrentDB does (a group
    starts from its start position only when it has no checkpoint), it moves where the
    group reads from only while nothing of it was acknowledged yet: then the group
    restarts there (its consumers are dropped, ``CANCELLED``); once it has a checkpoint
    it goes on from that."""
    await _call_manager(store_id, UpdateGroup((stream, group), settings, start))


async def delete_group(store_id: str, stream: str, group: str) -> None:
    """Delete a group: its consumers are dropped (``NOT_FOUND``), its checkpoint and
    settings removed, its parked events truncated away."""
    await _call_manager(store_id, DeleteGroup((stream, group)))


async def group_info(store_id: str, stream: str, group: str) -> GroupInfo:
    """A group's settings and statistics."""
    info: GroupInfo = await _call_manager(store_id, DescribeGroup((stream, group)))
    return info


async def list_groups(store_id: str, stream: str | None = None) -> list[GroupInfo]:
    """Every group, or those on ``stream`` (``$all`` included as a stream name)."""
    infos: list[GroupInfo] = await _call_manager(store_id, ListGroups(stream))
    return infos


async def replay_parked(store_id: str, stream: str, group: str, stop_at: int | None) -> None:
    """Deliver the group's parked events again (at most ``stop_at``), ahead of new ones."""
    await _call_manager(store_id, ReplayGroupParked((stream, group), stop_at))


async def restart_groups(store_id: str) -> None:
    """Restart every group's process (their consumers are dropped)."""
    await _call_manager(store_id, RestartGroups())


class Consumer:
    """A connected consumer of a group, as a ``Read`` call holds it (usable from any trio
    task of the node): :meth:`pull` the next events, :meth:`ack` / :meth:`nack` them,
    :meth:`close` when the call ends."""

    def __init__(self, pid: otp.Pid, cid: int, stream: str, group: str) -> None:
        self.pid = pid
        self.cid = cid
        self.stream = stream
        self.group = group

    async def _call(self, request: GroupRequest, timeout: float | None = CALL_TIMEOUT) -> Any:
        try:
            return await gen_server.call(self.pid, request, timeout)
        except (otp.NoProc, otp.ServerExited, otp.CallTimeout):
            raise dropped(self.stream, self.group) from None

    async def pull(self) -> list[DeliveredEvent] | None:
        """The next events ``(event, link, retry_count)`` for this consumer (waits for
        some); None once the consumer was stopped (nack ``stop``). Raises
        :class:`RpcError` when the group drops it (deleted, restarting)."""
        reply: PullReply = await self._call(Pull(self.cid), None)
        match reply:
            case Delivery(events):
                return list(events)
            case Stopped():
                return None
            case Dropped(error):
                raise error
            case _:
                assert_never(reply)

    async def ack(self, ids: Iterable[uuid.UUID]) -> None:
        """These events are processed."""
        await self._call(Ack(self.cid, tuple(ids)))

    async def nack(self, ids: Iterable[uuid.UUID], action: NackAction,
                   reason: str = "") -> None:
        """These events failed; see :meth:`exesdb.grpc.groups.ledger.Ledger.nack`."""
        await self._call(Nack(self.cid, tuple(ids), action, reason))

    def close(self) -> None:
        """The consumer leaves: its events in flight go to the others (never blocks)."""
        gen_server.cast(self.pid, Disconnect(self.cid))


async def connect(store_id: str, stream: str, group: str, connection: Connection,
                  buffer_size: int) -> Consumer:
    """Join group ``group`` on ``stream`` as a consumer allowed ``buffer_size`` events in
    flight (``NOT_FOUND``; ``FAILED_PRECONDITION`` when it has its maximum of consumers)."""
    pid: otp.Pid = await _call_manager(store_id, FindGroup((stream, group)))
    consumer = Consumer(pid, 0, stream, group)
    result: int | RpcError = await consumer._call(Connect(connection, buffer_size))
    if isinstance(result, RpcError):
        raise result
    consumer.cid = result
    return consumer
