"""``python -m exesdb dev-cluster``: a throw-away local cluster to develop against.

:func:`run_dev_cluster` starts a PostgreSQL server of its own
(:class:`exesdb.pgserver.PostgresServer`: ``initdb`` into a temporary folder, a free
port of 127.0.0.1, as the ``postgres`` OS user when run as root) and ``nodes`` exesdb
nodes of one store as separate OS processes (``python -m exesdb start --db-type cluster
...``, node ``n1`` .. ``nN`` on free ports, or ``base_port``, ``base_port + 1``, ...),
each one's log lines prefixed with its name. Once every node listens it prints the
connection string for KurrentDB clients, the nodes as gossip seeds::

    kurrentdb://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3?Tls=false

and runs until SIGINT (Ctrl-C) or SIGTERM; then it stops every node with SIGTERM (killing
one that takes longer than :data:`STOP_TIMEOUT` seconds), stops PostgreSQL and removes its
folder: nothing is kept. A node that exits on its own is reported and not restarted (kill
one to watch another take over). A missing PostgreSQL is
:class:`~exesdb.pgserver.PostgresNotInstalled`, whose one-line message names
``apt-get install postgresql``.

It is a plain program (threads and subprocesses, no trio): it runs no store itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Final, TextIO

from .errors import InvalidArgument
from .options import ENV_PREFIX, validate_store_id
from .pgserver import PostgresServer

__all__ = ["START_TIMEOUT", "STOP_TIMEOUT", "connection_string", "run_dev_cluster"]

START_TIMEOUT: Final = 60.0
"""Seconds the nodes may take to listen."""
STOP_TIMEOUT: Final = 30.0
"""Seconds a node may take to exit after SIGTERM before it is killed."""


def connection_string(ports: Sequence[int]) -> str:
    """The URI a KurrentDB client connects to the nodes on ``ports`` with (gossip seeds,
    plain text)."""
    return f"kurrentdb://{','.join(f'127.0.0.1:{p}' for p in ports)}?Tls=false"


def _accepts(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:  # once: a second signal does not interrupt the stopping
            stopping = True
            raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Node:
    """One ``python -m exesdb start`` subprocess, its stderr copied to ``out`` with a
    prefix."""

    def __init__(self, name: str, port: int, command: list[str], out: TextIO) -> None:
        self.name = name
        self.port = port
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self.reported = False
        self._copier = threading.Thread(target=self._copy, args=(out,), daemon=True,
                                        name=f"dev-cluster {name} log")
        self._copier.start()

    def _copy(self, out: TextIO) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            out.write(f"[{self.name}] {line}")
            out.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._copier.join(timeout=5)


def run_dev_cluster(store_id: str, nodes: int, *, base_port: int | None = None,
                    log_level: str = "INFO", out: TextIO | None = None) -> int:
    """Run the dev cluster (see the module docstring) until SIGINT or SIGTERM; return the
    exit status (0). Raises :class:`exesdb.InvalidArgument` for bad arguments and
    :class:`~exesdb.pgserver.PostgresNotInstalled` without PostgreSQL."""
    out = out or sys.stdout
    store_id = validate_store_id(store_id)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 16:
        raise InvalidArgument(f"nodes: must be a number from 1 to 16, got {nodes!r}")
    if base_port is not None and not 1 <= base_port <= 65535 - nodes:
        raise InvalidArgument(f"base_port: must leave room for {nodes} ports below 65536, "
                              f"got {base_port}")
    ports = (list(range(base_port, base_port + nodes)) if base_port is not None
             else _free_ports(nodes))
    server = PostgresServer()
    running: list[_Node] = []
    with _stop_on_signals():
        try:
            server.start()
            print(f"dev-cluster: PostgreSQL at {server.uri} (removed at exit)", file=out,
                  flush=True)
            for index, port in enumerate(ports, 1):
                name = f"n{index}"
                running.append(_Node(name, port, [
                    sys.executable, "-m", "exesdb", "start", "--store-id", store_id,
                    "--db-type", "cluster", "--pg-dsn", server.uri, "--node-name", name,
                    "--grpc-port", str(port), "--log-level", log_level,
                    "--http-port", "0"], out))  # each node its own console (logged)
            deadline = time.monotonic() + START_TIMEOUT
            for node in running:
                while not _accepts(node.port):
                    if node.process.poll() is not None or time.monotonic() > deadline:
                        raise InvalidArgument(
                            f"nodes: node {node.name} did not start (see its log above)")
                    time.sleep(0.1)
            print(f"dev-cluster: store {store_id!r} on {nodes} node(s); connect with\n"
                  f"  {connection_string(ports)}\nstop with Ctrl-C (SIGINT) or SIGTERM",
                  file=out, flush=True)
            while True:
                for node in running:
                    code = node.process.poll()
                    if code is not None and not node.reported:
                        node.reported = True
                        print(f"dev-cluster: node {node.name} exited ({code})", file=out,
                              flush=True)
                time.sleep(0.5)
        except _Stop as stop:
            print(f"dev-cluster: {stop} received: stopping", file=out, flush=True)
        finally:
            for node in running:
                node.stop()
            server.stop()
    print("dev-cluster: stopped", file=out, flush=True)
    return 0
