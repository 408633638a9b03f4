"""A node paused in the middle of an append does not keep the other nodes from appending.

Every appending transaction locks the store's head row until it commits, so a writer
stopped inside one (SIGSTOP, a frozen VM) holds everyone's appends. The server ends such
a session once it is idle in its transaction for ``idle_in_transaction_session_timeout``
(the backend's statement timeout) and the lock goes with it; but it only counts that
idle time after a statement's Sync: a writer stopped between sending a statement and its
Sync (psycopg's ``executemany`` pipelines its rows and sends the Sync last) is never
ended, and every append of every node waits until it runs again. The writer sends each
statement with its Sync.

The stopped writer is a child process (:mod:`tests.exesdb._paused_writer_child`) that
stops itself right after sending the events' INSERT (before its Sync, if it was not
sent with it)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from exesdb import ANY, NewEvent
from exesdb.errors import StorageUnavailable
from exesdb.storage.postgres import PostgresBackend

pytestmark = pytest.mark.slow

TIMEOUT = 1.0
"""The statement timeout of both writers, in seconds."""


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (state T in /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


async def _append_until(dsn: str, store_id: str, limit: float) -> float | None:
    """Append from another writer, trying again while the head lock is not granted
    within the statement timeout; the seconds it took, or None after ``limit``."""
    started = time.monotonic()
    backend = await PostgresBackend.open(dsn, store_id, statement_timeout=TIMEOUT)
    try:
        while time.monotonic() - started < limit:
            with contextlib.suppress(StorageUnavailable):
                await backend.append("other", ANY, [NewEvent("Placed", {"n": 2})])
                return time.monotonic() - started
        return None
    finally:
        await backend.close()


def test_a_writer_stopped_inside_its_append_releases_the_head_lock_after_the_timeout(
        pg_server, pg_store_id):
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_paused_writer_child.py")),
         pg_server.dsn, pg_store_id, str(TIMEOUT)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PSYCOPG_IMPL": "python"})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not _stopped(child.pid):
            assert child.poll() is None and time.monotonic() < deadline, "it never stopped"
            time.sleep(0.01)
        took = trio.run(_append_until, pg_server.dsn, pg_store_id, 10 * TIMEOUT)
        assert took is not None, "the stopped writer still holds the head lock"
        assert took < 4 * TIMEOUT, took
    finally:
        child.kill()
        child.wait()
