"""The child process of the paused-writer test: a PostgreSQL store's writer that stops
itself (SIGSTOP) in the middle of an append's transaction, right after it sent the
events' INSERT and before that statement's Sync if it has not sent it yet, as a node
paused by its operating system (or frozen with its VM) at that moment would.

Usage: ``PSYCOPG_IMPL=python python _paused_writer_child.py DSN STORE_ID TIMEOUT``
(psycopg's pure Python libpq wrapper, whose methods can be wrapped). Prints ``ready``
once the store is open, then appends once: the process stops in that append, holding
the store's head row lock. The statement timeout of its sessions is ``TIMEOUT`` seconds.
"""

from __future__ import annotations

import os
import signal
import sys

import trio
from psycopg.pq import pq_ctypes

from exesdb import ANY, NewEvent
from exesdb.storage.postgres import PostgresBackend

_pending = False  # the events' INSERT was sent in a pipeline whose Sync is not sent yet


def _stop() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def _is_insert(command: bytes) -> bool:
    return command.startswith(b"INSERT INTO") and b".events(" in command


def _wrap_send(original):
    def send(self, command, *args, **kwargs):
        global _pending
        result = original(self, command, *args, **kwargs)
        if isinstance(command, bytes) and _is_insert(command):
            if self.pipeline_status:
                _pending = True  # stop before the Sync (pipeline_sync)
            else:
                self.flush()
                _stop()  # the statement and its Sync are on the wire
        return result
    return send


def _wrap_sync(original):
    def pipeline_sync(self):
        global _pending
        if _pending:
            _pending = False
            self.flush()
            _stop()
        return original(self)
    return pipeline_sync


def _wrap_prepare(original):
    def send_prepare(self, name, command, *args, **kwargs):
        global _pending
        if self.pipeline_status and _is_insert(command):
            _pending = True  # executemany: the rows follow, the Sync last (pipeline_sync)
        return original(self, name, command, *args, **kwargs)
    return send_prepare


pq_ctypes.PGconn.send_query_params = _wrap_send(pq_ctypes.PGconn.send_query_params)
pq_ctypes.PGconn.send_prepare = _wrap_prepare(pq_ctypes.PGconn.send_prepare)
pq_ctypes.PGconn.pipeline_sync = _wrap_sync(pq_ctypes.PGconn.pipeline_sync)


async def main(dsn: str, store_id: str, timeout: float) -> None:
    backend = await PostgresBackend.open(dsn, store_id, statement_timeout=timeout)
    print("ready", flush=True)
    await backend.append("paused", ANY, [NewEvent("Placed", {"n": 1})])


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], float(sys.argv[3]))
