"""Checking a call's ``authorization: Basic ...`` header for :mod:`exesdb.grpc.server`.

The authenticator (username, password -> User or None) may be slow (password hashing),
so it runs in a worker thread, never on the trio thread; a successful check is
remembered (keyed by the username and a SHA-256 of the password given, never the
password itself) in a small bounded cache, so repeated calls with the same credentials
cost a dictionary lookup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable

import trio

from exesdb.grpc.rpc import User

__all__ = ["BasicAuth"]

_MAX_CACHED = 256


class BasicAuth:
    """Resolves ``authorization`` header values to users with ``authenticator``."""

    def __init__(
        self, authenticator: Callable[[str, str], User | None], max_cached: int = _MAX_CACHED
    ) -> None:
        self._authenticator = authenticator
        self._max_cached = max_cached
        self._cache: dict[tuple[str, bytes], User] = {}

    async def user(self, authorization: str | None) -> User | None:
        """The user of a ``Basic`` authorization header value, or None when the header is
        missing, malformed or its credentials are wrong."""
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
        user = await trio.to_thread.run_sync(self._authenticator, username, password)
        if user is not None:
            if len(self._cache) >= self._max_cached:
                # Forget the oldest entry (dicts keep insertion order).
                del self._cache[next(iter(self._cache))]
            self._cache[key] = user
        return user
