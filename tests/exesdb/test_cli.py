"""``python -m exesdb``: the server command end to end, and the read-only commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

import otp
from exesdb import ANY, NewEvent, gateway, start_store, stop_store
from exesdb.storage.postgres import PostgresBackend
from exesdb.storage.postgres_schema import schema_name

SERVE_TIMEOUT = 30.0


def exesdb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exesdb", *args], capture_output=True,
                          text=True, timeout=60, env=env)


class Server:
    """``python -m exesdb start`` in a subprocess, stopped with SIGTERM."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        # --grpc-port 0: free ports, so these servers never collide with another on 2113
        self.proc = subprocess.Popen([sys.executable, "-m", "exesdb", "start",
                                      "--grpc-port", "0", *args],
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.log: list[str] = []
        deadline = time.monotonic() + SERVE_TIMEOUT
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"the server ended early: {''.join(self.log)}")
            self.log.append(line)
            if "exesdb: serving" in line:
                return
        raise AssertionError("the server did not start in time")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        _, rest = self.proc.communicate(timeout=SERVE_TIMEOUT)
        self.log.append(rest)
        return self.proc.returncode


def write_events(root: Path, store_id: str, stream: str, types: list[str]) -> None:
    async def main() -> None:
        await start_store(store_id=store_id, data_dir=root)
        await gateway.append_events(store_id, stream, [NewEvent(t, {"t": t}) for t in types])
        await stop_store(store_id)

    otp.run(main)


def test_help_documents_every_command():
    result = exesdb("--help")
    assert result.returncode == 0
    for command in ("start", "streams", "read", "info"):
        assert command in result.stdout


def test_start_help_names_each_option_and_its_environment_variable():
    out = exesdb("start", "--help").stdout
    for option, variable in [("--store-id", "EX_ESDB_STORE_ID"),
                             ("--data-dir", "EX_ESDB_DATA_DIR"),
                             ("--db-type", "EX_ESDB_DB_TYPE")]:
        assert option in out and variable in out


def test_start_serves_logs_its_tree_and_exits_0_on_sigterm(tmp_path):
    server = Server("--store-id", "demo", "--data-dir", str(tmp_path))
    assert server.stop() == 0
    log = "".join(server.log)
    assert "System[demo]" in log and "GatewayWorker[demo]" in log
    assert "exesdb: stopped" in log
    assert (tmp_path / "demo" / "exesdb.sqlite3").is_file()


def test_start_exits_0_on_sigint(tmp_path):
    server = Server("--store-id", "demo", "--data-dir", str(tmp_path))
    assert server.stop(signal.SIGINT) == 0


def test_start_runs_one_store_per_store_id_from_the_environment(tmp_path):
    env = {**os.environ, "EX_ESDB_STORE_ID": "one,two", "EX_ESDB_DATA_DIR": str(tmp_path)}
    server = Server(env=env)
    assert server.stop() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]


def test_data_survives_a_server_run_and_reads_back(tmp_path):
    write_events(tmp_path, "demo", "orders", ["Placed", "Paid"])
    server = Server("--store-id", "demo", "--data-dir", str(tmp_path))
    assert server.stop() == 0
    result = exesdb("read", "orders", "--store-id", "demo", "--data-dir", str(tmp_path),
                    "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["event_number"], e["event_type"], e["data"]) for e in events] == [
        (0, "Placed", {"t": "Placed"}), (1, "Paid", {"t": "Paid"})]


def test_read_only_commands_work_beside_a_running_server(tmp_path):
    write_events(tmp_path, "demo", "orders", ["Placed"])
    server = Server("--store-id", "demo", "--data-dir", str(tmp_path))
    try:
        result = exesdb("streams", "--store-id", "demo", "--data-dir", str(tmp_path), "--json")
        assert result.returncode == 0, result.stderr
        assert [json.loads(line) for line in result.stdout.splitlines()] == [
            {"stream_id": "orders", "version": 0}]
    finally:
        assert server.stop() == 0


def test_read_backward_without_from_starts_at_the_end(tmp_path):
    write_events(tmp_path, "demo", "orders", ["A", "B", "C"])
    result = exesdb("read", "orders", "--store-id", "demo", "--data-dir", str(tmp_path),
                    "--backward", "--count", "2", "--json")
    assert [json.loads(line)["event_type"] for line in result.stdout.splitlines()] == ["C", "B"]


def test_read_from_and_count_select_events(tmp_path):
    write_events(tmp_path, "demo", "orders", ["A", "B", "C", "D"])
    result = exesdb("read", "orders", "--store-id", "demo", "--data-dir", str(tmp_path),
                    "--from", "1", "--count", "2")
    lines = result.stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [["1", "B"], ["2", "C"]]


def test_info_reports_streams_events_position_and_size(tmp_path):
    write_events(tmp_path, "demo", "orders", ["A", "B"])
    write_events(tmp_path, "demo", "users", ["C"])
    result = exesdb("info", "--store-id", "demo", "--data-dir", str(tmp_path), "--json")
    report = json.loads(result.stdout)
    assert (report["streams"], report["events"], report["last_position"]) == (2, 3, 2)
    assert report["size_bytes"] > 0
    text = exesdb("info", "--store-id", "demo", "--data-dir", str(tmp_path)).stdout
    assert "streams: 2" in text and "events: 3" in text


def test_a_read_only_command_on_a_missing_store_fails_with_a_message(tmp_path):
    result = exesdb("streams", "--store-id", "nothing", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "no exesdb store here" in result.stderr


@pytest.mark.parametrize("store_id", ["../up", ".hidden"])
def test_an_invalid_store_id_fails_with_a_message(tmp_path, store_id):
    result = exesdb("start", "--store-id", store_id, "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "store_id: must be 1 to 64 ASCII" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_start_with_a_data_dir_that_cannot_be_created_fails_with_a_message(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    result = exesdb("start", "--store-id", "demo", "--data-dir", str(blocker))
    assert result.returncode == 2
    assert "data_dir: cannot create" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_refuses_a_store_held_by_another_server(tmp_path):
    server = Server("--store-id", "demo", "--data-dir", str(tmp_path))
    try:
        result = exesdb("start", "--store-id", "demo", "--data-dir", str(tmp_path))
        assert result.returncode == 2
        assert "held by another running store" in result.stderr
    finally:
        assert server.stop() == 0


def write_pg_events(dsn: str, store_id: str, stream: str, types: list[str]) -> None:
    async def main() -> None:
        backend = await PostgresBackend.open(dsn, store_id)
        try:
            await backend.append(stream, ANY, [NewEvent(t, {"t": t}) for t in types])
        finally:
            await backend.close()

    trio.run(main)


def test_read_only_commands_read_a_store_in_postgresql(pg_server, pg_store_id):
    write_pg_events(pg_server.dsn, pg_store_id, "orders", ["Placed", "Paid"])
    where = ["--store-id", pg_store_id, "--db-type", "cluster", "--pg-dsn", pg_server.dsn]
    streams = exesdb("streams", *where, "--json")
    assert streams.returncode == 0, streams.stderr
    assert [json.loads(line) for line in streams.stdout.splitlines()] == [
        {"stream_id": "orders", "version": 1}]
    read = exesdb("read", "orders", *where, "--backward", "--json")
    assert [json.loads(line)["event_type"] for line in read.stdout.splitlines()] == [
        "Paid", "Placed"]
    info = json.loads(exesdb("info", *where, "--json").stdout)
    assert (info["schema"], info["streams"], info["events"]) == (
        schema_name(pg_store_id), 1, 2)
    assert info["size_bytes"] > 0


def test_a_read_only_command_never_creates_a_store_in_postgresql(pg_server, pg_store_id):
    env = {**os.environ, "EX_ESDB_DB_TYPE": "cluster", "EX_ESDB_PG_DSN": pg_server.dsn}
    result = exesdb("streams", "--store-id", pg_store_id, env=env)
    assert result.returncode == 2
    assert result.stderr == (f"exesdb: store {pg_store_id!r}: not in that database (no schema "
                             f"{schema_name(pg_store_id)!r})\n")
    assert exesdb("streams", "--store-id", pg_store_id, env=env).returncode == 2


def test_a_read_only_command_in_cluster_mode_needs_the_database(tmp_path):
    result = exesdb("info", "--store-id", "demo", "--db-type", "cluster",
                    env={k: v for k, v in os.environ.items() if k != "EX_ESDB_PG_DSN"})
    assert result.returncode == 2
    assert result.stderr.startswith("exesdb: pg_dsn: required with --db-type cluster")
