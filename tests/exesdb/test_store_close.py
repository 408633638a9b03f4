"""Closing a store: the SQLite connections are closed exactly once, even when the task
that closes them is cancelled or the store process is killed, and the store directory's
lock is released only once the database is closed, but always, so the store can start
again at once in the same OS process."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

import otp
from exesdb import ANY
from exesdb.errors import StorageError, StoreLocked
from exesdb.naming import ensure_registry
from exesdb.options import StoreOptions, resolve_options
from exesdb.storage import SQLiteBackend
from exesdb.storage.sqlite import _Engine
from exesdb.storage.sqlite_schema import DB_FILE
from exesdb.systems.store import Store, _open_lock, backend_of

from .helpers import new_events
from .store_helpers import kill_and_wait


class CloseGate:
    """While :meth:`holding`, every ``_Engine.close`` waits at its start (in its worker
    thread, so the gate is made of threading events); counts the calls."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.opened.set()
        self.calls = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = _Engine.close

        def close(engine: _Engine) -> None:
            self.calls += 1
            self.entered.set()
            self.opened.wait()
            original(engine)

        monkeypatch.setattr(_Engine, "close", close)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the closes until the block ends, however it ends (so that a failing test
        leaves no close, nor any task waiting for one, stuck)."""
        self.entered.clear()
        self.opened.clear()
        try:
            yield
        finally:
            self.opened.set()

    async def wait_entered(self) -> None:
        """Return once a close has started in its worker thread."""
        assert await trio.to_thread.run_sync(self.entered.wait, 5.0), "no close started"


@pytest.fixture
def close_gate(monkeypatch: pytest.MonkeyPatch) -> CloseGate:
    gate = CloseGate()
    gate.install(monkeypatch)
    return gate


def _exclusive_access(path: Path) -> bool:
    """Whether a new connection can take the database file exclusively: only when no
    other connection has it open (each WAL-mode connection holds a shared lock on it)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


async def nobody_has_it_open(path: Path) -> bool:
    return await trio.to_thread.run_sync(_exclusive_access, path)


async def opened_with_a_reader(directory: Path) -> SQLiteBackend:
    """A store with its writer connection and one pooled reader connection open."""
    backend = await SQLiteBackend.open(directory)
    await backend.read_all()
    assert not await nobody_has_it_open(backend.path)
    return backend


def store_options(tmp_path: Path) -> StoreOptions:
    return resolve_options(store_id="s", data_dir=tmp_path, environ={})


def lock_is_free(directory: Path) -> bool:
    """Whether another process could lock the store directory now (a second flock in
    this process conflicts exactly as one from another process would)."""
    try:
        fd = _open_lock("s", directory)
    except StoreLocked:
        return False
    os.close(fd)
    return True


# -- the backend ---------------------------------------------------------------------------


async def test_a_close_cancelled_as_it_starts_still_closes_every_connection(tmp_path):
    backend = await opened_with_a_reader(tmp_path / "s")
    with trio.CancelScope() as scope:
        scope.cancel()
        await backend.close()
    assert scope.cancelled_caught
    await backend.close()  # returns once the close the first call started is done
    assert await nobody_has_it_open(backend.path)
    assert not (tmp_path / "s" / f"{DB_FILE}-wal").exists()  # checkpointed by the last close


async def test_a_close_cancelled_while_it_waits_still_closes_every_connection(tmp_path):
    backend = await opened_with_a_reader(tmp_path / "s")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(backend.close)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    await backend.close()
    assert await nobody_has_it_open(backend.path)


async def test_a_second_close_returns_only_once_the_first_has_closed_the_database(
        tmp_path, close_gate):
    backend = await opened_with_a_reader(tmp_path / "s")
    second_returned = False

    async def second_close() -> None:
        nonlocal second_returned
        await backend.close()
        second_returned = True

    async with trio.open_nursery() as nursery:
        with close_gate.holding():
            nursery.start_soon(backend.close)
            await close_gate.wait_entered()
            nursery.start_soon(second_close)
            await wait_all_tasks_blocked()
            assert not second_returned
    assert second_returned
    assert await nobody_has_it_open(backend.path)


async def test_concurrent_and_cancelled_closes_close_the_connections_exactly_once(
        tmp_path, close_gate):
    backend = await opened_with_a_reader(tmp_path / "s")
    async with trio.open_nursery() as nursery:
        with close_gate.holding():
            with trio.CancelScope() as cancelled:
                cancelled.cancel()
                await backend.close()
            for _ in range(3):
                nursery.start_soon(backend.close)
            await close_gate.wait_entered()
            await wait_all_tasks_blocked()
    await backend.close()
    assert close_gate.calls == 1
    assert await nobody_has_it_open(backend.path)


async def test_every_operation_after_a_cancelled_close_raises_storage_error(tmp_path):
    backend = await opened_with_a_reader(tmp_path / "s")
    with trio.CancelScope() as scope:
        scope.cancel()
        await backend.close()
    with pytest.raises(StorageError, match="closed"):
        await backend.read_all()
    with pytest.raises(StorageError, match="closed"):
        await backend.read_stream("s")
    with pytest.raises(StorageError, match="closed"):
        await backend.stats()
    with pytest.raises(StorageError, match="closed"):
        await backend.append("s", ANY, new_events(1))
    with pytest.raises(StorageError, match="closed"):
        await backend.flush()
    await backend.close()


async def test_close_waits_for_the_reads_in_progress_and_closes_their_connections(
        tmp_path, monkeypatch):
    backend = await opened_with_a_reader(tmp_path / "s")
    reading = threading.Event()
    finish_read = threading.Event()
    acquire = _Engine._acquire_reader

    def acquire_and_hold(engine: _Engine) -> sqlite3.Connection:
        conn = acquire(engine)
        reading.set()
        finish_read.wait()  # the read goes on with its connection once the test says so
        return conn

    monkeypatch.setattr(_Engine, "_acquire_reader", acquire_and_hold)
    closed = False

    async def close() -> None:
        nonlocal closed
        await backend.close()
        closed = True

    async with trio.open_nursery() as nursery:
        try:
            nursery.start_soon(backend.head_position)
            assert await trio.to_thread.run_sync(reading.wait, 5.0)
            nursery.start_soon(close)
            await wait_all_tasks_blocked()
            assert not closed
        finally:
            finish_read.set()
    assert closed
    assert await nobody_has_it_open(backend.path)


# -- the store process ---------------------------------------------------------------------


async def test_a_killed_store_frees_its_lock_only_once_its_database_is_closed(
        tmp_path, close_gate):
    opts = store_options(tmp_path)
    async with otp.node():
        otp.trap_exits(True)
        await ensure_registry()
        store = await Store.start_link(opts)
        with close_gate.holding():
            await kill_and_wait(store)
            await close_gate.wait_entered()
            assert not await trio.to_thread.run_sync(lock_is_free, opts.store_dir)
        await _until_closed_and_unlocked(opts)


async def test_a_store_killed_while_closing_frees_its_lock_once_the_database_is_closed(
        tmp_path, close_gate):
    opts = store_options(tmp_path)
    async with otp.node():
        otp.trap_exits(True)
        await ensure_registry()
        store = await Store.start_link(opts)
        with close_gate.holding():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_and_expect_killed, store)  # terminate closes
                await close_gate.wait_entered()
                with trio.fail_after(5):  # a kill must not wait for the close to finish
                    await kill_and_wait(store)
            assert not await trio.to_thread.run_sync(lock_is_free, opts.store_dir)
        await _until_closed_and_unlocked(opts)


async def test_a_store_started_right_after_a_kill_waits_for_the_close_and_opens(
        tmp_path, close_gate):
    opts = store_options(tmp_path)
    async with otp.node():
        otp.trap_exits(True)
        await ensure_registry()
        store = await Store.start_link(opts)
        await backend_of("s").append("orders", ANY, new_events(1))
        started: list[otp.Pid] = []

        async def start_again() -> None:
            started.append(await Store.start_link(opts))

        async with trio.open_nursery() as nursery:
            with close_gate.holding():
                await kill_and_wait(store)
                nursery.start_soon(start_again)
                await close_gate.wait_entered()
                await wait_all_tasks_blocked()
                assert started == []  # not failed with StoreLocked: waiting for the close
        assert otp.is_alive(started[0])
        assert len(await backend_of("s").read_stream("orders")) == 1


async def _stop_and_expect_killed(store: otp.Pid) -> None:
    with pytest.raises(otp.ServerExited):
        await otp.gen_server.stop(store, otp.SHUTDOWN)


async def _until_closed_and_unlocked(opts: StoreOptions) -> None:
    """Start the store again, which waits for the close in progress and then takes the
    lock and opens; stop it, which closes the database and frees the lock at once."""
    again = await Store.start_link(opts)
    assert otp.is_alive(again)
    await otp.gen_server.stop(again, otp.SHUTDOWN)
    assert await nobody_has_it_open(opts.store_dir / DB_FILE)
    assert await trio.to_thread.run_sync(lock_is_free, opts.store_dir)
