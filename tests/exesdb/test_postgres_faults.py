"""Losing the database: killed connections, a crash, a stopped or hung server. Calls fail
promptly with StorageUnavailable, nothing acknowledged is lost, and the backend
reconnects by itself when the database is back.

The tests that stop, crash or freeze the server use a server of this module's own, so the
session's server is never disturbed."""

from __future__ import annotations

import os
import signal

import pytest
import trio

import otp
from exesdb import ANY, NO_STREAM, NewEvent, StorageError
from exesdb.errors import StorageUnavailable
from exesdb.storage import writer
from exesdb.storage.postgres import PostgresBackend

from ..pg_server import PostgresServer
from .helpers import new_events

PROMPT = 5.0
"""Seconds within which a call must fail when the database is gone."""


@pytest.fixture(scope="module")
def own_server():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def store(pg_backend):
    return pg_backend


# -- killed connections (pg_terminate_backend) ---------------------------------------------


async def test_a_killed_write_connection_fails_the_next_write_and_the_one_after_succeeds(
        pg_server, store):
    await store.append("s", NO_STREAM, new_events(1))
    assert pg_server.terminate(f"exesdb {store.store_id} writer") == 1
    with pytest.raises(StorageUnavailable) as caught:
        await store.append("s", 0, new_events(1))
    assert not caught.value.outcome_unknown
    assert isinstance(caught.value, StorageError)
    assert await store.append("s", 0, new_events(1)) == 1
    assert [e.event_number for e in await store.read_stream("s")] == [0, 1]


async def test_a_killed_read_connection_fails_the_next_read_and_the_one_after_succeeds(
        pg_server, store):
    await store.append("s", NO_STREAM, new_events(1))
    assert len(await store.read_all()) == 1
    assert pg_server.terminate(f"exesdb {store.store_id} reader") >= 1
    with pytest.raises(StorageUnavailable, match="reading \\$all failed"):
        await store.read_all()
    assert len(await store.read_all()) == 1


async def test_a_lost_connection_reaches_the_writer_s_caller_as_storage_unavailable(
        pg_server, store):
    async with otp.node():
        pid = await writer.start_link(store)
        await writer.append(pid, "s", NO_STREAM, new_events(1))
        pg_server.terminate(f"exesdb {store.store_id} writer")
        with pytest.raises(StorageUnavailable):
            await writer.append(pid, "s", 0, new_events(1))
        assert await writer.append(pid, "s", 0, new_events(1)) == 1


# -- a stopped, crashed or hung server -------------------------------------------------------


async def test_a_stopped_database_fails_calls_promptly_and_they_succeed_once_it_is_back(
        own_server):
    store = await PostgresBackend.open(own_server.dsn, "stopped", connect_timeout=2,
                                       statement_timeout=2)
    try:
        await store.append("s", NO_STREAM, new_events(1))
        await trio.to_thread.run_sync(own_server.stop_server)
        try:
            with trio.fail_after(PROMPT):
                with pytest.raises(StorageUnavailable):
                    await store.append("s", 0, new_events(1))
                with pytest.raises(StorageUnavailable):
                    await store.read_stream("s")
                with pytest.raises(StorageUnavailable):
                    await store.append("s", 0, new_events(1))  # connecting fails too
        finally:
            await trio.to_thread.run_sync(own_server.start)
        assert await store.append("s", 0, new_events(1)) == 1
        assert [e.event_number for e in await store.read_stream("s")] == [0, 1]
    finally:
        await store.close()


async def test_a_hung_server_fails_a_call_within_twice_the_statement_timeout(own_server):
    """A server process that is alive but does not answer (stopped with SIGSTOP) is what
    neither PostgreSQL's timeouts nor TCP keepalives catch: the client's deadline does.
    The append had been sent whole (a single statement, for an append the writer
    decides from its cache): the server runs it when it resumes, so its outcome is
    unknown, and the store goes on from whatever it was."""
    store = await PostgresBackend.open(own_server.dsn, "hung", statement_timeout=1)
    try:
        await store.append("s", NO_STREAM, new_events(1))
        (pid,), = own_server.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (f"exesdb {store.store_id} writer",))
        os.kill(pid, signal.SIGSTOP)
        try:
            with trio.fail_after(PROMPT):
                with pytest.raises(StorageUnavailable) as caught:
                    await store.append("s", 0, new_events(1))
        finally:
            os.kill(pid, signal.SIGCONT)
        assert caught.value.outcome_unknown
        version = await store.append("s", ANY, new_events(1))
        assert version in (1, 2)
        assert [e.event_number for e in await store.read_stream("s")] == list(range(version + 1))
    finally:
        await store.close()


async def test_a_crash_of_the_database_loses_no_acknowledged_event(own_server):
    """Appenders write through the group-committing writer while the server is killed
    (``pg_ctl restart -m immediate``: no shutdown checkpoint, recovery from the WAL).
    Every append that was acknowledged is in ``$all`` afterwards, which is gapless."""
    store = await PostgresBackend.open(own_server.dsn, "crash", connect_timeout=2,
                                       statement_timeout=2)
    acknowledged: list[NewEvent] = []
    failures: list[StorageUnavailable] = []
    try:
        with trio.fail_after(60):
            await _append_through_a_crash(own_server, store, acknowledged, failures)
        everything = await store.read_all(0, 100_000)
        stored = {event.event_id for event in everything}
        assert all(event.event_id in stored for event in acknowledged)
        assert [event.position for event in everything] == list(range(len(everything)))
        assert failures  # the crash was noticed, and the backend came back from it
    finally:
        await store.close()


async def _append_through_a_crash(server, store, acknowledged, failures):
    """Four appenders through a writer: 40 acknowledged appends, the crash, 40 more."""
    crashed = trio.Event()
    enough_before_crash = trio.Event()
    after_crash = 0
    async with otp.node():
        pid = await writer.start_link(store)

        async def appender(index):
            nonlocal after_crash
            while after_crash < 40:
                events = [NewEvent("T", {"appender": index})]
                try:
                    await writer.append(pid, f"s{index}", ANY, events)
                except StorageUnavailable as exc:
                    failures.append(exc)
                    await trio.sleep(0.02)
                    continue
                acknowledged.extend(events)
                if len(acknowledged) >= 40:
                    enough_before_crash.set()
                if crashed.is_set():
                    after_crash += 1

        async with trio.open_nursery() as nursery:
            for index in range(4):
                nursery.start_soon(appender, index)
            await enough_before_crash.wait()
            await trio.to_thread.run_sync(server.restart, "immediate")
            crashed.set()
