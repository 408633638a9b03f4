"""The gRPC test fixture: ``python -m exesdb start`` in a subprocess, driven by the real
``kurrentdbclient``.

``start_server(tmp_path, *extra_args, store_ids=("s",))`` runs
``python -m exesdb start --store-id s --data-dir <tmp_path> --grpc-port 0 <extra_args>``,
waits (at most :data:`START_TIMEOUT` seconds) until every store logged
``exesdb.grpc: store <ID> listening on <HOST>:<PORT>`` and the server logged that it
serves, and yields a :class:`Server`. On leaving, it stops the server with SIGTERM and
asserts exit code 0 (after a failed test it only stops it). A server that does not start
fails the test with its captured output; no subprocess outlives its fixture.

The module-scoped ``server`` fixture shares one subprocess per test module, and
``client`` a :class:`kurrentdbclient.KurrentDBClient` connected to it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trustme
from kurrentdbclient import KurrentDBClient

from exesdb.grpc.server import TlsFiles

START_TIMEOUT = 60.0
"""Seconds a server may take to start listening."""
STOP_TIMEOUT = 30.0
"""Seconds a server may take to exit after SIGTERM."""

LISTENING = re.compile(
    r"exesdb\.grpc: store (?P<store>\S+) listening on (?P<host>\S+):(?P<port>\d+)"
    r"(?P<tls> \(tls\))?\s*$")
SERVING = "exesdb: serving"


class ServerFailed(AssertionError):
    """The server subprocess did not start, or did not stop cleanly."""


class Server:
    """One ``python -m exesdb start`` subprocess with a gRPC listener per store.

    ``port``: the first store's port; ``ports``: store id -> port; ``uri``: the
    ``kurrentdb://`` URI of the first store (plain text); ``process``: the
    :class:`subprocess.Popen`; ``data_dir``; ``output``: its stderr so far.
    """

    def __init__(self, data_dir: Path, extra_args: Sequence[str], store_ids: Sequence[str],
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.store_ids = list(store_ids)
        self.env = env
        self.ports: dict[str, int] = {}
        self.tls = False
        self.process: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None

    # -- what tests use ----------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.ports[self.store_ids[0]]

    @property
    def uri(self) -> str:
        return self.uri_for(self.store_ids[0])

    def uri_for(self, store_id: str, user: str | None = None, password: str | None = None,
                tls: bool = False) -> str:
        """The ``kurrentdb://`` URI of ``store_id`` on 127.0.0.1 (with credentials)."""
        credentials = f"{user}:{password}@" if user is not None else ""
        return (f"kurrentdb://{credentials}127.0.0.1:{self.ports[store_id]}"
                f"?Tls={'true' if tls else 'false'}")

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def restart(self) -> None:
        """Stop it with SIGTERM (asserting exit code 0) and start it again on the same
        ports."""
        ports = [self.ports[s] for s in self.store_ids]
        self.stop()
        self.start(ports)

    # -- lifecycle ---------------------------------------------------------------------
    def command(self, ports: Sequence[int] | None = None) -> list[str]:
        args = [sys.executable, "-m", "exesdb", "start", "--data-dir", str(self.data_dir)]
        for store_id in self.store_ids:
            args += ["--store-id", store_id]
        for port in ports or [0]:
            args += ["--grpc-port", str(port)]
        if not any(arg.startswith(("--http-port", "--no-http")) for arg in self.extra_args):
            args += ["--http-port", "0"]  # the environment is cleaned: never the fixed 2112
        return args + self.extra_args

    def start(self, ports: Sequence[int] | None = None) -> None:
        """Start the subprocess and wait until every store listens."""
        env = self.env if self.env is not None else _clean_env()
        with self._changed:
            self._lines = []
        self.process = subprocess.Popen(
            self.command(ports), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env)
        self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        self._reader.start()
        try:
            self._wait_listening()
        except BaseException:
            self.kill()
            raise

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._lines.append("")  # marks the end of the output
            self._changed.notify_all()

    def _listening(self) -> dict[str, tuple[str, int, bool]]:
        found = {}
        for line in self._lines:
            match = LISTENING.search(line)
            if match:
                found[match["store"]] = (match["host"], int(match["port"]), bool(match["tls"]))
        return found

    def _wait_listening(self) -> None:
        def ready() -> bool:
            ended = bool(self._lines) and self._lines[-1] == ""
            started = set(self._listening()) >= set(self.store_ids) and any(
                SERVING in line for line in self._lines)
            return ended or started

        with self._changed:
            if not self._changed.wait_for(ready, timeout=START_TIMEOUT):
                raise ServerFailed(
                    f"the server did not listen within {START_TIMEOUT} s; its output:\n"
                    f"{''.join(self._lines)}")
            listening = self._listening()
            if not (set(listening) >= set(self.store_ids)
                    and any(SERVING in line for line in self._lines)):
                assert self.process is not None
                code = self.process.wait(timeout=STOP_TIMEOUT)
                raise ServerFailed(
                    f"the server exited ({code}) before it served; its output:\n"
                    f"{''.join(self._lines)}")
        self.ports = {store: port for store, (_, port, _) in listening.items()}
        self.tls = any(tls for _, _, tls in listening.values())

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum``, wait for the exit and assert exit code 0."""
        code = self.terminate(signum)
        if code != 0:
            raise ServerFailed(f"the server exited with {code}; its output:\n{self.output}")
        return code

    def terminate(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and wait for the exit (killing it if it does not come);
        return the exit code."""
        process = self.process
        assert process is not None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                raise ServerFailed(
                    f"the server did not exit within {STOP_TIMEOUT} s of "
                    f"{signal.Signals(signum).name}; its output:\n{self.output}") from None
        if self._reader is not None:
            self._reader.join(timeout=STOP_TIMEOUT)
        return process.returncode

    def kill(self) -> None:
        """Kill the subprocess now (after a failure)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        if self._reader is not None:
            self._reader.join(timeout=STOP_TIMEOUT)


def _clean_env() -> dict[str, str]:
    """This process's environment without ``EX_ESDB_*`` (the command line decides)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EX_ESDB_")}


@contextlib.contextmanager
def start_server(tmp_path: Path, *extra_args: str, store_ids: Sequence[str] = ("s",),
                 env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run a server (see the module docstring); SIGTERM and exit code 0 on leaving."""
    server = Server(tmp_path, extra_args, store_ids, env)
    server.start()
    try:
        yield server
    except BaseException:
        with contextlib.suppress(Exception):
            server.terminate()
        server.kill()
        raise
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server subprocess (store ``s``) shared by the tests of a module."""
    with start_server(tmp_path_factory.mktemp("grpc")) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[KurrentDBClient]:
    """A :class:`KurrentDBClient` connected to ``server``, closed after the module."""
    kurrent = KurrentDBClient(server.uri)
    try:
        yield kurrent
    finally:
        kurrent.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[bytes, TlsFiles]]:
    """A test CA's certificate (PEM) and a server certificate and key it issued for
    127.0.0.1 and localhost, as files."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    yield ca.cert_pem.bytes(), TlsFiles(str(cert_file), str(key_file))
