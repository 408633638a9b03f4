"""The SQLite file of a store: its schema, how it is recognised and how it is opened.

Guarantees: a file is only ever written after it was recognised as an exesdb store of
this schema version, or found empty and initialised, or recognised as a store of an
earlier version and migrated to this one (in one transaction: all of it or nothing); a
file that is not a SQLite database, a SQLite database of another application, a store of
a newer or unknown schema version, or a store whose header or meta table was damaged
raises :class:`exesdb.StorageError` with a message that says which, and is left
untouched.

Schema versions: 1, the first; 2 adds the ``subscriptions`` table (durable subscription
definitions). A version-1 file is migrated when it is opened for writing; opened
read-only it is read as it is (it holds no subscription definitions).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from ..errors import StorageError
from .records import meta_crc

__all__ = [
    "APPLICATION_ID",
    "DB_FILE",
    "OLDEST_VERSION",
    "SCHEMA_VERSION",
    "connect",
    "open_file",
]

DB_FILE: Final = "exesdb.sqlite3"
"""The name of a store's database file inside its directory."""
APPLICATION_ID: Final = 0x45784553
"""SQLite's application_id of an exesdb store ("ExES")."""
SCHEMA_VERSION: Final = 2
"""The schema version this code writes and reads (SQLite's user_version)."""
OLDEST_VERSION: Final = 1
"""The oldest schema version this code migrates (and reads read-only)."""
FORMAT: Final = "exesdb-sqlite"

_SCHEMA_V1: Final = (  # version 1, as it was: migrations start from it
    """CREATE TABLE meta(
        key TEXT PRIMARY KEY, value TEXT NOT NULL, crc INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE streams(
        skey INTEGER PRIMARY KEY, stream_id TEXT NOT NULL UNIQUE,
        first INTEGER NOT NULL, state INTEGER NOT NULL, crc INTEGER NOT NULL)""",
    """CREATE TABLE events(
        pos INTEGER PRIMARY KEY, skey INTEGER NOT NULL, num INTEGER NOT NULL,
        eid BLOB NOT NULL, crc INTEGER NOT NULL, rec BLOB NOT NULL)""",
    "CREATE UNIQUE INDEX events_stream ON events(skey, num)",
    "CREATE INDEX events_eid ON events(eid, skey, num)",
    """CREATE TABLE snapshots(
        source_uuid TEXT NOT NULL, stream_uuid TEXT NOT NULL, version INTEGER NOT NULL,
        created INTEGER NOT NULL, crc INTEGER NOT NULL, rec BLOB NOT NULL,
        PRIMARY KEY(source_uuid, stream_uuid, version)) WITHOUT ROWID""",
    """CREATE TABLE checkpoints(
        name TEXT PRIMARY KEY, position INTEGER NOT NULL, crc INTEGER NOT NULL)
        WITHOUT ROWID""",
)

_SUBSCRIPTIONS: Final = """CREATE TABLE subscriptions(
        name TEXT PRIMARY KEY, type TEXT NOT NULL, selector TEXT NOT NULL,
        start_from INTEGER NOT NULL, with_subscriber INTEGER NOT NULL,
        crc INTEGER NOT NULL) WITHOUT ROWID"""

_MIGRATIONS: Final = {
    # version -> the statements that bring a store of that version to the next one
    1: (_SUBSCRIPTIONS,),
}
_SCHEMA: Final = (*_SCHEMA_V1, _SUBSCRIPTIONS)
"""The statements that create a store of :data:`SCHEMA_VERSION`."""


def _meta(version: int) -> dict[str, str]:
    return {"format": FORMAT, "schema_version": str(version), "encoding": "UTF-8"}


_META: Final = _meta(SCHEMA_VERSION)


def connect(path: Path, durable: bool, reader: bool = False) -> sqlite3.Connection:
    """A connection to ``path`` in autocommit mode, usable from any one thread at a time.

    ``durable`` sets ``synchronous=FULL`` (every commit is fsynced before it returns),
    else ``NORMAL`` (WAL commits reach the OS, fsync at checkpoints). Readers are
    ``query_only``.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        if reader:
            conn.execute("PRAGMA query_only=ON")
    except BaseException:
        conn.close()
        raise
    return conn


_MAGIC: Final = b"SQLite format 3\x00"
_STABLE_HEADER: Final = (
    # (offset, expected bytes, what): the header fields of a store that never change once
    # it is created; SQLite itself ignores some of them, so a flipped byte there would
    # otherwise go unnoticed.
    (18, b"\x02\x02", "file format versions (WAL)"),
    (20, b"\x00", "reserved space"),
    (21, b"\x40\x20\x20", "payload fractions"),
    (44, (4).to_bytes(4, "big"), "schema format"),
    (48, bytes(4), "default cache size"),
    (52, bytes(4), "auto-vacuum"),
    (56, (1).to_bytes(4, "big"), "text encoding"),
    (64, bytes(4), "incremental vacuum"),
    (72, bytes(20), "reserved"),
)


def _check_header(path: Path) -> None:
    """Check the 100-byte SQLite header of an existing store file before SQLite reads it."""
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the store file ({exc})") from exc
    if not header:
        return  # a new, empty file
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise StorageError(f"{path}: not a readable exesdb store: not a SQLite database file")
    application_id = int.from_bytes(header[68:72], "big")
    if application_id != APPLICATION_ID:
        return  # _recognise tells a foreign file from a damaged one
    for offset, expected, what in _STABLE_HEADER:
        found = header[offset:offset + len(expected)]
        if found != expected:
            raise StorageError(
                f"{path}: the store's file header is damaged: {what} at byte {offset} is "
                f"{found.hex()}, expected {expected.hex()}"
            )


def open_file(path: Path, durable: bool) -> sqlite3.Connection:
    """Open (creating if missing) the store file ``path``; return its write connection.

    Checks the file is an exesdb store of :data:`SCHEMA_VERSION`, with an undamaged
    header, before writing to it; a store of an earlier version is migrated first.
    """
    _check_header(path)
    try:
        conn = connect(path, durable)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the store file ({exc})") from exc
    try:
        _recognise(conn, path, create=True, migrate=True)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StorageError(f"{path}: cannot switch the store to WAL mode (mode is {mode!r})")
        return conn
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(
            f"{path}: not a readable exesdb store: the file is not a SQLite database or "
            f"is damaged ({exc})"
        ) from exc
    except BaseException:
        conn.close()
        raise


def recognise(conn: sqlite3.Connection, path: Path, create: bool = False) -> int:
    """Check that ``path`` is an exesdb store of a schema version this code reads, from
    :data:`OLDEST_VERSION` to :data:`SCHEMA_VERSION` (raise :class:`exesdb.StorageError`
    if not), without migrating it; with ``create``, make an empty file one. Returns the
    file's schema version."""
    _check_header(path)
    return _recognise(conn, path, create=create, migrate=False)


def _recognise(conn: sqlite3.Connection, path: Path, *, create: bool, migrate: bool) -> int:
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    if application_id == 0 and version == 0 and not tables:
        if not create:
            raise StorageError(f"{path}: an empty file, not an exesdb store")
        _create(conn)
        return SCHEMA_VERSION
    if application_id != APPLICATION_ID:
        raise StorageError(
            f"{path}: not an exesdb store (SQLite application_id is {application_id:#010x}, "
            f"expected {APPLICATION_ID:#010x}), or its file header is damaged"
        )
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path}: the store has schema version {version}, newer than this exesdb "
            f"supports ({SCHEMA_VERSION}); open it with a newer exesdb"
        )
    if version < OLDEST_VERSION:
        raise StorageError(
            f"{path}: the store has an unknown schema version {version} (this exesdb "
            f"reads versions {OLDEST_VERSION} to {SCHEMA_VERSION}); the file header may be "
            "damaged"
        )
    if conn.execute("PRAGMA encoding").fetchone()[0] != "UTF-8":
        raise StorageError(f"{path}: the store's text encoding is not UTF-8; the header is damaged")
    _check_meta(conn, path, version)
    if version < SCHEMA_VERSION and migrate:
        _migrate(conn, path, version)
        return SCHEMA_VERSION
    return int(version)


def _check_meta(conn: sqlite3.Connection, path: Path, version: int) -> None:
    meta: dict[str, str] = {}
    for key, value, crc in conn.execute("SELECT key, value, crc FROM meta"):
        if type(key) is not str or type(value) is not str or meta_crc(key, value) != crc:
            raise StorageError(f"{path}: the store's meta table is corrupt (checksum mismatch)")
        meta[key] = value
    if meta != _meta(version):
        raise StorageError(
            f"{path}: the store's meta table does not match schema version {version}: "
            f"{meta!r}"
        )


def _migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    """Bring a recognised store of ``version`` to :data:`SCHEMA_VERSION` in one
    transaction: the new tables, the meta table and the user_version together."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] != version:
            raise StorageError(f"{path}: the store's schema version changed while opening it")
        for step in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute(
            "UPDATE meta SET value = ?, crc = ? WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION), meta_crc("schema_version", str(SCHEMA_VERSION))),
        )
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _create(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO meta(key, value, crc) VALUES (?, ?, ?)",
            [(key, value, meta_crc(key, value)) for key, value in _META.items()],
        )
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
