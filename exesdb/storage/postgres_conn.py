"""Connections to PostgreSQL for the backend: how they are opened, how their failures are
reported, and the pool of read connections.

Everything here blocks and is called from worker threads only, never on the trio thread.
Guarantees:

* **Prompt failure**: connecting gives up after ``connect_timeout`` seconds; a statement
  (a lock wait included) after ``statement_timeout``; a connection whose server stops
  answering is dropped by TCP keepalives and ``tcp_user_timeout`` within about
  ``statement_timeout``; a session left idle inside a transaction (its process stuck)
  is ended by the server after ``statement_timeout``, so it cannot hold the store's
  locks; a call still running after :attr:`Connector.hang_timeout` (a hung server) has
  its connection severed (:mod:`exesdb.storage.postgres_watchdog`). Nothing waits
  forever on a lost database.
* **Errors**: a lost or unreachable database, a timeout, or a server that refuses
  writes (a standby) is :class:`~exesdb.errors.StorageUnavailable`; any other
  database error :class:`exesdb.StorageError`. Both name what was being done, and chain
  psycopg's exception.
* **Reconnection**: a connection found broken is closed and forgotten, with every idle
  connection of the pool (they most likely went with it), so the next call connects
  afresh: the backend recovers by itself when the database returns.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs
import psycopg
from psycopg import errors

from ..errors import StorageError, StorageUnavailable
from .postgres_schema import WRITER_SETTINGS
from .postgres_watchdog import deadline

__all__ = ["Connector", "ReaderPool", "failure", "is_unavailable"]

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

_UNAVAILABLE: Final = (
    psycopg.OperationalError,  # connection failures, timeouts, shutdowns, lock failures
    psycopg.InterfaceError,  # a connection psycopg already knows to be closed
    errors.ReadOnlySqlTransaction,  # a hot standby
    errors.IdleInTransactionSessionTimeout,
)


def is_unavailable(exc: BaseException, conn: Conn | None = None) -> bool:
    """Whether ``exc`` (raised using ``conn``) means the database is out of reach or did
    not answer in time, rather than a fault of the request or the data."""
    if conn is not None and (conn.closed or conn.broken):
        return True
    return isinstance(exc, _UNAVAILABLE)


def failure(exc: psycopg.Error, doing: str, conn: Conn | None = None, *,
            outcome_unknown: bool = False) -> StorageError:
    """The exesdb error for ``exc``, raised while ``doing``: a
    :class:`~exesdb.errors.StorageUnavailable` or a :class:`exesdb.StorageError`."""
    text = str(exc).strip() or type(exc).__name__
    detail = f"{doing} failed: {type(exc).__name__}: {text}"
    error: StorageError
    if is_unavailable(exc, conn):
        error = StorageUnavailable(detail, outcome_unknown)
    else:
        error = StorageError(detail)
    error.__cause__ = exc
    return error


@attrs.frozen
class Connector:
    """How to connect to the store's database: the libpq ``dsn`` and the backend's
    settings (see the module docstring; ``durable`` sets ``synchronous_commit``)."""

    dsn: str
    application_name: str
    connect_timeout: float
    statement_timeout: float
    durable: bool

    @property
    def hang_timeout(self) -> float:
        """Seconds after which a call is presumed hung and its connection severed:
        twice ``statement_timeout`` (the server ends slow statements itself before)."""
        return 2 * self.statement_timeout

    def connect(self, role: str, *, reader: bool = False) -> Conn:
        """A new connection: for writes, not in autocommit mode, with
        :data:`~exesdb.storage.postgres_schema.WRITER_SETTINGS`; for reads (``reader``),
        in autocommit mode (each read is one statement) and read-only. Raises
        :class:`~exesdb.errors.StorageUnavailable` if it cannot be made."""
        timeout_ms = max(1, round(self.statement_timeout * 1000))
        options = (f"-c statement_timeout={timeout_ms} "
                   f"-c idle_in_transaction_session_timeout={timeout_ms} "
                   f"-c synchronous_commit={'on' if self.durable else 'off'}")
        if not reader:
            options += "".join(f" -c {name}={value}" for name, value in WRITER_SETTINGS)
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=reader,
                connect_timeout=max(2, math.ceil(self.connect_timeout)),
                application_name=f"{self.application_name} {role}"[:63],
                options=options,
                keepalives=1,
                keepalives_idle=max(1, math.ceil(self.statement_timeout / 2)),
                keepalives_interval=1,
                keepalives_count=3,
                tcp_user_timeout=timeout_ms,
            )
            if reader:
                # Read-only once connected, not in the startup options: libpq's
                # target_session_attrs=read-write (a DSN that follows the primary) tells a
                # primary by that setting, and would take every server for a standby.
                try:
                    conn.execute("SET default_transaction_read_only = on")
                except psycopg.Error:
                    close_quietly(conn)
                    raise
        except psycopg.Error as exc:
            error = StorageUnavailable(f"connecting to the database failed: {exc}".strip())
            raise error from exc
        return conn


def close_quietly(conn: Conn) -> None:
    """Close ``conn``, ignoring any error (it may be broken already)."""
    with contextlib.suppress(Exception):  # a broken connection may fail in any way
        conn.close()


class ReaderPool:
    """Read connections, kept idle between reads (at most ``size``), opened on demand.

    :meth:`run` runs a read function on a connection and maps its database errors (see
    the module docstring); errors the function raises itself (a corrupt record, a
    deleted stream) pass through unchanged.
    """

    def __init__(self, connector: Connector, size: int, name: str) -> None:
        self._connector = connector
        self._size = size
        self._name = name
        self._idle: list[Conn] = []
        self._lock = threading.Lock()
        self._closed = False

    def run(self, fn: Callable[[Conn], T], doing: str) -> T:
        """``fn(conn)`` on an idle (or new) read connection; raises :class:`exesdb.StorageError` (or
        :class:`~exesdb.errors.StorageUnavailable`) for database failures."""
        conn = self._acquire()
        try:
            with deadline(conn, self._connector.hang_timeout):
                result = fn(conn)
        except psycopg.Error as exc:
            error = failure(exc, doing, conn)
            self._discard(conn, everything=isinstance(error, StorageUnavailable))
            raise error from exc
        except BaseException:
            self._discard(conn, everything=False)
            raise
        self._release(conn)
        return result

    def idle(self) -> Conn | None:
        """An idle connection, taken from the pool (never a new one: no I/O, so callable
        on the trio thread), or None. Give it back with :meth:`release`, or
        :meth:`discard` it after a failure."""
        with self._lock:
            if self._closed or not self._idle:
                return None
            return self._idle.pop()

    def release(self, conn: Conn) -> None:
        """Give back a connection taken with :meth:`idle` after a successful call."""
        self._release(conn)

    def discard(self, conn: Conn, *, everything: bool) -> None:
        """Give back (if still healthy and idle: no I/O then) or close a connection
        taken with :meth:`idle` after a failure; ``everything`` closes the idle ones
        too."""
        if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            close_quietly(conn)
        self._discard(conn, everything=everything)

    def _acquire(self) -> Conn:
        with self._lock:
            if self._closed:
                raise StorageError(f"{self._name}: the store is closed")
            if self._idle:
                return self._idle.pop()
        return self._connector.connect("reader", reader=True)

    def _release(self, conn: Conn) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        close_quietly(conn)

    def _discard(self, conn: Conn, *, everything: bool) -> None:
        """Forget ``conn`` after a failure: back to the pool if it is still healthy and
        idle, else closed; ``everything`` closes the idle ones too."""
        healthy = not (conn.closed or conn.broken)
        if healthy:
            try:
                conn.rollback()
            except psycopg.Error:
                healthy = False
        dropped: list[Conn] = []
        if everything and not healthy:
            with self._lock:
                dropped, self._idle = self._idle, []
        for idle in dropped:
            close_quietly(idle)
        if healthy:
            self._release(conn)
        else:
            close_quietly(conn)

    def close(self) -> None:
        """Close the idle connections; later :meth:`run` calls raise
        :class:`exesdb.StorageError`, and connections in use are closed when released."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            close_quietly(conn)
