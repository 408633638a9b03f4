"""LeaderElector: which node leads the store, decided by PostgreSQL.

Each node runs one :class:`LeaderElector` per store. It holds a database session of its
own (:class:`~exesdb.storage.postgres_cluster.ElectorSession`) and, every
``election_interval_ms``, either tries for the store's leader lock (a session-level
advisory lock: at most one session in the database holds it) or, holding it, confirms
it still does (the heartbeat).

* **Taking office**: the node that gets the lock starts a new leader epoch
  (:meth:`~exesdb.storage.postgres.PostgresBackend.advance_epoch`, which waits for the
  previous leader's fenced writes in flight), records the term
  (:func:`exesdb.systems.leadership.begin_term`: from then on its leader-only writes carry
  that epoch) and activates the store's Leader subsystem
  (:func:`exesdb.systems.notification.leader.activate`: the default subscription, the
  persistent subscriptions' emitters, acks and checkpoints).
* **Stepping down**, when the session fails in any way, when the lock is found gone, when
  a heartbeat did not succeed within the lease (``leader_lease_ms``, counted from the
  start of the last successful one), or when the elector stops: the term ends
  (:func:`~exesdb.systems.leadership.end_term`), the Leader subsystem is deactivated
  (:func:`~exesdb.systems.notification.leader.deactivate`), and only then the session is
  closed, releasing the lock.
* **The database ends a stalled leader's session**: the session runs with
  ``idle_session_timeout`` equal to the lease, so a holder that stops heartbeating
  (paused, hung, cut off) loses the lock about one lease after its last heartbeat, and
  another node takes office within a lease plus an election interval. A leader that
  lost the lock without noticing (it was paused) still has its old epoch: its fenced
  writes fail with :class:`~exesdb.errors.StaleEpoch`, and it steps down as soon as it
  runs again (its lease has expired).

Each node's heartbeat starts before the lease is counted and the server counts its idle
time from the end of that heartbeat, so a leader that runs always steps down before the
database frees its lock. Database calls never wait past the lease (the session is
severed, see :mod:`exesdb.storage.postgres_watchdog`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import trio

import otp
from otp.lowlevel import on_exit

from ...errors import ExESDBError
from ...options import StoreOptions
from ...storage.postgres import PostgresBackend
from ...storage.postgres_cluster import ClusterQueries, ElectorSession
from ...storage.postgres_schema import schema_name
from ..leadership import begin_term, end_term, leadership, track
from ..notification.leader import activate, deactivate, is_active
from ..pubsub import store_log
from ..store import backend_of
from .membership import session_config
from .monitor import refresh
from .periodic import Periodic

__all__ = ["LeaderElector"]

log: Final = logging.getLogger("exesdb.systems.cluster")


async def _activate(store_id: str, node: str, timeout: float) -> None:
    """Activate the store's leader on this node (a process of its own, see
    :meth:`LeaderElector._take_office`)."""
    try:
        await activate(store_id, timeout)
    except otp.OTPError as exc:  # the leader worker restarts: it asks is_leader itself
        log.warning("store %r: node %s: activating the leader failed: %s", store_id, node,
                    exc)


class LeaderElector(Periodic):
    """Competes for the store's leadership on this node (see the module docstring).

    State: ``leading`` (a term is running), ``epoch`` (its epoch), ``confirmed`` (trio
    time of the start of the last heartbeat that confirmed the lock).
    """

    async def init(self, opts: StoreOptions) -> Any:
        result = await super().init(opts)
        otp.trap_exits(True)  # so that a shutdown steps down in order
        record = leadership(opts.store_id) or track(opts.store_id, opts.cluster_node_name)
        self.node = record.node
        self.lease = opts.leader_lease_ms / 1000
        self.session = ElectorSession(
            session_config(opts, "elector", idle_session_timeout=self.lease),
            ClusterQueries(schema_name(opts.store_id)), record.node, record.instance)
        self.leading = False
        self.epoch = 0
        self.confirmed = 0.0
        self.failing = False
        on_exit(otp.self(), self._on_exit)
        # Whatever a previous elector of this node left running stands down first.
        end_term(opts.store_id)
        try:
            active = await is_active(opts.store_id, opts.timeout_s)
        except otp.OTPError:  # not running (restarting): it starts inactive
            active = False
        if active:
            await self._deactivate()
        return result

    async def tick(self) -> None:
        started = trio.current_time()
        if self.leading and started - self.confirmed > self.lease:
            await self._step_down("its lease expired before a heartbeat confirmed it")
        budget = self.confirmed + self.lease - started if self.leading else self.lease
        try:
            holding = await trio.to_thread.run_sync(self.session.poll, max(budget, 0.05))
        except ExESDBError as exc:
            if self.leading:
                await self._step_down(f"its database session failed: {exc}")
            elif not self.failing:
                log.warning("store %r: node %s: the leader election cannot reach the "
                            "database (retrying): %s", self.store_id, self.node, exc)
            self.failing = True
            return
        if self.failing:
            log.info("store %r: node %s: the leader election reaches the database again",
                     self.store_id, self.node)
        self.failing = False
        if self.leading:
            if holding:
                self.confirmed = started
            else:
                await self._step_down("it no longer holds the leader lock")
        elif holding:
            await self._take_office(started)

    async def _take_office(self, started: float) -> None:
        """This session got the lock: start a new epoch and activate the leader."""
        try:
            backend = backend_of(self.store_id)
            if not isinstance(backend, PostgresBackend):
                raise ExESDBError(f"store {self.store_id!r} is not in PostgreSQL")
            epoch = await backend.advance_epoch(self.node)
        except ExESDBError as exc:
            log.warning("store %r: node %s: got the leader lock but could not start an "
                        "epoch: %s", self.store_id, self.node, exc)
            await self._release()
            return
        if trio.current_time() - started > self.lease:  # too late: the lock may be gone
            log.warning("store %r: node %s: starting epoch %d took longer than the lease",
                        self.store_id, self.node, epoch)
            await self._release()
            return
        self.leading, self.epoch, self.confirmed = True, epoch, started
        begin_term(self.store_id, epoch)
        log.info("store %r: node %s leads, epoch %d", self.store_id, self.node, epoch)
        store_log(self.store_id, logging.INFO, f"node {self.node} leads, epoch {epoch}")
        refresh(self.store_id)
        # In a process of its own, so that the heartbeats go on while the leader starts
        # its emitters; a deactivation sent later reaches the leader worker after it.
        otp.spawn_link(_activate, self.store_id, self.node, self.opts.timeout_s)

    async def on_message(self, msg: Any) -> Any:
        if type(msg) is otp.Exit:  # an activation process ended (it logs its failure)
            return None
        return await super().on_message(msg)

    async def _step_down(self, why: str, level: int = logging.WARNING) -> None:
        """End the term: deactivate the leader, then release the lock."""
        if not self.leading:
            return
        self.leading = False
        end_term(self.store_id)
        log.log(level, "store %r: node %s steps down (epoch %d): %s", self.store_id,
                self.node, self.epoch, why)
        store_log(self.store_id, level, f"node {self.node} steps down: {why}")
        await self._deactivate()
        await self._release()
        refresh(self.store_id)

    async def _deactivate(self) -> None:
        try:
            await deactivate(self.store_id, self.opts.timeout_s)
        except otp.OTPError as exc:  # not running (restarting): it starts inactive
            log.debug("store %r: deactivating the leader: %s", self.store_id, exc)

    async def _release(self) -> None:
        """Close the session: the lock, if held, is released."""
        await trio.to_thread.run_sync(self.session.close)

    async def terminate(self, reason: Any) -> None:
        await self._step_down("it stops", logging.INFO)
        await self._release()

    def _on_exit(self, reason: Any) -> None:
        """However the process ends (killed too): the term ends and the session is
        severed at once (the database releases the lock), then closed in a thread."""
        end_term(self.store_id)
        self.session.sever()
        threading.Thread(target=self.session.close, daemon=True,
                         name=f"exesdb {self.store_id} elector close").start()
