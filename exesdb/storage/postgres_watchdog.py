"""A client-side deadline for database calls: :func:`deadline`.

PostgreSQL's own timeouts end a slow statement, and TCP keepalives a connection to a
host that vanished; neither helps when the server process is alive but hung (a stuck
disk under an fsync, a paused machine): the kernel still acknowledges every packet and
the client would wait forever. Under :func:`deadline`, a call that is still running when
its time is up has its connection's socket shut down, so the blocked call fails at once
with a connection error (and the connection is broken: it is replaced on the next call).

One daemon thread serves every deadline of the process; it wakes only while deadlines
are armed. Arming and disarming cost a lock and a dict operation. A deadline is severed
under the same lock its disarming takes, so a call that has finished is never severed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["deadline", "sever"]

_TICK: Final = 0.1  # seconds between checks while a deadline is armed


class _Watchdog:
    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, Any]] = {}
        self._tokens = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, conn: Any, seconds: float) -> int:
        with self._wake:
            token = next(self._tokens)
            self._armed[token] = (time.monotonic() + seconds, conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, daemon=True,
                                                name="exesdb postgres watchdog")
                self._thread.start()
            elif len(self._armed) == 1:
                self._wake.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._wake:
            self._armed.pop(token, None)

    def _serve(self) -> None:
        with self._wake:
            while True:
                if not self._armed:
                    self._wake.wait()
                    continue
                now = time.monotonic()
                for token, (expires, conn) in list(self._armed.items()):
                    if expires <= now:
                        del self._armed[token]
                        _sever(conn)
                self._wake.wait(_TICK)


def sever(conn: Any) -> None:
    """Shut down ``conn``'s socket (a psycopg connection) now: a call blocked on it in
    any thread fails, and the server sees the session end. Safe from any thread, at any
    time (the connection itself is left for its owner to close); never raises."""
    _sever(conn)


def _sever(conn: Any) -> None:
    """Shut down ``conn``'s socket (a psycopg connection): its blocked call fails."""
    with contextlib.suppress(Exception):
        duplicate = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


_WATCHDOG: Final = _Watchdog()


@contextlib.contextmanager
def deadline(conn: Any, seconds: float) -> Iterator[None]:
    """Sever ``conn`` (a psycopg connection) if the block runs longer than ``seconds``."""
    token = _WATCHDOG.arm(conn, seconds)
    try:
        yield
    finally:
        _WATCHDOG.disarm(token)
