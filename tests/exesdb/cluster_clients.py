"""The client processes of the cluster checker (:mod:`tests.exesdb.cluster_checker`): each
runs as its own OS process (``python -m tests.exesdb.cluster_clients ROLE ...``), talks to
the nodes through the real ``kurrentdbclient`` only, and records what it saw, one JSON
object per line, flushed line by line (so a process killed at any moment leaves every
complete line behind).

Roles:

* ``append``: appends ``--count`` events, one per append, each with an event id of its
  own (``uuid5`` of the client name and the event's index), to streams of its own
  (``<name>-<generation>``) with the exact expected version. Each append that fails in
  any way is retried with the same event id and the same expected version (a retry of
  an append that was written is recognised as a re-send and not written again), on a
  new client after a failure (rediscovery through gossip), until it succeeds or
  ``--give-up`` seconds passed. One line per event: ``outcome`` ``ack`` (acknowledged;
  ``num`` is the stream position it must have), ``failed`` (refused: it must not be
  there) or ``unknown`` (gave up: present at most once); after ``failed`` or ``unknown``
  the client goes on in a new stream.
* ``catchup``: a catch-up subscription to ``$all`` from ``--from`` (a commit position),
  on a follower; it records every event it receives, and after any failure subscribes
  again (on a new client) from the last commit position it received.
* ``persistent``: creates the persistent subscription group ``--group`` on ``$all`` from
  ``--from`` (checkpointing at every ack), reads it (on the leader: followers send the
  client there), records each delivery and acks it, and reads again on a new client
  after any failure. Lines: ``session`` (a read started), ``delivered``, ``acked``,
  ``error``.

Every role writes a ``ready`` line once it is connected (the subscriptions: once their
call was accepted), and the subscribers run until they are killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import AlreadyExistsError, WrongCurrentVersionError

EVENT_TYPE = "Checked"
"""The type of every event the checker's clients append."""
NAMESPACE = uuid.UUID("7d0c6f4e-3c53-4a43-9d3b-2f0d3c8d0c12")


def event_id(client: str, index: int) -> uuid.UUID:
    """The event id of event ``index`` of client ``client`` (the same on every retry)."""
    return uuid.uuid5(NAMESPACE, f"{client}/{index}")


class Log:
    """A JSON Lines file, each line flushed as written."""

    def __init__(self, path: str) -> None:
        self.file: TextIO = open(path, "a", buffering=1)  # noqa: SIM115 (process-long)

    def write(self, **fields: Any) -> None:
        fields.setdefault("t", time.time())
        self.file.write(json.dumps(fields, default=str) + "\n")
        self.file.flush()


def connect(uri: str, log: Log, give_up: float = 60.0) -> KurrentDBClient:
    """A client for ``uri``, trying again (discovery may fail while no leader is known)
    until ``give_up`` seconds passed."""
    deadline = time.monotonic() + give_up
    while True:
        try:
            return KurrentDBClient(uri)
        except Exception as exc:
            if time.monotonic() > deadline:
                raise
            log.write(kind="connect-error", error=f"{type(exc).__name__}: {exc}"[:300])
            time.sleep(0.2)


def close_quietly(client: KurrentDBClient | None) -> None:
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()


def run_append(args: argparse.Namespace, log: Log) -> None:
    client: KurrentDBClient | None = connect(args.uri, log)
    log.write(kind="ready")
    generation = 0
    version = -1  # the stream's version, as this client knows it

    def stream() -> str:
        return f"{args.name}-{generation}"

    for index in range(args.count):
        eid = event_id(args.name, index)
        event = NewEvent(type=EVENT_TYPE, data=json.dumps({"i": index}).encode(), id=eid)
        started = time.monotonic()
        attempts, errors = 0, []
        outcome, position = "unknown", None
        while True:
            attempts += 1
            try:
                if client is None:
                    client = connect(args.uri, log)
                position = client.append_to_stream(
                    stream(), events=event, timeout=args.timeout,
                    current_version=version if version >= 0 else StreamState.NO_STREAM)
                outcome = "ack"
                break
            except WrongCurrentVersionError as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                outcome = "failed"
                break
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                close_quietly(client)  # a new client rediscovers the leader
                client = None
                if time.monotonic() - started > args.give_up:
                    break
                time.sleep(0.1)
        log.write(kind="append", id=str(eid), stream=stream(), num=version + 1,
                  outcome=outcome, position=position, attempts=attempts, errors=errors[-3:],
                  seconds=round(time.monotonic() - started, 4))
        if outcome == "ack":
            version += 1
        else:  # the stream's version is not known for sure: go on in a new stream
            generation += 1
            version = -1
        if args.pause:
            time.sleep(args.pause)
    close_quietly(client)
    log.write(kind="done")


def _recorded(event: Any) -> dict[str, Any]:
    return {"id": str(event.id), "stream": event.stream_name, "num": event.stream_position,
            "pos": event.commit_position, "type": event.type}


def _forever(log: Log, start: Callable[[KurrentDBClient], None], uri: str) -> None:
    """Run ``start(client)`` on a new client after every failure."""
    while True:
        client = None
        try:
            client = connect(uri, log)
            start(client)
        except Exception as exc:
            log.write(kind="error", error=f"{type(exc).__name__}: {exc}"[:300])
            time.sleep(0.2)
        finally:
            close_quietly(client)


def run_catchup(args: argparse.Namespace, log: Log) -> None:
    last = args.start

    def subscribe(client: KurrentDBClient) -> None:
        nonlocal last
        subscription = client.subscribe_to_all(commit_position=last)
        log.write(kind="ready", node=client.connection_target, after=last)
        for event in subscription:
            log.write(kind="delivered", **_recorded(event))
            last = event.commit_position

    _forever(log, subscribe, args.uri)


def run_persistent(args: argparse.Namespace, log: Log) -> None:
    client = connect(args.uri, log)
    try:
        client.create_subscription_to_all(args.group, commit_position=args.start,
                                          min_checkpoint_count=1, max_checkpoint_count=1,
                                          timeout=10)
    except AlreadyExistsError:
        pass
    finally:
        close_quietly(client)

    def read(client: KurrentDBClient) -> None:
        subscription = client.read_subscription_to_all(args.group)
        log.write(kind="ready", node=client.connection_target)
        log.write(kind="session", node=client.connection_target)
        for event in subscription:
            log.write(kind="delivered", retry=event.retry_count, **_recorded(event))
            subscription.ack(event)
            log.write(kind="acked", id=str(event.id))

    _forever(log, read, args.uri)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.exesdb.cluster_clients")
    parser.add_argument("role", choices=["append", "catchup", "persistent"])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--out", required=True, help="the JSON Lines file to append to")
    parser.add_argument("--name", default="c")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per attempt")
    parser.add_argument("--give-up", type=float, default=30.0)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between appends")
    parser.add_argument("--start", type=int, default=0, help="commit position to start after")
    parser.add_argument("--group", default="checker")
    args = parser.parse_args(argv)
    log = Log(args.out)
    {"append": run_append, "catchup": run_catchup, "persistent": run_persistent}[args.role](
        args, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
