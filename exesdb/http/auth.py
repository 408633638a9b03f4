"""Who is asking: HTTP Basic authentication against the users file, for every request of
the HTTP listener but the health checks.

The users file is the gRPC gateway's (:mod:`exesdb.grpc.auth`), checked the same way
(:class:`exesdb.logins.BasicAuth`: scrypt on a few threads of its own, never
the trio thread; successful checks remembered; after a failure, the next check from the
same client address waits, longer with each failure). Without a users file nobody is
asked and everyone may do everything, as on the gRPC side (the listener is on loopback
unless told otherwise).

What a user may do (:class:`Viewer`): see and read a store if it may use it
(:func:`exesdb.grpc.auth.may_use`: the group ``$admins`` or the store's own group), see
the node (tree, cluster, metrics) once authenticated, and kill a process only in
``$admins``. A request without valid credentials gets 401 with
``WWW-Authenticate: Basic realm="exesdb"``, so a browser asks for them.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import attrs

from ..grpc.auth import ADMINS, Users, may_use
from ..grpc.rpc import User
from ..logins import BasicAuth, LoginBackoff

__all__ = ["OPEN_PATHS", "REALM", "BasicAuthMiddleware", "Viewer", "viewer_of"]

REALM: Final = "exesdb"
OPEN_PATHS: Final = ("/health/live", "/health/ready")
"""Paths served without credentials."""
_SCOPE_KEY: Final = "exesdb.viewer"
_MAX_CLIENTS: Final = 1024  # client addresses whose login backoff is remembered

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@attrs.frozen
class Viewer:
    """The authenticated user of a request (``user``), or, without a users file
    (``authenticating`` false), nobody in particular, who may do everything."""

    user: User | None
    authenticating: bool

    @property
    def name(self) -> str | None:
        """The user's name, None without a users file."""
        return self.user.name if self.user is not None else None

    @property
    def is_admin(self) -> bool:
        """Whether the user is in ``$admins`` (always true without a users file)."""
        return not self.authenticating or (self.user is not None
                                           and ADMINS in self.user.groups)

    def may_use(self, store_id: str) -> bool:
        """Whether the user may see and read store ``store_id``."""
        return not self.authenticating or (self.user is not None
                                           and may_use(self.user, store_id))


def viewer_of(scope: Scope) -> Viewer:
    """The :class:`Viewer` the middleware found for this request."""
    viewer = scope.get(_SCOPE_KEY)
    assert isinstance(viewer, Viewer), "BasicAuthMiddleware did not run"
    return viewer


class BasicAuthMiddleware:
    """An ASGI middleware: checks the credentials of every HTTP request but
    :data:`OPEN_PATHS` against ``users`` (None: no users file), answers 401 to wrong or
    missing ones, and records the :class:`Viewer` for :func:`viewer_of`."""

    def __init__(self, app: ASGIApp, users: Users | None) -> None:
        self.app = app
        self.auth = BasicAuth(users.authenticate) if users is not None else None
        self._backoffs: collections.OrderedDict[str, LoginBackoff] = (
            collections.OrderedDict())

    def _backoff(self, client: str) -> LoginBackoff:
        backoff = self._backoffs.pop(client, None) or LoginBackoff()
        self._backoffs[client] = backoff  # the most recent last
        while len(self._backoffs) > _MAX_CLIENTS:
            self._backoffs.popitem(last=False)
        return backoff

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.auth is None:  # lifespan, or no users file
            scope[_SCOPE_KEY] = Viewer(None, authenticating=False)
            await self.app(scope, receive, send)
            return
        if scope["path"] in OPEN_PATHS:
            scope[_SCOPE_KEY] = Viewer(None, authenticating=True)
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                header = value.decode("latin-1")
        client = scope.get("client")
        user = await self.auth.user(header, self._backoff(str(client[0]) if client else "?"))
        if user is None:
            await _unauthorised(send)
            return
        scope[_SCOPE_KEY] = Viewer(user, authenticating=True)
        await self.app(scope, receive, send)


async def _unauthorised(send: Send) -> None:
    body = b'{"error": "authentication required"}'
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode()),
    ]})
    await send({"type": "http.response.body", "body": body})
