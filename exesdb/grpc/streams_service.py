"""The KurrentDB ``Streams`` gRPC service of a store: read, append, batch append, delete,
tombstone and catch-up subscriptions, on :mod:`exesdb.gateway`.

Behaviour, as KurrentDB's:

* Append (client streaming: options first, then the proposed events) and BatchAppend
  (bidirectional: one response per final request of a correlation id) append with the
  expected state given (``any``, ``no_stream``, ``stream_exists`` or a revision);
  re-sending events whose ids are already there is idempotent (the storage's rule).
  Events keep the client's bytes; an event over 16 MiB or an append over
  :data:`~exesdb.grpc.convert.MAX_APPEND_SIZE` bytes is refused (``INVALID_ARGUMENT``,
  or a ``MaximumAppendSizeExceeded`` batch error) and writes nothing.
* Delete (soft) and Tombstone (hard) with an expected state. As in KurrentDB, a
  soft-deleted stream keeps its last event number for expected versions (deleting,
  tombstoning or appending with it succeeds; a wrong one reports it), expecting it to
  exist is the stream-deleted error, and a soft delete of a stream that never had an
  event nor metadata fails with the wrong-version error of a missing stream (the clients'
  not found). A soft delete also writes the metadata ``{"$tb": 2**63 - 1}`` to
  ``$$<stream>`` as KurrentDB does, and answers its position; the first append that
  recreates the stream rewrites that ``$tb`` to the stream's first new number (what
  KurrentDB's undelete writes). Tombstone answers the ``$all`` head position.
* Read a stream forwards or backwards from its start, its end or a revision (included),
  at most ``count`` events, honouring the stream's metadata (:mod:`exesdb.grpc.metadata`);
  a stream without visible events answers ``stream_not_found``, a hard-deleted one the
  stream-deleted error.
* With ``resolve_links``, reads and subscriptions send a link event (type ``$>``, data
  ``<number>@<stream>``) as the event it points to together with the link (the
  response's commit position is the link's), or the link alone when that event cannot
  be read, as KurrentDB does.
* Read ``$all`` forwards from a position (included) or backwards from a position
  (excluded), with an optional filter on event type or stream name (prefixes or a
  regular expression) applied here.
* A catch-up subscription (``subscription`` count option) to a stream or to ``$all``
  answers with a confirmation, then the events after its start point (a revision or
  position is excluded), ``caught_up`` once it has read everything stored, then the
  events committed later; should it fall behind (a read finds a full batch waiting) it
  sends ``caught_up`` again when it has caught up again. As KurrentDB 25, it never sends
  ``fell_behind`` (KurrentDB keeps that message to itself).
  It is the store's one catch-up-then-live loop
  (:func:`~exesdb.systems.commits.follow`), which always reads the storage and, once caught
  up, waits on the store's :class:`~exesdb.systems.commits.CommitSignal`, so there is no gap
  and no duplicate at the switch. A subscription reads the store's open storage itself
  (as the emitters do), not through a gateway worker and the stream's reader worker:
  two process hops each way were about a sixth of the way from a commit's notice to the
  subscriber (cluster mode); while the storage is not open it reads through
  :mod:`exesdb.gateway`, for its errors. A filtered ``$all`` subscription also sends a
  checkpoint (the last position scanned) every ``max * checkpointIntervalMultiplier``
  events scanned. Sending waits for the client's flow-control window, so a slow
  subscriber holds up only its own call.
* With users, every call is checked against the stream's ACL first
  (:mod:`exesdb.grpc.acl`: ``$r`` for reads and subscriptions, ``$all``'s for those of
  ``$all``, ``$w`` for appends, ``$d`` for deletes and tombstones, ``$mr``/``$mw`` for
  the metadata stream): a refusal is KurrentDB's access denied (in a batch append, that
  batch's ``AccessDenied`` status).
* Errors never end a call with ``INTERNAL``: bad input is ``INVALID_ARGUMENT``, a store
  that is not running or restarting ``UNAVAILABLE`` (see :mod:`exesdb.grpc.convert`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import aclosing
from typing import Any, Final

import attrs

import otp

from .. import gateway
from ..constants import (
    END,
    MAX_STREAM_ID_LENGTH,
    NO_STREAM,
    STREAM_EXISTS,
    End,
    ExpectedVersion,
)
from ..errors import (
    ExESDBError,
    InvalidArgument,
    StorageUnavailable,
    StoreUnavailable,
    StreamDeleted,
    WrongExpectedVersion,
)
from ..events import JSON_CONTENT_TYPE, EventRecord, NewEvent
from ..payload import JsonText
from ..storage import Backend
from ..storage.ops import Append, Appended
from ..storage.rules import check_delete
from ..systems.commits import CommitSignal, Cursor, follow
from ..systems.store import backend_of, node_stores, writer_name
from . import acl, convert, metadata
from .convert import bad_request
from .groups.config import CONFIG_STREAM, parked_stream
from .patterns import compile_filter
from .protos import shared_pb2, streams_pb2
from .rpc import Call, Method, RpcError, Service, StatusCode, User

__all__ = ["BATCH", "BATCH_BYTES", "DEFAULT_WINDOW", "SERVICE", "service",
           "written_by_the_server"]

SERVICE: Final = "event_store.client.streams.Streams"
"""The service's full name."""
BATCH: Final = 500
"""Events read from storage at a time (at most) for reads and subscriptions."""
BATCH_BYTES: Final = 4 * 1024 * 1024
"""About how many bytes of events a read batch holds: large events make batches smaller."""
DEFAULT_WINDOW: Final = 32
"""The filter window (events) of a filtered subscription that gives none."""

_PARKED_PREFIX: Final = parked_stream("", "").split("::")[0]  # "$persistentsubscription-"
_MAX_INT64: Final = (1 << 63) - 1
_DELETED_TB: Final = _MAX_INT64  # the "$tb" of a soft delete (KurrentDB's DeletedStream)
_LINK_TYPE: Final = "$>"
_MAX_PENDING: Final = 2 * convert.MAX_APPEND_SIZE  # bytes in a call's unfinished batches
_Options = streams_pb2.ReadReq.Options
_now = _dt.datetime.now


def _utcnow() -> _dt.datetime:
    return _now(_dt.UTC)


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Turn the store's errors into the protocol's."""
    try:
        yield
    except ExESDBError as exc:
        raise convert.rpc_error(exc) from None


def _storage(store_id: str) -> Backend | None:
    """The open storage of ``store_id`` on this node, None when it is not open (the
    store stopped or restarts)."""
    try:
        return backend_of(store_id)
    except (StoreUnavailable, otp.NoProc):
        return None


@contextlib.contextmanager
def _unavailable(store_id: str) -> Iterator[None]:
    """A storage that lost its database is the store's :class:`StoreUnavailable` (retry),
    as :mod:`exesdb.gateway` raises it."""
    try:
        yield
    except StorageUnavailable as exc:
        raise StoreUnavailable(store_id, str(exc)) from exc


@attrs.frozen
class _EventFilter:
    """An ``$all`` filter: on the event type or the stream id, prefixes or a regex."""

    by_stream: bool
    prefixes: tuple[str, ...]
    regex: Callable[[str], bool] | None  # compiled by exesdb.grpc.patterns: linear time
    window: int
    checkpoint_interval: int

    def matches(self, record: EventRecord) -> bool:
        subject = record.stream_id if self.by_stream else record.event_type
        if self.regex is not None:
            return self.regex(subject)
        return subject.startswith(self.prefixes)


def _event_filter(options: _Options.FilterOptions) -> _EventFilter:
    which = options.WhichOneof("filter")
    if which is None:
        raise bad_request("filter: one of stream_identifier or event_type is required")
    expression = getattr(options, which)
    regex = None
    if expression.regex:
        try:
            regex = compile_filter(expression.regex, f"filter.{which}.regex")
        except InvalidArgument as exc:
            raise bad_request(str(exc)) from None
    window = options.max if options.WhichOneof("window") == "max" and options.max else 0
    window = window or DEFAULT_WINDOW
    multiplier = options.checkpointIntervalMultiplier or 1
    return _EventFilter(which == "stream_identifier", tuple(expression.prefix), regex,
                        window, window * multiplier)


def _position(value: int) -> int:
    """A client position or revision the storage can take (uint64 values above int64
    mean "beyond the end")."""
    return min(value, _MAX_INT64)


def _now_us() -> int:
    return time.time_ns() // 1000


def _checkpoint(position: int) -> streams_pb2.ReadResp:
    """A filtered subscription's checkpoint at the ``$all`` position ``position``."""
    position = convert.grpc_position(position)
    checkpoint = streams_pb2.ReadResp.Checkpoint(commit_position=position,
                                                 prepare_position=position)
    convert.set_timestamp(checkpoint.timestamp, _now_us())
    return streams_pb2.ReadResp(checkpoint=checkpoint)


def _caught_up(stream_revision: int | None, position: int | None) -> streams_pb2.ReadResp:
    caught_up = streams_pb2.ReadResp.CaughtUp()
    convert.set_timestamp(caught_up.timestamp, _now_us())
    if stream_revision is not None and stream_revision >= 0:
        caught_up.stream_revision = stream_revision
    if position is not None and position >= 0:
        caught_up.position.commit_position = caught_up.position.prepare_position = (
            convert.grpc_position(position))
    return streams_pb2.ReadResp(caught_up=caught_up)


def written_by_the_server(stream_id: str) -> bool:
    """True for the streams only the server writes: the persistent subscription groups'
    configuration and parked-event streams, and their metadata streams. A client append,
    delete or tombstone there is refused (``PERMISSION_DENIED``), whoever the client is."""
    name = stream_id[2:] if stream_id.startswith("$$") else stream_id
    return name == CONFIG_STREAM or name.startswith(_PARKED_PREFIX)


def _check_writable(stream_id: str) -> None:
    if written_by_the_server(stream_id):
        raise convert.access_denied()


def _set_position(response: Any, position: int | None) -> None:
    """Set the ``position`` (or ``no_position``) of a delete or tombstone response from
    an ``$all`` position."""
    if position is None:
        response.no_position.SetInParent()
    else:
        response.position.commit_position = response.position.prepare_position = (
            convert.grpc_position(position))


def _soft_deleted_expectation(exc: WrongExpectedVersion) -> None:
    """Decide a failed expectation as KurrentDB does, where a soft-deleted stream keeps
    its last event number as its version: return (the caller then goes on as for a
    soft-deleted stream expected missing, which the storage accepts) when the expected
    version was that number; else raise the error to answer: the stream-deleted error
    when it was expected to exist, else the wrong version with that number as the
    current one. Any other failure is raised as it is."""
    if not exc.soft_deleted:
        raise exc
    if exc.expected is STREAM_EXISTS:
        raise StreamDeleted(exc.stream_id) from None
    if exc.expected != exc.last_event_number:
        raise WrongExpectedVersion(exc.stream_id, exc.expected, exc.last_event_number,
                                   exc.detail) from None


def _metadata_event(value: dict[str, Any]) -> NewEvent:
    """A ``$metadata`` event holding ``value``, as compact JSON text."""
    return NewEvent(metadata.METADATA_EVENT_TYPE,
                    JsonText(json.dumps(value, separators=(",", ":")).encode()),
                    content_type=JSON_CONTENT_TYPE)


def _confirmation() -> streams_pb2.ReadResp:
    return streams_pb2.ReadResp(confirmation=streams_pb2.ReadResp.SubscriptionConfirmation(
        subscription_id=str(uuid.uuid4())))


class _Streams:
    """The handlers of one store's Streams service."""

    def __init__(self, store_id: str, commits: CommitSignal) -> None:
        self.store_id = store_id
        self.commits = commits
        self._writer_name = writer_name(store_id)
        self._writer: otp.Pid | None = None  # the store's writer, last seen

    # -- append ------------------------------------------------------------------------

    async def _position_of(self, stream_id: str, version: int) -> int | None:
        """The ``$all`` position of event ``version`` of the stream (None if gone): the
        append's own result when it wrote, else (a re-send, an empty append) a read."""
        if type(version) is Appended:
            return version.position
        if version < 0:
            return None
        records = await gateway.get_events(self.store_id, stream_id, version, 1)
        if records and records[0].event_number == version:
            return records[0].position
        return None

    async def _append(self, stream_id: str, expected: ExpectedVersion,
                      events: list[NewEvent]) -> int:
        """Append (an empty append only checks the expected version); return the
        stream's version. A soft-deleted stream keeps its version (see
        :func:`_soft_deleted_expectation`); recreating it rewrites its ``$tb``."""
        if not events:
            version = await gateway.get_version(self.store_id, stream_id)
            check_delete(stream_id, expected, version, 0, False)
            return version
        try:
            version = await self._write(Append(stream_id, expected, events))
        except WrongExpectedVersion as exc:
            _soft_deleted_expectation(exc)
            version = await self._append(stream_id, NO_STREAM, events)
        if type(version) is Appended and version.recreated:
            await self._undelete(stream_id, version - len(events) + 1)
        return version

    async def _write(self, op: Append) -> Any:
        """What :func:`exesdb.gateway.append_events` does with ``op``, one process hop
        sooner: the request goes straight to the store's group-committing writer, as
        the gateway's worker would pass it on (the writer writes in arrival order, so a
        stream's appends keep their order), with the gateway's errors. Through the
        gateway when the writer is not running (restarting: its errors)."""
        store_id = self.store_id
        opts = node_stores().get(store_id)
        pid = self._writer
        if pid is None or not otp.is_alive(pid):
            pid = self._writer = otp.whereis(self._writer_name)
        if opts is None or pid is None:
            return await gateway.append_events(store_id, op.stream_id, op.events,
                                               op.expected_version)
        try:
            result = await otp.gen_server.call(pid, op, opts.timeout_s)
        except (otp.NoProc, otp.ServerExited, otp.CallTimeout) as exc:
            raise StoreUnavailable(store_id, str(exc)) from None
        if isinstance(result, ExESDBError):
            if isinstance(result, StorageUnavailable):
                raise StoreUnavailable(store_id, str(result)) from result
            raise result
        return result

    async def _undelete(self, stream_id: str, first: int) -> None:
        """After an append recreated soft-deleted ``stream_id`` from event ``first``: its
        metadata's ``$tb``, if it is the soft delete's, becomes ``first``, the rest kept
        (KurrentDB's undelete). A concurrent metadata change wins."""
        meta_id = metadata.metadata_stream(stream_id)
        if metadata.is_metadata_stream(stream_id) or len(meta_id) > MAX_STREAM_ID_LENGTH:
            return
        try:
            last = await gateway.get_events(self.store_id, meta_id, END, 1, "backward")
        except StreamDeleted:
            return
        value = metadata.decoded(last[0].data) if last else None
        if not isinstance(value, dict) or value.get("$tb") != _DELETED_TB:
            return
        value["$tb"] = first
        with contextlib.suppress(WrongExpectedVersion, StreamDeleted):
            await gateway.append_events(self.store_id, meta_id, [_metadata_event(value)],
                                        last[0].event_number)

    async def append(self, call: Call) -> None:
        """``Append``: options, then the proposed events, until the client half-closes."""
        first = await call.receive()
        if first is None or first.WhichOneof("content") != "options":
            raise bad_request("Append: the first request must carry the options")
        stream_id = convert.stream_name(first.options.stream_identifier,
                                        "options.stream_identifier")
        _check_writable(stream_id)
        expected = convert.expected_version(first.options)
        events: list[NewEvent] = []
        size = 0
        with _store_errors():
            await acl.check(self.store_id, call.user, stream_id, "write")
            while (request := await call.receive()) is not None:
                if request.WhichOneof("content") != "proposed_message":
                    raise bad_request("Append: every request after the first must carry a "
                                      "proposed_message")
                event, event_size = convert.new_event_sized(request.proposed_message)
                events.append(event)
                size += event_size
                if size > convert.MAX_APPEND_SIZE:
                    raise convert.AppendTooLarge(size)
            try:
                version = await self._append(stream_id, expected, events)
            except WrongExpectedVersion as exc:
                await call.send(convert.wrong_expected_version(exc))
                return
            position = await self._position_of(stream_id, version)
        if version < 0:
            response = streams_pb2.AppendResp(success=streams_pb2.AppendResp.Success(
                no_stream=shared_pb2.Empty(), no_position=shared_pb2.Empty()))
        else:
            response = convert.append_success(version, position)
        await call.send(response)

    async def batch_append(self, call: Call) -> None:
        """``BatchAppend``: requests grouped by correlation id; each final one is
        appended and answered (success, or an error status for that batch alone)."""
        pending: dict[uuid.UUID, _Batch] = {}
        while (request := await call.receive()) is not None:
            correlation = convert.uuid_from_proto(request.correlation_id, "correlation_id")
            batch = pending.get(correlation)
            if request.HasField("options"):
                batch = pending[correlation] = _Batch(request.options)
            if batch is None:
                raise bad_request(f"BatchAppend: correlation id {correlation}: the first "
                                  "request must carry the options")
            batch.add(request.proposed_messages)
            if sum(b.size for b in pending.values()) > _MAX_PENDING:
                raise RpcError(StatusCode.RESOURCE_EXHAUSTED,
                               f"BatchAppend: the unfinished batches hold over {_MAX_PENDING} "
                               "bytes")
            if not request.is_final:
                continue
            del pending[correlation]
            response = await self._batch_result(batch, call.user, request.correlation_id)
            if isinstance(response, bytes):  # (a success, serialized already)
                await call.send_many((response,))
            else:
                response.correlation_id.CopyFrom(request.correlation_id)
                await call.send(response)

    async def _batch_result(self, batch: _Batch, user: User | None,
                            correlation_id: Any) -> streams_pb2.BatchAppendResp | bytes:
        """The answer to a final batch: a written one's serialized (without building the
        message), else the message, its correlation id left to the caller."""
        if batch.error is not None:
            return batch.failed(convert.batch_error_status(batch.error, batch.stream_id))
        assert batch.expected is not None
        stream_id = batch.stream_id
        try:  # (what _store_errors does, without a context manager on every append)
            denied = written_by_the_server(stream_id) or (
                user is not None and not await acl.allowed(self.store_id, user, stream_id,
                                                           "write"))
            if denied:
                return batch.failed(convert.access_denied_status())
            try:
                version = await self._append(stream_id, batch.expected, batch.events)
            except (WrongExpectedVersion, StreamDeleted, InvalidArgument) as exc:
                return batch.failed(convert.batch_error_status(exc, stream_id))
            position = await self._position_of(stream_id, version)
        except ExESDBError as exc:
            raise convert.rpc_error(exc) from None
        if version >= 0:
            return convert.batch_success_bytes(correlation_id, batch.options, version, position)
        response = batch.response()
        response.success.no_stream.SetInParent()
        response.success.no_position.SetInParent()
        return response

    # -- delete ------------------------------------------------------------------------

    async def _delete(self, call: Call, hard: bool) -> int | None:
        """Delete or tombstone as KurrentDB (see the module docstring); return the
        ``$all`` position to answer."""
        request = await call.receive_one()
        stream_id = convert.stream_name(request.options.stream_identifier,
                                        "options.stream_identifier")
        _check_writable(stream_id)
        expected = convert.expected_version(request.options)
        with _store_errors():
            await acl.check(self.store_id, call.user, stream_id, "delete")
            last_number = await self._delete_stream(stream_id, expected, hard)
            if not hard:
                if last_number < 0 and not await self._has_metadata(stream_id):
                    raise convert.delete_error(WrongExpectedVersion(stream_id, expected, -1))
                return await self._write_deleted_tb(stream_id)
            last = await gateway.read_all(self.store_id, END, 1, "backward")
        return last[0].position if last else None

    async def _delete_stream(self, stream_id: str, expected: ExpectedVersion,
                             hard: bool) -> int:
        """The storage's delete, with a soft-deleted stream's version kept (see
        :func:`_soft_deleted_expectation`); return the stream's last event number."""
        try:
            return await gateway.delete_stream(self.store_id, stream_id, expected, hard)
        except WrongExpectedVersion as exc:
            _soft_deleted_expectation(exc)
            if not hard:  # soft-deleting it again changes nothing (its $tb is rewritten)
                return exc.last_event_number
            return await self._delete_stream(stream_id, NO_STREAM, hard)

    async def _has_metadata(self, stream_id: str) -> bool:
        """True when ``$$<stream_id>`` holds an event (or was tombstoned)."""
        meta_id = metadata.metadata_stream(stream_id)
        if len(meta_id) > MAX_STREAM_ID_LENGTH:
            return False
        try:
            return await gateway.get_version(self.store_id, meta_id) >= 0
        except StreamDeleted:
            return True

    async def _write_deleted_tb(self, stream_id: str) -> int | None:
        """Write the metadata of a soft-deleted stream, ``{"$tb": 2**63 - 1}``, as
        KurrentDB does (replacing what was set); return its ``$all`` position."""
        meta_id = metadata.metadata_stream(stream_id)
        if len(meta_id) > MAX_STREAM_ID_LENGTH:
            last = await gateway.read_all(self.store_id, END, 1, "backward")
            return last[0].position if last else None
        version = await gateway.append_events(self.store_id, meta_id,
                                              [_metadata_event({"$tb": _DELETED_TB})])
        return await self._position_of(meta_id, version)

    async def delete(self, call: Call) -> None:
        """``Delete``: a soft delete (the stream reads as missing; appending continues
        its numbering). Answers the ``$all`` head position at the delete."""
        response = streams_pb2.DeleteResp()
        _set_position(response, await self._delete(call, hard=False))
        await call.send(response)

    async def tombstone(self, call: Call) -> None:
        """``Tombstone``: a hard delete (the stream can never be read or written
        again). Answers the ``$all`` head position at the delete."""
        response = streams_pb2.TombstoneResp()
        _set_position(response, await self._delete(call, hard=True))
        await call.send(response)

    # -- read --------------------------------------------------------------------------

    async def read(self, call: Call) -> None:
        """``Read``: a read of a stream or of ``$all``, or a catch-up subscription."""
        options = (await call.receive_one()).options
        structured = options.uuid_option.WhichOneof("content") == "structured"
        send = _Sender(call, structured)
        if options.resolve_links:
            send.resolver = self._resolve_link
        await send.fit()
        which = options.WhichOneof("stream_option")
        if which is None:
            raise bad_request("options: one of stream or all is required")
        count_option = options.WhichOneof("count_option")
        if count_option is None:
            raise bad_request("options: one of count or subscription is required")
        if options.read_direction not in (_Options.Forwards, _Options.Backwards):
            raise bad_request(f"options.read_direction: unknown value {options.read_direction}")
        backwards = options.read_direction == _Options.Backwards
        subscribe = count_option == "subscription"
        if subscribe and backwards:
            raise bad_request("options: a subscription reads forwards only")
        filtered = options.WhichOneof("filter_option") == "filter"
        with _store_errors():
            if which == "stream":
                if filtered:
                    raise bad_request("options.filter: only a read of $all takes a filter")
                stream_id = convert.stream_name(options.stream.stream_identifier,
                                                "options.stream.stream_identifier")
                await acl.check(self.store_id, call.user, stream_id, "read")
                start = self._stream_start(options.stream)
                if subscribe:
                    await self._subscribe_stream(send, stream_id, start)
                else:
                    await self._read_stream(send, stream_id, start, backwards, options.count,
                                            options.control_option.compatibility)
                return
            await acl.check(self.store_id, call.user, "$all", "read")
            event_filter = _event_filter(options.filter) if filtered else None
            start_all = self._all_start(options.all)
            if subscribe:
                await self._subscribe_all(send, start_all, event_filter)
            else:
                await self._read_all(send, start_all, backwards, options.count, event_filter)

    @staticmethod
    def _stream_start(options: _Options.StreamOptions) -> int | str:
        which = options.WhichOneof("revision_option")
        if which is None:
            raise bad_request("options.stream: one of revision, start or end is required")
        return _position(options.revision) if which == "revision" else which

    @staticmethod
    def _all_start(options: _Options.AllOptions) -> int | str:
        """``"start"``, ``"end"``, or the ``$all`` position of the commit position given
        (-1 for 0: before every event)."""
        which = options.WhichOneof("all_option")
        if which is None:
            raise bad_request("options.all: one of position, start or end is required")
        if which == "position":
            return convert.store_position(_position(int(options.position.commit_position)))
        return str(which)

    async def _read_stream(self, send: _Sender, stream_id: str, start: int | str,
                           backwards: bool, count: int, compatibility: int = 0) -> None:
        """Read a stream (see the module docstring). With ``compatibility`` 1 or more (the
        client's ``control_option``), as KurrentDB: a forward read from before the first
        visible event that found none first says where the stream starts
        (``first_stream_position``), and a read of an existing stream ends with its last
        event number (``last_stream_position``)."""
        meta = await metadata.fetch(self.store_id, stream_id)
        version = (await gateway.get_version(self.store_id, stream_id)
                   if meta.restricts else -1)
        lowest = metadata.first_visible(meta, version)
        sent = 0
        if count and not backwards and start != "end":
            next_: int = max(0 if start == "start" else int(start), lowest)
            while sent < count:
                want = min(send.batch_size, count - sent)
                batch = await gateway.get_events(self.store_id, stream_id, next_, want)
                sent += await send.events(metadata.visible(batch, meta, _utcnow(), version))
                if len(batch) < want:
                    break
                next_ = batch[-1].event_number + 1
        elif count and backwards and start != "start":
            top: int | End = END if start == "end" else int(start)
            while sent < count:
                want = min(send.batch_size, count - sent)
                batch = await gateway.get_events(self.store_id, stream_id, top, want,
                                                 "backward")
                sent += await send.events(metadata.visible(batch, meta, _utcnow(), version))
                if len(batch) < want or batch[-1].event_number <= lowest:
                    break
                top = batch[-1].event_number - 1
        if sent == 0 or compatibility >= 1:
            current = await gateway.get_version(self.store_id, stream_id)
            if sent == 0 and current < 0:
                await send.message(convert.stream_not_found(stream_id))
                return
            if compatibility >= 1:
                first = metadata.first_visible(meta, current)
                if (sent == 0 and not backwards and start != "end"
                        and (0 if start == "start" else int(start)) < first):
                    await send.message(streams_pb2.ReadResp(first_stream_position=first))
                await send.message(streams_pb2.ReadResp(last_stream_position=current))

    async def _read_all(self, send: _Sender, start: int | str, backwards: bool, count: int,
                        event_filter: _EventFilter | None) -> None:
        direction: Any = "backward" if backwards else "forward"
        if backwards:
            if start == "start" or (start != "end" and int(start) <= 0):
                return
            next_: int | End = END if start == "end" else int(start) - 1
        else:
            if start == "end":
                return
            next_ = 0 if start == "start" else max(int(start), 0)
        matches = event_filter.matches if event_filter is not None else None
        sent = 0
        while sent < count:
            size = send.batch_size
            want = size if matches is not None else min(size, count - sent)
            batch = await gateway.read_all(self.store_id, next_, want, direction)
            chosen = batch if matches is None else [r for r in batch if matches(r)]
            sent += await send.events(chosen[: count - sent])
            if sent >= count:
                return
            if len(batch) < want:
                return
            last = batch[-1].position
            if backwards and last == 0:
                return
            next_ = last - 1 if backwards else last + 1

    # -- subscriptions -----------------------------------------------------------------

    async def _subscribe_stream(self, send: _Sender, stream_id: str,
                                start: int | str) -> None:
        if start == "end":
            next_ = await gateway.get_version(self.store_id, stream_id) + 1
        else:
            next_ = 0 if start == "start" else int(start) + 1
        meta = await metadata.fetch(self.store_id, stream_id)
        version = (await gateway.get_version(self.store_id, stream_id)
                   if meta.restricts else -1)
        next_ = max(next_, metadata.first_visible(meta, version))
        await send.message(_confirmation())
        store_id = self.store_id

        async def read(start: int, count: int) -> list[EventRecord]:
            backend = _storage(store_id)
            if backend is None:  # not open: the gateway's errors
                return await gateway.get_events(store_id, stream_id, start, count)
            with _unavailable(store_id):
                return await backend.read_stream(stream_id, start, count)

        cursor = Cursor(read, self._head, next_, by_position=False)
        caught_up = False
        async with aclosing(follow(cursor, self.commits, send.get_batch_size)) as batches:
            async for batch in batches:
                if batch:
                    version = max(version, batch[-1].event_number)
                    await send.events(metadata.visible(batch, meta, _utcnow(), version))
                if cursor.caught_up != caught_up:  # caught up, or fell behind again
                    caught_up = cursor.caught_up
                    if caught_up:
                        await send.message(_caught_up(cursor.next - 1, None))
                if caught_up:
                    send.call.idle()  # it waits for commits: its promised room goes back

    async def _subscribe_all(self, send: _Sender, start: int | str,
                             event_filter: _EventFilter | None) -> None:
        if start == "end":
            last = await gateway.read_all(self.store_id, END, 1, "backward")
            next_ = last[0].position + 1 if last else 0
        else:
            next_ = 0 if start == "start" else int(start) + 1
        await send.message(_confirmation())
        matches: Callable[[EventRecord], bool] | None = None
        interval = 0
        if event_filter is not None:
            matches, interval = event_filter.matches, event_filter.checkpoint_interval
        store_id = self.store_id

        async def read(start: int, count: int) -> list[EventRecord]:
            backend = _storage(store_id)
            if backend is None:  # not open: the gateway's errors
                return await gateway.read_all(store_id, start, count)
            with _unavailable(store_id):
                return await backend.read_all(start, count)

        cursor = Cursor(read, self._head, next_, by_position=True)
        caught_up = False
        scanned = 0
        async with aclosing(follow(cursor, self.commits, send.get_batch_size)) as batches:
            async for batch in batches:
                if matches is None:
                    await send.events(batch)
                else:
                    out: list[Any] = []
                    for record in batch:
                        if matches(record):
                            out.append(await send.response(record))
                        scanned += 1
                        if scanned >= interval:
                            scanned = 0
                            out.append(_checkpoint(record.position))
                    if out:
                        send.sized(out)
                        await send.call.send_many(out)
                if cursor.caught_up != caught_up:  # caught up, or fell behind again
                    caught_up = cursor.caught_up
                    if caught_up:
                        await send.message(_caught_up(None, cursor.next - 1))
                if caught_up:
                    send.call.idle()  # it waits for commits: its promised room goes back

    def _head(self) -> int:
        """The head of ``$all`` the subscriptions read up to: the commit signal's."""
        return self.commits.head

    async def _resolve_link(self, link: EventRecord) -> EventRecord | None:
        """The event a link event (data ``<number>@<stream>``) points to, None when it
        cannot be read (missing, deleted, or not a link's data)."""
        number, sep, stream_id = convert.record_data(link).decode(errors="replace").partition("@")
        if not sep or not number.isdigit():
            return None
        try:
            found = await gateway.get_events(self.store_id, stream_id, int(number), 1)
        except (StreamDeleted, InvalidArgument):
            return None
        return found[0] if found and found[0].event_number == int(number) else None


@attrs.define
class _Sender:
    """Sends the read responses of one call."""

    call: Call
    structured: bool

    batch_size: int = BATCH
    """How many events to read next: :data:`BATCH`, fewer once events are large, so a
    batch holds about :data:`BATCH_BYTES`, and fewer than the client can take now
    (:meth:`fit`)."""
    per_event: int = 512
    """The bytes of a response, as the last batch had them (before any, a guess: the
    room :meth:`fit` is promised keeps the calls of one connection from all reading at
    once)."""

    async def fit(self) -> None:
        """Wait until the client can take more responses, and make the next batch about
        what it can take (at least 256 KiB's worth, :meth:`exesdb.grpc.rpc.Call.writable`),
        so a client that does not read makes the server read and hold nothing more."""
        # Room promised to this call is held from the connection's other calls: ask
        # for no more than the next batch needs (as the last batch's events were sized).
        want = self.batch_size * self.per_event
        room = max(await self.call.writable(want), BATCH_BYTES // 16)
        self.batch_size = max(1, min(self.batch_size, room // self.per_event))

    def get_batch_size(self) -> int:
        """:attr:`batch_size` now (as the subscriptions ask before each read)."""
        return self.batch_size

    resolver: Callable[[EventRecord], Awaitable[EventRecord | None]] | None = None
    """With links resolved: what a link event points to (see :meth:`response`)."""

    async def response(self, record: EventRecord) -> bytes:
        """The serialized ``ReadResp`` carrying ``record`` (with a :attr:`resolver`, a
        link event as the event it points to and the link, or the link alone)."""
        if self.resolver is None or record.event_type != _LINK_TYPE:
            return convert.read_event_bytes(record, self.structured)
        target = await self.resolver(record)
        if target is None:
            return convert.unresolved_link_bytes(record, self.structured)
        return convert.read_event_bytes(target, self.structured, record)

    async def events(self, records: Iterable[EventRecord]) -> int:
        """Send ``records`` in few writes; return how many."""
        structured = self.structured
        encode = convert.read_event_bytes
        responses = ([encode(record, structured) for record in records]
                     if self.resolver is None else [await self.response(r) for r in records])
        count = len(responses)
        if responses:
            self._fit_to(sum(map(len, responses)), count)  # (all bytes: cheaper than sized)
            await self.call.send_many(responses)
            del responses  # not held while the client catches up
            await self.fit()
        return count

    def sized(self, responses: list[Any]) -> None:
        """Fit :attr:`batch_size` to the size of the responses just sent (messages or
        their bytes)."""
        total = sum(len(r) if type(r) is bytes else r.ByteSize() for r in responses)
        self._fit_to(total, len(responses))

    def _fit_to(self, total: int, count: int) -> None:
        """:meth:`sized`, given the responses' total size and count."""
        per_event = self.per_event = max(1, total // count)
        self.batch_size = max(1, min(BATCH, BATCH_BYTES // per_event))

    async def message(self, response: streams_pb2.ReadResp) -> None:
        await self.call.send(response)


class _Batch:
    """The requests of one batch append (one correlation id) received so far; the first
    error found (an over-size batch included) stops taking events and is answered when
    the batch is final. ``size`` counts the bytes of the events kept."""

    def __init__(self, options: streams_pb2.BatchAppendReq.Options) -> None:
        self.options = options
        self.events: list[NewEvent] = []
        self.size = 0
        self.error: ExESDBError | None = None
        self.expected: ExpectedVersion | None = None
        stream_id: str | None = None
        try:
            stream_id = convert.stream_name(options.stream_identifier,
                                            "options.stream_identifier")
            self.expected = convert.expected_version(options)
        except RpcError as exc:
            self.error = InvalidArgument(exc.message)
        self.stream_id = stream_id if stream_id is not None else (  # as far as it reads
            options.stream_identifier.stream_name.decode(errors="replace"))

    def add(self, proposed: Any) -> None:
        if self.error is not None:
            return
        events = self.events
        new_event = convert.new_event_sized
        limit = convert.MAX_APPEND_SIZE
        try:
            for message in proposed:
                event, size = new_event(message)
                events.append(event)
                self.size += size
                if self.size > limit:
                    raise convert.AppendTooLarge(self.size)
        except convert.AppendTooLarge as exc:
            self.error = exc
        except RpcError as exc:
            self.error = InvalidArgument(exc.message)
        if self.error is not None:
            self.events, self.size = [], 0

    def failed(self, status: Any) -> streams_pb2.BatchAppendResp:
        """:meth:`response` with ``status`` as its error."""
        response = self.response()
        response.error.CopyFrom(status)
        return response

    def response(self) -> streams_pb2.BatchAppendResp:
        response = streams_pb2.BatchAppendResp()
        response.stream_identifier.CopyFrom(self.options.stream_identifier)
        which = self.options.WhichOneof("expected_stream_position")
        if which == "stream_position":
            response.stream_position = self.options.stream_position
        elif which is not None:
            getattr(response, which).SetInParent()
        return response


def service(store_id: str, commits: CommitSignal) -> Service:
    """The method table of the Streams service of store ``store_id``; catch-up
    subscriptions wait for commits on ``commits``."""
    streams = _Streams(store_id, commits)
    path = f"/{SERVICE}/"
    return {
        path + "Read": Method(streams_pb2.ReadReq, streams_pb2.ReadResp, "server_stream",
                              streams.read),
        path + "Append": Method(streams_pb2.AppendReq, streams_pb2.AppendResp,
                                "client_stream", streams.append),
        path + "BatchAppend": Method(streams_pb2.BatchAppendReq, streams_pb2.BatchAppendResp,
                                     "bidi", streams.batch_append),
        path + "Delete": Method(streams_pb2.DeleteReq, streams_pb2.DeleteResp, "unary",
                                streams.delete),
        path + "Tombstone": Method(streams_pb2.TombstoneReq, streams_pb2.TombstoneResp,
                                   "unary", streams.tombstone),
    }
