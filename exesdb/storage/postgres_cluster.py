"""The PostgreSQL sessions of cluster mode: the leader lock, membership, commit notices.

A store in cluster mode lives in one PostgreSQL schema that every node opens
(:mod:`exesdb.storage.postgres`); these are the sessions the nodes coordinate through.
There is no consensus protocol of exesdb's own: PostgreSQL is the single point that
decides, so the guarantees hold as long as every node talks to the same database.

* :class:`ElectorSession`: a dedicated session that competes for the store's **leader
  lock**, a session-level advisory lock keyed by the schema (:func:`leader_lock`). At
  most one session holds it at a time; it is released when the session ends, however
  it ends. The session runs with ``idle_session_timeout`` set to the lease, so the
  server ends the session of a holder that stopped heartbeating (a paused or hung
  process) and frees the lock for another node, and with TCP keepalives and
  ``tcp_user_timeout`` so a holder cut off by the network loses it too. Each session
  registers its backend pid on its node's ``members`` row (unique), so the holder's
  node can be named from ``pg_locks`` (:meth:`MembershipSession.members`) without
  trusting any node's own claim.
* :class:`MembershipSession`: each node upserts its ``members`` row (its name, instance
  id, advertised gRPC endpoint) with the database's clock at every heartbeat, and marks
  it stopped when it stops. :meth:`MembershipSession.members` reads every member with
  its liveness (heartbeat younger than a timeout, by the database's clock) and whether
  it holds the leader lock, in one statement: one consistent answer, so it never names
  two leaders. The rows carry no checksum: they are liveness data, rewritten every
  heartbeat, and no stored event or position depends on them.
* :class:`ListenSession`: a ``LISTEN`` connection on the store's notification channel
  (:mod:`exesdb.storage.postgres_notify`), whose socket the caller waits on and which it
  then :meth:`~ListenSession.drain`\\ s.

Everything here blocks: call it from a worker thread (``trio.to_thread.run_sync``); calls
on one object are serialised by its lock, and :meth:`~ElectorSession.sever` (which does
not block) ends a session from any thread at once, even while a call runs on it.
Database failures raise
:class:`~exesdb.errors.StorageUnavailable` (out of reach, timed out, session ended) or
:class:`exesdb.StorageError`, and leave the object disconnected: the next call connects
again. A call never waits longer than its deadline (:mod:`exesdb.storage.postgres_watchdog`).
"""

from __future__ import annotations

import math
import threading
import zlib
from typing import Any, Final

import attrs
import psycopg
from psycopg import sql

from ..errors import StorageUnavailable
from .postgres_conn import Conn, close_quietly, failure
from .postgres_notify import notify_channel
from .postgres_watchdog import deadline, sever

__all__ = [
    "LEADER_LOCK_CLASS",
    "ClusterQueries",
    "ElectorSession",
    "ListenSession",
    "MemberRow",
    "MembershipSession",
    "SessionConfig",
    "leader_lock",
]

LEADER_LOCK_CLASS: Final = 0x45784C64
"""The first key of every store's leader lock ("ExLd"; the schema-creation lock uses
another)."""


def leader_lock(schema: str) -> tuple[int, int]:
    """The two int4 keys of the leader lock of the store in ``schema``: the class and the
    schema name's CRC-32 (signed)."""
    crc = zlib.crc32(schema.encode())
    return LEADER_LOCK_CLASS, crc - (1 << 32) if crc >= 1 << 31 else crc


def _one(cursor: Any) -> Any:
    """The single value of a one-row, one-column result."""
    row = cursor.fetchone()
    assert row is not None
    return row[0]


def _unsigned(key: int) -> int:
    """An int4 key as ``pg_locks`` shows it (an oid: unsigned)."""
    return key & 0xFFFFFFFF


@attrs.frozen
class SessionConfig:
    """How to open one of the cluster sessions: the database, the name it shows in
    ``pg_stat_activity``, its timeouts in seconds, and ``idle_session_timeout`` (None:
    none) after which the server ends the session if it sent nothing."""

    dsn: str
    application_name: str
    connect_timeout: float
    statement_timeout: float
    idle_session_timeout: float | None = None

    def connect(self) -> Conn:
        """A new autocommit connection with these settings; raises
        :class:`~exesdb.errors.StorageUnavailable` if it cannot be made."""
        timeout_ms = max(1, round(self.statement_timeout * 1000))
        options = (f"-c statement_timeout={timeout_ms} "
                   f"-c idle_in_transaction_session_timeout={timeout_ms}")
        if self.idle_session_timeout is not None:
            options += f" -c idle_session_timeout={max(1, round(self.idle_session_timeout * 1000))}"
        # Keepalives well within the statement timeout: a vanished server or network
        # fails the session in about that time.
        idle = max(1, math.floor(self.statement_timeout / 3))
        try:
            return psycopg.connect(
                self.dsn, autocommit=True,
                connect_timeout=max(2, math.ceil(self.connect_timeout)),
                application_name=self.application_name[:63], options=options,
                keepalives=1, keepalives_idle=idle, keepalives_interval=1,
                keepalives_count=2, tcp_user_timeout=timeout_ms,
            )
        except psycopg.Error as exc:
            raise StorageUnavailable(f"connecting to the database failed: {exc}".strip()) from exc


class ClusterQueries:
    """The statements of the cluster sessions on the store in ``schema``."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        ident = sql.Identifier(schema)
        self.channel = notify_channel(schema)
        self.lock = leader_lock(schema)
        self.listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)).as_bytes(None)

        def q(template: str) -> bytes:
            return sql.SQL(template).format(s=ident).as_bytes(None)

        # One statement: the upsert of this node's row, and the removal of the rows of
        # members dead (or stopped) for longer than the removal period.
        self.heartbeat = q(
            "WITH pruned AS (DELETE FROM {s}.members WHERE node <> %s "
            "AND heartbeat < clock_timestamp() - make_interval(secs => %s)) "
            "INSERT INTO {s}.members(node, instance, host, port, heartbeat, stopped) "
            "VALUES (%s, %s, %s, %s, clock_timestamp(), false) ON CONFLICT (node) DO UPDATE "
            "SET instance = EXCLUDED.instance, host = EXCLUDED.host, port = EXCLUDED.port, "
            "heartbeat = EXCLUDED.heartbeat, stopped = false")
        self.stop = q("UPDATE {s}.members SET stopped = true, elector_pid = NULL "
                      "WHERE node = %s AND instance = %s")
        # A backend pid names one live session: taking it off any other row first keeps
        # elector_pid unique (a reused pid of a dead node's session).
        self.unregister_pid = q("UPDATE {s}.members SET elector_pid = NULL "
                                "WHERE elector_pid = pg_backend_pid() AND node <> %s")
        self.register_pid = q(
            "INSERT INTO {s}.members(node, instance, host, port, heartbeat, stopped, "
            "elector_pid) VALUES (%s, %s, '', 0, clock_timestamp(), false, pg_backend_pid()) "
            "ON CONFLICT (node) DO UPDATE SET elector_pid = EXCLUDED.elector_pid")
        self.try_lock = b"SELECT pg_try_advisory_lock(%s, %s)"
        self.holding = (
            b"SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            b"AND pid = pg_backend_pid() AND classid::bigint = %s AND objid::bigint = %s "
            b"AND objsubid = 2)")
        self.members = q(
            "SELECT m.node, m.instance, m.host, m.port, m.stopped, "
            "NOT m.stopped AND m.heartbeat > clock_timestamp() - make_interval(secs => %s), "
            "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.pid = m.elector_pid AND l.classid::bigint = %s AND l.objid::bigint = %s "
            "AND l.objsubid = 2) FROM {s}.members m ORDER BY m.node")

    @property
    def lock_oids(self) -> tuple[int, int]:
        """The lock's keys as ``pg_locks`` shows them."""
        return _unsigned(self.lock[0]), _unsigned(self.lock[1])


@attrs.frozen
class MemberRow:
    """One member of the store's cluster as the database sees it now: its ``node`` name,
    ``instance`` id (new at each start), advertised ``host`` and ``port`` (``""`` and 0
    until its first heartbeat), whether it ``stopped`` (in order), is ``alive`` (not
    stopped, heartbeat younger than the timeout asked) and ``leader`` (its elector
    session holds the leader lock: true of one member at most)."""

    node: str
    instance: str
    host: str
    port: int
    stopped: bool
    alive: bool
    leader: bool


class _Session:
    """One autocommit connection, opened on demand and forgotten when it fails; its
    calls hold ``lock`` (one at a time, from any thread)."""

    def __init__(self, config: SessionConfig, queries: ClusterQueries, doing: str) -> None:
        self.config = config
        self.q = queries
        self.doing = doing
        self.conn: Conn | None = None
        self.lock = threading.RLock()

    def _connection(self) -> Conn:
        conn = self.conn
        if conn is not None and not (conn.closed or conn.broken):
            return conn
        self.close()
        self.conn = self.config.connect()
        return self.conn

    def _run(self, work: Any, seconds: float, doing: str) -> Any:
        """``work(conn)`` under a deadline of ``seconds``; a database failure closes the
        session and raises :class:`~exesdb.errors.StorageUnavailable` or
        :class:`exesdb.StorageError`."""
        with self.lock:
            conn = self._connection()
            try:
                with deadline(conn, seconds):
                    return work(conn)
            except psycopg.Error as exc:
                error = failure(exc, f"{self.doing}: {doing}", conn)
                self.close()
                raise error from exc

    def close(self) -> None:
        """Close the session (nothing if it is closed); waits for a call in progress."""
        with self.lock:
            conn, self.conn = self.conn, None
            if conn is not None:
                close_quietly(conn)

    def sever(self) -> None:
        """End the session now, from any thread, without waiting for a call in progress
        (which fails): the server ends its side at once (an elector's lock is released).
        :meth:`close` must still follow, to free the connection."""
        conn = self.conn
        if conn is not None:
            sever(conn)


class ElectorSession(_Session):
    """The session of one node's leader elector (see the module docstring): ``node`` and
    ``instance`` name the node's ``members`` row, where the session's pid is
    registered when it connects."""

    def __init__(self, config: SessionConfig, queries: ClusterQueries, node: str,
                 instance: str) -> None:
        super().__init__(config, queries, "the leader election")
        self.node = node
        self.instance = instance
        self.holding = False
        """Whether this session held the lock at its last :meth:`poll`."""

    def _connection(self) -> Conn:
        fresh = self.conn is None or self.conn.closed or self.conn.broken
        conn = super()._connection()
        if fresh:
            self.holding = False
            try:
                with conn.transaction():
                    conn.execute(self.q.unregister_pid, (self.node,))
                    conn.execute(self.q.register_pid, (self.node, self.instance))
            except psycopg.Error as exc:
                error = failure(exc, f"{self.doing}: registering the session", conn)
                self.close()
                raise error from exc
        return conn

    def poll(self, seconds: float) -> bool:
        """Connect if needed; then confirm the lock is still held (when it was), or try to
        take it. Return whether this session holds the lock. Within ``seconds``, or the
        session is severed and the call fails.

        Raises :class:`~exesdb.errors.StorageUnavailable` when the session failed: the
        lock is then not held (a lost session releases it)."""
        with self.lock:
            try:
                if self.holding:
                    held = self._run(lambda c: _one(c.execute(self.q.holding,
                                                              self.q.lock_oids)),
                                     seconds, "confirming the leader lock")
                    self.holding = bool(held)
                    if not self.holding:  # unlocked behind our back: start afresh
                        self.close()
                else:
                    got = self._run(lambda c: _one(c.execute(self.q.try_lock, self.q.lock)),
                                    seconds, "trying for the leader lock")
                    self.holding = bool(got)
            except BaseException:
                self.holding = False
                raise
            return self.holding

    def close(self) -> None:
        """End the session: the lock, if held, is released."""
        with self.lock:
            self.holding = False
            super().close()


class MembershipSession(_Session):
    """The session of one node's membership heartbeat and of the reads of the members."""

    def __init__(self, config: SessionConfig, queries: ClusterQueries) -> None:
        super().__init__(config, queries, "the cluster membership")

    def heartbeat(self, node: str, instance: str, host: str, port: int,
                  seconds: float, remove_after: float) -> None:
        """Upsert ``node``'s row: alive now (by the database's clock), with its instance
        and advertised endpoint; and remove the rows of the other members whose last
        heartbeat is more than ``remove_after`` seconds old (dead or stopped that long),
        in the same statement."""
        self._run(lambda c: c.execute(self.q.heartbeat, (node, remove_after, node, instance,
                                                         host, port)),
                  seconds, "the heartbeat")

    def stop(self, node: str, instance: str, seconds: float) -> None:
        """Mark ``node`` stopped (if ``instance`` still owns its row)."""
        self._run(lambda c: c.execute(self.q.stop, (node, instance)), seconds,
                  "marking the node stopped")

    def members(self, timeout: float, seconds: float) -> list[MemberRow]:
        """Every member, by node name, alive when its heartbeat is younger than
        ``timeout`` seconds (see :class:`MemberRow`)."""
        def read(conn: Conn) -> list[MemberRow]:
            rows = conn.execute(self.q.members, (timeout, *self.q.lock_oids)).fetchall()
            return [MemberRow(str(node), str(instance), str(host), int(port), bool(stopped),
                              bool(alive), bool(leader))
                    for node, instance, host, port, stopped, alive, leader in rows]

        result: list[MemberRow] = self._run(read, seconds, "reading the members")
        return result


class ListenSession(_Session):
    """The session that listens to the store's commit notices (see the module
    docstring)."""

    def __init__(self, config: SessionConfig, queries: ClusterQueries) -> None:
        super().__init__(config, queries, "listening for commits")

    def listen(self, seconds: float) -> int:
        """Connect and ``LISTEN`` on the store's channel (again, after a failure); return
        the socket to wait on for notifications."""
        with self.lock:
            self.close()
            self._run(lambda c: c.execute(self.q.listen), seconds, "LISTEN")
            assert self.conn is not None
            return int(self.conn.pgconn.socket)

    def drain(self) -> list[str]:
        """The payloads of the notifications received so far, in order (none if nothing
        came). Never waits for the network: the socket is non-blocking; raises
        :class:`~exesdb.errors.StorageUnavailable` if the connection was lost."""
        with self.lock:
            conn = self.conn
            if conn is None or conn.closed or conn.broken:
                raise StorageUnavailable(f"{self.doing}: the connection is closed")
            pgconn = conn.pgconn
            payloads: list[str] = []
            try:
                pgconn.consume_input()
                while (notice := pgconn.notifies()) is not None:
                    payloads.append(notice.extra.decode("utf-8", "replace"))
            except psycopg.Error as exc:
                error = failure(exc, f"{self.doing}: reading notifications", conn)
                self.close()
                raise error from exc
            if pgconn.status != psycopg.pq.ConnStatus.OK:
                self.close()
                raise StorageUnavailable(f"{self.doing}: the connection was lost")
            return payloads
