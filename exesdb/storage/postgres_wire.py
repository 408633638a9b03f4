"""One statement on a psycopg connection from the trio thread, without a worker thread:
:func:`execute`, and the binary parameter encodings it takes.

psycopg's own async API runs on asyncio only, and its sync API blocks, so the backend
runs its transactions in a worker thread; for a write that is a single statement, the
thread's two hand-offs cost as much as the statement's round trip. :func:`execute` sends
the statement through libpq's non-blocking interface (``psycopg.pq``: psycopg keeps its
connections non-blocking) and waits for the socket with trio, so the trio thread never
blocks on the network. Guarantees:

* It never blocks the trio thread, and a cancellation from outside never interrupts it
  (like the worker thread's calls: a write it started is never left with an unknown
  outcome by a cancellation); a call still running after ``timeout`` seconds (a hung
  server) has its connection severed (:func:`~exesdb.storage.postgres_watchdog.sever`).
* Results are returned once the server said it is ready for the next statement (the
  statement committed, in autocommit mode).
* An error the server answered (an ERROR, or a FATAL that ends the session, such as
  ``pg_terminate_backend``'s) is raised as psycopg's exception for its SQLSTATE: the
  statement did not commit (PostgreSQL answers no error once a commit is durable). A
  connection found closed before anything was sent raises ``psycopg.OperationalError``.
  Anything else (the connection lost, severed, or closed without an answer) raises
  :class:`Lost`: the statement's outcome is unknown.
* After any call, the connection's ``pgconn.status`` tells whether it is still usable;
  when it is not, trio was told its socket is closing (``notify_closing``), and the
  caller closes it.

The caller owns the connection for the call: nothing else may use it meanwhile.
Parameters are passed in binary format, encoded by :func:`int8`, :func:`int8_array`,
:func:`int2_array` and :func:`bytea_array` (text and ``bytea`` values as their bytes).
A statement is prepared on each connection the first time it runs there (by the name
the caller gives it: a planned statement is reused, where an unnamed one is parsed and
planned at every call), and again if the server lost it.
"""

from __future__ import annotations

import contextlib
import struct
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

import psycopg
import trio
from psycopg import errors, pq

from .postgres_watchdog import sever

__all__ = [
    "BIGINT",
    "BIGINT_ARRAY",
    "BYTEA",
    "BYTEA_ARRAY",
    "SMALLINT",
    "SMALLINT_ARRAY",
    "TEXT",
    "Lost",
    "bytea_array",
    "execute",
    "int2_array",
    "int8",
    "int8_array",
]

BIGINT: Final = 20
SMALLINT: Final = 21
BYTEA: Final = 17
TEXT: Final = 25
BIGINT_ARRAY: Final = 1016
BYTEA_ARRAY: Final = 1001
SMALLINT_ARRAY: Final = 1005
"""Type OIDs of the parameters (PostgreSQL's built-in types)."""

_INT8: Final = struct.Struct("!q")
_SIZE: Final = struct.Struct("!i")
_HEADER: Final = struct.Struct("!iiIii")  # dimensions, has nulls, element type, size, base
_EMPTY: Final = struct.Struct("!iiI")
_ELEMENTS: dict[tuple[str, int], struct.Struct] = {}
"""Structs of array elements by format and count (made once each, up to 1,024)."""
_INT8_NONE: Final = _EMPTY.pack(0, 0, BIGINT)
_INT2_NONE: Final = _EMPTY.pack(0, 0, SMALLINT)
_BYTEA_NONE: Final = _EMPTY.pack(0, 0, BYTEA)
_INT8_ONE: Final = struct.Struct("!" + _HEADER.format.lstrip("!") + "iq")
_BYTEA_ONE: Final = struct.Struct("!" + _HEADER.format.lstrip("!") + "i")


_INVALID_STATEMENT_NAME: Final = "26000"
_BINARY: Final = pq.Format.BINARY
_prepared: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[bytes]] = (
    weakref.WeakKeyDictionary())
"""The statements prepared on each connection (by name)."""


class Lost(psycopg.OperationalError):
    """The connection failed during the call: its outcome is unknown."""


def int8(value: int) -> bytes:
    """A ``bigint`` parameter."""
    return _INT8.pack(value)


def _elements(fmt: str, count: int) -> struct.Struct:
    """The struct of ``count`` array elements of format ``fmt`` (each with its size)."""
    key = (fmt, count)
    packer = _ELEMENTS.get(key)
    if packer is None:
        packer = struct.Struct("!" + fmt * count)
        if len(_ELEMENTS) < 1024:
            _ELEMENTS[key] = packer
    return packer


def int8_array(values: Sequence[int]) -> bytes:
    """A ``bigint[]`` parameter."""
    n = len(values)
    if n == 1:
        return _INT8_ONE.pack(1, 0, BIGINT, 1, 1, 8, values[0])
    if not n:
        return _INT8_NONE
    sized = [8] * (2 * n)
    sized[1::2] = values
    return _HEADER.pack(1, 0, BIGINT, n, 1) + _elements("iq", n).pack(*sized)


def int2_array(values: Sequence[int]) -> bytes:
    """A ``smallint[]`` parameter."""
    n = len(values)
    if not n:
        return _INT2_NONE
    sized = [2] * (2 * n)
    sized[1::2] = values
    return _HEADER.pack(1, 0, SMALLINT, n, 1) + _elements("ih", n).pack(*sized)


def bytea_array(values: Sequence[bytes]) -> bytes:
    """A ``bytea[]`` parameter."""
    n = len(values)
    if n == 1:
        value = values[0]
        return _BYTEA_ONE.pack(1, 0, BYTEA, 1, 1, len(value)) + value
    if not n:
        return _BYTEA_NONE
    size = _SIZE.pack
    parts = [_HEADER.pack(1, 0, BYTEA, n, 1)]
    for value in values:
        parts.append(size(len(value)))
        parts.append(value)
    return b"".join(parts)


async def execute(conn: psycopg.Connection[Any], name: bytes, query: bytes,
                  types: Sequence[int], params: Sequence[bytes],
                  timeout: float) -> list[pq.abc.PGresult]:
    """Run ``query`` (one statement, ``$n`` placeholders of the given type OIDs), prepared
    as ``name`` on ``conn``, with binary ``params``; return its results (see the module
    docstring). Raises psycopg's exception for an error the server answered,
    :class:`Lost` when the outcome is unknown."""
    # One scope, shielded from outside cancellations and cancelled by its own deadline
    # (two nested scopes cost about 4 us more per call).
    with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout):
        prepared = _prepared.get(conn)
        if prepared is None:
            prepared = _prepared[conn] = set()
        formats = [1] * len(params)
        if name not in prepared:
            await _exchange(conn, lambda c: c.send_prepare(name, query, types))
            prepared.add(name)
        try:
            return await _exchange(conn, lambda c: c.send_query_prepared(
                name, params, formats, _BINARY))
        except psycopg.Error as exc:
            if isinstance(exc, Lost) or exc.sqlstate != _INVALID_STATEMENT_NAME:
                raise
        # The server does not know the statement (a DEALLOCATE ALL): prepare it again.
        await _exchange(conn, lambda c: c.send_prepare(name, query, types))
        return await _exchange(conn, lambda c: c.send_query_prepared(
            name, params, formats, _BINARY))
    with contextlib.suppress(psycopg.Error):
        trio.lowlevel.notify_closing(conn.pgconn.socket)
    sever(conn)
    raise Lost(f"no answer from the database within {timeout:g} s: connection severed")


async def _exchange(conn: psycopg.Connection[Any],
                    send: Callable[[pq.abc.PGconn], None]) -> list[pq.abc.PGresult]:
    """``send(pgconn)`` one command, then read its results until the server is ready."""
    pgconn = conn.pgconn
    if conn.closed or conn.broken or pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed")  # nothing was sent
    fd = pgconn.socket
    results: list[pq.abc.PGresult] = []
    try:
        send(pgconn)
        while pgconn.flush():
            await trio.lowlevel.wait_writable(fd)
        done = False
        while not done:
            # The answer to what was just sent comes through the socket: no read before it
            # is readable (a read that finds nothing is a system call for nothing).
            await trio.lowlevel.wait_readable(fd)
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    done = True
                    break
                results.append(result)
    except (psycopg.Error, OSError) as exc:
        trio.lowlevel.notify_closing(fd)  # the connection is closed next
        if _answered(pgconn, results):  # the server's last words, before it hung up
            return _checked(pgconn, fd, results)
        raise Lost(str(exc) or type(exc).__name__) from exc
    return _checked(pgconn, fd, results)


def _answered(pgconn: pq.abc.PGconn, results: list[pq.abc.PGresult]) -> bool:
    """After a failure: collect the results libpq still holds (never waiting); whether
    one is an error the server answered."""
    with contextlib.suppress(psycopg.Error):
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                break
            results.append(result)
    return any(_sqlstate(result) for result in results)


def _sqlstate(result: pq.abc.PGresult) -> bytes | None:
    """The SQLSTATE of an error result the server sent (libpq's own, for a lost
    connection, has none)."""
    if result.status != pq.ExecStatus.FATAL_ERROR:
        return None
    return result.error_field(pq.DiagnosticField.SQLSTATE)


def _checked(pgconn: pq.abc.PGconn, fd: int,
             results: list[pq.abc.PGresult]) -> list[pq.abc.PGresult]:
    """``results``, or the error they tell (see :func:`execute`)."""
    if pgconn.status != pq.ConnStatus.OK:
        trio.lowlevel.notify_closing(fd)  # the owner closes it: it is no longer usable
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            if _sqlstate(result):
                raise errors.error_from_result(result, "utf-8")
            raise Lost(result.get_error_message("utf-8").strip() or "the connection failed")
    return results
