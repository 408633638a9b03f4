"""LeaderSystem: the store's subscriptions, and whether this node leads the store.

``LeaderSystem`` (rest_for_one) runs :class:`LeaderTracker`, then :class:`LeaderWorker`.
:class:`LeaderWorker` activates when its node leads the store (always, in ``single``
mode) and stands down when it stops leading; :class:`LeaderTracker` keeps the store's
subscriptions and one emitter pool per subscription (persistent ones while the node
leads) (:mod:`exesdb.systems.notification.emitters`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any, Final, TypeAlias, assert_never

import attrs
import trio

import otp
from otp import gen_server, partition_supervisor, pubsub, supervisor
from otp.lowlevel import NodeVar, on_exit

from ...errors import ExESDBError, InvalidArgument, StoreUnavailable, SubscriptionNotFound
from ...events import EventRecord
from ...naming import genserver_name
from ...options import StoreOptions
from ...storage import writer as storage_writer
from ...subscriptions import (
    DEFAULT_NAME,
    TRANSIENT,
    Subscription,
    SubscriptionLost,
    single_stream,
)
from ..processes import StoreServer, StoreSupervisor
from ..pubsub import pubsub_name, store_log
from ..store import backend_of, is_leader, writer_name
from .emitters import (
    POOLS_TOPIC,
    Definition,
    EmitterPool,
    PoolsStarted,
    SubscriberCell,
    detach_subscriber,
    emitter_name,
    emitter_pools_name,
    forward_ack,
    get_state,
    pool_name,
    set_subscriber,
)

__all__ = [
    "RETRY",
    "AckEvent",
    "Activate",
    "ComputeHealth",
    "Deactivate",
    "Detach",
    "IsActive",
    "Lead",
    "LeaderSystem",
    "LeaderTracker",
    "LeaderWorker",
    "LeaderWorkerRequest",
    "ListSubscriptions",
    "StandDown",
    "Subscribe",
    "TrackerRequest",
    "Unsubscribe",
    "activate",
    "call_tracker",
    "canonical_selector",
    "deactivate",
    "is_active",
    "transient_key",
]

log: Final = logging.getLogger("exesdb.systems.notification")


# -- the tracker's requests ------------------------------------------------------------------


@attrs.frozen
class Subscribe:
    """Create a subscription, or name the new subscriber of a persistent one (what
    :func:`exesdb.gateway.save_subscription` sends, its arguments validated). Reply: None."""

    type: str
    selector: Any
    name: str
    start_from: int
    subscriber: otp.Pid | None


@attrs.frozen
class Unsubscribe:
    """Remove the persistent subscription ``name`` (and its stored position), or the
    transient ones of ``type`` and ``selector`` (of ``subscriber``, or all of them when
    None). Reply: None, or :class:`exesdb.SubscriptionNotFound` for an unknown name."""

    type: str
    selector: Any
    name: str
    subscriber: otp.Pid | None


@attrs.frozen
class ListSubscriptions:
    """Reply: every subscription of the store, a sorted list of :class:`exesdb.Subscription`."""


@attrs.frozen
class AckEvent:
    """``subscriber`` acknowledges ``event`` and every earlier one of the persistent
    subscription ``name``. Reply: None once the position is stored;
    :class:`exesdb.InvalidArgument` when ``subscriber`` is not the subscription's subscriber
    (None for one that broadcasts), :class:`exesdb.SubscriptionNotFound` for an unknown
    name. On a transient subscription it does nothing."""

    name: str
    subscriber: otp.Pid | None
    event: EventRecord


@attrs.frozen
class Detach:
    """``subscriber`` stops listening to the persistent subscription ``name``, which then
    waits for its next subscriber (as when a subscriber dies). Reply: None."""

    name: str
    subscriber: otp.Pid


@attrs.frozen
class ComputeHealth:
    """Reply: each subscription's health, as :func:`~exesdb.systems.notification.health`
    describes it."""


@attrs.frozen
class Lead:
    """From the leader worker: this node leads the store, so the default subscription is
    created and every subscription's emitters start. Reply: None."""


@attrs.frozen
class StandDown:
    """From the leader worker: this node no longer leads the store; every emitter pool
    stops (the subscriptions stay). Reply: None."""


TrackerRequest: TypeAlias = (
    Subscribe | Unsubscribe | ListSubscriptions | AckEvent | Detach | ComputeHealth | Lead
    | StandDown
)
"""Every request :class:`LeaderTracker` serves."""


async def call_tracker(store_id: str, request: TrackerRequest, timeout: float = 5.0) -> Any:
    """Send ``request`` to the store's :class:`LeaderTracker` and return its reply; an
    error of the store (:class:`exesdb.ExESDBError`) comes back as the reply, not raised."""
    return await gen_server.call(genserver_name(LeaderTracker, store_id), request, timeout)


@attrs.define
class _Running:
    """The tracker's record of one subscription: what it is, who it delivers to, its pool."""

    definition: Definition
    cell: SubscriberCell
    pool: otp.Pid | None = None
    watch: otp.Ref | None = None  # monitor of a transient subscription's subscriber
    with_subscriber: bool = False  # stored: it delivers to a subscriber, or waits for one


RETRY: Final = 0.1
"""Seconds between two attempts to start the emitters that could not start."""

_cells: NodeVar[dict[tuple[str, str], dict[str, SubscriberCell]]] = NodeVar(
    "exesdb.subscriber_cells", factory=dict)


def _node_cells(opts: StoreOptions) -> dict[str, SubscriberCell]:
    """The subscriber cells of the store's persistent subscriptions, by name, kept on the
    node (not in a process), so that the subscriber of each (or its waiting for one)
    outlives restarts of the tracker, of the emitters and of the whole store."""
    return _cells.get().setdefault((opts.store_id, os.fspath(opts.store_dir)), {})


class LeaderTracker(StoreServer):
    """Keeps the store's subscriptions and one emitter pool per subscription (per
    persistent one only while this node leads: in cluster mode the followers run only
    their own subscribers' transient ones): it starts, updates and stops pools as
    subscriptions are saved and removed, starts again any pool that ended, stands the
    persistent ones down when the node stops leading, and when it leads again takes the
    definitions other nodes stored meanwhile. Persistent definitions are stored, and their
    subscribers kept on the node (so a restart of the store on the same node delivers to
    the same live subscriber, or keeps waiting for one; on a fresh node a stored
    subscription starts without subscriber, broadcasting); transient ones live here, in
    this process, until their subscriber dies or they are removed, and end with it.

    Ending with it, a transient subscription is not lost silently, however the tracker
    ends (stopped, crashed, killed, or shut down by a restart of the store's core): an exit
    hook (:func:`otp.lowlevel.on_exit`, which runs synchronously as the process ends, killed
    too, before anything can observe its exit) stops each transient subscription's
    emitter and pool (killed, so that nothing of it is delivered after) and sends its
    subscriber process :class:`exesdb.subscriptions.SubscriptionLost`. A hook rather than
    monitors: the subscribers need no process of their own watching the tracker, and
    nothing runs between the tracker's end and the message. A new tracker never takes over
    a transient pool (see :meth:`_adopt`); the subscriber saves the subscription again.

    Requests: :data:`TrackerRequest`, from the gateway (:class:`Subscribe`,
    :class:`Unsubscribe`, :class:`ListSubscriptions`, :class:`AckEvent`, :class:`Detach`),
    the health monitor (:class:`ComputeHealth`) and the leader worker (:class:`Lead`,
    :class:`StandDown`); errors of the store are replied as values.
    """

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        otp.trap_exits(True)
        self.subs: dict[Any, _Running] = {}
        self.cells = _node_cells(opts)
        pubsub.subscribe(pubsub_name(opts.store_id, "system"), POOLS_TOPIC)
        self.active = False
        self.missing = False  # some pools could not start: try again after RETRY
        self.retry_at: float | None = None  # when (see _retry_timeout)
        self.loaded = False
        on_exit(otp.self(), self._end_transients)
        return otp.Continue("load")

    async def handle_continue(self, arg: Any) -> Any:
        await self._load()
        return self._idle()

    async def _load(self, adopt: bool = True) -> None:
        """Load the stored definitions (again after :data:`RETRY` s while the storage
        restarts) and, with ``adopt`` (when the tracker starts), take over the pools
        already running."""
        try:
            definitions = await backend_of(self.store_id).list_subscriptions()
        except ExESDBError as exc:
            log.debug("store %r: subscriptions not loaded yet: %s", self.store_id, exc)
            self.missing = True
            return
        for d in definitions:
            if d.name not in self.subs:
                definition = Definition(d.type, d.selector, d.name, d.start_from, d.name,
                                        True)
                # A subscription that delivers to a subscriber waits for one after a
                # restart of the node, rather than broadcast past what was not acked.
                cell = self.cells.setdefault(
                    d.name, SubscriberCell(None, waiting=d.with_subscriber))
                self.subs[d.name] = _Running(definition, cell,
                                             with_subscriber=d.with_subscriber)
        self.loaded = True
        if adopt:
            await self._adopt()

    async def _adopt(self) -> None:
        """Take over the pools of persistent subscriptions left running by a previous
        tracker (a killed one; their subscribers are in the node's cells), and stop those of
        transient subscriptions, which ended with it (see the class docstring)."""
        try:
            partitions = partition_supervisor.partitions(emitter_pools_name(self.store_id))
        except otp.NoProc:
            return
        for partition in partitions:
            if partition is None:
                continue
            for _, pool, _ in await otp.dynamic_supervisor.which_children(partition):
                if pool is None:
                    continue
                try:
                    [(_, worker, _)] = await otp.supervisor.which_children(pool)
                    if worker is None:
                        continue
                    state = await get_state(worker)
                except (otp.OTPError, ValueError):
                    continue
                d = state.definition
                if not d.persistent:  # it ended with the tracker that held it (its
                    # subscriber was told so): it is not taken over
                    with contextlib.suppress(otp.NoProc, otp.ServerExited):
                        await otp.supervisor.stop(pool)
                    continue
                running = self.subs.get(d.key)
                if running is None:
                    continue  # removed meanwhile: the next reconcile stops it
                running.pool = pool
                otp.link(pool)

    # -- requests ----------------------------------------------------------------------------
    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not isinstance(request, TrackerRequest):
            return await super().handle_call(request, from_)
        await self._retry_if_due()
        if not self.loaded and not isinstance(request, Lead | StandDown):
            return otp.Reply(StoreUnavailable(self.store_id, "subscriptions are loading"),
                             timeout=self._retry_timeout())
        try:
            return await self._serve(request, from_)
        except ExESDBError as exc:
            return otp.Reply(exc, timeout=self._retry_timeout())
        except otp.OTPError as exc:  # the writer or an emitter restarting
            return otp.Reply(StoreUnavailable(self.store_id, str(exc)),
                             timeout=self._retry_timeout())

    async def _serve(self, request: TrackerRequest, from_: gen_server.From) -> Any:
        """Serve ``request``; after a change, start the pools that should run."""
        match request:
            case Subscribe(kind, selector, name, start_from, subscriber):
                await self._save(kind, selector, name, start_from, subscriber)
            case Unsubscribe(kind, selector, name, subscriber):
                await self._remove(kind, selector, name, subscriber)
            case ListSubscriptions():
                return otp.Reply(await self._list(), timeout=self._retry_timeout())
            case AckEvent(name, subscriber, event):
                result = self._ack(name, subscriber, event, from_)
                if isinstance(result, otp.NoReply):
                    return result
                return otp.Reply(result, timeout=self._retry_timeout())
            case Detach(name, subscriber):
                await self._detach(name, subscriber)
            case ComputeHealth():
                return otp.Reply(await self._health(), timeout=self._retry_timeout())
            case Lead():
                self.active = True  # _reconcile creates the default subscription
                # Cluster mode: take the definitions stored while another node led (the
                # pools running are this tracker's own: nothing to adopt).
                await self._load(adopt=False)
            case StandDown():  # persistent pools stop; transient ones serve this node's
                self.active = False  # own subscribers, leader or not
                for running in self.subs.values():
                    if running.definition.persistent:
                        await self._stop_pool(running)
                return otp.Reply(None, timeout=self._retry_timeout())
            case _:
                assert_never(request)
        await self._reconcile()
        return otp.Reply(None, timeout=self._retry_timeout())

    async def _save(self, type: str, selector: Any, name: str, start_from: int,
                    subscriber: otp.Pid | None) -> None:
        if name != TRANSIENT:
            running = self.subs.get(name)
            if running is None:
                await storage_writer.save_subscription(
                    writer_name(self.store_id), name, type, selector, start_from,
                    subscriber is not None, timeout=self.opts.timeout_s)
                definition = Definition(type, selector, name, start_from, name, True)
                cell = self.cells[name] = SubscriberCell(subscriber)
                self.subs[name] = _Running(definition, cell,
                                           with_subscriber=subscriber is not None)
                return
            if (subscriber is not None) != running.with_subscriber:  # store the new mode
                d = running.definition
                await storage_writer.save_subscription(
                    writer_name(self.store_id), name, d.type, d.selector, d.start_from,
                    subscriber is not None, timeout=self.opts.timeout_s)
                running.with_subscriber = subscriber is not None
            # An emitter restarting meanwhile reads the cell when it starts.
            running.cell.subscriber, running.cell.waiting = subscriber, False
            if running.pool is not None and otp.is_alive(running.pool):
                with contextlib.suppress(otp.NoProc, otp.ServerExited):
                    await set_subscriber(emitter_name(self.store_id, name), subscriber,
                                         self.opts.timeout_s)
            return
        key = transient_key(type, selector, subscriber)
        if key in self.subs:
            return
        definition = Definition(type, selector, name, start_from, key, False)
        running = self.subs[key] = _Running(definition, SubscriberCell(subscriber))
        if subscriber is not None:
            running.watch = otp.monitor(subscriber)

    async def _remove(self, type: str, selector: Any, name: str,
                      subscriber: otp.Pid | None) -> None:
        if name != TRANSIENT:
            running = self.subs.pop(name, None)
            if running is None:
                raise SubscriptionNotFound(self.store_id, name)
            await self._stop_pool(running)
            try:
                await storage_writer.delete_subscription(writer_name(self.store_id), name,
                                                         timeout=self.opts.timeout_s)
            except BaseException:
                self.subs[name] = running  # still stored: it runs again
                raise
            self.cells.pop(name, None)
            return
        canonical = canonical_selector(selector)
        for key, running in list(self.subs.items()):
            d = running.definition
            if (not d.persistent and d.type == type and canonical_selector(d.selector)
                    == canonical and (subscriber is None or running.cell.subscriber ==
                                      subscriber)):
                del self.subs[key]
                await self._stop_pool(running)

    async def _list(self) -> list[Subscription]:
        out = []
        checkpoints = await backend_of(self.store_id).list_checkpoints()
        for running in self.subs.values():
            d = running.definition
            position = checkpoints.get(d.name) if d.persistent else None
            if running.pool is not None and otp.is_alive(running.pool):
                try:
                    state = await get_state(emitter_name(self.store_id, d.key),
                                            self.opts.timeout_s)
                    position = state.position
                except otp.OTPError:
                    pass
            out.append(Subscription(d.type, d.selector, d.name, d.start_from, position,
                                    running.cell.subscriber))
        return sorted(out, key=lambda s: (s.name, s.type, canonical_selector(s.selector)))

    async def _health(self) -> dict[str, dict[str, Any]]:
        backend = backend_of(self.store_id)
        head_all = backend.last_position
        report = {}
        for sub in await self._list():
            key = sub.name if sub.name != TRANSIENT else (
                f"{TRANSIENT}:{sub.type}:{canonical_selector(sub.selector)}:{sub.subscriber!r}")
            stream = single_stream(sub.type, sub.selector)
            head = head_all if stream is None else await backend.stream_version(stream)
            if sub.name != TRANSIENT:
                running = self.subs.get(sub.name)
            else:
                running = self.subs.get(transient_key(sub.type, sub.selector, sub.subscriber))
            in_flight = 0
            alive = running is not None and running.pool is not None and otp.is_alive(
                running.pool)
            if alive and running is not None:
                try:
                    state = await get_state(
                        emitter_name(self.store_id, running.definition.key),
                        self.opts.timeout_s)
                    in_flight = state.in_flight
                except otp.OTPError:
                    alive = False
            position = sub.position if sub.position is not None else sub.start_from - 1
            report[key] = {
                "position": sub.position, "head": head, "lag": max(head - position, 0),
                "subscriber": sub.subscriber,
                "subscriber_alive": sub.subscriber is not None and otp.is_alive(sub.subscriber),
                "in_flight": in_flight, "running": alive,
            }
        return report

    def _ack(self, name: str, subscriber: otp.Pid | None, event: EventRecord,
             from_: gen_server.From) -> Any:
        if name == TRANSIENT:
            return None  # nothing to acknowledge
        running = self.subs.get(name)
        if running is None:
            return SubscriptionNotFound(self.store_id, name)
        d = running.definition
        if not d.persistent:
            return None
        if subscriber != running.cell.subscriber:
            return InvalidArgument(
                f"subscriber: only the subscriber of a subscription acknowledges its "
                f"events; {name!r} delivers to {running.cell.subscriber!r}, not "
                f"{subscriber!r}")
        single = single_stream(d.type, d.selector) is not None
        position = event.event_number if single else event.position
        forward_ack(emitter_name(self.store_id, name), position, from_)
        return otp.NoReply(timeout=self._retry_timeout())  # the emitter answers

    async def _detach(self, name: str, subscriber: otp.Pid) -> None:
        """The subscriber of the persistent subscription ``name`` stops listening: it waits
        for a new one, as when a subscriber dies."""
        running = self.subs.get(name)
        if running is None or running.cell.subscriber != subscriber:
            return
        running.cell.subscriber, running.cell.waiting = None, True
        if running.pool is not None and otp.is_alive(running.pool):
            with contextlib.suppress(otp.NoProc, otp.ServerExited):
                await detach_subscriber(emitter_name(self.store_id, name),
                                        self.opts.timeout_s)

    async def _ensure_default(self) -> None:
        if DEFAULT_NAME in self.subs:
            return
        backend = backend_of(self.store_id)
        head = backend.last_position
        await storage_writer.save_subscription(writer_name(self.store_id), DEFAULT_NAME,
                                               "by_stream", "$all", head + 1,
                                               timeout=self.opts.timeout_s)
        definition = Definition("by_stream", "$all", DEFAULT_NAME, head + 1, DEFAULT_NAME,
                                True)
        cell = self.cells[DEFAULT_NAME] = SubscriberCell(None)
        self.subs[DEFAULT_NAME] = _Running(definition, cell)

    # -- pools -----------------------------------------------------------------------------
    async def _reconcile(self) -> None:
        """Start the pool of every subscription that should run and does not; those that
        cannot start yet (the emitter supervisor restarting) are tried again after
        :data:`RETRY` seconds."""
        missing = not self.loaded
        if self.loaded:
            if self.active:
                try:
                    await self._ensure_default()
                except (ExESDBError, otp.OTPError) as exc:
                    log.debug("store %r: default subscription not saved yet: %s",
                              self.store_id, exc)
                    missing = True
            for running in self.subs.values():
                if running.pool is not None and otp.is_alive(running.pool):
                    continue
                if running.definition.persistent and not self.active:
                    continue  # persistent ones run on the leader only
                try:
                    running.pool = await self._start_pool(running)
                except (otp.OTPError, ExESDBError) as exc:
                    log.debug("store %r: emitter of %r not started yet: %s", self.store_id,
                              running.definition.name, exc)
                    missing = True
        self.missing = missing

    def _retry_timeout(self) -> float | None:
        """Seconds until the next attempt at what could not be done yet; the deadline is
        kept across requests, so that a steady flow of them does not postpone it."""
        if not self.missing:
            self.retry_at = None
            return None
        now = trio.current_time()
        if self.retry_at is None:
            self.retry_at = now + RETRY
        return max(self.retry_at - now, 0.0)

    async def _retry_if_due(self) -> None:
        if self.retry_at is not None and trio.current_time() >= self.retry_at:
            self.retry_at = None
            if not self.loaded:
                await self._load()
            await self._reconcile()

    def _idle(self) -> Any:
        timeout = self._retry_timeout()
        return otp.NoReply(timeout=timeout) if timeout is not None else None

    async def _start_pool(self, running: _Running) -> otp.Pid:
        d = running.definition
        name = pool_name(self.store_id, d.key)
        existing = otp.whereis(name)
        if existing is not None:
            otp.link(existing)
            return existing
        store_id, cell = self.store_id, running.cell

        async def start(*_extra: Any) -> otp.Pid | None:
            return await otp.supervisor.start_link(EmitterPool, store_id, d, cell, name=name)

        spec = otp.ChildSpec(id=d.key, start=start, restart="temporary", type="supervisor")
        pid = await partition_supervisor.start_child(emitter_pools_name(self.store_id),
                                                     d.key, spec)
        if pid is None:
            raise otp.NoProc(name)
        otp.link(pid)  # its end reaches us as an Exit, and ours stops it
        return pid

    async def _stop_pool(self, running: _Running) -> None:
        if running.watch is not None:
            otp.demonitor(running.watch, flush=True)
            running.watch = None
        pool, running.pool = running.pool, None
        if pool is not None and otp.is_alive(pool):
            otp.unlink(pool)
            with contextlib.suppress(otp.NoProc, otp.ServerExited):
                await otp.supervisor.stop(pool)

    async def handle_info(self, msg: Any) -> Any:
        if type(msg) is otp.Down:  # a transient subscription's subscriber ended
            for key, running in list(self.subs.items()):
                if running.watch is msg.ref:
                    running.watch = None
                    del self.subs[key]
                    await self._stop_pool(running)
        elif type(msg) is otp.Exit:  # a pool ended: start it again if it should run
            for running in self.subs.values():
                if running.pool == msg.pid:
                    running.pool = None
        elif type(msg) is not PoolsStarted and msg is not otp.TIMEOUT:
            return await super().handle_info(msg)
        self.retry_at = None
        if not self.loaded:
            await self._load()
        await self._reconcile()
        return self._idle()

    async def terminate(self, reason: Any) -> None:
        for running in self.subs.values():
            await self._stop_pool(running)

    def _end_transients(self, reason: Any) -> None:
        """Exit hook (see the class docstring): the transient subscriptions end with this
        process. Each one's emitter and pool are killed, then its subscriber process is
        sent :class:`SubscriptionLost`, so that no event of it comes after the message."""
        for running in self.subs.values():
            d = running.definition
            if d.persistent:
                continue
            processes = [running.pool]  # by name too: a pool whose start was under way
            with contextlib.suppress(otp.OTPError):  # the registry may be gone already
                processes += [otp.whereis(pool_name(self.store_id, d.key)),
                              otp.whereis(emitter_name(self.store_id, d.key))]
            for pid in processes:
                if pid is not None:
                    otp.exit(pid, otp.KILL)
            subscriber = running.cell.subscriber
            if subscriber is not None:
                otp.send(subscriber, SubscriptionLost(self.store_id, d.type, d.selector,
                                                      d.name, reason))


def canonical_selector(selector: Any) -> str:
    """A selector as a hashable, canonical string (mappings as sorted JSON)."""
    return json.dumps(selector, sort_keys=True, separators=(",", ":"), default=str)


def transient_key(type: str, selector: Any, subscriber: otp.Pid | None) -> Any:
    """The key of a transient subscription: its type, selector and subscriber."""
    return (TRANSIENT, type, canonical_selector(selector), subscriber)


@attrs.frozen
class Activate:
    """This node leads the store (:func:`activate`). Reply: True."""


@attrs.frozen
class Deactivate:
    """This node no longer leads the store (:func:`deactivate`). Reply: True."""


@attrs.frozen
class IsActive:
    """Reply: whether the leader worker is active (:func:`is_active`)."""


LeaderWorkerRequest: TypeAlias = Activate | Deactivate | IsActive
"""Every request :class:`LeaderWorker` serves."""


class LeaderWorker(StoreServer):
    """Active while this node leads the store: it asks :class:`~exesdb.systems.store.StoreCluster`
    when it starts, and :class:`Activate` / :class:`Deactivate` (:data:`LeaderWorkerRequest`)
    follow leadership changes, which it passes on to the :class:`LeaderTracker`."""

    async def init(self, opts: StoreOptions) -> Any:
        await super().init(opts)
        self.active = False
        # In init, so that when start_store returns the store leads: its default
        # subscription is created (at its end) and its emitters run.
        if await is_leader(self.store_id, self.opts.timeout_s):
            await self._activate()
        return None

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        if not isinstance(request, LeaderWorkerRequest):
            return await super().handle_call(request, from_)
        match request:
            case Activate():
                await self._activate()
                return True
            case Deactivate():
                self.active = False
                await call_tracker(self.store_id, StandDown(), self.opts.timeout_s)
                log.info("store %r: this node no longer leads", self.store_id)
                store_log(self.store_id, logging.INFO, "this node no longer leads the store")
                return True
            case IsActive():
                return self.active
            case _:
                assert_never(request)

    async def _activate(self) -> None:
        """Create the default subscription and start the emitters of every subscription."""
        # The tracker keeps trying what it could not do yet (the storage restarting).
        await call_tracker(self.store_id, Lead(), self.opts.timeout_s)
        if not self.active:
            self.active = True
            log.info("store %r: this node leads", self.store_id)
            store_log(self.store_id, logging.INFO, "this node leads the store")


async def activate(store_id: str, timeout: float = 5.0) -> None:
    """ExESDB's ``LeaderWorker.activate(store)``: this node leads ``store_id`` (the default
    subscription is created, every subscription's emitters start). Idempotent; in
    ``single`` mode it has run when the store started."""
    await gen_server.call(genserver_name(LeaderWorker, store_id), Activate(), timeout)


async def deactivate(store_id: str, timeout: float = 5.0) -> None:
    """This node no longer leads ``store_id``: every emitter pool stands down."""
    await gen_server.call(genserver_name(LeaderWorker, store_id), Deactivate(), timeout)


async def is_active(store_id: str, timeout: float = 5.0) -> bool:
    """Whether the store's leader worker on this node is active."""
    return bool(await gen_server.call(genserver_name(LeaderWorker, store_id), IsActive(),
                                      timeout))


class LeaderSystem(StoreSupervisor):
    """rest_for_one: LeaderTracker, then LeaderWorker."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec([LeaderTracker.child_spec(opts), LeaderWorker.child_spec(opts)],
                               strategy="rest_for_one")
