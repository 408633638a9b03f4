"""A node in a thread of its own, for tests that drive it from blocking code (a browser).

:class:`NodeThread` runs ``otp.run`` in a thread: stores and the HTTP listener on a free
port; :meth:`NodeThread.call` runs ``await fn(*args)`` in a process of that node (the
gateway's calls need one) and returns its result, or raises its exception, in the
calling thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

import exesdb
import otp
from exesdb import http

Job = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], concurrent.futures.Future[Any]]


class NodeThread:
    """See the module docstring."""

    def __init__(self, data_dir: Path, stores: Sequence[str] = ("demo",),
                 users_file: str | None = None, tree_interval: float = 0.3) -> None:
        self.data_dir = data_dir
        self.stores = tuple(stores)
        self.users_file = users_file
        self.tree_interval = tree_interval
        self.url = ""
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._send: trio.MemorySendChannel[Job | None] | None = None
        self._thread = threading.Thread(target=self._run, name="exesdb test node",
                                        daemon=True)

    def __enter__(self) -> NodeThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("the node did not start")
        if self._failure is not None:
            raise self._failure
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None and self._send is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._send.send_nowait, None,
                                          trio_token=self._token)
        self._thread.join(30)

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``await fn(*args)`` in the node; its result."""
        assert self._token is not None and self._send is not None
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        trio.from_thread.run_sync(self._send.send_nowait, (fn, args, future),
                                  trio_token=self._token)
        return future.result(30)

    def _run(self) -> None:
        try:
            otp.run(self._main)
        except BaseException as exc:  # reported to __enter__ if it failed to start
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        for store_id in self.stores:
            await exesdb.start_store(store_id=store_id, data_dir=self.data_dir)
        options = http.resolve_http_options(http_port=0, users_file=self.users_file,
                                            environ={})
        await otp.supervisor.start_link([http.child_spec(
            options, tree_interval=self.tree_interval, dashboard_interval=0.5)])
        self.url = http.url() or ""
        self._token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[Job | None](100)
        self._send = send
        self._ready.set()
        async for job in receive:
            if job is None:
                return
            fn, args, future = job
            try:
                future.set_result(await fn(*args))
            except Exception as exc:
                future.set_exception(exc)
