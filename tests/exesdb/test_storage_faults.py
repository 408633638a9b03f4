"""Storage faults of the SQLite backend: a full disk, files that cannot be written, a run
that did not stop cleanly, and failed writes in the log.

The full disk is real where the test may mount a small tmpfs (root); the same behaviour is
also checked everywhere with SQLite's ``max_page_count``, which makes SQLite fail a write
with the very error a full disk gives (``SQLITE_FULL``) at its write boundary: that
variant is an injection, named as such. Unwritable files are real too: as root, file
permissions do not stop a write, so the tests use what does stop root, the immutable flag
(``chattr +i``) and a read-only mount, and skip where this machine does not allow them.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap

import pytest
import trio

import otp
from exesdb import ANY, NO_STREAM, NewEvent, StorageError
from exesdb.errors import StorageFull
from exesdb.storage import SQLiteBackend, writer
from exesdb.storage.sqlite import RUNNING_FILE
from exesdb.storage.sqlite_schema import DB_FILE

from .disk_helpers import fill, immutable, remount_read_only, small_disk
from .helpers import new_events

BIG = "x" * (1024 * 1024)  # an event larger than what is left on a full 4 MiB disk


def big_event() -> NewEvent:
    return NewEvent("Big", {"pad": BIG})


@pytest.fixture(params=["tmpfs", "max_page_count"])
def full_disk(request, tmp_path):
    """``(directory, make_full, make_room)``: a store directory and two functions that
    fill its disk and free it again; ``tmpfs``: a real 4 MiB file system filled with a
    file; ``max_page_count``: SQLite's page limit set at the store's size (injected)."""
    if request.param == "tmpfs":
        with small_disk(tmp_path / "disk") as disk:
            holder = {}

            def make_full(_backend):
                holder["filler"] = fill(disk)

            def make_room(_backend):
                holder.pop("filler").unlink()

            yield disk / "store", make_full, make_room
        return

    def limit(backend, pages):
        backend._engine._writer.execute(f"PRAGMA max_page_count={pages}")  # the injection

    def make_full(backend):
        pages = backend._engine._writer.execute("PRAGMA page_count").fetchone()[0]
        limit(backend, pages)

    yield tmp_path / "store", make_full, lambda backend: limit(backend, 1 << 30)


async def test_a_full_disk_fails_appends_with_storage_full_and_writes_nothing(full_disk):
    directory, make_full, _make_room = full_disk
    store = await SQLiteBackend.open(directory)
    try:
        await store.append("s", NO_STREAM, new_events(3))
        make_full(store)
        with pytest.raises(StorageFull, match="full"):
            await store.append("s", 2, [big_event()])
        assert await store.stream_version("s") == 2
    finally:
        await store.close()


async def test_reads_go_on_while_the_disk_is_full(full_disk):
    directory, make_full, _make_room = full_disk
    store = await SQLiteBackend.open(directory)
    try:
        await store.append("s", NO_STREAM, new_events(3))
        before = await store.read_all()
        make_full(store)
        with pytest.raises(StorageFull):
            await store.append("s", ANY, [big_event()])
        assert await store.read_all() == before
        assert await store.read_stream("s", 1, 2) == before[1:3]
    finally:
        await store.close()


async def test_appends_resume_once_space_is_freed_and_nothing_is_lost(full_disk):
    directory, make_full, make_room = full_disk
    store = await SQLiteBackend.open(directory)
    try:
        first = new_events(3)
        await store.append("s", NO_STREAM, first)
        make_full(store)
        with pytest.raises(StorageFull):
            await store.append("s", 2, [big_event()])
        make_room(store)
        again = big_event()
        assert await store.append("s", 2, [again]) == 3
    finally:
        await store.close()
    reopened = await SQLiteBackend.open(directory)
    try:
        stored = await reopened.read_stream("s")
        assert [e.event_id for e in stored] == [e.event_id for e in [*first, again]]
    finally:
        await reopened.close()


async def test_the_writer_logs_the_first_failed_write_at_error_then_the_recovery(
        full_disk, caplog):
    directory, make_full, make_room = full_disk
    store = await SQLiteBackend.open(directory)
    try:
        async with otp.node():
            pid = await writer.start_link(store)
            await writer.append(pid, "s", NO_STREAM, new_events(1))
            make_full(store)
            with caplog.at_level(logging.WARNING, "exesdb.storage.writer"):
                for _ in range(3):
                    with pytest.raises(StorageFull):
                        await writer.append(pid, "s", ANY, [big_event()])
                make_room(store)
                await writer.append(pid, "s", ANY, new_events(1))
            await otp.gen_server.stop(pid)
    finally:
        await store.close()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == "exesdb.storage.writer"]
    assert [level for level, _ in lines] == ["ERROR", "WARNING"]
    assert "a write failed" in lines[0][1] and "full" in lines[0][1]
    assert "writes succeed again (3 failed in all)" in lines[1][1]


def test_the_failed_write_log_reports_a_run_of_failures_at_most_once_per_interval(caplog):
    log = writer.FailedWrites(interval=10.0)
    error = StorageFull("the write transaction failed: database or disk is full")
    with caplog.at_level(logging.WARNING, "exesdb.storage.writer"):
        for _ in range(50):
            log.record("backend", [error, error])
    assert [r.levelname for r in caplog.records] == ["ERROR"]


# -- files that cannot be written ---------------------------------------------------------


async def _store_with_events(directory):
    store = await SQLiteBackend.open(directory)
    await store.append("s", NO_STREAM, new_events(2))
    await store.close()


async def test_an_immutable_store_file_is_refused_at_open_naming_the_file(tmp_path):
    """The immutable flag stops root's writes too (file permissions do not), so this is
    the real case of a store file the server cannot write."""
    directory = tmp_path / "store"
    await _store_with_events(directory)
    with immutable(directory / DB_FILE), pytest.raises(StorageError) as raised:
        await SQLiteBackend.open(directory)
    assert "exesdb.sqlite3: the store file is not writable" in str(raised.value)
    assert "Operation not permitted" in str(raised.value)


async def test_an_unwritable_store_directory_is_refused_at_open(tmp_path):
    directory = tmp_path / "store"
    await _store_with_events(directory)
    with immutable(directory), pytest.raises(StorageError, match="store directory is not "
                                                                 "writable"):
        await SQLiteBackend.open(directory)


async def test_a_store_on_a_read_only_file_system_is_refused_at_open(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        await _store_with_events(disk / "store")
        remount_read_only(disk)
        with pytest.raises(StorageError, match=r"not writable .*Read-only file system"):
            await SQLiteBackend.open(disk / "store")


async def test_an_unwritable_store_still_opens_read_only(tmp_path):
    directory = tmp_path / "store"
    await _store_with_events(directory)
    with immutable(directory / DB_FILE):
        store = await SQLiteBackend.open(directory, read_only=True)
        try:
            assert await store.stream_version("s") == 1
        finally:
            await store.close()


# -- how the previous run ended -------------------------------------------------------------


async def test_a_store_closed_cleanly_reports_no_unclean_stop(tmp_path):
    directory = tmp_path / "store"
    await _store_with_events(directory)
    assert not (directory / RUNNING_FILE).exists()
    store = await SQLiteBackend.open(directory)
    try:
        assert store.unclean_stop is None
        assert (directory / RUNNING_FILE).exists()
    finally:
        await store.close()


_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys, trio
    from exesdb import ANY, NewEvent
    from exesdb.storage import SQLiteBackend

    async def main():
        store = await SQLiteBackend.open(sys.argv[1])
        await store.append("s", ANY, [NewEvent("T", {"n": n}) for n in range(5)])
        os.kill(os.getpid(), signal.SIGKILL)

    trio.run(main)
""")


async def test_a_store_whose_process_was_killed_says_so_and_what_recovery_did(tmp_path):
    directory = tmp_path / "store"
    killed = await trio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(directory)], capture_output=True,
        timeout=60))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (directory / f"{DB_FILE}-wal").stat().st_size > 0  # killed before a checkpoint
    store = await SQLiteBackend.open(directory)
    try:
        note = store.unclean_stop
        assert note is not None and "did not stop cleanly" in note
        assert "recovered its write-ahead log" in note
        assert "up to $all position 4" in note
        assert len(await store.read_all()) == 5
    finally:
        await store.close()
    again = await SQLiteBackend.open(directory)
    try:
        assert again.unclean_stop is None
    finally:
        await again.close()
