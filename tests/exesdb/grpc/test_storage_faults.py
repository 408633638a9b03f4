"""Storage faults as a KurrentDB client and the operator see them: a full disk answers
``RESOURCE_EXHAUSTED`` naming the cause (not ``UNAVAILABLE``, which clients retry without
end), damaged data ``DATA_LOSS`` with an ERROR line saying where, an unwritable store is
refused at start in one line, and a run that did not stop cleanly is reported at the next
start.

Real parts: a ``python -m exesdb start`` subprocess, ``kurrentdbclient``, a real tmpfs
filled with a file (skipped where this machine does not let the test mount one), real
bytes damaged in the store's file, the immutable flag (which stops root's writes, where
file permissions do not), SIGKILL.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import grpc
import pytest
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from exesdb.storage.sqlite_schema import DB_FILE

from ..disk_helpers import fill, immutable, remount_read_only, small_disk
from ..test_verify import flip_marker, make_store, marked_position
from .conftest import _clean_env, start_server


def _status_of(error: BaseException) -> str:
    """The gRPC status name a kurrentdbclient error carries."""
    text = str(error)
    for code in grpc.StatusCode:
        if f"StatusCode.{code.name}" in text:
            return code.name
    return type(error).__name__


def _event(size: int = 10) -> NewEvent:
    return NewEvent(type="T", data=b"x" * size)


def test_a_full_disk_answers_resource_exhausted_and_appends_resume_when_freed(tmp_path):
    with small_disk(tmp_path / "disk") as disk, \
            start_server(disk, "--no-http") as server:
        client = KurrentDBClient(server.uri)
        try:
            client.append_to_stream("s", events=[_event()], current_version=StreamState.ANY)
            filler = fill(disk)
            with pytest.raises(Exception) as raised:
                client.append_to_stream("s", events=[_event(1024 * 1024)],
                                        current_version=0)
            assert _status_of(raised.value) == "RESOURCE_EXHAUSTED"
            assert "full" in str(raised.value)
            assert [e.stream_position for e in client.get_stream("s")] == [0]  # reads go on
            filler.unlink()
            client.append_to_stream("s", events=[_event(1024 * 1024)], current_version=0)
            assert [e.stream_position for e in client.get_stream("s")] == [0, 1]
        finally:
            client.close()
        assert "ERROR exesdb.storage.writer" in server.output
        assert "a write failed" in server.output


def test_a_damaged_event_answers_data_loss_and_is_logged_where_it_is(tmp_path):
    make_store(tmp_path / "s")
    position = marked_position(tmp_path / "s")
    flip_marker(tmp_path / "s")
    with start_server(tmp_path, "--no-http") as server:
        client = KurrentDBClient(server.uri)
        try:
            with pytest.raises(Exception) as raised:
                client.get_stream("s1")
            assert _status_of(raised.value) == "DATA_LOSS"
            assert "checksum mismatch" in str(raised.value)
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while "ERROR exesdb.storage" not in server.output and time.monotonic() < deadline:
            time.sleep(0.05)
        line = next(li for li in server.output.splitlines() if "ERROR exesdb.storage" in li)
        assert (f"corrupt event record at $all position {position} (stream 's1', version 1)"
                in line)


def test_undamaged_events_still_read_beside_a_damaged_one(tmp_path):
    make_store(tmp_path / "s")
    flip_marker(tmp_path / "s")
    with start_server(tmp_path, "--no-http") as server:
        client = KurrentDBClient(server.uri)
        try:
            assert [e.stream_position for e in client.get_stream("s0")] == [0, 1, 2]
            assert [e.stream_position for e in client.get_stream("s1", limit=1)] == [0]
            [next_one] = client.get_stream("s1", stream_position=2)
            after = list(client.read_all(commit_position=next_one.commit_position,
                                         filter_exclude=()))
            assert [(e.stream_name, e.stream_position) for e in after] == [
                ("s1", 2), ("s2", 0), ("s2", 1), ("s2", 2)]
            with pytest.raises(Exception) as raised:
                list(client.read_all(filter_exclude=()))
            assert _status_of(raised.value) == "DATA_LOSS"
        finally:
            client.close()


def _start_fails(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exesdb", "start", "--store-id", "s", "--data-dir",
         str(tmp_path), "--grpc-port", "0", "--no-http", *args],
        capture_output=True, text=True, timeout=120, env=_clean_env())


def test_start_refuses_a_store_file_it_cannot_write_in_one_line(tmp_path):
    """As root, permissions do not stop a write, so the unwritable file is made immutable
    (``chattr +i``), which stops everyone."""
    make_store(tmp_path / "s")
    with immutable(tmp_path / "s" / DB_FILE):
        result = _start_fails(tmp_path)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("exesdb: ") and f"{DB_FILE}: the store file is not writable" in last
    assert "serving" not in result.stderr and "Traceback" not in result.stderr


def test_start_refuses_a_store_on_a_read_only_file_system_in_one_line(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        make_store(disk / "s")
        remount_read_only(disk)
        result = _start_fails(disk)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("exesdb: data_dir: ") and "Read-only file system" in last
    assert "serving" not in result.stderr and "Traceback" not in result.stderr


def test_a_start_after_sigkill_warns_that_the_previous_run_did_not_stop_cleanly(tmp_path):
    with start_server(tmp_path, "--no-http") as server:
        client = KurrentDBClient(server.uri)
        try:
            client.append_to_stream("s", events=[_event()], current_version=StreamState.ANY)
        finally:
            client.close()
        assert "did not stop cleanly" not in server.output
        server.terminate(signal.SIGKILL)
        server.start()
        warning = next(li for li in server.output.splitlines() if "did not stop cleanly" in li)
        assert " WARNING " in warning and "up to $all position 0" in warning
        server.restart()  # this time the previous run stopped cleanly
        assert "did not stop cleanly" not in server.output
