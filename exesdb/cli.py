"""The command line: ``python -m exesdb start | streams | read | info | user | dev-cluster``.

``start`` runs the exesdb application with one store per ``--store-id`` until SIGINT or
SIGTERM, then stops every store in order and exits 0, with every acknowledged event on
disk. ``streams``, ``read`` and ``info`` only read: they open a store's file read-only, so
they work beside a running server or without one. ``--json`` prints JSON Lines (one
object per stream or event; one object for ``info``).

``start`` also runs each store's gRPC gateway (the KurrentDB protocol, see
:mod:`exesdb.grpc`) on its own port (2113, 2114, ... by default; ``--no-grpc`` for none),
and the node's HTTP listener (:mod:`exesdb.http`: the web console, ``/metrics``, the health
checks) on ``127.0.0.1:2112`` (``--http-host``, ``--http-port``; ``--no-http`` for none),
which logs the console's URL once it listens.
``user add|remove|list`` manages the gateway's users file.

``start --db-type cluster --pg-dsn DSN`` runs the stores in cluster mode: the same command
on other machines (each its own ``--node-name`` and address) forms one cluster per store
(see :mod:`exesdb.systems.cluster`). ``dev-cluster`` runs a throw-away local cluster with
a PostgreSQL of its own (:mod:`exesdb.devcluster`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import trio

import otp
from otp.supervisor import StartChildError

from .application import application
from .constants import END
from .devcluster import run_dev_cluster
from .errors import ExESDBError, InvalidArgument, StorageError, StreamDeleted
from .events import EventRecord
from .grpc import auth
from .http.options import DEFAULT_HTTP_PORT, check_http_files, resolve_http_options
from .naming import child_label
from .oplog import (
    OneLineParser,
    StartFailureFilter,
    activity_summaries,
    configure_logging,
    environment_help,
)
from .options import (
    ENV_PREFIX,
    StoreOptions,
    default_data_dir,
    redact_dsn,
    resolve_options,
    validate_store_id,
)
from .pgserver import PostgresNotInstalled
from .storage import SQLiteBackend
from .storage.backend import Backend
from .storage.postgres import PostgresBackend
from .storage.postgres_inspect import store_size
from .storage.postgres_schema import schema_name
from .storage.verify import verify_store
from .systems import check_startable, root_cause

__all__ = ["main"]

log = logging.getLogger("exesdb")

DEFAULT_GRPC_PORT = 2113
"""The gRPC port ``start`` listens on by default (KurrentDB's)."""


def _store_ids(values: list[str] | None) -> list[str]:
    raw = values or [os.environ.get(ENV_PREFIX + "STORE_ID", "")]
    ids = [part.strip() for value in raw for part in value.split(",") if part.strip()]
    return ids


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m exesdb", description="exesdb: an event store on otp.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, several: bool) -> None:
        sub.add_argument(
            "--store-id", action="append" if several else "store", dest="store_id",
            help=(
                "the store id (1-64 letters, digits, '_', '-', '.')"
                + ("; repeat for several stores" if several else "")
                + f"; default ${ENV_PREFIX}STORE_ID"
                + (" (comma-separated for several)" if several else "")
            ),
        )
        sub.add_argument(
            "--data-dir", default=None,
            help=f"the root folder of the stores; default ${ENV_PREFIX}DATA_DIR, else "
                 f"{default_data_dir()}",
        )

    start = commands.add_parser(
        "start", help="run stores until SIGINT or SIGTERM",
        description="Run the exesdb application with one store per --store-id until "
                    "SIGINT or SIGTERM, then stop every store in order and exit 0.",
    )
    common(start, several=True)
    start.add_argument(
        "--db-type", choices=["single", "cluster"], default=None,
        help=f"single (one node) or cluster; default ${ENV_PREFIX}DB_TYPE, else single",
    )
    start.add_argument(
        "--log-level", default="INFO", metavar="LEVEL[,LOGGER=LEVEL...]",
        help="the logging level (default INFO), then any per-logger levels "
             "(DEBUG,hpack=DEBUG); third-party loggers stay at INFO unless named")
    start.add_argument(
        "--verify", action="store_true", default=None,
        help=f"check each store's file fully (SQLite's integrity check, every record's "
             f"checksum) before starting, and refuse a damaged one; default "
             f"${ENV_PREFIX}VERIFY")
    start.add_argument(
        "--activity-interval", type=float, default=None, metavar="SECONDS",
        help=f"log a summary of each store's activity this often, when there was any "
             f"(0: never); default ${ENV_PREFIX}ACTIVITY_INTERVAL, else 60")
    cluster = start.add_argument_group(
        "cluster mode (--db-type cluster)",
        "The nodes of a store share one PostgreSQL database; run the same command on each "
        "machine, each with its own --node-name and address. The data dir is not used.")
    cluster.add_argument(
        "--pg-dsn", default=None, metavar="DSN",
        help=f"the PostgreSQL database (postgresql://user@host/db, or key=value); required "
             f"in cluster mode; default ${ENV_PREFIX}PG_DSN")
    cluster.add_argument(
        "--node-name", default=None, metavar="NAME",
        help=f"this node's name, unique in the cluster; default ${ENV_PREFIX}NODE_NAME, "
             "else the host name and gRPC port")
    cluster.add_argument(
        "--advertise-host", default=None, metavar="HOST",
        help=f"the host gossip tells clients for this node; default "
             f"${ENV_PREFIX}ADVERTISE_HOST, else the listen host (the host name for a "
             "wildcard)")
    for flag, key, default, what in [
        ("--leader-lease-ms", "LEADER_LEASE_MS", 3000,
         "a leader that cannot confirm its lock for this long steps down"),
        ("--election-interval-ms", "ELECTION_INTERVAL_MS", 500,
         "between two leader heartbeats or election attempts"),
        ("--member-timeout-ms", "MEMBER_TIMEOUT_MS", 5000,
         "a member whose heartbeat is older is not alive"),
        ("--dead-member-removal-ms", "DEAD_MEMBER_REMOVAL_MS", 1_800_000,
         "a member dead or stopped this long is removed from the cluster"),
    ]:
        cluster.add_argument(flag, type=int, default=None, metavar="MS",
                             help=f"{what}; default ${ENV_PREFIX}{key}, else {default}")
    grpc = start.add_argument_group(
        "gRPC gateway (the KurrentDB protocol)",
        "Each store listens on its own port, so a client picks the store by the address "
        "it connects to.")
    grpc.add_argument(
        "--grpc-host", default=None, metavar="HOST",
        help=f"the address to listen on; default ${ENV_PREFIX}GRPC_HOST, else 127.0.0.1. "
             "An address that is not loopback needs --tls-cert and --tls-key, or --insecure",
    )
    grpc.add_argument(
        "--grpc-port", type=_port, action="append", default=None, metavar="PORT",
        help=f"the first store's port; store i of several --store-id listens on PORT+i "
             f"(or repeat it: one port per --store-id); 0 picks free ports; default "
             f"${ENV_PREFIX}GRPC_PORT, else {DEFAULT_GRPC_PORT}",
    )
    grpc.add_argument("--no-grpc", action="store_true",
                      help="no gRPC listener (only embedded use through exesdb.gateway)")
    grpc.add_argument(
        "--tls-cert", default=None, metavar="FILE",
        help=f"PEM certificate chain to serve TLS with (needs --tls-key); default "
             f"${ENV_PREFIX}TLS_CERT_FILE",
    )
    grpc.add_argument(
        "--tls-key", default=None, metavar="FILE",
        help=f"PEM private key of --tls-cert; default ${ENV_PREFIX}TLS_KEY_FILE",
    )
    grpc.add_argument(
        "--users-file", default=None, metavar="FILE",
        help=f"users with hashed passwords (see 'user add'): every call then needs their "
             f"credentials; default ${ENV_PREFIX}USERS_FILE, else no authentication",
    )
    grpc.add_argument(
        "--insecure", action="store_true", default=None,
        help=f"allow a non-loopback --grpc-host without TLS; default ${ENV_PREFIX}INSECURE",
    )
    http = start.add_argument_group(
        "HTTP listener (web console, /metrics, /health/live, /health/ready)",
        "One per node, serving every store; it uses the same --tls-cert, --tls-key, "
        "--users-file and --insecure as the gRPC gateway.")
    http.add_argument(
        "--http-host", default=None, metavar="HOST",
        help=f"the address to listen on; default ${ENV_PREFIX}HTTP_HOST, else 127.0.0.1. "
             "An address that is not loopback needs --tls-cert and --tls-key, or --insecure")
    http.add_argument(
        "--http-port", type=_port, default=None, metavar="PORT",
        help=f"the port; 0 picks a free one; default ${ENV_PREFIX}HTTP_PORT, else "
             f"{DEFAULT_HTTP_PORT}")
    http.add_argument("--no-http", action="store_true",
                      help="no HTTP listener (no console, metrics or health checks)")

    def source(sub: argparse.ArgumentParser) -> None:
        """Where a read-only command finds the store: a data dir, or PostgreSQL."""
        common(sub, several=False)
        sub.add_argument(
            "--db-type", choices=["single", "cluster"], default=None,
            help=f"single (the store's folder under the data dir) or cluster (the store "
                 f"in PostgreSQL, --pg-dsn); default ${ENV_PREFIX}DB_TYPE, else single")
        sub.add_argument(
            "--pg-dsn", default=None, metavar="DSN",
            help=f"cluster: the PostgreSQL database; default ${ENV_PREFIX}PG_DSN")

    streams = commands.add_parser("streams", help="list a store's streams (read-only)")
    source(streams)
    streams.add_argument("--json", action="store_true", help="one JSON object per stream")

    read = commands.add_parser("read", help="print a stream's events (read-only)")
    read.add_argument("stream", help="the stream id")
    source(read)
    read.add_argument("--from", dest="start", type=int, default=None,
                      help="the first event number (default: 0, or the end with --backward)")
    read.add_argument("--count", type=int, default=100, help="how many events (default 100)")
    read.add_argument("--backward", action="store_true", help="newest first")
    read.add_argument("--json", action="store_true", help="one JSON object per event")

    info = commands.add_parser("info", help="a store's size and contents (read-only)")
    source(info)
    info.add_argument("--json", action="store_true", help="one JSON object")
    verify = commands.add_parser(
        "verify", help="check a store's file for damage (read-only)",
        description="Run SQLite's integrity check and verify every record's checksum; "
                    "print what is damaged and where (stream, version, $all position). "
                    "Exit 1 if anything is damaged, 0 if the store is clean.")
    common(verify, several=False)
    verify.add_argument("--json", action="store_true",
                        help="one JSON object per damage, then one for the summary")
    _user_parser(commands)

    dev = commands.add_parser(
        "dev-cluster", help="run a throw-away local cluster (needs PostgreSQL installed)",
        description="Start a throw-away PostgreSQL and N nodes of one store as separate "
                    "processes, print the connection string, and stop and remove "
                    "everything on SIGINT or SIGTERM.")
    dev.add_argument("--store-id", default=None,
                     help=f"the store id; default ${ENV_PREFIX}STORE_ID, else demo")
    dev.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    dev.add_argument("--base-port", type=_port, default=None, metavar="PORT",
                     help="node i listens on PORT+i-1 (default: free ports)")
    dev.add_argument("--log-level", default="INFO", help="the nodes' logging level")
    start.epilog = environment_help(start)
    return parser


def _user_parser(commands: Any) -> None:
    user = commands.add_parser(
        "user", help="manage the gRPC gateway's users file",
        description="Add, remove and list the users of a users file (see exesdb.grpc.auth: "
                    "passwords are stored as salted scrypt hashes). A user may use a store "
                    "if it is in the group $admins or in the group named after the store id.",
    )
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")

    def users_file(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--users-file", default=None, metavar="FILE",
                         help=f"the users file; default ${ENV_PREFIX}USERS_FILE")

    add = actions.add_parser("add", help="add a user, or replace its password and groups")
    users_file(add)
    add.add_argument("name", help="the user name")
    add.add_argument("--group", action="append", default=None, metavar="GROUP",
                     help="a group of the user ($admins, or a store id); repeat for several; "
                          "without it an existing user keeps its groups")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (else a prompt)")
    remove = actions.add_parser("remove", help="remove a user")
    users_file(remove)
    remove.add_argument("name", help="the user name")
    listing = actions.add_parser("list", help="list the users and their groups")
    users_file(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per user")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    return value


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        if args.command == "start":
            return _start(args)
        if args.command == "user":
            return _user(args, out)
        if args.command == "verify":
            return _verify(args, out)
        if args.command == "dev-cluster":
            store_id = args.store_id or os.environ.get(ENV_PREFIX + "STORE_ID") or "demo"
            return run_dev_cluster(store_id, args.nodes, base_port=args.base_port,
                                   log_level=args.log_level, out=out)
        return trio.run(_read_only, args, out)
    except (ExESDBError, PostgresNotInstalled) as exc:
        print(f"exesdb: {exc}", file=sys.stderr)
        return 2


# -- start -----------------------------------------------------------------------------------


def _start(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    store_ids = [validate_store_id(s) for s in _store_ids(args.store_id)]
    if not store_ids:
        raise ExESDBError(f"give --store-id (or set {ENV_PREFIX}STORE_ID)")
    repeated = sorted({s for s in store_ids if store_ids.count(s) > 1})
    if repeated:
        raise InvalidArgument(f"store_id: {repeated[0]!r} is given more than once (each "
                              "--store-id runs one store)")
    interval = _activity_interval(args.activity_interval)
    quiet_start = StartFailureFilter(logging.getLogger().getEffectiveLevel())
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet_start)
    stores = _start_options(args, store_ids)
    http = None if args.no_http else resolve_http_options(
        http_host=args.http_host, http_port=args.http_port, tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key, users_file=args.users_file, insecure=args.insecure)
    app = application(stores, http=http)

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            for opts in stores:  # fail before anything starts, as start_store does
                await check_startable(opts)
            if http is not None:
                await trio.to_thread.run_sync(check_http_files, http)
            try:
                top = await otp.application.start(app)
            except StartChildError as exc:
                raise root_cause(exc) from exc
            assert top is not None
            quiet_start.active = False
            for line in await tree_lines(top):
                log.info("%s", line)
            log.info("exesdb: serving %s; stop with SIGINT or SIGTERM", ", ".join(store_ids))
            # What starting made lives as long as the node: out of the collector's sight,
            # a full collection (one a client's allocations can trigger any time) walks
            # what came after instead of the whole heap, for tens of ms on the trio thread.
            gc.collect()
            gc.freeze()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(activity_summaries, store_ids, interval)
                async for signum in signals:
                    log.info("exesdb: %s received: stopping", signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()
            await otp.application.stop(app)
            log.info("exesdb: stopped")

    try:
        otp.run(run)
    except StartChildError as exc:  # a start that failed with something not exesdb's own
        reason = _innermost(exc)
        log.debug("exesdb: the start failed", exc_info=exc)
        print(f"exesdb: the start failed: {type(reason).__name__}: {reason}", file=sys.stderr)
        return 1
    return 0


def _innermost(exc: StartChildError) -> Any:
    reason: Any = exc
    while isinstance(reason, StartChildError | otp.InitError):
        reason = reason.reason
    return reason


def _activity_interval(given: float | None) -> float:
    """Seconds between two activity summaries: ``--activity-interval``, else
    ``EX_ESDB_ACTIVITY_INTERVAL``, else 60; 0 for none."""
    if given is None:
        raw = os.environ.get(ENV_PREFIX + "ACTIVITY_INTERVAL", "").strip()
        try:
            given = float(raw) if raw else 60.0
        except ValueError:
            raise InvalidArgument(f"activity_interval: {ENV_PREFIX}ACTIVITY_INTERVAL must be "
                                  f"a number of seconds, got {raw!r}") from None
    if not given >= 0:  # also refuses NaN
        raise InvalidArgument(f"activity_interval: must be a number of seconds >= 0, got "
                              f"{given}")
    return given


def _start_options(args: argparse.Namespace, store_ids: list[str]) -> list[StoreOptions]:
    """Each store's options: the command line's, then ``EX_ESDB_<KEY>``; store ``i``
    listens on the gRPC port + ``i`` (0: each a free port), none with ``--no-grpc``."""
    options: dict[str, Any] = {}
    for key, value in [("data_dir", args.data_dir), ("db_type", args.db_type),
                       ("grpc_host", args.grpc_host), ("tls_cert_file", args.tls_cert),
                       ("tls_key_file", args.tls_key), ("users_file", args.users_file),
                       ("insecure", args.insecure), ("verify", args.verify),
                       ("pg_dsn", args.pg_dsn),
                       ("node_name", args.node_name), ("advertise_host", args.advertise_host),
                       ("leader_lease_ms", args.leader_lease_ms),
                       ("election_interval_ms", args.election_interval_ms),
                       ("member_timeout_ms", args.member_timeout_ms),
                       ("dead_member_removal_ms", args.dead_member_removal_ms)]:
        if value is not None:
            options[key] = value
    environ = {k: v for k, v in os.environ.items() if k != ENV_PREFIX + "GRPC_PORT"}
    ports = _grpc_ports(args, store_ids)
    return [resolve_options(options, store_id=store_id, environ=environ, grpc_port=port)
            for store_id, port in zip(store_ids, ports, strict=True)]


def _grpc_ports(args: argparse.Namespace, store_ids: list[str]) -> list[int | None]:
    """Each store's gRPC port (None: no listener)."""
    count = len(store_ids)
    if args.no_grpc:
        return [None] * count
    given: list[int] = args.grpc_port or []
    if len(given) > 1:
        if len(given) != count:
            raise InvalidArgument(
                f"grpc_port: give one --grpc-port (store i listens on PORT+i) or one per "
                f"--store-id, got {len(given)} for {count} store{'s' if count > 1 else ''}")
        return list(given)
    if given:
        base = given[0]
    else:
        raw = os.environ.get(ENV_PREFIX + "GRPC_PORT", "")
        base = DEFAULT_GRPC_PORT
        if raw:  # read and checked as resolve_options does
            base = resolve_options(store_id=store_ids[0],
                                   environ={ENV_PREFIX + "GRPC_PORT": raw}).grpc_port or 0
    if base and base + count - 1 > 65535:
        raise InvalidArgument(
            f"grpc_port: {base} + {count - 1} (one port per store) is over 65535")
    return [base + i if base else 0 for i in range(count)]


async def tree_lines(sup: otp.Pid, depth: int = 0) -> list[str]:
    """The supervision tree under ``sup``, one indented line per process."""
    lines = []
    for child_id, pid, kind in await otp.supervisor.which_children(sup):
        label = child_label(child_id)
        lines.append(f"{'  ' * depth}{label} {pid!r} ({kind})")
        if kind == "supervisor" and pid is not None:
            with contextlib.suppress(otp.NoProc, otp.ServerExited):
                lines.extend(await tree_lines(pid, depth + 1))
    return lines


# -- user ------------------------------------------------------------------------------------


def _user(args: argparse.Namespace, out: TextIO) -> int:
    path = args.users_file or os.environ.get(ENV_PREFIX + "USERS_FILE")
    if not path:
        raise InvalidArgument(f"users_file: give --users-file (or set {ENV_PREFIX}USERS_FILE)")
    if args.action == "add":
        password = _read_password(args.password_stdin)
        new, groups = auth.add_user(path, args.name, password, args.group)
        print(f"{'added' if new else 'updated'} {args.name} "
              f"(groups: {', '.join(groups) or 'none'}) in {path}", file=out)
    elif args.action == "remove":
        auth.remove_user(path, args.name)
        print(f"removed {args.name} from {path}", file=out)
    else:
        for name, groups in auth.user_groups(auth.load_users(path)).items():
            if args.json:
                print(json.dumps({"name": name, "groups": list(groups)}), file=out)
            else:
                print(f"{name}\t{','.join(groups)}", file=out)
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InvalidArgument("password: no terminal to ask for it on; give --password-stdin "
                              "and the password on the first line of stdin")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise InvalidArgument("password: the two entries differ")
    return password


# -- read-only commands ----------------------------------------------------------------------


async def _read_only(args: argparse.Namespace, out: TextIO) -> int:
    ids = _store_ids([args.store_id] if args.store_id else None)
    if len(ids) != 1:
        raise ExESDBError(f"give one --store-id (or set {ENV_PREFIX}STORE_ID)")
    store_id = validate_store_id(ids[0])
    db_type = args.db_type or os.environ.get(ENV_PREFIX + "DB_TYPE") or "single"
    backend: Backend
    if db_type == "cluster":
        dsn = args.pg_dsn or os.environ.get(ENV_PREFIX + "PG_DSN")
        if not dsn:
            raise InvalidArgument(f"pg_dsn: required with --db-type cluster (give --pg-dsn "
                                  f"or set {ENV_PREFIX}PG_DSN)")
        # Checked first: opening the store would create it.
        size = await trio.to_thread.run_sync(store_size, dsn, store_id)
        if size is None:
            raise StorageError(f"store {store_id!r}: not in that database (no schema "
                               f"{schema_name(store_id)!r})")
        where: dict[str, Any] = {"database": redact_dsn(dsn), "schema": schema_name(store_id)}
        backend = await PostgresBackend.open(dsn, store_id,
                                             application_name=f"exesdb {store_id} cli")
    elif db_type == "single":
        root = Path(args.data_dir or os.environ.get(ENV_PREFIX + "DATA_DIR")
                    or default_data_dir())
        backend = await SQLiteBackend.open(root / store_id, read_only=True)
        where = {"data_dir": str(root / store_id)}
        size = None
    else:
        raise InvalidArgument(f"db_type: must be 'single' or 'cluster', got {db_type!r}")
    try:
        if args.command == "streams":
            await _streams(backend, args.json, out)
        elif args.command == "read":
            return await _read(backend, store_id, args, out)
        else:
            if size is None:
                size = await trio.to_thread.run_sync(_size_on_disk, Path(where["data_dir"]))
            await _info(backend, store_id, where, size, args.json, out)
    finally:
        await backend.close()
    return 0


async def _streams(backend: Backend, as_json: bool, out: TextIO) -> None:
    for stream_id in await backend.list_streams():
        version = await backend.stream_version(stream_id)
        if as_json:
            print(json.dumps({"stream_id": stream_id, "version": version}), file=out)
        else:
            print(f"{stream_id}\t{version + 1} events (version {version})", file=out)


async def _read(backend: Backend, store_id: str, args: argparse.Namespace,
                out: TextIO) -> int:
    """Print the events asked for; 1 (and a line on stderr) for a stream that has no
    events or was deleted."""
    if args.start is not None and args.start < 0:
        raise InvalidArgument(f"--from: must be an event number >= 0, got {args.start}")
    if args.count < 1:
        raise InvalidArgument(f"--count: must be >= 1, got {args.count}")
    start: Any = args.start if args.start is not None else (END if args.backward else 0)
    try:
        events = await backend.read_stream(args.stream, start, args.count,
                                           "backward" if args.backward else "forward")
        missing = not events and await backend.stream_version(args.stream) < 0
    except StreamDeleted as exc:
        print(f"exesdb: {exc} in store {store_id}", file=sys.stderr)
        return 1
    if missing:
        print(f"exesdb: stream {args.stream!r}: not found in store {store_id} (no events)",
              file=sys.stderr)
        return 1
    for event in events:
        if args.json:
            print(json.dumps(event_json(event)), file=out)
        else:
            data = event.data if not isinstance(event.data, bytes) else f"<{len(event.data)} bytes>"
            print(f"{event.event_number}\t{event.event_type}\t{event.created.isoformat()}\t"
                  f"{json.dumps(data) if not isinstance(data, str) else data}", file=out)
    return 0


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    """``verify``: print each damage and a summary; 1 if anything is damaged, else 0.
    Blocking, and run outside trio."""
    ids = _store_ids([args.store_id] if args.store_id else None)
    if len(ids) != 1:
        raise InvalidArgument(f"store_id: give one --store-id (or set {ENV_PREFIX}STORE_ID)")
    store_id = validate_store_id(ids[0])
    root = Path(args.data_dir or os.environ.get(ENV_PREFIX + "DATA_DIR") or default_data_dir())
    report = verify_store(root / store_id)
    for damage in report.damage:
        if args.json:
            print(json.dumps(damage.as_json()), file=out)
        else:
            print(f"damaged: {damage.message}", file=out)
    if args.json:
        print(json.dumps({"store_id": store_id, "path": str(report.path), "ok": report.ok,
                          "damaged": len(report.damage), "events": report.events,
                          "streams": report.streams}), file=out)
    else:
        print(report.summary(), file=out)
    return 0 if report.ok else 1


def event_json(event: EventRecord) -> dict[str, Any]:
    """An event as a JSON object (bytes data and metadata in base64, flagged)."""

    def value(v: Any) -> Any:
        return {"base64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v

    return {
        "stream_id": event.stream_id, "event_number": event.event_number,
        "event_id": str(event.event_id), "event_type": event.event_type,
        "data": value(event.data), "metadata": value(event.metadata),
        "content_type": event.content_type, "created": event.created.isoformat(),
        "created_epoch": event.created_epoch, "position": event.position,
    }


async def _info(backend: Backend, store_id: str, where: dict[str, Any], size: int,
                as_json: bool, out: TextIO) -> None:
    """``info``: where the store is (``data_dir``; or ``database`` and ``schema``), its
    streams, events, last position and the bytes it takes."""
    stats = await backend.stats()
    report = {"store_id": store_id, **where, "streams": stats["streams"],
              "events": stats["events"], "last_position": stats["last_position"],
              "size_bytes": size}
    if as_json:
        print(json.dumps(report), file=out)
    else:
        for key, value in report.items():
            print(f"{key}: {value}", file=out)


def _size_on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
