"""Helpers for the HTTP listener's tests: a node with stores and its HTTP listener, and a
plain HTTP client (urllib, run on a worker thread) on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

import exesdb
import otp
from exesdb import http
from exesdb.grpc.auth import add_user

ADMIN = ("root", "root-secret")
ALICE = ("alice", "alice-secret")  # may use store "s" only


@attrs.frozen
class Answer:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def _request(url: str, method: str, headers: dict[str, str], body: bytes | None) -> Answer:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()},
                          response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, {k.lower(): v for k, v in error.headers.items()},
                      error.read())


def basic(user: tuple[str, str]) -> dict[str, str]:
    """The Authorization header of ``user`` (name, password)."""
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@attrs.define
class Console:
    """A running HTTP listener: ``url`` (ends with ``/``)."""

    url: str

    async def get(self, path: str, user: tuple[str, str] | None = None,
                  headers: dict[str, str] | None = None) -> Answer:
        return await self.request("GET", path, user, headers)

    async def post(self, path: str, body: Any = None, user: tuple[str, str] | None = None,
                   headers: dict[str, str] | None = None) -> Answer:
        data = json.dumps(body).encode() if body is not None else b""
        return await self.request("POST", path, user, headers, data)

    async def request(self, method: str, path: str, user: tuple[str, str] | None = None,
                      headers: dict[str, str] | None = None,
                      body: bytes | None = None) -> Answer:
        sent = {**(basic(user) if user else {}), **(headers or {})}
        return await trio.to_thread.run_sync(_request, self.url + path.lstrip("/"), method,
                                             sent, body)


def users_file(directory: Path) -> str:
    """A users file with ``root`` in ``$admins`` and ``alice`` in group ``s``."""
    path = str(directory / "users")
    add_user(path, *ADMIN, ["$admins"])
    add_user(path, *ALICE, ["s"])
    return path


@contextlib.asynccontextmanager
async def running(data_dir: Path, stores: Sequence[str] = ("s",),
                  configured: Sequence[str] | None = None, grpc: bool = False,
                  users: str | None = None, tree_interval: float = 0.2,
                  **http_options: Any) -> AsyncIterator[Console]:
    """A node running ``stores`` (``grpc``: each with a gRPC listener on a free port) and
    an HTTP listener on a free port serving ``configured`` (None: every store)."""
    async with otp.node():
        for store_id in stores:
            await exesdb.start_store(store_id=store_id, data_dir=data_dir,
                                     grpc_port=0 if grpc else None)
        options = http.resolve_http_options(http_port=0, users_file=users, environ={},
                                            **http_options)
        sup = await otp.supervisor.start_link([http.child_spec(
            options, stores=configured, tree_interval=tree_interval,
            dashboard_interval=0.2)])
        url = http.url()
        assert url is not None
        yield Console(url)
        await otp.supervisor.stop(sup)
        for store_id in stores:
            with contextlib.suppress(exesdb.StoreNotFound):
                await exesdb.stop_store(store_id)


async def eventually(check: Callable[[], Any], limit: float = 10.0) -> Any:
    """Await ``check()`` (sync or async) until it returns something true; return it."""
    with trio.fail_after(limit):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return result
            await trio.sleep(0.05)


def chromium() -> str | None:
    """Debian's chromium, if installed."""
    path = "/usr/bin/chromium"
    return path if os.access(path, os.X_OK) else None
