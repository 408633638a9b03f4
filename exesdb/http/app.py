"""The HTTP listener's ASGI application (Starlette): the console, its API, ``/metrics``
and the health checks, behind HTTP Basic authentication when there is a users file.

Routes: ``/`` (the console, one page: ``static/index.html``), ``/static/...`` (its
script and style sheet, shipped in the package), ``/metrics``, ``/health/live``,
``/health/ready``, the JSON API (:mod:`.api`) and the live streams (:mod:`.live`).

Every answer carries a strict Content-Security-Policy (scripts and styles from this
server only, none inline, no frames): even if event content reached the page as markup,
it could not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..grpc.auth import Users
from .api import ROUTES
from .auth import ASGIApp, BasicAuthMiddleware, Receive, Scope, Send
from .health import liveness, readiness
from .live import DASHBOARD_INTERVAL, live_routes
from .metrics import CONTENT_TYPE, Metrics

__all__ = ["SECURITY_HEADERS", "STATIC", "console_app"]

STATIC: Final = Path(__file__).parent / "static"
"""The console's files."""
SECURITY_HEADERS: Final = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Scope) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def console_app(stores: Sequence[str] | None, users: Users | None,
                dashboard_interval: float = DASHBOARD_INTERVAL) -> ASGIApp:
    """The application for ``stores`` (None: every store running on the node; readiness
    waits for these), authenticating against ``users`` (None: nobody is asked).

    Blocking (the metrics' process collector reads ``/proc`` once): call it in a thread."""
    metrics = Metrics(stores)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"cache-control": "no-store"})

    async def metrics_route(request: Request) -> Response:
        return Response(await metrics.render(), media_type=CONTENT_TYPE)

    async def live(request: Request) -> Response:
        return JSONResponse(liveness())

    async def ready(request: Request) -> Response:
        ok, body = await readiness(stores)
        return JSONResponse(body, status_code=200 if ok else 503)

    app = Starlette(routes=[
        Route("/", index),
        Route("/metrics", metrics_route),
        Route("/health/live", live),
        Route("/health/ready", ready),
        *ROUTES,
        *live_routes(stores, dashboard_interval),
        Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ])
    return _SecurityHeaders(BasicAuthMiddleware(app, users))
