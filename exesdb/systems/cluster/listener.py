"""PgListener: other nodes' commits, turned into this node's commit signal.

Every append of the store, on any node, sends a commit notice
(:mod:`exesdb.storage.postgres_notify`) when its transaction commits. The
:class:`PgListener` holds a ``LISTEN`` session on the store's channel
(:class:`~exesdb.storage.postgres_cluster.ListenSession`) and turns each notice of
another node into what this node's own writer does after a commit: it advances the
storage's ``last_position`` (:meth:`~exesdb.storage.postgres.PostgresBackend.saw_committed`)
and calls :func:`exesdb.systems.commits.notify_commit` with a
:class:`~exesdb.systems.commits.Committed` naming the streams and event types appended,
which wakes the emitters and the gRPC subscriptions waiting on this node.

Guarantees:

* **Nothing is skipped**: the listener keeps the highest position it signalled; a notice
  that does not follow on (a notice missed, or one too large to name its streams) makes it
  read the positions in between from the store to learn their streams and types, and
  signal them.
* **After every (re)connection it signals once**: it reads the store's head and signals
  whatever committed since its last signal, so everyone catches up with what happened
  while it was not listening.
* A lost notice costs latency, never an event: readers read what they deliver from the
  store; a notice only wakes them. Losing the database, the listener retries every
  ``election_interval_ms``.

The socket is waited on by a small linked process (:func:`_watch`), so the listener
itself stays a gen_server that answers its supervisor at once. The watcher reads the
notices on the trio thread as soon as the socket is readable
(:meth:`~exesdb.storage.postgres_cluster.ListenSession.drain` never waits for the network:
the socket is non-blocking; the session's lock is only ever taken by the listener's
connecting and closing, which stop the watcher first) and handles the notices that need
no read itself (:meth:`PgListener.take`), synchronously, between the listener's steps:

* every node also receives its own commits' notices, one per append: those that follow
  on from what was signalled only move the listener's ``known`` (its writer signalled
  them), told from their token without decoding them. A message to the listener and
  back for each of them (the watcher's earlier protocol) made the own notices a fifth of
  a single-event append's CPU on the node (callgrind, appends through
  ``exesdb.gateway``: 967k instructions per append, 776k with no notices; 863k then);
* another node's notice that follows on from what was signalled and names its streams
  and types is signalled at once, as the listener would, when the listener has nothing
  in hand (no notices passed on and not yet handled, no catching up after a connection):
  so notices are still signalled in their order. The process hop to the listener was
  about 30 of the 95 us from the socket to the commit signal (p50, 2 cores), on the path
  of every live delivery from another node.

Everything else (a gap, a notice without its streams, one that cannot be decoded, and
every notice after one of those while the listener has it in hand) goes to the
listener, in order, which reads what it must from the store. A thread hand-off per
notice cost about a third of a notice's way from the socket to the commit signal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Final, TypeAlias, assert_never

import attrs
import trio

import otp
from otp.lowlevel import on_exit

from ...errors import ExESDBError
from ...options import StoreOptions
from ...storage.postgres import PostgresBackend
from ...storage.postgres_cluster import ClusterQueries, ListenSession
from ...storage.postgres_notify import CommitNotice, decode_notice
from ...storage.postgres_schema import schema_name
from ..commits import Committed, notify_commit
from ..store import backend_of
from .membership import call_bound, session_config
from .periodic import Periodic

__all__ = ["BATCH", "ListenerMessage", "Notices", "PgListener", "SessionLost"]

log: Final = logging.getLogger("exesdb.systems.cluster")

BATCH: Final = 1000
"""Events read at a time when the listener must learn a range's streams from the store."""


@attrs.frozen
class Notices:
    """From the watcher: the payloads received on listening session ``generation`` that
    the listener must handle (in order; the watcher counted it in the listener's
    ``backlog``, which the listener counts down once it handled it)."""

    generation: int
    payloads: tuple[str, ...]


@attrs.frozen
class SessionLost:
    """From the watcher: reading listening session ``generation`` failed with ``error``."""

    generation: int
    error: ExESDBError


ListenerMessage: TypeAlias = Notices | SessionLost
"""Every message :class:`PgListener` serves (besides its timer)."""


async def _watch(owner: otp.Pid, listener: PgListener, fd: int, generation: int) -> None:
    """The watcher process of ``listener`` (process ``owner``): each time ``fd`` is
    readable, read the notices, handle those it can (:meth:`PgListener.take`) and send
    the owner the rest, in order. Ends when the socket is closed, its owner stops it, or
    the session fails (the owner is told)."""
    while True:
        try:
            await trio.lowlevel.wait_readable(fd)
        except (trio.ClosedResourceError, OSError):
            return
        try:
            payloads = listener.session.drain()  # no I/O wait: see the module docstring
        except ExESDBError as exc:
            otp.send(owner, SessionLost(generation, exc))
            return
        if payloads:
            rest = listener.take(payloads)
            if rest:
                listener.backlog += 1  # handled (and counted down) by the listener
                otp.send(owner, Notices(generation, rest))


def _positions(payload: str) -> tuple[int, int] | None:
    """``(first, last)`` of a commit notice's payload (its leading ``{"f":..,"l":..``,
    see :func:`~exesdb.storage.postgres_notify.encode_notice`), None if it does not
    start so."""
    if not payload.startswith('{"f":'):
        return None
    head, _, rest = payload[5:].partition(',"l":')
    last, _, _ = rest.partition(",")
    if not (head.isdigit() and last.isdigit()):
        return None
    return int(head), int(last)


class PgListener(Periodic):
    """Listens for the store's commit notices (see the module docstring)."""

    async def init(self, opts: StoreOptions) -> Any:
        result = await super().init(opts)
        otp.trap_exits(True)
        self.session = ListenSession(session_config(opts, "listener"),
                                     ClusterQueries(schema_name(opts.store_id)))
        self.fd: int | None = None
        self.watcher: otp.Pid | None = None
        self.generation = 0
        self.known: int | None = None  # the highest position signalled on this node
        self.marker: str | None = None
        """How this node's notices show their token (its storage's, as last seen: a
        storage restarted with a new one has its notices handled by the listener, which
        notes the new token here)."""
        self.failing = False
        self.backlog = 0
        """How much the listener has in hand on the current session: the watcher's
        :class:`Notices` not handled yet, and 1 while it catches up after connecting.
        The watcher signals notices itself only when it is 0, so signals keep the
        notices' order."""
        on_exit(otp.self(), self._on_exit)
        return result

    # -- connection ----------------------------------------------------------------------
    async def tick(self) -> None:
        """Not listening: connect, LISTEN, then signal what committed meanwhile."""
        if self.fd is not None:
            return
        try:
            backend = self._backend()
            if self.known is None:
                self.known = backend.last_position
            fd = await trio.to_thread.run_sync(self.session.listen, call_bound(self.opts))
            self.generation += 1
            generation = self.generation
            self.fd = fd
            self.backlog = 1  # catching up: the notices wait for it
            self.watcher = otp.spawn_link(_watch, otp.self(), self, fd, generation)
            try:
                head = await backend.refresh_last_position()
                await self._signal_range(backend, self.known + 1, head)
            finally:
                if generation == self.generation:
                    self.backlog -= 1
        except ExESDBError as exc:
            self._lost(exc)
            return
        if self.failing:
            log.info("store %r: listening for commits again", self.store_id)
        self.failing = False

    def _backend(self) -> PostgresBackend:
        backend = backend_of(self.store_id)
        if not isinstance(backend, PostgresBackend):
            raise ExESDBError(f"store {self.store_id!r} is not in PostgreSQL")
        return backend

    def _lost(self, exc: Exception) -> None:
        """The session failed: stop watching and reconnect at the next tick."""
        if not self.failing:
            log.warning("store %r: not listening for commits (retrying): %s",
                        self.store_id, exc)
        self.failing = True
        self._disconnect()

    def _disconnect(self) -> None:
        fd, self.fd = self.fd, None
        watcher, self.watcher = self.watcher, None
        if fd is not None:
            trio.lowlevel.notify_closing(fd)  # the watcher's wait ends
        if watcher is not None:
            otp.unlink(watcher)
            otp.exit(watcher, otp.KILL)
        if fd is not None:
            self.session.sever()  # closed for good in _close or at the next listen

    # -- notices -------------------------------------------------------------------------
    async def on_message(self, msg: Any) -> Any:
        if type(msg) is otp.Exit:
            if msg.pid is not None and msg.pid == self.watcher:
                # It ended by itself (the socket closed under it, or a fault): listen
                # afresh at the next tick. A watcher we stopped was unlinked first.
                self._lost(ExESDBError(f"the notices' watcher ended: {msg.reason!r}"))
            return None
        if not isinstance(msg, ListenerMessage):
            return await super().on_message(msg)
        if msg.generation != self.generation or self.fd is None:
            return None  # from a session that was replaced
        match msg:
            case Notices(_, payloads):
                try:
                    await self._handle(payloads)
                finally:
                    if msg.generation == self.generation:
                        self.backlog -= 1
            case SessionLost(_, error):
                self._lost(error)
            case _:
                assert_never(msg)
        return None

    async def _handle(self, payloads: tuple[str, ...]) -> None:
        try:
            backend = self._backend()
            own = self.marker = f'"t":"{backend.notify_token}"'
            for payload in payloads:
                if own in payload and self._own(payload):
                    continue
                notice = decode_notice(payload)
                if notice is not None:
                    await self._on_notice(backend, notice)
        except ExESDBError as exc:
            self._lost(exc)

    def take(self, payloads: list[str]) -> tuple[str, ...]:
        """Handle what the watcher can of ``payloads`` (in order; see the module
        docstring) and return the rest, which the listener must handle, in order: this
        node's own notices that follow on from what was signalled only move ``known``
        (:meth:`others`); another node's that follows on and names its streams and types
        is signalled here when nothing is in the listener's hands (:attr:`backlog` is
        0). Called by the watcher; synchronous, so it runs between the listener's
        steps."""
        rest = self.others(payloads)
        while rest and not self.backlog and self._signal_now(rest[0]):
            rest = self.others(rest[1:])
        return rest

    def others(self, payloads: Sequence[str]) -> tuple[str, ...]:
        """``payloads`` from the first that is not this node's own notice following on
        from what was signalled (those before it only move ``known``), in order.
        Synchronous."""
        own = self.marker
        if own is None:
            try:
                own = self.marker = f'"t":"{self._backend().notify_token}"'
            except ExESDBError:
                return tuple(payloads)  # the listener finds out
        for i, payload in enumerate(payloads):
            if not (own in payload and self._own(payload)):
                return tuple(payloads[i:])  # the order of the rest is kept
        return ()

    def _signal_now(self, payload: str) -> bool:
        """Signal ``payload`` if it is another node's notice that follows on from what
        was signalled and names its streams and types (or is already signalled);
        whether it was (else the listener must handle it)."""
        known = self.known
        if known is None:
            return False
        notice = decode_notice(payload)
        if notice is None or notice.first > known + 1:
            return False
        if notice.last <= known:
            return True  # nothing new
        if notice.streams is None or notice.types is None:
            return False
        try:
            backend = self._backend()
        except ExESDBError:
            return False  # the listener finds out
        if notice.token == backend.notify_token:  # this node's writer signalled it
            self.marker = f'"t":"{notice.token}"'  # (a restarted storage's new token)
            self.known = notice.last
            return True
        self._signal(backend, Committed(notice.last, notice.streams, notice.types))
        return True

    def _own(self, payload: str) -> bool:
        """Whether ``payload`` is a notice of this node's writer that follows on from
        what was signalled (then its writer signalled it: only ``known`` moves). Else
        it is handled as any notice."""
        known = self.known
        if known is None:
            return False
        notice = _positions(payload)
        if notice is None or notice[0] > known + 1:
            return False
        self.known = max(known, notice[1])
        return True

    async def _on_notice(self, backend: PostgresBackend, notice: CommitNotice) -> None:
        known = backend.last_position if self.known is None else self.known
        if notice.first > known + 1:  # something in between was not signalled
            await self._signal_range(backend, known + 1, notice.first - 1)
            known = self.known if self.known is not None else known
        if notice.last <= known:
            return
        if notice.token == backend.notify_token:  # this node's writer signalled it
            self.known = max(self.known if self.known is not None else -1, notice.last)
            return
        if notice.streams is None or notice.types is None:
            await self._signal_range(backend, max(known + 1, notice.first), notice.last)
            return
        self._signal(backend, Committed(notice.last, notice.streams, notice.types))

    async def _signal_range(self, backend: PostgresBackend, first: int, last: int) -> None:
        """Signal positions ``first`` .. ``last`` (read from the store to learn their
        streams and types), a batch at a time."""
        position = first
        while position <= last:
            events = await backend.read_all(position, BATCH)
            events = [e for e in events if e.position <= last]
            if not events:
                break
            self._signal(backend, Committed(events[-1].position,
                                            frozenset(e.stream_id for e in events),
                                            frozenset(e.event_type for e in events)))
            position = events[-1].position + 1
        if self.known is None or self.known < last:
            self._signal(backend, Committed(last, frozenset(), frozenset()))

    def _signal(self, backend: PostgresBackend, committed: Committed) -> None:
        backend.saw_committed(committed.last_position)
        notify_commit(self.store_id, committed)
        self.known = max(self.known or -1, committed.last_position)

    # -- end -----------------------------------------------------------------------------
    async def terminate(self, reason: Any) -> None:
        self._disconnect()
        await trio.to_thread.run_sync(self.session.close)

    def _on_exit(self, reason: Any) -> None:
        """However the process ends: the session is severed and closed (in a thread)."""
        self._disconnect()
        threading.Thread(target=self.session.close, daemon=True,
                         name=f"exesdb {self.store_id} listener close").start()
