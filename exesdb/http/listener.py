"""The node's HTTP listener: :class:`HttpSystem`, its place in a supervision tree, and
:func:`serve`, the server itself.

``python -m exesdb start`` runs one per node, as the last child of the exesdb
application's top supervisor (after the stores, so it serves them from its first
request)::

    exesdb                 one_for_one (the application)
    ├─ exesdb.registry
    ├─ System[<store>] ... one per store
    └─ HttpSystem          rest_for_one, 5 restarts in 30 s
       ├─ TreeWatcher      the supervision tree, and the restarts seen (watcher.py)
       └─ HttpListener     runs serve() in a linked process of its own

A program that runs its stores itself lists :func:`child_spec` among its children (after
the stores), or runs :func:`serve` in a task of its node.

:class:`HttpListener`, like the gRPC gateway's listener, reads the users file, starts
:func:`serve` in a linked process and waits until it listens: an address that cannot be
bound (in use, not permitted) or TLS files that cannot be loaded fail the start with
:class:`exesdb.errors.HttpListenError` naming the option and the address, instead of a
restart loop. It then logs, on logger ``exesdb.http`` at INFO,
``exesdb.http: console at <URL> (metrics at <URL>metrics)`` and publishes the URL for
:func:`url`. When it stops, the server stops (open event streams end).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from functools import partial
from typing import Any, Final, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

import otp
from otp import gen_server, supervisor
from otp.lowlevel import NodeVar

from ..errors import ExESDBError, HttpListenError
from ..grpc.auth import Users, load_users
from .app import console_app
from .live import DASHBOARD_INTERVAL
from .options import HttpOptions, check_http_files, resolve_http_options
from .watcher import DEFAULT_INTERVAL, TreeWatcher

__all__ = ["HttpListener", "HttpSystem", "child_spec", "serve", "url"]

log: Final = logging.getLogger("exesdb.http")
_server_log: Final = logging.getLogger("exesdb.http.server")  # hypercorn's own messages
_server_log.setLevel(logging.WARNING)  # not its "Running on ... (CTRL + C to quit)"

_url: NodeVar[str | None] = NodeVar("exesdb.http.url", default=None)


def url() -> str | None:
    """The URL of this node's console (``http://127.0.0.1:2112/``), None when no
    :class:`HttpListener` listens."""
    return _url.get()


class _Config(Config):
    """hypercorn's configuration with a TLS context loaded beforehand (in a thread), so
    no file is read on the trio thread."""

    prebuilt_ssl: ssl.SSLContext | None = None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self.prebuilt_ssl


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def _config(options: HttpOptions) -> _Config:
    config = _Config()
    config.bind = [_bind_address(options.http_host, options.http_port)]
    config.accesslog = None
    config.errorlog = _server_log
    config.graceful_timeout = 1.0
    if options.tls_cert_file is not None and options.tls_key_file is not None:
        config.certfile, config.keyfile = options.tls_cert_file, options.tls_key_file
        try:
            config.prebuilt_ssl = await trio.to_thread.run_sync(Config.create_ssl_context,
                                                                config)
        except (OSError, ssl.SSLError) as exc:
            raise HttpListenError(
                f"tls_cert_file: cannot load the TLS certificate {options.tls_cert_file!r} "
                f"and key {options.tls_key_file!r}: {exc}") from exc
    return config


async def serve(options: HttpOptions, *, stores: Sequence[str] | None = None,
                dashboard_interval: float = DASHBOARD_INTERVAL,
                task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the console, ``/metrics`` and the health checks for ``stores`` (None: every
    store running on the node) as ``options`` say, until cancelled; run it inside an otp
    node (the pages read its processes). Reports the console's URL through
    ``task_status`` once it listens.

    Raises :class:`exesdb.InvalidArgument` for a missing or malformed users or TLS file,
    :class:`exesdb.errors.HttpListenError` for TLS files that cannot be loaded, and
    OSError for an address that cannot be bound. The live tree needs the node's tree
    watcher (:class:`~.watcher.TreeWatcher`, which :class:`HttpSystem` runs); without it
    the tree page stays empty.
    """
    await trio.to_thread.run_sync(check_http_files, options)
    users: Users | None = None
    if options.users_file is not None:
        users = await trio.to_thread.run_sync(load_users, options.users_file)
    # Built in a thread: prometheus-client's process collector reads /proc when made.
    app = await trio.to_thread.run_sync(console_app, stores, users, dashboard_interval)
    config = await _config(options)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(hypercorn_serve, cast(Any, app),
                                                       config))
        task_status.started(binds[0].rstrip("/") + "/")


async def _serve_process(options: HttpOptions, stores: Sequence[str] | None,
                         dashboard_interval: float,
                         ready: trio.MemorySendChannel[Any]) -> None:
    """The process that runs :func:`serve`: sends the URL (or the error that kept it from
    listening) on ``ready``, then serves until it is stopped."""
    async with trio.open_nursery() as nursery:
        try:
            address = await nursery.start(partial(
                serve, options, stores=stores, dashboard_interval=dashboard_interval))
        except Exception as exc:  # reported to the starting process, which fails
            ready.send_nowait(exc)
            return
        ready.send_nowait(address)


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _flatten(sub)]
    return [exc]


class HttpListener(otp.GenServer):
    """The node's HTTP listener (see the module docstring)."""

    async def init(self, options: HttpOptions, stores: Sequence[str] | None,
                   dashboard_interval: float = DASHBOARD_INTERVAL) -> None:
        otp.trap_exits(True)  # so that a shutdown runs terminate (stops the server first)
        self.serving: otp.Pid | None = None
        send, receive = trio.open_memory_channel[Any](1)
        self.serving = otp.spawn_link(_serve_process, options, stores, dashboard_interval,
                                      send)
        result = await receive.receive()
        where = _bind_address(options.http_host, options.http_port)
        if isinstance(result, BaseException):
            errors = _flatten(result)
            known = [e for e in errors if isinstance(e, ExESDBError)]
            if known:
                raise known[0]
            reasons = "; ".join(str(e) or type(e).__name__ for e in errors)
            raise HttpListenError(f"http_port: cannot listen on {where}: {reasons}")
        self.url = str(result)
        _url.set(self.url)
        log.info("exesdb.http: console at %s (metrics at %smetrics)", self.url, self.url)

    async def handle_info(self, msg: Any) -> Any:
        if type(msg) is otp.Exit and msg.pid == self.serving:
            self.serving = None
            return otp.Stop(msg.reason)  # the server ended: start again
        return None

    async def terminate(self, reason: Any) -> None:
        if _url.get() == getattr(self, "url", None):
            _url.set(None)
        pid, self.serving = self.serving, None
        if pid is None or not otp.is_alive(pid):
            return
        ref = otp.monitor(pid)
        otp.exit(pid, otp.SHUTDOWN)
        try:
            await otp.receive(timeout=5.0,
                              match=lambda m: type(m) is otp.Down and m.ref == ref)
        except otp.ReceiveTimeout:
            otp.exit(pid, otp.KILL)


class HttpSystem(otp.Supervisor):
    """rest_for_one, 5 restarts in 30 s: the :class:`~.watcher.TreeWatcher`, then the
    :class:`HttpListener` (see the module docstring)."""

    async def init(self, options: HttpOptions, stores: Sequence[str] | None,
                   tree_interval: float, dashboard_interval: float) -> supervisor.Spec:
        async def start_listener() -> otp.Pid | None:
            return await gen_server.start_link(HttpListener, options, stores,
                                               dashboard_interval)

        return supervisor.Spec(
            [TreeWatcher.child_spec(tree_interval),
             otp.ChildSpec(id=HttpListener, start=start_listener, shutdown=10.0)],
            strategy="rest_for_one", intensity=5, period=30)


def child_spec(options: HttpOptions | None = None, *, stores: Sequence[str] | None = None,
               tree_interval: float = DEFAULT_INTERVAL,
               dashboard_interval: float = DASHBOARD_INTERVAL,
               **http_options: Any) -> otp.ChildSpec:
    """The child spec of a node's :class:`HttpSystem` serving ``stores`` (None: every
    store running on the node): ``child_spec(http_port=0)`` (missing options come from
    ``EX_ESDB_<KEY>``, see :mod:`.options`; bad ones raise :class:`exesdb.InvalidArgument`
    here), or from an :class:`~.options.HttpOptions`. ``tree_interval``: seconds between
    two snapshots of the tree; ``dashboard_interval``: between two dashboard updates."""
    resolved = options if options is not None else resolve_http_options(http_options)
    chosen = None if stores is None else tuple(stores)

    async def start() -> otp.Pid | None:
        return await supervisor.start_link(HttpSystem, resolved, chosen, tree_interval,
                                           dashboard_interval)

    return otp.ChildSpec(id=HttpSystem, start=start, type="supervisor", shutdown=15.0)
