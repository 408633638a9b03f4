"""The command line: ``python -m exesdb start | streams | read | info``.

``start`` runs the exesdb application with one store per ``--store-id`` until SIGINT or
SIGTERM, then stops every store in order and exits 0, with every acknowledged event on
disk. ``streams``, ``read`` and ``info`` only read: they open a store's file read-only, so
they work beside a running server or without one. ``--json`` prints JSON Lines (one
object per stream or event; one object for ``info``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
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

from .constants import END
from .errors import ExESDBError
from .events import EventRecord
from .options import ENV_PREFIX, default_data_dir, resolve_options, validate_store_id
from .storage import SQLiteBackend
from .system import check_startable, root_cause

__all__ = ["main"]

log = logging.getLogger("exesdb")


def _store_ids(values: list[str] | None) -> list[str]:
    raw = values or [os.environ.get(ENV_PREFIX + "STORE_ID", "")]
    ids = [part.strip() for value in raw for part in value.split(",") if part.strip()]
    return ids


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    start.add_argument("--log-level", default="INFO", help="logging level (default INFO)")

    streams = commands.add_parser("streams", help="list a store's streams (read-only)")
    common(streams, several=False)
    streams.add_argument("--json", action="store_true", help="one JSON object per stream")

    read = commands.add_parser("read", help="print a stream's events (read-only)")
    read.add_argument("stream", help="the stream id")
    common(read, several=False)
    read.add_argument("--from", dest="start", type=int, default=None,
                      help="the first event number (default: 0, or the end with --backward)")
    read.add_argument("--count", type=int, default=100, help="how many events (default 100)")
    read.add_argument("--backward", action="store_true", help="newest first")
    read.add_argument("--json", action="store_true", help="one JSON object per event")

    info = commands.add_parser("info", help="a store's size and contents (read-only)")
    common(info, several=False)
    info.add_argument("--json", action="store_true", help="one JSON object")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        if args.command == "start":
            return _start(args)
        return trio.run(_read_only, args, out)
    except ExESDBError as exc:
        print(f"exesdb: {exc}", file=sys.stderr)
        return 2


# -- start -----------------------------------------------------------------------------------


def _start(args: argparse.Namespace) -> int:
    from .application import application

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store_ids = [validate_store_id(s) for s in _store_ids(args.store_id)]
    if not store_ids:
        raise ExESDBError(f"give --store-id (or set {ENV_PREFIX}STORE_ID)")
    options: dict[str, Any] = {}
    if args.data_dir is not None:
        options["data_dir"] = args.data_dir
    if args.db_type is not None:
        options["db_type"] = args.db_type
    app = application(store_ids, **options)

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            for store_id in store_ids:  # fail before anything starts, as start_store does
                await check_startable(resolve_options(options, store_id=store_id))
            try:
                top = await otp.application.start(app)
            except StartChildError as exc:
                raise root_cause(exc) from exc
            assert top is not None
            for line in await tree_lines(top):
                log.info("%s", line)
            log.info("exesdb: serving %s; stop with SIGINT or SIGTERM", ", ".join(store_ids))
            async for signum in signals:
                log.info("exesdb: %s received: stopping", signal.Signals(signum).name)
                break
            await otp.application.stop(app)
            log.info("exesdb: stopped")

    otp.run(run)
    return 0


async def tree_lines(sup: otp.Pid, depth: int = 0) -> list[str]:
    """The supervision tree under ``sup``, one indented line per process."""
    lines = []
    for child_id, pid, kind in await otp.supervisor.which_children(sup):
        label = _label(child_id)
        lines.append(f"{'  ' * depth}{label} {pid!r} ({kind})")
        if kind == "supervisor" and pid is not None:
            with contextlib.suppress(otp.NoProc, otp.ServerExited):
                lines.extend(await tree_lines(pid, depth + 1))
    return lines


def _label(child_id: Any) -> str:
    """``Module[store] extra`` for the store-specific child ids of exesdb's trees."""
    if isinstance(child_id, tuple) and child_id:
        head, *rest = child_id
        if isinstance(head, tuple):  # ((Module, store_id), kind)
            return f"{_label(head)} {' '.join(map(str, rest))}"
        if isinstance(head, type) and rest:
            extra = f" {' '.join(map(str, rest[1:]))}" if len(rest) > 1 else ""
            return f"{head.__qualname__}[{rest[0]}]{extra}"
    return getattr(child_id, "__qualname__", None) or str(child_id)


# -- read-only commands ----------------------------------------------------------------------


async def _read_only(args: argparse.Namespace, out: TextIO) -> int:
    ids = _store_ids([args.store_id] if args.store_id else None)
    if len(ids) != 1:
        raise ExESDBError(f"give one --store-id (or set {ENV_PREFIX}STORE_ID)")
    store_id = validate_store_id(ids[0])
    root = Path(args.data_dir or os.environ.get(ENV_PREFIX + "DATA_DIR") or default_data_dir())
    backend = await SQLiteBackend.open(root / store_id, read_only=True)
    try:
        if args.command == "streams":
            await _streams(backend, args.json, out)
        elif args.command == "read":
            await _read(backend, args, out)
        else:
            await _info(backend, store_id, root / store_id, args.json, out)
    finally:
        await backend.close()
    return 0


async def _streams(backend: SQLiteBackend, as_json: bool, out: TextIO) -> None:
    for stream_id in await backend.list_streams():
        version = await backend.stream_version(stream_id)
        if as_json:
            print(json.dumps({"stream_id": stream_id, "version": version}), file=out)
        else:
            print(f"{stream_id}\t{version + 1} events (version {version})", file=out)


async def _read(backend: SQLiteBackend, args: argparse.Namespace, out: TextIO) -> None:
    start: Any = args.start if args.start is not None else (END if args.backward else 0)
    events = await backend.read_stream(args.stream, start, args.count,
                                       "backward" if args.backward else "forward")
    for event in events:
        if args.json:
            print(json.dumps(event_json(event)), file=out)
        else:
            data = event.data if not isinstance(event.data, bytes) else f"<{len(event.data)} bytes>"
            print(f"{event.event_number}\t{event.event_type}\t{event.created.isoformat()}\t"
                  f"{json.dumps(data) if not isinstance(data, str) else data}", file=out)


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


async def _info(backend: SQLiteBackend, store_id: str, directory: Path, as_json: bool,
                out: TextIO) -> None:
    stats = await backend.stats()
    size = await trio.to_thread.run_sync(_size_on_disk, directory)
    report = {"store_id": store_id, "data_dir": str(directory), "streams": stats["streams"],
              "events": stats["events"], "last_position": stats["last_position"],
              "size_bytes": size}
    if as_json:
        print(json.dumps(report), file=out)
    else:
        for key, value in report.items():
            print(f"{key}: {value}", file=out)


def _size_on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
