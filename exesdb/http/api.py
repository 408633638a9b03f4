"""The console's JSON API (``/api/...``): what its pages read, through :mod:`exesdb.gateway`
(stores, streams, events, subscriptions) and the node's own views (the tree, the cluster,
the gRPC persistent subscription groups).

Every answer is JSON. A store the user may not use answers 403 and is not listed; an
unknown store 404; a bad parameter 400 naming it and its rule. The requests that change
something (``POST``: kill a process, replay parked messages) also need the header
``X-Exesdb-Console: 1``, which a page of another site cannot send without asking this
server first (CORS), so a page elsewhere cannot make a logged-in browser post them.

Routes (see :data:`ROUTES`):

* ``GET /api/node``: the node (processes, memory, the user) and its stores;
* ``GET /api/stores/{store}/streams?prefix=&after=&limit=``: stream ids, sorted;
* ``GET /api/stores/{store}/events?stream=&from=&count=&direction=``: a page of events
  (``from`` a number or ``end``; ``count`` 1-100; ``forward`` or ``backward``);
* ``GET /api/stores/{store}/subscriptions``: every subscription with its lag, and the gRPC
  groups with their in-flight and parked counts;
* ``POST /api/stores/{store}/groups/replay-parked`` (JSON ``{"stream", "group"}``);
* ``GET /api/tree``: the supervision tree, with the restarts seen;
* ``GET /api/processes/{pid}``: a process of the tree; ``POST .../kill``: kill it
  (``$admins`` only);
* ``GET /api/cluster``: each store's members, their states and the leader.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import time
from typing import Any, Final

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import otp
from otp import supervisor
from otp.lowlevel import current_node

from ..constants import END, End
from ..errors import ExESDBError, InvalidArgument, StoreNotFound, StoreUnavailable
from ..gateway import get_events, get_streams, get_version, list_stores
from ..grpc.groups.client import replay_parked
from ..grpc.rpc import RpcError
from ..systems.cluster import cluster_view
from ..systems.store import is_leader, node_stores
from ..validation import check_direction
from .auth import viewer_of
from .sample import resident_memory_bytes, sample_store
from .tree import TreeNode
from .views import event_view, group_view, subscription_view
from .watcher import board, refresh

__all__ = ["CONSOLE_HEADER", "ROUTES", "cluster", "node", "tree"]

CONSOLE_HEADER: Final = "x-exesdb-console"
"""The header every changing request (POST) needs (see the module docstring)."""
MAX_PAGE: Final = 100
"""The most events one page holds."""
MAX_STREAMS: Final = 500
"""The most stream ids one listing holds."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _store(request: Request) -> str | JSONResponse:
    """The request's store id, or the answer to give when it cannot be used."""
    store_id = str(request.path_params["store"])
    if not viewer_of(request.scope).may_use(store_id):
        return _error(403, f"store {store_id!r}: access denied")
    if store_id not in {info.store_id for info in await list_stores()}:
        return _error(404, f"store {store_id!r}: not running on this node")
    return store_id


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name}: must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidArgument(f"{name}: must be from {low} to {high}, got {value}")
    return value


def _failure(exc: Exception) -> JSONResponse:
    """The answer for a store's error."""
    if isinstance(exc, InvalidArgument):
        return _error(400, str(exc))
    if isinstance(exc, StoreNotFound):
        return _error(404, str(exc))
    if isinstance(exc, StoreUnavailable | RpcError | otp.OTPError):
        return _error(503, str(exc))
    return _error(500, str(exc))


def _needs_console_header(request: Request) -> JSONResponse | None:
    if request.headers.get(CONSOLE_HEADER) != "1":
        return _error(403, f"{CONSOLE_HEADER}: this request needs the header "
                           f"'{CONSOLE_HEADER}: 1'")
    return None


# -- node --------------------------------------------------------------------------------


async def node(request: Request) -> Response:
    """The node and the stores the user may use."""
    viewer = viewer_of(request.scope)
    stores = [{"store_id": info.store_id, "status": info.status,
               "db_type": info.options.get("db_type"),
               "grpc": _grpc_address(info.options)}
              for info in await list_stores() if viewer.may_use(info.store_id)]
    return JSONResponse({
        "processes": len(current_node().processes),
        "memory_bytes": await trio.to_thread.run_sync(resident_memory_bytes),
        "user": viewer.name, "admin": viewer.is_admin, "stores": stores})


def _grpc_address(options: dict[str, Any]) -> str | None:
    port = options.get("grpc_port")
    return None if port is None else f"{options.get('grpc_host')}:{port}"


# -- streams and events ------------------------------------------------------------------


async def streams(request: Request) -> Response:
    """Stream ids (sorted) starting with ``prefix``, after ``after``, at most ``limit``."""
    store_id = await _store(request)
    if isinstance(store_id, JSONResponse):
        return store_id
    prefix = request.query_params.get("prefix", "")
    after = request.query_params.get("after", "")
    try:
        limit = _int(request, "limit", 100, 1, MAX_STREAMS)
        ids = await get_streams(store_id)
    except (ExESDBError, otp.OTPError) as exc:
        return _failure(exc)
    start = bisect.bisect_left(ids, prefix)
    if after:
        start = max(start, bisect.bisect_right(ids, after))
    matching: list[str] = []
    for stream_id in ids[start:]:
        if not stream_id.startswith(prefix) or len(matching) > limit:
            break
        matching.append(stream_id)
    total = len(ids)
    return JSONResponse({"streams": matching[:limit], "more": len(matching) > limit,
                         "total": total})


async def events(request: Request) -> Response:
    """A page of a stream's events (see the module docstring)."""
    store_id = await _store(request)
    if isinstance(store_id, JSONResponse):
        return store_id
    stream_id = request.query_params.get("stream", "")
    raw_from = request.query_params.get("from", "")
    try:
        direction = check_direction(request.query_params.get("direction", "forward"))
        count = _int(request, "count", 20, 1, MAX_PAGE)
        if raw_from in ("", "end"):
            start: int | End = END if raw_from == "end" or direction == "backward" else 0
        else:
            start = _int(request, "from", 0, 0, 2**62)
        page = await get_events(store_id, stream_id, start, count, direction)
        version = await get_version(store_id, stream_id)
    except (ExESDBError, otp.OTPError) as exc:
        return _failure(exc)
    return JSONResponse({"stream_id": stream_id, "version": version,
                         "direction": direction, "events": [event_view(e) for e in page]})


# -- subscriptions -----------------------------------------------------------------------


async def subscriptions(request: Request) -> Response:
    """Every subscription of the store with its lag, and the gRPC groups."""
    store_id = await _store(request)
    if isinstance(store_id, JSONResponse):
        return store_id
    sample = await sample_store(store_id, "running")
    return JSONResponse({
        "store_id": store_id, "head": sample.head,
        "subscriptions": (None if sample.subscriptions is None
                          else [subscription_view(s) for s in sample.subscriptions]),
        "groups": None if sample.groups is None else [group_view(g) for g in sample.groups]})


async def replay(request: Request) -> Response:
    """Replay a gRPC group's parked messages."""
    refused = _needs_console_header(request)
    if refused is not None:
        return refused
    store_id = await _store(request)
    if isinstance(store_id, JSONResponse):
        return store_id
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return _error(400, "body: must be JSON {\"stream\": ..., \"group\": ...}")
    stream, group = (body.get("stream"), body.get("group")) if isinstance(body, dict) else (
        None, None)
    if not isinstance(stream, str) or not isinstance(group, str):
        return _error(400, "body: must be JSON {\"stream\": ..., \"group\": ...} (strings)")
    try:
        await replay_parked(store_id, stream, group, None)
    except RpcError as exc:
        return _error(404 if exc.code.name == "NOT_FOUND" else 503, exc.message)
    return JSONResponse({"replayed": {"stream": stream, "group": group}})


# -- the tree and its processes ----------------------------------------------------------


def tree() -> dict[str, Any]:
    """The tree as the console shows it: ``version``, ``now`` (the server's epoch
    seconds), ``tree`` (None before the first snapshot), each node with ``restarts`` (of
    its children, seen) and ``restarted_at`` (epoch seconds of its last restart seen, or
    None)."""
    current = board()

    def view(node: TreeNode) -> dict[str, Any]:
        return {"pid": None if node.pid is None else repr(node.pid), "label": node.label,
                "path": node.path, "kind": node.kind, "more": node.more,
                "unreachable": node.unreachable,
                "restarts": current.restarts.get(node.path, 0),
                "restarted_at": current.restarted_at.get(node.path),
                "children": [view(child) for child in node.children]}

    return {"version": current.version, "now": time.time(),
            "tree": None if current.snapshot is None else view(current.snapshot)}


async def tree_route(request: Request) -> Response:
    """``GET /api/tree``."""
    return JSONResponse(tree())


def _find(pid_text: str) -> tuple[otp.Pid, TreeNode] | None:
    current = board()
    pid = current.pids.get(pid_text)
    if pid is None or current.snapshot is None:
        return None
    for node in current.snapshot.walk():
        if node.pid == pid:
            return pid, node
    return None


async def process(request: Request) -> Response:
    """What the console knows of a process of the tree."""
    found = _find(request.path_params["pid"])
    if found is None:
        return _error(404, f"pid {request.path_params['pid']!r}: not a process of the tree")
    pid, found_node = found
    info: dict[str, Any] = {
        "pid": repr(pid), "label": found_node.label, "path": found_node.path,
        "kind": found_node.kind, "alive": otp.is_alive(pid),
        "restarts": board().restarts.get(found_node.path, 0),
        "restarted_at": board().restarted_at.get(found_node.path),
    }
    if found_node.kind == "supervisor":
        try:
            info["children"] = await supervisor.count_children(pid)
        except otp.OTPError:
            info["children"] = None
    details = otp.process_info(pid)  # None once it has ended
    if details is not None:
        info["message_queue_len"] = details.message_queue_len
        info["status"] = details.status
        info["trap_exits"] = details.trap_exits
    return JSONResponse(info)


async def kill(request: Request) -> Response:
    """Kill a process of the tree (``$admins`` only): its supervisor restarts it."""
    refused = _needs_console_header(request)
    if refused is not None:
        return refused
    viewer = viewer_of(request.scope)
    if not viewer.is_admin:
        return _error(403, "kill: only users in $admins may kill a process")
    found = _find(request.path_params["pid"])
    if found is None:
        return _error(404, f"pid {request.path_params['pid']!r}: not a process of the tree")
    pid, found_node = found
    otp.exit(pid, otp.KILL)
    with contextlib.suppress(otp.OTPError):
        await refresh()  # the tree shows it at once; its restart at the next snapshot
    return JSONResponse({"killed": repr(pid), "path": found_node.path})


# -- cluster -----------------------------------------------------------------------------


async def cluster() -> list[dict[str, Any]]:
    """Each running store's cluster: ``db_type``, ``members`` (``node``, ``address``,
    ``alive``, ``leader``, ``me``) and ``leader`` (its node name, or None)."""
    out = []
    for info in await list_stores():
        options = info.options
        view = cluster_view(info.store_id)
        members: list[dict[str, Any]]
        if view is not None:
            members = [{"node": m.node, "address": f"{m.host}:{m.port}", "alive": m.alive,
                        "leader": m.leader, "me": m.node == view.me} for m in view.members]
        else:
            try:
                leads = await is_leader(info.store_id)
            except (ExESDBError, otp.OTPError):
                leads = False
            opts = node_stores().get(info.store_id)
            node_name = opts.cluster_node_name if opts is not None else "this node"
            members = [{"node": node_name, "address": _grpc_address(options), "alive": True,
                        "leader": leads, "me": True}]
        leader = next((m["node"] for m in members if m["leader"]), None)
        out.append({"store_id": info.store_id, "db_type": options.get("db_type"),
                    "status": info.status, "members": members, "leader": leader})
    return out


async def cluster_route(request: Request) -> Response:
    """``GET /api/cluster``: the stores the user may use."""
    viewer = viewer_of(request.scope)
    return JSONResponse([c for c in await cluster() if viewer.may_use(c["store_id"])])


ROUTES: Final = [
    Route("/api/node", node),
    Route("/api/stores/{store}/streams", streams),
    Route("/api/stores/{store}/events", events),
    Route("/api/stores/{store}/subscriptions", subscriptions),
    Route("/api/stores/{store}/groups/replay-parked", replay, methods=["POST"]),
    Route("/api/tree", tree_route),
    Route("/api/processes/{pid}", process),
    Route("/api/processes/{pid}/kill", kill, methods=["POST"]),
    Route("/api/cluster", cluster_route),
]
"""The API's routes."""
