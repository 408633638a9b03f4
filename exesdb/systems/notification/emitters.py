"""Emitters: the processes that deliver a subscription's events, catch-up and live alike.

Each running subscription has an :class:`EmitterPool` (a supervisor, under the store's
EmitterSystem) running one :class:`EmitterWorker` (one, so that delivery keeps its order).
The worker always reads what it delivers from the storage, from its next position on:
first whatever is already stored (catch-up, in batches), then, woken by the store's commit
notifications, whatever is committed later (live). Catch-up and live are the same step,
:meth:`exesdb.systems.commits.Cursor.read` (the gRPC catch-up subscriptions read with it
too), so there is no gap and no duplicate at the switch, and a notification lost in a
crash loses nothing: the storage is the only source.

Delivery:

* to a subscriber process, as :class:`~exesdb.subscriptions.Events` messages carrying
  the subscription's name and :attr:`Definition.key` (so that a process subscribed more
  than once tells its subscriptions apart). A
  persistent subscription keeps at most :data:`MAX_IN_FLIGHT` delivered but unacknowledged
  events (back-pressure); acks are cumulative and durable, and after a crash, a restart or
  a new subscriber, delivery resumes after the last ack (at least once, in order). If the
  subscriber dies, the subscription waits for a new subscriber under its name.
* with no subscriber, as broadcasts on the store's events pub/sub (topic
  :func:`~exesdb.subscriptions.topic`); the position then advances as it broadcasts and is
  stored at most every :data:`CHECKPOINT_INTERVAL` seconds (at least once across restarts).
  While nobody listens to a broadcast of ``$all`` (filtered or not), its worker is hushed
  (:func:`exesdb.systems.commits.hush`): the commits move its position without waking it,
  nor does a :class:`GetState` question (answered from the position the commits moved),
  and the first commit after a listener came wakes it, so a listener gets everything
  committed after it came.

The worker serves the requests :class:`Acknowledge`, :class:`SetSubscriber`,
:class:`DetachSubscriber` and :class:`GetState`, sent by the client functions
:func:`forward_ack`, :func:`set_subscriber`, :func:`detach_subscriber` and
:func:`get_state`.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any, Final, TypeAlias, assert_never

import attrs
import trio

import otp
from otp import gen_server, partition_supervisor, pubsub, registry, supervisor
from otp.supervisor import ChildSpec

from ...errors import ExESDBError, StoreUnavailable, StreamDeleted
from ...events import EventRecord, Filter
from ...naming import child_spec_id, partition_name
from ...options import StoreOptions
from ...storage import SaveCheckpoint
from ...storage import writer as storage_writer
from ...subscriptions import Events, matcher, single_stream, topic
from ..commits import COMMITS, Committed, Cursor, PositionMoved, Unheard, hush, unhush
from ..leadership import fence
from ..persistence import PARTITIONS
from ..processes import StoreSupervisor
from ..pubsub import pubsub_name
from ..store import backend_of, writer_name

__all__ = [
    "BATCH",
    "CHECKPOINT_INTERVAL",
    "MAX_IN_FLIGHT",
    "POOLS_TOPIC",
    "RETRY",
    "Acknowledge",
    "Definition",
    "DetachSubscriber",
    "EmitterPool",
    "EmitterRequest",
    "EmitterState",
    "EmitterSystem",
    "EmitterWorker",
    "GetState",
    "PoolsStarted",
    "SetSubscriber",
    "SubscriberCell",
    "detach_subscriber",
    "emitter_name",
    "emitter_pools_name",
    "forward_ack",
    "get_state",
    "pool_name",
    "set_subscriber",
]

log: Final = logging.getLogger("exesdb.systems.notification.emitters")

BATCH: Final = 1000
"""Events read from the storage at a time."""
MAX_IN_FLIGHT: Final = 1000
"""Delivered but unacknowledged events a persistent subscription allows its subscriber."""
CHECKPOINT_INTERVAL: Final = 0.2
"""Seconds between two stored positions of a subscription that broadcasts."""
RETRY: Final = 0.1
"""Seconds before reading again when the storage was restarting."""


@attrs.define
class SubscriberCell:
    """The subscriber of a running subscription, shared by the tracker and the emitter, so
    that an emitter restarted by its pool delivers to the current subscriber.

    ``waiting`` marks a persistent subscription whose subscriber died or detached: it
    delivers nothing (and does not broadcast) until a new subscriber is saved.
    """

    subscriber: otp.Pid | None
    waiting: bool = False


@attrs.frozen
class Definition:
    """What an emitter delivers: the subscription's type, selector, name, start and key.

    ``key`` identifies the subscription in the store: its name when persistent, a tuple
    of type, selector and subscriber when transient.
    """

    type: str
    selector: Any
    name: str
    start_from: int
    key: Any
    persistent: bool


def emitter_name(store_id: str, key: Any) -> Any:
    """The name of the emitter worker of the subscription ``key``."""
    return partition_name(EmitterWorker, store_id, key)


# -- requests ------------------------------------------------------------------------------


@attrs.frozen
class Acknowledge:
    """Acknowledge the delivered events up to ``position`` (cumulative; a version for a
    single-stream subscription). Replied: None once the position is stored, else the
    :class:`exesdb.StoreUnavailable` saying why not (it is stored later)."""

    position: int


@attrs.frozen
class SetSubscriber:
    """Deliver to ``subscriber`` from now on (None: broadcast), from after the last
    acknowledged position. Replied: None."""

    subscriber: otp.Pid | None


@attrs.frozen
class DetachSubscriber:
    """The subscriber stops listening: deliver nothing until a new one is set. Replied:
    None."""


@attrs.frozen
class GetState:
    """Replied: the worker's :class:`EmitterState`."""


EmitterRequest: TypeAlias = Acknowledge | SetSubscriber | DetachSubscriber | GetState
"""The requests an :class:`EmitterWorker` serves."""


def forward_ack(emitter: otp.Name, position: int, from_: gen_server.From) -> None:
    """Hand the call ``from_`` on to ``emitter`` as an :class:`Acknowledge` of
    ``position``: the emitter answers the caller (None, or the error that kept the
    position from being stored). Never blocks."""
    gen_server.forward(emitter, Acknowledge(position), from_)


async def set_subscriber(emitter: otp.Name, subscriber: otp.Pid | None,
                         timeout: float | None = 5.0) -> None:
    """Make ``emitter`` deliver to ``subscriber`` (see :class:`SetSubscriber`)."""
    await gen_server.call(emitter, SetSubscriber(subscriber), timeout)


async def detach_subscriber(emitter: otp.Name, timeout: float | None = 5.0) -> None:
    """Make ``emitter`` wait for a new subscriber (see :class:`DetachSubscriber`)."""
    await gen_server.call(emitter, DetachSubscriber(), timeout)


async def get_state(emitter: otp.Name, timeout: float | None = 5.0) -> EmitterState:
    """What ``emitter`` reports of itself."""
    state: EmitterState = await gen_server.call(emitter, GetState(), timeout)
    return state


class EmitterWorker(otp.GenServer):
    """Delivers one subscription's events; see the module docstring."""

    async def init(self, store_id: str, definition: Definition, cell: SubscriberCell) -> Any:
        otp.trap_exits(True)  # so that its pool's shutdown runs terminate (stores the position)
        self.store_id = store_id
        self.cell = cell
        self.d = definition
        self.stream = single_stream(definition.type, definition.selector)
        self.filter = (Filter(event_types=(definition.selector,))
                       if definition.type == "by_event_type" else None)
        self.match = matcher(definition.type, definition.selector)
        self.topic = topic(store_id, definition.type, definition.selector, definition.name)
        self.events_pubsub = pubsub_name(store_id, "events")
        self.subscriber: otp.Pid | None = None
        self.waiting = False  # a persistent subscription whose subscriber died
        self.delivered: deque[int] = deque()  # positions sent and not yet acknowledged
        self.position: int | None = None  # the last acknowledged or broadcast position
        self.saved: int | None = None  # the position last stored
        self.cursor = self._cursor()  # the next position, and whether caught up
        self._ref: otp.Ref | None = None
        self.started = False  # the stored position is loaded
        self.retrying = False  # the last read failed: the storage restarts
        self.deadline: float | None = None  # when the timer work is due (see _timeout)
        self.unheard: Unheard | None = None  # hushed: broadcasting to nobody (see _hush)
        pubsub.subscribe(pubsub_name(store_id, "system"), COMMITS)
        self._follow(cell.subscriber, cell.waiting)
        return otp.Continue("start")

    # -- events ----------------------------------------------------------------------------
    async def handle_continue(self, arg: Any) -> Any:
        await self._start()
        return self._idle()

    async def _start(self) -> None:
        """Load the stored position and deliver from after it (again, if the storage was
        restarting: :data:`RETRY` seconds later)."""
        try:
            if self.d.persistent:
                self.position = self.saved = await backend_of(
                    self.store_id).read_checkpoint(self.d.name)
            self.started = True
            self._rewind()
            await self._pump()
        except ExESDBError as exc:
            self._retry(exc)

    async def handle_info(self, msg: Any) -> Any:
        woken = False
        if type(msg) is PositionMoved:
            if self.unheard is not None:
                self._take_unheard_position()
            return self._idle()  # else sent before a wake-up: the place is taken already
        if self.unheard is not None:
            if msg is otp.TIMEOUT:  # store the position the commits moved, still hushed
                self.deadline = None
                self.unheard.moved = False
                self._take_unheard_position()
                await self._on_timer()
                return self._idle()
            self._wake()
            woken = True
        if msg is otp.TIMEOUT:
            self.deadline = None
            await self._on_timer()
            return self._idle()
        await self._timer_if_due()
        if type(msg) is Committed:
            if not self.started:
                pass  # _start reads everything once the storage is back
            elif woken or self._concerns(msg):  # woken: later commits were not sent to it
                await self._pump_or_retry()
            elif self.cursor.caught_up and self.stream is None:
                self.cursor.skip_past(msg.last_position)  # nothing for us in it
        elif type(msg) is otp.Down and msg.pid == self.subscriber:
            self._ref = None
            named = self.cell.subscriber, self.cell.waiting
            self._follow(None, waiting=True)  # until save_subscription names a new one
            if named[0] != msg.pid:  # the tracker named the next subscriber already
                self.cell.subscriber, self.cell.waiting = named
            self._rewind()
        else:
            return await super().handle_info(msg)
        return self._idle()

    async def _on_timer(self) -> None:
        """Store the position, and start (or read) again if the storage was restarting."""
        await self._save_position()
        if not self.started:
            await self._start()
        elif self.retrying:
            await self._pump_or_retry()

    async def _timer_if_due(self) -> None:
        """Run the timer work if it is due: a steady flow of messages (commit
        notifications, acks) would otherwise keep postponing the idle timeout."""
        if self.deadline is not None and trio.current_time() >= self.deadline:
            self.deadline = None
            await self._on_timer()

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not isinstance(request, EmitterRequest):
            raise ValueError(f"EmitterWorker: unknown request {request!r}")
        if self.unheard is not None:
            if type(request) is GetState:  # a question (the leader's monitor asks often):
                self._take_unheard_position()  # answered from the place the commits moved
            else:
                self._wake()
        await self._timer_if_due()
        match request:
            case Acknowledge(position):
                error = await self._ack(position)
                return otp.Reply(error, timeout=self._timeout())
            case SetSubscriber(subscriber):
                self._follow(subscriber)
                self._rewind()
                await self._pump_or_retry()
            case DetachSubscriber():  # the subscriber stops listening: wait for a new one
                self._follow(None, waiting=True)
                self._rewind()
            case GetState():
                return otp.Reply(EmitterState(self.d, self.subscriber, self.position,
                                              len(self.delivered), self.cursor.next),
                                 timeout=self._timeout())
            case _:
                assert_never(request)
        return otp.Reply(None, timeout=self._timeout())

    async def terminate(self, reason: Any) -> None:
        if self.unheard is not None:
            self._wake()
        await self._save_position()

    # -- hushed: broadcasting to nobody ----------------------------------------------------
    def _hush(self) -> None:
        """Nobody listens to this broadcasting ``$all`` subscription: leave the commit
        notifications, and let the commits move the position instead
        (:func:`exesdb.systems.commits.hush`) until a listener appears or a message
        comes."""
        pubsub.unsubscribe(pubsub_name(self.store_id, "system"), COMMITS)
        self.unheard = Unheard(otp.self(), self.events_pubsub, self.topic,
                               self.cursor.next - 1, tell_moves=self.d.persistent)
        hush(self.store_id, self.unheard)

    def _wake(self) -> None:
        """Take the commit notifications again, from the position the commits moved."""
        self._take_unheard_position()
        assert self.unheard is not None
        unhush(self.store_id, self.unheard)
        self.unheard = None
        pubsub.subscribe(pubsub_name(self.store_id, "system"), COMMITS)

    def _take_unheard_position(self) -> None:
        """What was committed while hushed was broadcast to nobody: the position moves
        past it, as :meth:`_pump` moves it when nobody listens."""
        assert self.unheard is not None
        position = self.unheard.position
        if position >= self.cursor.next:
            self.position = position
            self.cursor.skip_past(position)

    # -- the loop ----------------------------------------------------------------------------
    def _cursor(self) -> Cursor:
        """The subscription's place: in its stream, or in ``$all`` (filtered on the event
        type by the storage for ``by_event_type``), read from the store's open storage."""
        store_id, stream, by_type = self.store_id, self.stream, self.filter

        def head() -> int:
            return backend_of(store_id).last_position

        if stream is not None:
            def read_stream(start: int, count: int) -> Awaitable[list[EventRecord]]:
                return backend_of(store_id).read_stream(stream, start, count)

            return Cursor(read_stream, head, self.d.start_from, by_position=False)

        def read_all(start: int, count: int) -> Awaitable[list[EventRecord]]:
            return backend_of(store_id).read_all(start, count, filter=by_type)

        return Cursor(read_all, head, self.d.start_from, by_position=True, past_head=True)

    def _follow(self, subscriber: otp.Pid | None, waiting: bool = False) -> None:
        """Deliver to ``subscriber`` (monitored), or wait for one; a persistent
        subscription's cell records it, so that a restarted emitter does the same."""
        if self._ref is not None:
            otp.demonitor(self._ref, flush=True)
            self._ref = None
        self.subscriber = subscriber
        self.waiting = waiting and subscriber is None
        if self.d.persistent:
            self.cell.subscriber, self.cell.waiting = subscriber, self.waiting
        if subscriber is not None:
            self._ref = otp.monitor(subscriber)

    def _rewind(self) -> None:
        """Deliver again everything after the last acknowledged position."""
        self.delivered.clear()
        self.cursor.rewind(self.position + 1 if self.position is not None
                           else self.d.start_from)

    def _concerns(self, msg: Committed) -> bool:
        if self.stream is not None:
            return self.stream in msg.streams
        if self.d.type == "by_event_type" and self.d.selector not in msg.types:
            return False
        return msg.last_position >= self.cursor.next  # else read already

    async def _pump(self) -> None:
        """Read and deliver from the cursor's next position until caught up, blocked by
        unacknowledged events, or without a subscriber to wait for."""
        cursor = self.cursor
        cursor.caught_up = False
        if self.waiting:
            return
        while True:
            count = BATCH
            if self.subscriber is not None and self.d.persistent:
                count = min(count, MAX_IN_FLIGHT - len(self.delivered))
                if count <= 0:
                    return  # back-pressure: wait for acks
            if self.subscriber is None and self.stream is None and not registry.lookup(
                    self.events_pubsub, self.topic):
                # Broadcasting to nobody: the position moves on without reading, and
                # the commits move it from now on, until somebody listens.
                head = cursor.head()
                if head >= cursor.next:
                    self.position = head
                    cursor.skip_past(head)
                cursor.caught_up = True
                if self.unheard is None:
                    self._hush()
                return
            if self.unheard is not None:  # a listener came: the notifications again
                self._wake()
            try:
                events = await cursor.read(count)
            except StreamDeleted:
                log.warning("store %r: subscription %r: its stream was deleted",
                            self.store_id, self.d.name)
                return
            if events:
                self._deliver(events if self.match is None else
                              [e for e in events if self.match(e)], self._pos(events[-1]))
            if cursor.caught_up:
                return
            await trio.lowlevel.checkpoint()

    def _deliver(self, events: Sequence[EventRecord], last: int) -> None:
        if events:
            batch = Events(self.d.name, tuple(events), key=self.d.key)
            if self.subscriber is not None:
                otp.send(self.subscriber, batch)
                if self.d.persistent:
                    self.delivered.extend(self._pos(e) for e in events)
                return
            pubsub.broadcast(self.events_pubsub, self.topic, batch)
        if self.subscriber is None:
            self.position = last  # broadcast (or nothing matched): it moves on

    def _pos(self, event: EventRecord) -> int:
        return event.event_number if self.stream is not None else event.position

    async def _ack(self, position: int) -> Exception | None:
        """Acknowledge up to ``position``; the reply is None once the position is stored,
        :class:`exesdb.StoreUnavailable` if it could not be (the storage restarting)."""
        delivered = self.delivered
        while delivered and delivered[0] <= position:
            delivered.popleft()
        error = None
        if self.position is None or position > self.position:
            self.position = position
            error = await self._save_position()
        await self._pump_or_retry()
        return error

    async def _pump_or_retry(self) -> None:
        try:
            self.retrying = False
            await self._pump()
        except ExESDBError as exc:
            self._retry(exc)

    def _retry(self, exc: Exception) -> None:
        """The storage is restarting: try again after :data:`RETRY` seconds."""
        self.retrying = True
        log.debug("store %r: subscription %r: retrying: %s", self.store_id, self.d.name, exc)

    async def _save_position(self) -> Exception | None:
        """Store the position if it moved; return the error if it could not be stored
        (it is tried again on the next timer)."""
        position = self.position
        if not self.d.persistent or position is None or position == self.saved:
            return None
        try:
            # A leader-only write: in cluster mode fenced with this node's term, so a
            # leader that lost its lease without noticing cannot store it (StaleEpoch).
            await storage_writer.submit(writer_name(self.store_id), fence(
                self.store_id, SaveCheckpoint(self.d.name, position)))
            self.saved = position
        except (ExESDBError, otp.OTPError) as exc:  # the store restarts: store it later
            log.warning("store %r: subscription %r: position not stored: %s",
                        self.store_id, self.d.name, exc)
            return StoreUnavailable(self.store_id, f"position not stored: {exc}")
        return None

    def _timeout(self) -> float | None:
        """Seconds until the timer work is due: :data:`RETRY` while the storage restarts,
        :data:`CHECKPOINT_INTERVAL` while the position is not stored. The deadline is
        kept across messages, so that they do not postpone it."""
        if self.retrying or not self.started:
            interval = RETRY
        elif self.position != self.saved:
            interval = CHECKPOINT_INTERVAL
        else:
            self.deadline = None
            return None
        now = trio.current_time()
        if self.deadline is None or self.deadline > now + interval:
            self.deadline = now + interval
        return max(self.deadline - now, 0.0)

    def _idle(self) -> Any:
        timeout = self._timeout()
        return otp.NoReply(timeout=timeout) if timeout is not None else None


@attrs.frozen
class EmitterState:
    """What an emitter reports of itself (the :class:`GetState` request)."""

    definition: Definition
    subscriber: otp.Pid | None
    position: int | None
    in_flight: int
    next: int


def pool_name(store_id: str, key: Any) -> Any:
    """The name of the emitter pool of the subscription ``key``."""
    return partition_name(EmitterPool, store_id, key)


class EmitterPool(supervisor.Supervisor):
    """A subscription's pool: one EmitterWorker (one, for ordered delivery)."""

    async def init(self, store_id: str, definition: Definition,
                   cell: SubscriberCell) -> supervisor.Spec:
        name = emitter_name(store_id, definition.key)

        async def start() -> otp.Pid | None:
            return await gen_server.start_link(EmitterWorker, store_id, definition, cell,
                                               name=name)

        return supervisor.Spec([supervisor.ChildSpec(id=EmitterWorker, start=start,
                                                     shutdown=10.0)],
                               strategy="one_for_one", intensity=5, period=10)


@attrs.frozen
class PoolsStarted:
    """Broadcast on the store's system pub/sub (topic :data:`POOLS_TOPIC`) once the
    supervisor of the emitter pools runs."""

    store_id: str


POOLS_TOPIC: Final = "$emitter-pools"
"""The topic of :class:`PoolsStarted` on the store's system pub/sub."""


def emitter_pools_name(store_id: str) -> Any:
    """The partitioned supervisor that runs the store's emitter pools."""
    return partition_name(EmitterSystem, store_id, "pools")


class EmitterSystem(StoreSupervisor):
    """one_for_one: the partitioned dynamic supervisor of the store's emitter pools. Once
    it runs, it says so on the store's system pub/sub (:class:`PoolsStarted`), and the
    leader tracker starts the pools at once."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        name = emitter_pools_name(opts.store_id)
        system = pubsub_name(opts.store_id, "system")

        async def start() -> otp.Pid | None:
            pid = await partition_supervisor.start_link(partitions=PARTITIONS, name=name,
                                                        intensity=100, period=5)
            with contextlib.suppress(otp.NoProc):
                pubsub.broadcast(system, POOLS_TOPIC, PoolsStarted(opts.store_id))
            return pid

        return supervisor.Spec([ChildSpec(id=(child_spec_id(EmitterSystem, opts.store_id),
                                              "pools"), start=start, type="supervisor")])
