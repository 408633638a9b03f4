"""The process of one persistent subscription group (:class:`PersistentGroup`, a
gen_server per group, registered per store under :func:`group_name`).

It is the subscriber of the group's exesdb persistent subscription: it receives the
subscription's events in order, reads them into its ledger as KurrentDB reads its stream
(:class:`~exesdb.grpc.groups.buffer.StreamBuffer`: batches of ``read_batch_size`` while
behind and a batch fits in ``history_buffer_size``, one by one while live), dispatches them
to the connected consumers (the ``Read``
calls), tracks each event in flight with its retry count and message timeout, handles
acks and nacks, parks events, replays parked events, and moves the checkpoint
(``exesdb.gateway.ack_event``, cumulative) only up to the last event before which
everything is acked, skipped, filtered out or parked: the bookkeeping is the pure
:class:`~exesdb.grpc.groups.ledger.Ledger`, the I/O is here.

It serves :data:`~exesdb.grpc.groups.messages.GroupRequest` and the cast
:class:`~exesdb.grpc.groups.messages.Disconnect`. When the store is not ready it tries
again every :data:`RETRY` seconds. An orderly stop drops its consumers (KurrentDB's
``persistent-subscription-dropped``, ``CANCELLED``),
parks what is to be parked and stores the checkpoint of what is done; a parking failure
then is logged and does not keep the checkpoint from being stored (the events not parked
are behind it, so they are delivered again when the group starts).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any, Final, assert_never

import attrs
import trio

import otp
from otp import gen_server

from ... import gateway
from ...constants import END
from ...errors import ExESDBError, StreamDeleted
from ...events import EventRecord, NewEvent
from ...naming import partition_name
from ...options import StoreOptions
from ...subscriptions import Events
from ...systems.leadership import leadership
from ..rpc import RpcError
from .buffer import StreamBuffer
from .config import ALL, GroupConfig, GroupSettings, parked_stream, subscription_name
from .ledger import Entry, Ledger
from .messages import (
    Ack,
    ApplySettings,
    Connect,
    Connection,
    ConsumerInfo,
    DeliveredEvent,
    Delivery,
    Disconnect,
    Drop,
    Dropped,
    GetInfo,
    GroupInfo,
    GroupRequest,
    Nack,
    Pull,
    ReplayParked,
    Stopped,
)
from .rpc_errors import dropped, max_subscribers, not_found, unavailable

__all__ = ["HARD_CHECKPOINT", "RETRY", "SHUTDOWN", "PersistentGroup", "group_name"]

log: Final = logging.getLogger("exesdb.grpc.groups")

HARD_CHECKPOINT: Final = 500
"""Events done since the last checkpoint that force one whatever the settings say: the
exesdb subscription delivers at most 1000 events past its stored position."""
RETRY: Final = 0.2
"""Seconds before a group tries again what the store could not do yet."""
SHUTDOWN: Final = 10.0
"""Seconds a group's orderly stop (parking, the last checkpoint) may take."""


_UNCHECKED: Final = object()


def group_name(store_id: str, stream: str, group: str) -> Any:
    """The registered name of the group's process in ``store_id``."""
    return partition_name(PersistentGroup, store_id, stream, group)


@attrs.define(eq=False)
class _Consumer:
    """A connected consumer: who it is, the events sent to it that its next pull takes,
    and its pull while it waits for some."""

    connection: Connection
    outbox: list[DeliveredEvent] = attrs.Factory(list)
    waiting: gen_server.From | None = None
    measured_total: int = 0  # events sent to it by the last measurement of the rates


class PersistentGroup(otp.GenServer):
    """One group's process: see the module docstring. ``init(opts, config)``.

    Serves the calls of :data:`~exesdb.grpc.groups.messages.GroupRequest` (a
    :class:`~exesdb.grpc.groups.messages.Pull` is answered once the consumer has events,
    is stopped or dropped) and the cast :class:`~exesdb.grpc.groups.messages.Disconnect`;
    an unknown request ends it with ``ValueError``.
    """

    async def init(self, opts: StoreOptions, config: GroupConfig) -> Any:
        """Run group ``config`` of store ``opts.store_id``, trapping exits so that an
        orderly stop runs :meth:`terminate`; it subscribes right after (``handle_continue``)."""
        otp.trap_exits(True)  # so that an orderly stop checkpoints (terminate)
        self.opts = opts
        self.store_id = opts.store_id
        self.config = config
        self.name = subscription_name(config.stream, config.group)
        self.parked_stream = parked_stream(config.stream, config.group)
        self.ledger = self._new_ledger(config.settings)
        self.consumers: dict[int, _Consumer] = {}
        self.ended: dict[int, Stopped | Dropped] = {}  # ended by the group: their pull's answer
        self.ids = itertools.count(1)
        self.started = False
        self.start_retry_at: float | None = None
        self.checkpoint: int | None = None
        self.checkpoint_at = trio.current_time()
        self.checkpoint_retry_at: float | None = None
        self.checkpoint_failing = False  # the last try failed (logged once per run)
        self.park_retry_at: float | None = None
        self.parked_last = -1  # the last event number of the parked stream
        self.replayed_before = 0  # the parked stream's truncate-before
        self.replay_next = 0  # the next parked event to queue for a replay
        # the parked events queued for a replay, in order, with their entries (None for a
        # link whose event is gone): the truncate-before passes one once it is done
        self.replaying: deque[tuple[int, Entry | None]] = deque()
        self.replay_done_before = 0  # the truncate-before the replayed events done allow
        self.replay_retry_at: float | None = None
        self.deleted = False
        self.total = 0
        self.buffer = StreamBuffer()  # what arrived and was not read into the ledger yet
        # buffer.last_key at the last end-of-stream check that said no (_UNCHECKED: none)
        self.end_checked: object = _UNCHECKED
        self.measured_at = trio.current_time()  # the last measurement of the rates (GetInfo)
        self.measured_total = 0
        return otp.Continue("start")

    @staticmethod
    def _new_ledger(settings: GroupSettings) -> Ledger:
        return Ledger(settings.max_retry_count, settings.message_timeout_ms / 1000,
                      settings.consumer_strategy)

    # -- start -------------------------------------------------------------------------------
    async def handle_continue(self, arg: Any) -> Any:
        """Subscribe (or plan to try again), then run what is due."""
        await self._start()
        return await self._settle(no_reply=True)

    async def _start(self) -> None:
        """Load the checkpoint and the parked stream's state, then subscribe (again after
        :data:`RETRY` s while the store is not ready)."""
        config = self.config
        selector = ALL if config.is_all else f"${config.stream}"
        try:
            for sub in await gateway.get_subscriptions(self.store_id):
                if sub.name == self.name:
                    self.checkpoint = sub.position
            self.parked_last = await gateway.get_version(self.store_id, self.parked_stream)
            self.replayed_before = await self._read_truncate_before()
            self.replay_next = self.replayed_before
            await gateway.save_subscription(self.store_id, "by_stream", selector, self.name,
                                            config.start_from, otp.self())
        except ExESDBError as exc:
            log.debug("store %r: group %r not started yet: %s", self.store_id, self.name, exc)
            self.start_retry_at = trio.current_time() + RETRY
            return
        self.started = True
        self.start_retry_at = None

    async def _read_truncate_before(self) -> int:
        events = await gateway.get_events(self.store_id, f"${self.parked_stream}", END, 1,
                                          "backward")
        data = events[0].data if events else None
        if isinstance(data, bytes):  # written by a client: JSON bytes
            try:
                data = json.loads(data)
            except ValueError:
                return 0
        value = data.get("$tb") if isinstance(data, dict) else None
        return value if isinstance(value, int) and value >= 0 else 0

    # -- messages ----------------------------------------------------------------------------
    async def handle_info(self, msg: Any) -> Any:
        """Take the subscription's events into the ledger (a linked process's exit and
        the timeout of due work change nothing else), then run what is due."""
        match msg:
            case Events(subscription, events) if subscription == self.name:
                await self._receive(events)
            case otp.Exit():  # a linked process ended (exits are trapped, see init)
                pass
            case _ if msg is otp.TIMEOUT:  # something is due: _settle runs it
                pass
            case _:
                return await super().handle_info(msg)
        return await self._settle(no_reply=True)

    async def _receive(self, events: Iterable[EventRecord]) -> None:
        """The subscription's events arrived: each goes into the ledger now if the group
        is live and has room, else waits in the stream buffer to be read
        (:mod:`exesdb.grpc.groups.buffer`)."""
        config = self.config
        settings = config.settings
        for record in events:
            key = record.position if config.is_all else record.event_number
            wanted = config.filter is None or config.filter.matches(record)
            room = self._waiting() < settings.history_buffer_size
            if self.buffer.arrive(key, record, wanted, room,
                                  settings.live_buffer_size) == "in":
                await self._take_in(key, record, wanted)

    def _waiting(self) -> int:
        """The events waiting in the ledger for a consumer (KurrentDB's buffer count)."""
        return self.ledger.waiting + self.ledger.retrying

    async def _take_in(self, key: int, record: EventRecord, wanted: bool) -> None:
        """Put an event read (or arrived live) into the ledger, its link resolved."""
        event, link = record, None
        if self.config.settings.resolve_links and record.event_type == "$>":
            target = await self._resolve(record)
            if target is not None:
                event, link = target, record
        ack_id = (link or event).event_id
        self.ledger.receive(key, ack_id, (event, link), event.stream_id, wanted, record)

    async def _read(self) -> None:
        """Read from the stream buffer into the ledger as KurrentDB reads its stream: a
        batch at a time while there is room; a short read at the end of the stream makes
        the group live (:mod:`exesdb.grpc.groups.buffer`)."""
        settings = self.config.settings
        buffer = self.buffer
        while not buffer.live:
            batch, short = buffer.read(self._waiting(), settings.history_buffer_size,
                                       settings.read_batch_size)
            for key, record, wanted in batch:
                await self._take_in(key, record, wanted)
            if short:
                if buffer.last_key != self.end_checked:  # else nothing arrived since
                    at_end = await self._at_end()
                    if at_end:
                        buffer.caught_up()
                    elif at_end is not None:  # ask again once something arrives
                        self.end_checked = buffer.last_key
                return
            if not batch:
                return

    async def _at_end(self) -> bool | None:
        """Whether everything the group's source holds arrived (its stream's last event,
        or ``$all``'s, is not past the last event that arrived, the checkpoint or the
        start); None when the store cannot tell now."""
        config = self.config
        try:
            if config.is_all:
                last = await gateway.read_all(self.store_id, END, 1, "backward")
                head = last[0].position if last else -1
            else:
                head = await gateway.get_version(self.store_id, config.stream)
        except ExESDBError:
            return None
        known = [k for k in (self.buffer.last_key, self.checkpoint) if k is not None]
        return head <= max([*known, config.start_from - 1])

    async def _resolve(self, link: EventRecord) -> EventRecord | None:
        """The event a link (``"<number>@<stream>"``) points to, None if it is gone."""
        data = link.data
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        number, sep, stream = text.partition("@")
        if not sep or not number.isdigit() or not stream:
            return None
        try:
            found = await gateway.get_events(self.store_id, stream, int(number), 1)
        except (StreamDeleted, ExESDBError):
            return None
        return found[0] if found and found[0].event_number == int(number) else None

    async def handle_cast(self, msg: Any) -> Any:
        """Serve :class:`~exesdb.grpc.groups.messages.Disconnect`, then run what is due."""
        match msg:
            case Disconnect(cid):
                await self._drop_consumer(cid, None)
            case _:
                return await super().handle_cast(msg)
        return await self._settle(no_reply=True)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        """Serve a :data:`~exesdb.grpc.groups.messages.GroupRequest`, then run what is
        due; a :class:`~exesdb.grpc.groups.messages.Pull` with nothing to take is answered
        later."""
        if not isinstance(request, GroupRequest):
            raise ValueError(f"PersistentGroup: unknown request {request!r}")
        reply: Any = None
        match request:
            case Pull(cid):
                consumer = self.consumers.get(cid)
                if consumer is None:
                    ended = self.ended.pop(cid, None)
                    reply = ended if ended is not None else Dropped(dropped(*self.config.key))
                elif consumer.outbox:
                    reply = Delivery(tuple(consumer.outbox))
                    consumer.outbox = []
                else:
                    consumer.waiting = from_
                    return await self._settle(no_reply=True)
            case Ack(_, ids):
                self.ledger.ack(ids)
            case Nack(cid, ids, action, reason):
                self.ledger.nack(ids, action, reason)
                if action == "stop":
                    await self._drop_consumer(cid, Stopped())
            case Connect(connection, buffer_size):
                reply = self._connect(connection, buffer_size)
            case GetInfo():
                reply = self._info()
            case ApplySettings(settings):
                self._apply(settings)
            case ReplayParked(stop_at):
                reply = await self._replay(stop_at)
            case Drop():  # the group is being deleted
                self.deleted = True
                for cid in list(self.consumers):
                    await self._drop_consumer(cid, Dropped(not_found(*self.config.key)))
            case _:
                assert_never(request)
        return await self._settle(reply=reply)

    def _connect(self, connection: Connection, buffer_size: int) -> int | RpcError:
        limit = self.config.settings.max_subscriber_count
        if limit and len(self.consumers) >= limit:
            return max_subscribers(*self.config.key)
        cid = next(self.ids)
        self.consumers[cid] = _Consumer(connection)
        self.ledger.connect(cid, buffer_size)
        return cid

    async def _drop_consumer(self, cid: int, ending: Stopped | Dropped | None) -> None:
        """End consumer ``cid``: its events in flight are retried; its pull gets
        ``ending`` (None: it left by itself)."""
        consumer = self.consumers.pop(cid, None)
        if consumer is None:
            return
        self.ledger.disconnect(cid)
        if ending is None:
            return
        if consumer.waiting is not None:
            gen_server.reply(consumer.waiting, ending)
        else:
            self.ended[cid] = ending

    def _apply(self, settings: GroupSettings) -> None:
        self.config = attrs.evolve(self.config, settings=settings)
        ledger = self.ledger
        ledger.max_retry_count = settings.max_retry_count
        ledger.message_timeout = settings.message_timeout_ms / 1000
        ledger.strategy = settings.consumer_strategy

    # -- replay of parked events --------------------------------------------------------------
    async def _replay(self, stop_at: int | None) -> RpcError | None:
        """Queue the parked events not queued yet (at most ``stop_at`` of them) ahead of
        new ones. They stay in the parked stream: its truncate-before passes each only once
        it is acked, skipped or parked again (:meth:`_pass_replayed`), so that a stop or a
        crash before then leaves it parked, to be replayed again."""
        start = self.replay_next
        queued = 0
        try:
            while stop_at is None or queued < stop_at:
                count = 500 if stop_at is None else min(500, stop_at - queued)
                batch = await gateway.get_events(self.store_id, self.parked_stream, start,
                                                 count)
                for link in batch:
                    if link.event_number < self.replay_next:
                        continue
                    target = await self._resolve(link)
                    entry = None
                    if target is not None:
                        entry = self.ledger.add_replayed(link.event_id, (target, link),
                                                         target.stream_id)
                    self.replaying.append((link.event_number, entry))
                    self.replay_next = link.event_number + 1
                    queued += 1
                    if stop_at is not None and queued >= stop_at:
                        break
                if len(batch) < count:
                    break
                start = batch[-1].event_number + 1
        except ExESDBError as exc:
            return unavailable(str(exc))
        return None

    async def _pass_replayed(self) -> None:
        """Move the parked stream's truncate-before past the replayed events that are
        done (up to the first that is not)."""
        replaying = self.replaying
        while replaying and (replaying[0][1] is None or replaying[0][1].state == "done"):
            self.replay_done_before = replaying.popleft()[0] + 1
        before = self.replay_done_before
        if before <= self.replayed_before or self.deleted:
            self.replay_retry_at = None  # nothing left to retry (no wake-up for it)
            return
        if self.replay_retry_at is not None and trio.current_time() < self.replay_retry_at:
            return
        try:
            await gateway.append_events(self.store_id, f"${self.parked_stream}",
                                        [NewEvent("$metadata", {"$tb": before})])
        except ExESDBError as exc:
            if self.replay_retry_at is None:  # once per run of failures
                log.warning("store %r: group %r: replayed parked events not marked yet "
                            "(retrying): %s", self.store_id, self.name, exc)
            self.replay_retry_at = trio.current_time() + RETRY
            return
        if self.replay_retry_at is not None:
            log.info("store %r: group %r: replayed parked events marked", self.store_id,
                     self.name)
        self.replay_retry_at = None
        self.replayed_before = before

    # -- the loop ----------------------------------------------------------------------------
    async def _settle(self, reply: Any = None, no_reply: bool = False) -> Any:
        """Run what is due (timeouts, parking, dispatch, checkpoint), answer the waiting
        consumers, and return the directive with the time until the next due work."""
        now = trio.current_time()
        if not self.started and self.start_retry_at is not None and now >= self.start_retry_at:
            await self._start()
        self.ledger.expire(now)
        await self._park()
        await self._pass_replayed()
        if self.started:
            await self._read()
        for cid, entry in self.ledger.dispatch(now):
            event, link = entry.item
            self.consumers[cid].outbox.append((event, link, entry.retry_count))
            self.total += 1
        for consumer in self.consumers.values():
            if consumer.waiting is not None and consumer.outbox:
                gen_server.reply(consumer.waiting, Delivery(tuple(consumer.outbox)))
                consumer.waiting, consumer.outbox = None, []
        await self._checkpoint(now)
        timeout = self._timeout()
        if no_reply:
            return otp.NoReply(timeout=timeout)
        return otp.Reply(reply, timeout=timeout)

    def _timeout(self) -> float | None:
        now = trio.current_time()
        due = [t for t in (self.ledger.next_deadline(), self.start_retry_at,
                           self.checkpoint_retry_at, self.park_retry_at,
                           self.replay_retry_at) if t is not None]
        settings = self.config.settings
        if self.ledger.since_checkpoint and settings.checkpoint_after_ms and \
                self.started and not self.deleted and \
                self.ledger.since_checkpoint >= max(1, settings.min_checkpoint_count):
            # (not before a failed checkpoint may be tried again: no busy loop meanwhile)
            due.append(max(self.checkpoint_at + settings.checkpoint_after_ms / 1000,
                           self.checkpoint_retry_at or 0.0))
        return max(min(due) - now, 0.0) if due else None

    async def _park(self) -> None:
        """Park the events to park, unless a failed try asked to wait until
        :attr:`park_retry_at`; a failure of the store is logged and tried again after
        :data:`RETRY` s."""
        if not self.ledger.parking:
            self.park_retry_at = None  # nothing left to retry (no wake-up for it)
            return
        if self.park_retry_at is not None and trio.current_time() < self.park_retry_at:
            return
        try:
            await self._write_parked()
        except ExESDBError as exc:
            if self.park_retry_at is None:  # once per run of failures
                log.warning("store %r: group %r: events not parked yet (retrying): %s",
                            self.store_id, self.name, exc)
            self.park_retry_at = trio.current_time() + RETRY
            return
        if self.park_retry_at is not None:
            log.info("store %r: group %r: events parked again", self.store_id, self.name)
        self.park_retry_at = None

    async def _write_parked(self) -> None:
        """Write the events to park as links to the parked stream (in one append); they
        are then done. Raises what the store raises."""
        entries = list(self.ledger.parking)
        if not entries:
            return
        added = _dt.datetime.now(_dt.UTC).isoformat()
        links = []
        for entry in entries:
            event = entry.item[0]
            links.append(NewEvent("$>", f"{event.event_number}@{event.stream_id}".encode(),
                                  {"Added": added, "Reason": entry.reason,
                                   "SubscriptionEventNumber": entry.key}))
        self.parked_last = await gateway.append_events(self.store_id, self.parked_stream,
                                                       links)
        for entry in entries:
            self.ledger.parked(entry)

    async def _checkpoint(self, now: float, force: bool = False) -> None:
        """Acknowledge the safe key to exesdb when the checkpoint settings say so."""
        ledger = self.ledger
        count = ledger.since_checkpoint
        if not count or ledger.safe_anchor is None or not self.started or self.deleted:
            self.checkpoint_retry_at = None  # nothing to retry (no wake-up for it)
            return
        if self.checkpoint_retry_at is not None and now < self.checkpoint_retry_at and not force:
            return
        record = leadership(self.store_id)
        if record is not None and not record.leading:
            # Cluster mode, and this node no longer leads: the storage would refuse the
            # write (fenced), and the leader's group stores the checkpoints now. (If it
            # leads again, its manager starts the group afresh.)
            self.checkpoint_retry_at = now + RETRY
            return
        settings = self.config.settings
        after = settings.checkpoint_after_ms  # 0: never by time (KurrentDB's MaxValue)
        due = (force or count >= min(settings.max_checkpoint_count, HARD_CHECKPOINT)
               or (after != 0 and count >= max(1, settings.min_checkpoint_count)
                   and now - self.checkpoint_at >= after / 1000))
        if not due:
            return
        try:
            await gateway.ack_event(self.store_id, self.name, otp.self(), ledger.safe_anchor)
        except (ExESDBError, otp.OTPError) as exc:
            if not self.checkpoint_failing:
                log.warning("store %r: group %r: checkpoint not stored yet (retrying): %s",
                            self.store_id, self.name, exc)
            self.checkpoint_failing = True
            self.checkpoint_retry_at = now + RETRY
            return
        if self.checkpoint_failing:
            log.info("store %r: group %r: checkpoint stored again", self.store_id, self.name)
        self.checkpoint_failing = False
        self.checkpoint_retry_at = None
        self.checkpoint = ledger.safe_key
        self.checkpoint_at = now
        ledger.checkpointed()

    def _info(self) -> GroupInfo:
        """The group's statistics, as KurrentDB's ``GetStatistics`` measures them: the
        rates are over the time since the last measurement (the last info asked for),
        which this one ends."""
        ledger = self.ledger
        now = trio.current_time()
        elapsed = now - self.measured_at

        def rate(count: int) -> int:
            return int(count / elapsed) if elapsed > 0 else 0

        connections = []
        for cid, consumer in self.consumers.items():
            slot = ledger.consumers.get(cid)
            if slot is None:
                continue
            since = slot.total - consumer.measured_total
            consumer.measured_total = slot.total
            connections.append(ConsumerInfo(
                consumer.connection, slot.total, len(slot.in_flight), ledger.free(cid),
                average_items_per_second=rate(since), count_since_last_measurement=since))
        since = self.total - self.measured_total
        self.measured_at, self.measured_total = now, self.total
        return GroupInfo(self.config, self._status(), tuple(connections), self.total,
                         self.checkpoint, ledger.last_key, ledger.waiting, ledger.retrying,
                         len(ledger.flight), max(self.parked_last - self.replayed_before + 1, 0),
                         live_buffer_count=self.buffer.live_count,
                         average_per_second=rate(since), count_since_last_measurement=since)

    def _status(self) -> str:
        """KurrentDB's state flags as its .NET ``ToString`` writes them (``NotReady``;
        ``Behind`` or ``Live``, with ``ReplayingParkedMessages`` while parked events are
        queued again)."""
        if not self.started:
            return "NotReady"
        flags = [] if self.buffer.live else ["Behind"]
        if any(e.key is None and e.state != "done" for e in self.ledger.retry) or any(
                e.key is None for e in self.ledger.flight.values()):
            flags.append("ReplayingParkedMessages")
        if self.buffer.live:
            flags.append("Live")
        return ", ".join(flags)

    async def terminate(self, reason: Any) -> None:
        """Drop the consumers (``CANCELLED``, KurrentDB's persistent subscription dropped),
        park what is to be parked, then store the
        checkpoint of what is done. Each step is tried whatever became of the one before,
        and a failure is logged: what is neither parked nor checkpointed is delivered again
        when the group starts."""
        for cid in list(self.consumers):
            await self._drop_consumer(cid, Dropped(dropped(*self.config.key)))
        count = len(self.ledger.parking)
        try:
            await self._write_parked()  # now, whatever a failed try before asked
        except ExESDBError as exc:
            log.warning("store %r: group %r: %d events not parked before the group stopped "
                        "(delivered again when it starts): %s", self.store_id, self.name,
                        count, exc)
        except Exception:
            log.exception("store %r: group %r: %d events not parked before the group "
                          "stopped (delivered again when it starts)", self.store_id,
                          self.name, count)
        try:
            await self._checkpoint(trio.current_time(), force=True)
        except Exception:
            log.exception("store %r: group %r: checkpoint not stored before the group "
                          "stopped (what was done since the last one is delivered again)",
                          self.store_id, self.name)
