"""Checking a call's ``authorization: Basic ...`` header for :mod:`exesdb.grpc.server`.

The authenticator (username, password -> User or None) may be slow (password hashing:
scrypt takes tens of milliseconds and 16 MiB), so it runs in a worker thread, never on
the trio thread, and on the server's own :class:`trio.CapacityLimiter` of
:data:`HASHING_THREADS` threads, never on trio's default thread limiter: a flood of
logins can neither hash more than that many passwords at once nor starve the other
users of worker threads.

A successful check is remembered (keyed by the username and a SHA-256 of the password
given, never the password itself) in a small bounded cache, so repeated calls with the
same credentials cost a dictionary lookup, and never wait behind anybody's hashing.

Each connection has a :class:`LoginBackoff`: its uncached checks run one at a time, and
after a failed one the connection's next check waits (:data:`BACKOFF_MIN` seconds,
doubling with every further failure up to :data:`BACKOFF_MAX`; a success resets it). So
one client cannot queue more than one hash at a time per connection, nor hash more than
one wrong password per :data:`BACKOFF_MAX` seconds per connection once it keeps failing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Callable

import trio

from exesdb.grpc.rpc import User

__all__ = ["BACKOFF_MAX", "BACKOFF_MIN", "HASHING_THREADS", "BasicAuth", "LoginBackoff"]

_MAX_CACHED = 256
HASHING_THREADS = 2
"""How many authenticator calls (password hashes) a server runs at once."""
BACKOFF_MIN = 0.1
"""Seconds a connection waits before its next login after a failed one."""
BACKOFF_MAX = 2.0
"""The longest such wait (it doubles with every consecutive failure up to this)."""


class LoginBackoff:
    """One connection's login throttle: uncached checks run one at a time, and each
    waits out the backoff of the connection's previous failures (see the module doc)."""

    def __init__(self) -> None:
        self.lock = trio.Lock()
        self.delay = 0.0  # the wait after the next failure is max(BACKOFF_MIN, 2 * delay)
        self.not_before = -math.inf  # trio time before which no check may start

    def failed(self) -> None:
        """A check on this connection found wrong credentials."""
        self.delay = min(max(BACKOFF_MIN, self.delay * 2), BACKOFF_MAX)
        self.not_before = trio.current_time() + self.delay

    def succeeded(self) -> None:
        """A check on this connection found right credentials."""
        self.delay = 0.0
        self.not_before = -math.inf


class BasicAuth:
    """Resolves ``authorization`` header values to users with ``authenticator``."""

    def __init__(
        self, authenticator: Callable[[str, str], User | None], max_cached: int = _MAX_CACHED
    ) -> None:
        self._authenticator = authenticator
        self._max_cached = max_cached
        self._cache: dict[tuple[str, bytes], User] = {}
        self.limiter = trio.CapacityLimiter(HASHING_THREADS)
        """The worker threads the authenticator runs on (never trio's default ones)."""

    async def user(
        self, authorization: str | None, backoff: LoginBackoff | None = None
    ) -> User | None:
        """The user of a ``Basic`` authorization header value, or None when the header is
        missing, malformed or its credentials are wrong.

        Cached credentials answer at once. Otherwise, with a ``backoff`` (the calling
        connection's), the check waits for the connection's previous checks and its
        backoff, then runs the authenticator on :attr:`limiter`'s threads.
        """
        if authorization is None:
            return None
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, sep, password = decoded.partition(":")
        if not sep:
            return None
        key = (username, hashlib.sha256(password.encode("utf-8")).digest())
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if backoff is None:
            return await self._check(key, username, password)
        async with backoff.lock:
            # A call that waited for the lock may find its credentials checked meanwhile.
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            if backoff.not_before > trio.current_time():
                await trio.sleep_until(backoff.not_before)
            user = await self._check(key, username, password)
            if user is None:
                backoff.failed()
            else:
                backoff.succeeded()
            return user

    async def _check(self, key: tuple[str, bytes], username: str, password: str) -> User | None:
        user = await trio.to_thread.run_sync(
            self._authenticator, username, password, limiter=self.limiter
        )
        if user is not None:
            if len(self._cache) >= self._max_cached:
                # Forget the oldest entry (dicts keep insertion order).
                del self._cache[next(iter(self._cache))]
            self._cache[key] = user
        return user
