"""The console's live updates, as Server-Sent Events (``text/event-stream``).

* ``GET /api/live/dashboard``: an event ``sample`` every :data:`DASHBOARD_INTERVAL`
  seconds: the time, the node's processes and memory, and per store the user may use its
  status, ``$all`` head and the events appended and read so far (the page turns the
  differences into events per second); every :data:`DETAIL_EVERY`-th one also carries
  each store's stream count and subscriptions with their lag.
* ``GET /api/live/tree``: an event ``tree`` (what ``GET /api/tree`` answers) at once, then
  whenever the tree watcher publishes a new version (a process started, ended or
  restarted), and a comment every :data:`KEEPALIVE` seconds while nothing changes.

A stream ends when the browser goes away (the server notices it and cancels it) or the
listener stops.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import ExESDBError
from ..gateway import get_streams
from .api import tree
from .auth import Viewer, viewer_of
from .sample import sample_node
from .views import store_view
from .watcher import board

__all__ = ["DASHBOARD_INTERVAL", "DETAIL_EVERY", "KEEPALIVE", "live_routes"]

DASHBOARD_INTERVAL: Final = 1.0
DETAIL_EVERY: Final = 5
KEEPALIVE: Final = 15.0
_HEADERS: Final = {"cache-control": "no-store", "x-accel-buffering": "no"}


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _dashboard(viewer: Viewer, stores: Sequence[str] | None,
                     interval: float) -> AsyncIterator[str]:
    tick = 0
    while True:
        detail = tick % DETAIL_EVERY == 0
        sample = await sample_node(stores, detail=detail)
        shown = []
        for store in sample.stores:
            if not viewer.may_use(store.store_id):
                continue
            view = store_view(store)
            if detail and store.status != "stopped":
                try:
                    view["streams"] = len(await get_streams(store.store_id))
                except ExESDBError:
                    view["streams"] = None
            shown.append(view)
        yield _event("sample", {"time": time.time(), "detail": detail,
                                "processes": sample.processes,
                                "memory_bytes": sample.memory_bytes, "stores": shown})
        tick += 1
        await trio.sleep(interval)


async def _tree() -> AsyncIterator[str]:
    current = board()
    version = -1
    while True:
        if current.version != version:
            version = current.version
            yield _event("tree", tree())
        with trio.move_on_after(KEEPALIVE) as waited:
            await current.changed.wait()
        if waited.cancelled_caught:
            yield ": keepalive\n\n"


def live_routes(stores: Sequence[str] | None,
                interval: float = DASHBOARD_INTERVAL) -> list[Route]:
    """The two event streams, the dashboard's for ``stores`` (None: every store)."""

    async def dashboard(request: Request) -> Response:
        return StreamingResponse(_dashboard(viewer_of(request.scope), stores, interval),
                                 media_type="text/event-stream", headers=_HEADERS)

    async def live_tree(request: Request) -> Response:
        return StreamingResponse(_tree(), media_type="text/event-stream", headers=_HEADERS)

    return [Route("/api/live/dashboard", dashboard), Route("/api/live/tree", live_tree)]
