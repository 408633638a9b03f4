"""What ``python -m exesdb`` shows its operator, beside what each part logs itself.

* :class:`OneLineParser`: bad input on the command line gets one line on stderr and exit
  status 2 (argparse's usage block is for ``--help``); :func:`environment_help` lists the
  ``EX_ESDB_*`` variables that have no flag, for ``start --help``.
* :func:`configure_logging` reads ``--log-level``: a level (``INFO``), optionally followed
  by ``logger=LEVEL`` pairs (``DEBUG,hpack=DEBUG``). Third-party libraries
  (:data:`THIRD_PARTY`) log at INFO at most unless a pair names them, so ``DEBUG`` shows
  exesdb's and otp's detail, not every HPACK header decoded.
* :class:`StartFailureFilter`: while the stores start, the reports of a failed start
  (each supervisor's "failed to start" with the nested ``StartChildError`` reprs, and the
  crash of the process that raised the store's own error) go to DEBUG: the command prints
  the root cause in one line instead.
* :func:`activity_summaries`: once the stores serve, one INFO line per store per
  interval (a minute by default) when anything happened: events in and out, calls and
  how many failed, connections opened and closed, clients connected and subscriptions.

Nothing here is needed to run a store: :mod:`exesdb.cli` wires it in.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final, NoReturn

import attrs
import trio

from otp import InitError, OTPError
from otp.supervisor import StartChildError

from .errors import ExESDBError, InvalidArgument
from .gateway import get_subscriptions
from .grpc.rpc import StatusCode
from .grpc.stats import grpc_counters
from .options import DEFAULTS, ENV_PREFIX
from .systems.stats import storage_counters

__all__ = [
    "LOG_FORMAT",
    "THIRD_PARTY",
    "Activity",
    "OneLineParser",
    "StartFailureFilter",
    "activity_summaries",
    "configure_logging",
    "environment_help",
    "parse_log_levels",
]

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
THIRD_PARTY: Final = ("hpack", "h2", "psycopg", "asyncio")
"""Loggers of libraries that log at INFO at most unless ``--log-level`` names them."""

_LEVELS: Final = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
log: Final = logging.getLogger("exesdb")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``<prog>: <message>``, on stderr,
    with exit status 2 (its subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (--help for usage)\n")


_ENVIRONMENT_NOTES: Final = {
    "timeout": "milliseconds a call may take, default 10000",
    "writer_idle_ms": "milliseconds before an idle stream writer stops, default 10000",
    "reader_idle_ms": "milliseconds before an idle stream reader stops, default 10000",
    "persistence_interval": "milliseconds between write-ahead log flushes, default 5000",
    "gateway_pool_size": "gateway workers per store, default 4",
    "store_description": "a description listed with the store",
    "store_tags": "comma-separated tags listed with the store",
    "durable": "true, the default, acknowledges writes once fsynced; false is faster but "
               "may lose the last writes on a power cut",
}


def environment_help(parser: argparse.ArgumentParser) -> str:
    """The ``EX_ESDB_*`` store options that ``parser``'s help does not mention yet (those
    with no flag), each ``VARIABLE: what``, as one paragraph for its epilog."""
    shown = parser.format_help()
    found = []
    for name in sorted(DEFAULTS):
        variable = f"{ENV_PREFIX}{name.upper()}"
        if variable not in shown:
            found.append(f"{variable}: {_ENVIRONMENT_NOTES.get(name, f'the option {name}')}")
    if not found:
        return ""
    return "Store options read from the environment (no flag): " + "; ".join(found) + "."


def _level(text: str, context: str = "") -> int:
    name = text.strip().upper()
    if name not in _LEVELS:
        raise InvalidArgument(f"log_level: {text.strip()!r}{context} is not a level (one of "
                              f"{', '.join(_LEVELS)})")
    return int(getattr(logging, name))


def parse_log_levels(text: str) -> tuple[int, dict[str, int]]:
    """The root level and the per-logger levels of a ``--log-level`` value: ``LEVEL``
    then any ``logger=LEVEL`` pairs, comma-separated. :class:`exesdb.InvalidArgument`
    (``log_level: ...``) names the part that is not a level."""
    parts = [part.strip() for part in text.split(",")]
    if not parts or not parts[0] or "=" in parts[0]:
        raise InvalidArgument(f"log_level: must start with a level (one of "
                              f"{', '.join(_LEVELS)}), got {text!r}")
    root = _level(parts[0])
    loggers: dict[str, int] = {}
    for part in parts[1:]:
        name, sep, level = part.partition("=")
        if not sep or not name.strip():
            raise InvalidArgument(f"log_level: {part!r} must be logger=LEVEL")
        loggers[name.strip()] = _level(level, f" (for logger {name.strip()})")
    return root, loggers


def configure_logging(text: str) -> None:
    """Configure the root logger for ``start`` from a ``--log-level`` value (see
    :func:`parse_log_levels`; raises before changing anything)."""
    root, loggers = parse_log_levels(text)
    logging.basicConfig(level=root, format=LOG_FORMAT)
    for name in THIRD_PARTY:
        if name not in loggers:
            logging.getLogger(name).setLevel(max(root, logging.INFO))
    for name, level in loggers.items():
        logging.getLogger(name).setLevel(level)


def _is_start_failure(value: Any) -> bool:
    return isinstance(value, StartChildError | InitError | ExESDBError)


class StartFailureFilter(logging.Filter):
    """A handler filter that, while :attr:`active`, turns the records of a failed start
    (from loggers ``otp`` and ``otp.*`` whose subject is a ``StartChildError``, an
    ``InitError`` or an :class:`exesdb.ExESDBError`) into DEBUG records, dropped unless
    ``level`` is DEBUG. Any other record passes unchanged; so does everything once it is
    no longer active (a crash while serving is logged as it is)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.active = True

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.active or record.levelno < logging.WARNING:
            return True
        if record.name != "otp" and not record.name.startswith("otp."):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        subjects = [*args, record.exc_info[1] if record.exc_info else None]
        if not any(_is_start_failure(subject) for subject in subjects):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.level <= logging.DEBUG


@attrs.define
class Activity:
    """A store's counters at one moment (what :func:`activity_summaries` compares)."""

    events_in: int = 0
    events_out: int = 0
    calls: int = 0
    failed_calls: int = 0
    opened: int = 0
    clients: int = 0

    @classmethod
    def now(cls, store_id: str) -> Activity:
        """The store's counters now (this node's; zero for a store never started)."""
        storage = storage_counters(store_id)
        grpc = grpc_counters(store_id)
        calls = sum(grpc.calls.values())
        failed = sum(n for (_method, code), n in grpc.calls.items() if code != StatusCode.OK)
        return cls(storage.events_appended, storage.events_read, calls, failed,
                   grpc.connections_total, grpc.connections)

    def since(self, before: Activity) -> Activity:
        """What happened between ``before`` and this moment (``clients``: now)."""
        return Activity(self.events_in - before.events_in, self.events_out - before.events_out,
                        self.calls - before.calls, self.failed_calls - before.failed_calls,
                        self.opened - before.opened, self.clients)

    @property
    def anything(self) -> bool:
        """Whether anything happened (for a difference made by :meth:`since`)."""
        return bool(self.events_in or self.events_out or self.calls or self.opened)


async def _subscription_count(store_id: str) -> str:
    try:
        with trio.move_on_after(5.0):
            return str(len(await get_subscriptions(store_id)))
    except (ExESDBError, OTPError):
        pass
    return "?"


async def activity_summaries(store_ids: Sequence[str], interval: float,
                             logger: logging.Logger = log) -> None:
    """Every ``interval`` seconds, log at INFO one line per store of ``store_ids`` in
    which anything happened since the last line (see :class:`Activity`). Runs until
    cancelled; ``interval`` <= 0 logs nothing."""
    if interval <= 0:
        await trio.sleep_forever()
    last: Mapping[str, Activity] = {s: Activity.now(s) for s in store_ids}
    while True:
        await trio.sleep(interval)
        current = {s: Activity.now(s) for s in store_ids}
        for store_id in store_ids:
            done = current[store_id].since(last[store_id])
            if not done.anything:
                continue
            closed = done.opened - (done.clients - last[store_id].clients)
            logger.info(
                "exesdb: store %s, last %.0f s: %d events in, %d events out, %d calls "
                "(%d failed), %d connections opened, %d closed; now %d clients, %s "
                "subscriptions", store_id, interval, done.events_in, done.events_out,
                done.calls, done.failed_calls, done.opened, closed, done.clients,
                await _subscription_count(store_id))
        last = current
