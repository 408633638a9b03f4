"""exesdb.http: the node's HTTP front end: a web console, Prometheus metrics and health
checks, for every store of the node.

One listener per node (not per store), on ``127.0.0.1:2112`` by default
(:mod:`.options`: ``http_host``, ``http_port``, and the gRPC side's TLS files and users
file): ``python -m exesdb start`` runs it (``--http-port``, ``--http-host``, ``--no-http``)
under the exesdb application's top supervisor, after the stores (:mod:`.listener` shows
where); a program that runs its stores itself adds :func:`child_spec` to its tree, or runs
:func:`serve` in a task of its node.

What it serves:

* ``/``: the console (plain HTML, CSS and JavaScript shipped in the package, no build
  step): a dashboard (events per second in and out, heads, streams, subscriptions, the
  node's memory and processes, updated live), streams (search by prefix, page through a
  stream's events, each event's data and metadata as pretty-printed JSON or hex), every
  subscription with its lag and the gRPC persistent subscription groups (replay parked
  messages), the supervision tree (live; restarts highlighted; a click shows a process,
  which users in ``$admins`` may kill), and the cluster (members, states, leader);
* ``/metrics``: Prometheus's text format (:mod:`.metrics` lists the families);
* ``/health/live`` and ``/health/ready`` (:mod:`.health`);
* ``/api/...``: the JSON the console reads (:mod:`.api`), and its live event streams
  (:mod:`.live`).

With a users file, every request but the health checks needs HTTP Basic credentials of
one of its users, and a user sees only the stores it may use (:mod:`.auth`). Event
content is only ever put in the page as text.

The modules: :mod:`.options`, :mod:`.auth`, :mod:`.tree` (the supervision tree as data),
:mod:`.watcher` (the tree watcher process), :mod:`.sample` (the node and its stores at
one moment), :mod:`.metrics`, :mod:`.health`, :mod:`.views`, :mod:`.api`, :mod:`.live`,
:mod:`.app` (the Starlette application), :mod:`.listener` (the processes and
:func:`serve`).
"""

from .listener import HttpListener, HttpSystem, child_spec, serve, url
from .options import DEFAULT_HTTP_PORT, HttpOptions, resolve_http_options
from .tree import TreeNode, tree_snapshot

__all__ = [
    "DEFAULT_HTTP_PORT",
    "HttpListener",
    "HttpOptions",
    "HttpSystem",
    "TreeNode",
    "child_spec",
    "resolve_http_options",
    "serve",
    "tree_snapshot",
    "url",
]
