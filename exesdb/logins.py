"""Checking a request's ``authorization: Basic ...`` header, for both front ends: the gRPC
server (:mod:`exesdb.grpc.server`) and the web console (:mod:`exesdb.http.auth`).

The authenticator (username, password -> User or None) may be slow (password hashing:
scrypt takes tens of milliseconds and 16 MiB), so it runs in a worker thread, never on
the trio thread, and on the server's own :data:`HASHING_THREADS` threads, never on
trio's default thread limiter: a flood of logins can neither hash more than that many
passwords at once nor starve the other users of worker threads.

A successful check is remembered (keyed by the username and a SHA-256 of the password
given, never the password itself) in a small bounded cache, so repeated calls with the
same credentials cost a dictionary lookup, and never wait behind anybody's hashing.

Throttling of the checks that do hash, three ways at once, each with its own
:class:`LoginBackoff`: per connection (the caller's), per user name and per client
address (the caller's, when it gives one): the checks of one connection, one user name
or one address run one at a time, and after a failed check the next one of the same
connection, name or address waits (:data:`BACKOFF_MIN` seconds, doubling with every
further failure up to :data:`BACKOFF_MAX`; a success resets it). So however many
connections an attacker opens, one address guesses at most one password per
:data:`BACKOFF_MAX` seconds once it keeps failing, and so does anybody guessing one user
name. A user name with :attr:`LoginLimits.lockout_failures` failed checks within
:attr:`LoginLimits.lockout_seconds` is locked out for that long: its credentials are
refused without hashing (credentials already cached keep working).

The hashing queue is bounded and fair: checks whose user name, address and connection
have no recent failure wait before those that have (a flood of wrong guesses cannot
delay the first login of other users), and when :attr:`LoginLimits.max_queued` checks
already wait for a thread, or a client address already has
:attr:`LoginLimits.max_per_address` checks waiting or running, a further check from an
address is refused at once with :class:`LoginsBusy` (``UNAVAILABLE``, which clients
retry). At most :attr:`LoginLimits.max_tracked` user names and as many addresses are
remembered (the least recently used idle ones are forgotten).
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import math
from collections.abc import Callable

import attrs
import trio

from exesdb.grpc.rpc import RpcError, StatusCode, User

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "HASHING_THREADS",
    "BasicAuth",
    "LoginBackoff",
    "LoginLimits",
    "LoginsBusy",
]

_MAX_CACHED = 256
HASHING_THREADS = 2
"""How many authenticator calls (password hashes) a server runs at once."""
BACKOFF_MIN = 0.1
"""Seconds a connection, user name or address waits before its next login after a
failed one."""
BACKOFF_MAX = 2.0
"""The longest such wait (it doubles with every consecutive failure up to this)."""


@attrs.frozen
class LoginLimits:
    """Bounds on password checks (see the module doc); the defaults are
    :class:`exesdb.grpc.server.ServerConfig`'s."""

    lockout_failures: int = 10
    """Failed checks of one user name within :attr:`lockout_seconds` that lock it out."""
    lockout_seconds: float = 60.0
    """The window failures are counted over, and how long a lockout lasts."""
    max_queued: int = 64
    """Checks that may wait for a hashing thread, server-wide."""
    max_per_address: int = 16
    """Checks one client address may have waiting or running."""
    max_tracked: int = 10_000
    """User names (and, apart, addresses) whose throttling state is remembered."""


class LoginsBusy(RpcError):
    """Too many logins wait already: the call ends ``UNAVAILABLE`` without hashing."""

    def __init__(self, why: str) -> None:
        super().__init__(StatusCode.UNAVAILABLE, f"too many logins in progress ({why}); "
                         "try again later")


class LoginBackoff:
    """One connection's (or user name's, or address's) login throttle: its uncached
    checks run one at a time, and each waits out the backoff of its previous failures
    (see the module doc)."""

    def __init__(self) -> None:
        self.lock = trio.Lock()
        self.delay = 0.0  # the wait after the next failure is max(BACKOFF_MIN, 2 * delay)
        self.not_before = -math.inf  # trio time before which no check may start

    def failed(self) -> None:
        """A check found wrong credentials."""
        self.delay = min(max(BACKOFF_MIN, self.delay * 2), BACKOFF_MAX)
        self.not_before = trio.current_time() + self.delay

    def succeeded(self) -> None:
        """A check found right credentials."""
        self.delay = 0.0
        self.not_before = -math.inf


class _Tracked(LoginBackoff):
    """A user name's or an address's throttle, with its failures and checks pending."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = 0  # checks waiting or running
        self.failures: collections.deque[float] = collections.deque()
        self.locked_until = -math.inf

    def failed_at(self, now: float, limits: LoginLimits) -> None:
        self.failed()
        failures = self.failures
        failures.append(now)
        while failures and failures[0] <= now - limits.lockout_seconds:
            failures.popleft()
        if len(failures) >= limits.lockout_failures:
            self.locked_until = now + limits.lockout_seconds
            failures.clear()

    def idle(self, now: float) -> bool:
        return (not self.pending and self.not_before <= now and self.locked_until <= now
                and not self.lock.locked())


class _Table:
    """Throttles by key (user name or address), at most ``limit`` of them: the least
    recently used idle ones are forgotten."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: collections.OrderedDict[str, _Tracked] = collections.OrderedDict()

    def get(self, key: str) -> _Tracked | None:
        """The throttle of ``key`` (made if new); None when the table is full of busy
        ones."""
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            entries.move_to_end(key)
            return entry
        if len(entries) >= self.limit:
            now = trio.current_time()
            for old in [k for k, v in entries.items() if v.idle(now)][: max(1, self.limit // 4)]:
                del entries[old]
            if len(entries) >= self.limit:
                return None
        entry = entries[key] = _Tracked()
        return entry


class _HashingQueue:
    """The hashing threads' turns: checks without recent failures first, then the
    others, each in arrival order."""

    def __init__(self, threads: int) -> None:
        self.free = threads
        self.clean: collections.deque[trio.Event] = collections.deque()
        self.suspect: collections.deque[trio.Event] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self.clean) + len(self.suspect)

    async def acquire(self, suspect: bool) -> None:
        if self.free and not self.clean and not self.suspect:
            self.free -= 1
            return
        event = trio.Event()
        queue = self.suspect if suspect else self.clean
        queue.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release()  # the turn came as we were cancelled: pass it on
            else:
                queue.remove(event)
            raise

    def release(self) -> None:
        for queue in (self.clean, self.suspect):
            if queue:
                queue.popleft().set()  # the thread's turn passes on
                return
        self.free += 1


class BasicAuth:
    """Resolves ``authorization`` header values to users with ``authenticator``."""

    def __init__(
        self,
        authenticator: Callable[[str, str], User | None],
        max_cached: int = _MAX_CACHED,
        limits: LoginLimits | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._max_cached = max_cached
        self._cache: dict[tuple[str, bytes], User] = {}
        self.limits = limits if limits is not None else LoginLimits()
        self.limiter = trio.CapacityLimiter(HASHING_THREADS)
        """The worker threads the authenticator runs on (never trio's default ones)."""
        self._queue = _HashingQueue(HASHING_THREADS)
        self._users = _Table(self.limits.max_tracked)
        self._addresses = _Table(self.limits.max_tracked)

    async def user(
        self,
        authorization: str | None,
        backoff: LoginBackoff | None = None,
        address: str | None = None,
    ) -> User | None:
        """The user of a ``Basic`` authorization header value, or None when the header is
        missing, malformed or its credentials are wrong (or its user name is locked out).

        Cached credentials answer at once. Otherwise the check waits for the previous
        checks and the backoffs of its connection (``backoff``, the caller's), its user
        name and its client ``address``, then for a hashing thread (see the module
        doc). With an ``address``, raises :class:`LoginsBusy` instead of queueing beyond
        the bounds.
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
        limits = self.limits
        name = self._users.get(username)
        place = self._addresses.get(address) if address is not None else None
        if name is None or (address is not None and place is None):
            raise LoginsBusy("too many clients")
        if name.locked_until > trio.current_time():
            await trio.lowlevel.checkpoint()
            return None
        if place is not None:
            if place.pending >= limits.max_per_address:
                raise LoginsBusy("too many from this address")
            if self._queue.waiting >= limits.max_queued:
                raise LoginsBusy("too many waiting")
        throttles = [t for t in (backoff, name, place) if t is not None]
        name.pending += 1
        if place is not None:
            place.pending += 1
        try:
            for throttle in throttles:
                await throttle.lock.acquire()
            # A check that waited may find its credentials checked, or its name locked.
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            if name.locked_until > trio.current_time():
                return None
            not_before = max(t.not_before for t in throttles)
            if not_before > trio.current_time():
                await trio.sleep_until(not_before)
            suspect = any(t.delay for t in throttles)
            user = await self._check(key, username, password, suspect)
            now = trio.current_time()
            if user is None:
                if backoff is not None:
                    backoff.failed()
                name.failed_at(now, limits)
                if place is not None:
                    place.failed()
            else:
                for throttle in throttles:
                    throttle.succeeded()
            return user
        finally:
            for throttle in throttles:
                if throttle.lock.statistics().owner is trio.lowlevel.current_task():
                    throttle.lock.release()
            name.pending -= 1
            if place is not None:
                place.pending -= 1

    async def _check(
        self, key: tuple[str, bytes], username: str, password: str, suspect: bool = False
    ) -> User | None:
        await self._queue.acquire(suspect)
        try:
            user = await trio.to_thread.run_sync(
                self._authenticator, username, password, limiter=self.limiter
            )
        finally:
            self._queue.release()
        if user is not None:
            if len(self._cache) >= self._max_cached:
                # Forget the oldest entry (dicts keep insertion order).
                del self._cache[next(iter(self._cache))]
            self._cache[key] = user
        return user
