"""The KurrentDB ``PersistentSubscriptions`` gRPC service of a store, on its persistent
subscription groups (:mod:`exesdb.grpc.groups`).

``service(store_id)`` returns the method table. Requests are checked here: a missing or
malformed field ends the call with ``INVALID_ARGUMENT`` naming the field; settings or a
start KurrentDB refuses (an unknown consumer strategy, a read batch not below the history
buffer, a start past the end of ``$all`` or with its prepare past its commit position)
with KurrentDB's ``INTERNAL`` "Subscription group G on stream S failed: 'reason'"
(``persistent-subscription-failed``); an unknown group with ``NOT_FOUND``, a group created
twice with ``ALREADY_EXISTS``, a consumer over the group's maximum with
``FAILED_PRECONDITION`` ("Maximum subscriptions reached ..."), a store that is not ready
with ``UNAVAILABLE``, as KurrentDB's server does (so the clients raise their usual
exceptions). ``Read`` sends the subscription confirmation (``"<stream>::<group>"``), then
the events the group gives this consumer, while it takes the client's acks and nacks (of
any event in flight to the group, as KurrentDB takes them); a nack ``stop`` ends the call
(OK). With users, creating, updating and deleting a group, replaying its parked events
and restarting the subsystem are for ``$admins`` and ``$ops``, and reading a group needs
the right to read its stream (``$all`` for a group on ``$all``), as KurrentDB's ACL policy
says (:mod:`exesdb.grpc.acl`); others get its access denied. A filter's regex
is RE2 syntax, matched in linear time (``INVALID_ARGUMENT`` naming ``filter...regex``
otherwise). ``Update`` takes the settings and the start position (see
:func:`exesdb.grpc.groups.client.update_group`). ``RestartSubsystem`` is for admins when the
server has users. Event data that is
JSON ``null`` is sent as ``null``, as the Streams service does.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from typing import Any, Final

import trio

from ..errors import ExESDBError, InvalidArgument
from ..events import EventRecord
from ..validation import check_name
from . import acl
from .convert import (
    bad_request,
    event_payload,
    grpc_position,
    record_data,
    rpc_error,
    stream_name,
    uuid_from_proto,
)
from .convert import uuid_to_proto as _uuid_to_proto
from .groups import client as groups
from .groups.config import ALL, GroupConfig, GroupFilter, GroupSettings, subscription_name
from .groups.ledger import NackAction
from .groups.messages import Connection, ConsumerInfo, GroupInfo
from .groups.rpc_errors import failed, not_found
from .protos import persistent_pb2, shared_pb2
from .rpc import Call, Method, RpcError, Service

__all__ = ["PREFIX", "service"]

PREFIX: Final = "/event_store.client.persistent_subscriptions.PersistentSubscriptions/"
_TICKS_PER_MS: Final = 10_000
_NACK: Final[dict[int, NackAction]] = {
    persistent_pb2.ReadReq.Nack.Unknown: "unknown",
    persistent_pb2.ReadReq.Nack.Park: "park",
    persistent_pb2.ReadReq.Nack.Retry: "retry",
    persistent_pb2.ReadReq.Nack.Skip: "skip",
    persistent_pb2.ReadReq.Nack.Stop: "stop",
}
_STRATEGY_NAMES: Final = {0: "DispatchToSingle", 1: "RoundRobin", 2: "Pinned"}
PREPARE_PAST_COMMIT: Final = ("Invalid Start From position: prepare position must be less "
                              "than or equal to the commit position.")
"""KurrentDB's reason for refusing a group on ``$all`` whose start's prepare position is
past its commit position."""


# -- request fields ------------------------------------------------------------------------


def _group(name: str, stream: str) -> str:
    if not name:
        raise bad_request("options.group_name: must not be empty")
    try:
        check_name(subscription_name(stream, name), "options.group_name")
    except InvalidArgument:
        raise bad_request(f"options.group_name: the stream and group names are too long "
                          f"({len(stream)} + {len(name)} characters)") from None
    return name


def _source(options: Any, field: str = "options") -> str:
    """``$all`` or the stream an options message's ``stream_option`` names."""
    which = options.WhichOneof("stream_option")
    if which == "all":
        return ALL
    if which is None:
        raise bad_request(f"{field}.stream_option: required (a stream or all)")
    return stream_name(getattr(options, which), f"{field}.{which}")


def _ms(settings: Any, oneof: str, field: str) -> int:
    """Milliseconds of a ``*_ms`` or ``*_ticks`` setting, truncated as KurrentDB casts
    them (an int32, which ticks may overflow: ``INVALID_ARGUMENT`` then)."""
    which = settings.WhichOneof(oneof)
    if which is None:
        return 0
    value = int(getattr(settings, which))
    if which.endswith("_ticks"):
        value = value // _TICKS_PER_MS if value >= 0 else -(-value // _TICKS_PER_MS)
    if not -2**31 <= value < 2**31:
        raise bad_request(f"settings.{field}: must fit in 32 bits as milliseconds, got "
                          f"{value}")
    return value


def _settings(settings: Any, strategy: str) -> GroupSettings:
    """The settings as sent; the group manager refuses those KurrentDB refuses (see
    :class:`~exesdb.grpc.groups.config.GroupSettings`)."""
    return GroupSettings(
        resolve_links=settings.resolve_links,
        extra_statistics=settings.extra_statistics,
        message_timeout_ms=_ms(settings, "message_timeout", "message_timeout"),
        max_retry_count=settings.max_retry_count,
        live_buffer_size=settings.live_buffer_size,
        read_batch_size=settings.read_batch_size,
        history_buffer_size=settings.history_buffer_size,
        checkpoint_after_ms=_ms(settings, "checkpoint_after", "checkpoint_after"),
        min_checkpoint_count=settings.min_checkpoint_count,
        max_checkpoint_count=settings.max_checkpoint_count,
        max_subscriber_count=settings.max_subscriber_count,
        consumer_strategy=strategy,
    )


def _filter(options: Any) -> GroupFilter | None:
    if options.WhichOneof("filter_option") != "filter":
        return None
    spec = options.filter
    which = spec.WhichOneof("filter")
    if which is None:
        raise bad_request("options.all.filter: needs a stream_identifier or an event_type "
                          "expression")
    expression = getattr(spec, which)
    window = spec.max if spec.WhichOneof("window") == "max" else 0
    try:
        return GroupFilter("stream" if which == "stream_identifier" else "event_type",
                           expression.regex, tuple(expression.prefix), window,
                           spec.checkpointIntervalMultiplier)
    except RpcError as exc:
        raise bad_request(f"options.all.{exc.message}") from None


_DEPRECATED_END: Final = 2**64 - 1
"""The revision older clients send in ``settings.revision`` for "from the end"."""


def _source_and_start(options: Any, required: bool = True) -> tuple[str, Any]:
    """The stream (or ``$all``) and the start position (``"start"``, ``"end"`` or a
    revision / commit position) of a ``CreateReq`` or ``UpdateReq`` options message; a
    start not given is ``INVALID_ARGUMENT`` when ``required``, else None (an update that
    leaves it as it is)."""
    which = options.WhichOneof("stream_option")
    start: Any
    if which == "all":
        all_options = options.all
        position = all_options.WhichOneof("all_option")
        if position in ("start", "end"):
            return ALL, position
        if position == "position":
            commit = all_options.position.commit_position
            prepare = all_options.position.prepare_position
            if prepare > commit:
                raise failed(ALL, options.group_name, PREPARE_PAST_COMMIT)
            if commit >= 2**63:
                raise bad_request(f"options.all.position: must be below 2**63, got {commit}")
            return ALL, int(commit)
        if not required:
            return ALL, None
        raise bad_request("options.all.all_option: required (start, end or a position)")
    if which == "stream":
        stream = stream_name(options.stream.stream_identifier, "options.stream.stream_identifier")
        revision = options.stream.WhichOneof("revision_option")
        if revision in ("start", "end"):
            return stream, revision
        if revision == "revision":
            if options.stream.revision >= 2**63:
                raise bad_request(f"options.stream.revision: must be below 2**63, got "
                                  f"{options.stream.revision}")
            return stream, int(options.stream.revision)
        if not required:
            return stream, None
        raise bad_request("options.stream.revision_option: required (start, end or a "
                          "revision)")
    if options.HasField("stream_identifier"):  # the deprecated form
        stream = stream_name(options.stream_identifier, "options.stream_identifier")
        revision = int(options.settings.revision)
        if revision == _DEPRECATED_END:
            start = "end"
        elif revision >= 2**63:
            raise bad_request(f"settings.revision: must be below 2**63, got {revision}")
        else:
            start = revision
        return stream, start
    raise bad_request("options.stream_option: required (a stream or all)")


def _create_config(request: persistent_pb2.CreateReq) -> GroupConfig:
    options = request.options
    settings = options.settings
    stream, start = _source_and_start(options)
    group_filter = _filter(options.all) if options.WhichOneof("stream_option") == "all" \
        else None
    group = _group(options.group_name, stream)
    strategy = settings.consumer_strategy or _STRATEGY_NAMES.get(
        settings.named_consumer_strategy, str(settings.named_consumer_strategy))
    return GroupConfig(stream, group, _settings(settings, strategy), start,
                       filter=group_filter)


def _uuids(ids: Any, field: str) -> list[uuid.UUID]:
    return [uuid_from_proto(value, field) for value in ids]


# -- responses -----------------------------------------------------------------------------


def _recorded(record: EventRecord,
              structured: bool) -> persistent_pb2.ReadResp.ReadEvent.RecordedEvent:
    position = grpc_position(record.position)
    return persistent_pb2.ReadResp.ReadEvent.RecordedEvent(
        id=_uuid_to_proto(record.event_id, structured),
        stream_identifier=shared_pb2.StreamIdentifier(stream_name=record.stream_id.encode()),
        stream_revision=record.event_number,
        prepare_position=position,
        commit_position=position,
        metadata={"type": record.event_type, "content-type": record.content_type,
                  "created": str(record.created_epoch * 10)},
        custom_metadata=event_payload(record.metadata),
        data=record_data(record),
    )


def _read_event(event: EventRecord, link: EventRecord | None, retry_count: int,
                structured: bool) -> persistent_pb2.ReadResp:
    read = persistent_pb2.ReadResp.ReadEvent(
        event=_recorded(event, structured),
        commit_position=grpc_position((link or event).position),
        retry_count=retry_count,
    )
    if link is not None:
        read.link.CopyFrom(_recorded(link, structured))
    return persistent_pb2.ReadResp(event=read)


def _position(config: GroupConfig, key: int | None) -> str:
    if key is None:
        return ""
    if not config.is_all:
        return str(key)
    position = grpc_position(key)
    return f"C:{position}/P:{position}"


def _start_from(config: GroupConfig) -> str:
    start = config.start
    value = 0 if start == "start" else -1 if start == "end" else int(start)
    return f"C:{value}/P:{value}" if config.is_all else str(value)


def _connection(c: ConsumerInfo) -> persistent_pb2.SubscriptionInfo.ConnectionInfo:
    out = persistent_pb2.SubscriptionInfo.ConnectionInfo(
        username=c.connection.username, total_items=c.total_items,
        available_slots=c.available_slots, in_flight_messages=c.in_flight,
        connection_name=c.connection.name, average_items_per_second=c.average_items_per_second,
        count_since_last_measurement=c.count_since_last_measurement)
    setattr(out, "from", c.connection.peer)  # a Python keyword
    return out


def _info(info: GroupInfo) -> persistent_pb2.SubscriptionInfo:
    config = info.config
    s = config.settings
    return persistent_pb2.SubscriptionInfo(
        event_source=config.stream,
        group_name=config.group,
        status=info.status,
        connections=[_connection(c) for c in info.connections],
        total_items=info.total_items,
        last_checkpointed_event_position=_position(config, info.last_checkpoint),
        last_known_event_position=_position(config, info.last_known),
        resolve_link_tos=s.resolve_links,
        start_from=_start_from(config),
        message_timeout_milliseconds=s.message_timeout_ms,
        extra_statistics=s.extra_statistics,
        max_retry_count=s.max_retry_count,
        live_buffer_size=s.live_buffer_size,
        buffer_size=s.history_buffer_size,
        read_batch_size=s.read_batch_size,
        check_point_after_milliseconds=s.checkpoint_after_ms,
        min_check_point_count=s.min_checkpoint_count,
        max_check_point_count=s.max_checkpoint_count,
        read_buffer_count=info.waiting,
        live_buffer_count=info.live_buffer_count,
        average_per_second=info.average_per_second,
        count_since_last_measurement=info.count_since_last_measurement,
        retry_buffer_count=info.retrying,
        total_in_flight_messages=info.in_flight,
        outstanding_messages_count=info.in_flight,
        named_consumer_strategy=s.consumer_strategy,
        max_subscriber_count=s.max_subscriber_count,
        parked_message_count=info.parked,
    )


async def _guard(coro: Any) -> Any:
    """Await ``coro``, mapping the store's errors to the protocol's."""
    try:
        return await coro
    except ExESDBError as exc:
        raise rpc_error(exc) from None


# -- the service ---------------------------------------------------------------------------


def service(store_id: str) -> Service:
    """The ``PersistentSubscriptions`` methods of store ``store_id``."""

    async def create(call: Call) -> None:
        request = await call.receive_one()
        acl.check_operations(call.user)
        await _guard(groups.create_group(store_id, _create_config(request)))
        await call.send(persistent_pb2.CreateResp())

    async def update(call: Call) -> None:
        request = await call.receive_one()
        acl.check_operations(call.user)
        options = request.options
        stream, start = _source_and_start(options, required=False)
        group = _group(options.group_name, stream)
        settings = options.settings
        strategy = _STRATEGY_NAMES.get(settings.named_consumer_strategy,
                                       str(settings.named_consumer_strategy))
        await _guard(groups.update_group(store_id, stream, group,
                                         _settings(settings, strategy), start))
        await call.send(persistent_pb2.UpdateResp())

    async def delete(call: Call) -> None:
        options = (await call.receive_one()).options
        acl.check_operations(call.user)
        stream = _source(options)
        await _guard(groups.delete_group(store_id, stream, _group(options.group_name, stream)))
        await call.send(persistent_pb2.DeleteResp())

    async def get_info(call: Call) -> None:
        options = (await call.receive_one()).options
        stream = _source(options)
        info = await _guard(groups.group_info(store_id, stream,
                                              _group(options.group_name, stream)))
        await call.send(persistent_pb2.GetInfoResp(subscription_info=_info(info)))

    async def list_(call: Call) -> None:
        options = (await call.receive_one()).options
        which = options.WhichOneof("list_option")
        stream: str | None = None
        if which == "list_for_stream":
            stream = _source_of_list(options.list_for_stream)
        elif which is None:
            raise bad_request("options.list_option: required")
        infos = await _guard(groups.list_groups(store_id, stream))
        if stream is not None and not infos:
            raise not_found(stream, "")
        await call.send(persistent_pb2.ListResp(subscriptions=[_info(i) for i in infos]))

    async def replay_parked(call: Call) -> None:
        options = (await call.receive_one()).options
        acl.check_operations(call.user)
        stream = _source(options)
        group = _group(options.group_name, stream)
        stop_at = options.stop_at if options.WhichOneof("stop_at_option") == "stop_at" else None
        if stop_at is not None and stop_at < 0:
            stop_at = None
        await _guard(groups.replay_parked(store_id, stream, group, stop_at))
        await call.send(persistent_pb2.ReplayParkedResp())

    async def restart_subsystem(call: Call) -> None:
        await call.receive_one()
        acl.check_operations(call.user)
        await _guard(groups.restart_groups(store_id))
        await call.send(shared_pb2.Empty())

    async def read(call: Call) -> None:
        first = await call.receive()
        if first is None:
            return
        if first.WhichOneof("content") != "options":
            raise bad_request("the first ReadReq must carry the options")
        options = first.options
        stream = _source(options)
        group = _group(options.group_name, stream)
        if options.buffer_size <= 0:
            raise bad_request(f"options.buffer_size: must be > 0, got {options.buffer_size}")
        structured = options.uuid_option.WhichOneof("content") == "structured"
        user = call.user
        connection = Connection(call.peer, user.name if user is not None else "",
                                call.metadata.get("connection-name", "<unknown>"))
        await _guard(acl.check(store_id, call.user, stream, "read"))  # ALL is "$all"
        consumer = await _guard(groups.connect(store_id, stream, group, connection,
                                               options.buffer_size))
        try:
            await call.send(persistent_pb2.ReadResp(
                subscription_confirmation=persistent_pb2.ReadResp.SubscriptionConfirmation(
                    subscription_id=f"{stream}::{group}")))
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_take_acks, call, consumer)
                    while True:
                        batch = await consumer.pull()
                        if batch is None:  # nack stop
                            break
                        for event, link, retry_count in batch:
                            await call.send(_read_event(event, link, retry_count, structured))
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group_error:
                raise _first(group_error) from None
        finally:
            if trio.current_effective_deadline() == -math.inf:  # cancelled (the client left)
                await _drain_acks(call, consumer)
            consumer.close()

    def method(name: str, request: type[Any], response: type[Any], kind: Any,
               handler: Any) -> tuple[str, Method]:
        return PREFIX + name, Method(request, response, kind, handler)

    return dict([
        method("Create", persistent_pb2.CreateReq, persistent_pb2.CreateResp, "unary", create),
        method("Update", persistent_pb2.UpdateReq, persistent_pb2.UpdateResp, "unary", update),
        method("Delete", persistent_pb2.DeleteReq, persistent_pb2.DeleteResp, "unary", delete),
        method("Read", persistent_pb2.ReadReq, persistent_pb2.ReadResp, "bidi", read),
        method("GetInfo", persistent_pb2.GetInfoReq, persistent_pb2.GetInfoResp, "unary",
               get_info),
        method("ReplayParked", persistent_pb2.ReplayParkedReq, persistent_pb2.ReplayParkedResp,
               "unary", replay_parked),
        method("List", persistent_pb2.ListReq, persistent_pb2.ListResp, "unary", list_),
        method("RestartSubsystem", shared_pb2.Empty, shared_pb2.Empty, "unary",
               restart_subsystem),
    ])


def _first(error: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a nursery's group stands for: its RpcError if it has one (the call's
    status), else its first error."""
    for exc in error.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            exc = _first(exc)
        if isinstance(exc, RpcError):
            return exc
    first = error.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _source_of_list(option: persistent_pb2.ListReq.StreamOption) -> str:
    which = option.WhichOneof("stream_option")
    if which == "all":
        return ALL
    if which is None:
        raise bad_request("options.list_for_stream.stream_option: required")
    return stream_name(option.stream, "options.list_for_stream.stream")


async def _drain_acks(call: Call, consumer: groups.Consumer) -> None:
    """The call was cancelled (the client reset it): hand on the acks and nacks that
    arrived before the reset, so that what the client processed is not sent again."""
    with (trio.CancelScope(shield=True, deadline=trio.current_time() + 1.0),
          contextlib.suppress(RpcError)):
        await _take_acks(call, consumer)


async def _take_acks(call: Call, consumer: groups.Consumer) -> None:
    """Hand the client's acks and nacks to the group until it half-closes."""
    while True:
        request = await call.receive()
        if request is None:
            return  # the client sends no more: keep delivering until it cancels
        which = request.WhichOneof("content")
        if which == "ack":
            await consumer.ack(_uuids(request.ack.ids, "ack.ids"))
        elif which == "nack":
            action = _NACK.get(request.nack.action)
            if action is None:
                raise bad_request(f"nack.action: unknown action {request.nack.action}")
            await consumer.nack(_uuids(request.nack.ids, "nack.ids"), action,
                                request.nack.reason)
        else:
            raise bad_request("a ReadReq after the options must carry an ack or a nack")
