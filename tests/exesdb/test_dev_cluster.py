"""``python -m exesdb dev-cluster``: a throw-away PostgreSQL and cluster nodes as OS
processes, the connection string printed, everything stopped and removed on SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import uuid

import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

pytestmark = pytest.mark.slow

URI = re.compile(r"^\s*(kurrentdb://\S+)$")
PG_PORT = re.compile(r"PostgreSQL at postgresql://postgres@127\.0\.0\.1:(\d+)/")


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def test_dev_cluster_serves_a_store_on_its_nodes_and_removes_everything_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "exesdb", "dev-cluster", "--store-id", "demo", "--nodes", "2",
         "--log-level", "WARNING"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        uri = None
        for line in process.stdout:
            lines.append(line)
            if match := URI.match(line):
                uri = match.group(1)
                break
        assert uri is not None, "".join(lines)
        ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", uri)]
        assert len(ports) == 2 and uri.endswith("?Tls=false")
        pg_port = int(PG_PORT.search("".join(lines)).group(1))

        client = KurrentDBClient(uri)
        try:
            stream = f"demo-{uuid.uuid4()}"
            client.append_to_stream(stream, events=[NewEvent(type="Placed", data=b"{}")],
                                    current_version=StreamState.NO_STREAM)
            assert [e.type for e in client.get_stream(stream)] == ["Placed"]
        finally:
            client.close()

        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert rest.rstrip().endswith("dev-cluster: stopped")
    assert not any(accepts(port) for port in [*ports, pg_port])
