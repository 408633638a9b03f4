"""A store's PostgreSQL schema: its name, its tables, how it is created and recognised,
and the statements the backend runs on it.

Each store lives in its own PostgreSQL schema, :func:`schema_name` of its store id,
always quoted (``psycopg.sql.Identifier``), never spliced in as text. Guarantees of
:func:`prepare`:

* Creating a store is all or nothing (PostgreSQL's DDL is transactional) and safe when
  several nodes open the same store at once: they serialise on a transaction-level
  advisory lock keyed by the schema name, so exactly one creates it and the others
  recognise it.
* A schema is only ever written after it was recognised as an exesdb store of this
  schema version and of this store id (its ``meta`` table, each row checksummed), or
  created. A recognised store made by an older exesdb is brought to this version's tables
  in the same transaction, only in ways older nodes of the same store do not notice (the
  schema version stays): the functions it lacks are created, and the head table's CHECK
  constraint is replaced by a one-row unique index. A schema of another application, a
  damaged meta table, another store's schema (two store ids whose names were shortened
  alike) or a newer schema version raises :class:`exesdb.StorageError` saying which, and
  is left untouched.

Tables (keys that are names are stored as UTF-8 ``bytea``: PostgreSQL text cannot hold
NUL, and bytes sort as Python sorts str)::

    meta(key, value, crc)                      format, schema_version, store_id
    head(id = 1, last_pos, next_skey, gen, crc)  the $all head: see below
    streams(skey, stream_id, first, state, crc)
    events(pos, skey, num, eid, crc, rec)      (skey, num) unique; eid indexed
    snapshots(source_uuid, stream_uuid, version, created, crc, rec)
    checkpoints(name, position, crc)
    subscriptions(name, type, selector, start_from, with_subscriber, crc)
    leader_epoch(id = 1, epoch, leader, crc)   see exesdb.storage.fencing
    members(node, instance, host, port, heartbeat, stopped, elector_pid)
                                               cluster membership: see
                                               exesdb.storage.postgres_cluster

and one function, ``append_v1`` (:data:`APPEND_FUNCTION`), the one-statement append of
exesdb versions before the statement below; still created (and never dropped) so that an
older node of the same store keeps working, never called by this version.

The single ``head`` row orders every transaction that changes streams: it locks the row
first (``SELECT ... FOR UPDATE``), takes ``$all`` positions from ``last_pos + 1`` and
writes the new ``last_pos`` back, holding the lock until commit. So positions are
gapless, commit order is position order (a reader never sees a position while a lower
one is still uncommitted), and a transaction that rolls back gives its positions back.
``gen`` counts those transactions: a writer whose cached stream states were current at
its last commit knows they still are when ``gen`` has not moved. Positions never come
from a sequence (sequences are not transactional: they leave gaps and do not follow
commit order).

:attr:`Queries.append` (:attr:`Queries.append_new_streams` when it creates streams) is a
writer's append in one statement, so one round trip commits it (sent outside any
transaction, the statement is its transaction). The writer decides
the append by the rules against the stream states it cached at its last commit and sends
the rows, the stream rows and the new head it computed. The statement writes the new head
only if the head row is exactly the one the writer last committed (``UPDATE ... WHERE``
the old values, which locks the row as every appending transaction does) and none of the
new event ids is stored; it inserts the events and the new streams and sends the commit
notice only if the head was written, and answers 1, else 0 with nothing written (the
writer then runs the transaction above: a stale head, or ids to look up for idempotence).

Why that is the committed state: every transaction that writes events or streams moves
``gen``. PostgreSQL re-checks the ``UPDATE``'s condition on the newest version of the row
when it had to wait for the lock or the row changed since the statement's snapshot, so
the head is written only if no such transaction committed since the writer's own last
commit, and everything committed before that is in the statement's snapshot: the id check
(against that snapshot) sees every event stored. The statement is a plain prepared one,
not a function call: a PL/pgSQL function (with its own ``SET``) cost about twice the
server time (measured: 72-77 us against 38-42 us of executor time for a one-event append
on the same server), and an append that creates no stream sends the statement without
the streams' insert (whose executor set-up cost 4-8 us even with nothing to insert; with
the head's CHECK constraint gone too, 24-26 us). The write connection plans it
generically once and never with a sequential scan (:data:`WRITER_SETTINGS`).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Final, LiteralString

import psycopg
from psycopg import sql

from ..errors import StorageError
from ..validation import check_store_id
from .fencing import epoch_crc
from .records import meta_crc

__all__ = [
    "APPEND_FUNCTION",
    "FORMAT",
    "HARD_DELETED",
    "KNOWN_IDS",
    "LIVE",
    "SCHEMA_VERSION",
    "STALE_HEAD",
    "WRITER_SETTINGS",
    "Queries",
    "head_crc",
    "prepare",
    "schema_name",
    "verify_head",
]

FORMAT: Final = "exesdb-postgres"
SCHEMA_VERSION: Final = 1
"""The schema version this code creates and reads."""
LIVE: Final = 0
"""``streams.state`` of a stream that is not hard-deleted."""
HARD_DELETED: Final = 1
"""``streams.state`` of a hard-deleted stream."""
PREFIX: Final = "exesdb_"
_MAX_IDENTIFIER: Final = 63  # PostgreSQL's NAMEDATALEN - 1, in bytes
_HASHED_KEEP: Final = _MAX_IDENTIFIER - len(PREFIX) - 1 - 12
_LOCK_CLASS: Final = 0x45784553  # "ExES", the first key of the advisory lock
_HEAD: Final = struct.Struct("<qqq")
APPEND_FUNCTION: Final = "append_v1"
"""The one-statement append's function of earlier exesdb versions, in the store's schema
(see the module docstring: created for older nodes, not called by this version)."""
STALE_HEAD: Final = "XE001"
"""SQLSTATE of :data:`APPEND_FUNCTION` when the head is not the writer's last."""
KNOWN_IDS: Final = "XE002"
"""SQLSTATE of :data:`APPEND_FUNCTION` when a new event id is already stored."""

# The body of the older nodes' function (see APPEND_FUNCTION), unchanged. It is passed as
# a string literal (sql.Literal), never spliced into dollar quotes (a schema's name may
# hold any character).
_APPEND_BODY: Final = """
BEGIN
    UPDATE {s}.head SET last_pos = n_last_pos, next_skey = n_next_skey, gen = n_gen,
        crc = n_crc
        WHERE id = 1 AND last_pos = p_last_pos AND next_skey = p_next_skey AND gen = p_gen
            AND crc = p_crc;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the store''s head moved' USING ERRCODE = 'XE001';
    END IF;
    IF EXISTS (SELECT 1 FROM {s}.events WHERE eid = ANY(p_ids)) THEN
        RAISE EXCEPTION 'an event id is already stored' USING ERRCODE = 'XE002';
    END IF;
    INSERT INTO {s}.events(pos, skey, num, eid, crc, rec)
        SELECT * FROM unnest(e_pos, e_skey, e_num, e_eid, e_crc, e_rec);
    IF cardinality(s_skey) > 0 THEN
        INSERT INTO {s}.streams(skey, stream_id, first, state, crc)
            SELECT * FROM unnest(s_skey, s_id, s_first, s_state, s_crc);
    END IF;
    PERFORM pg_notify(p_channel, p_notice);
END
"""
_APPEND_DDL: Final = """CREATE OR REPLACE FUNCTION {s}.{f}(
    p_last_pos bigint, p_next_skey bigint, p_gen bigint, p_crc bigint, p_ids bytea[],
    e_pos bigint[], e_skey bigint[], e_num bigint[], e_eid bytea[], e_crc bigint[],
    e_rec bytea[], s_skey bigint[], s_id bytea[], s_first bigint[], s_state smallint[],
    s_crc bigint[], n_last_pos bigint, n_next_skey bigint, n_gen bigint, n_crc bigint,
    p_channel text, p_notice text) RETURNS void LANGUAGE plpgsql
    SET enable_seqscan = off AS {body}"""
# enable_seqscan: the id check's plan is cached for the session; planned on a young
# events table, it would scan the whole table for ever (a store of 2,000 events: +0.2
# ms an append) where the index finds the ids at any size.
_APPEND: Final = """WITH h AS (
    UPDATE {s}.head SET last_pos = $12, next_skey = $13, gen = $14, crc = $15
        WHERE id = 1 AND last_pos = $1 AND next_skey = $2 AND gen = $3 AND crc = $4
            AND NOT EXISTS (SELECT FROM {s}.events WHERE eid = ANY($5))
        RETURNING 1),
e AS (INSERT INTO {s}.events(pos, skey, num, eid, crc, rec)
    SELECT * FROM unnest($6::bigint[], $7::bigint[], $8::bigint[], $9::bytea[],
                         $10::bigint[], $11::bytea[])
    WHERE EXISTS (SELECT FROM h)){streams}
SELECT count(pg_notify($16, $17)) FROM h"""
_NEW_STREAMS: Final = """,
n AS (INSERT INTO {s}.streams(skey, stream_id, first, state, crc)
    SELECT * FROM unnest($18::bigint[], $19::bytea[], $20::bigint[], $21::smallint[],
                         $22::bigint[])
    WHERE EXISTS (SELECT FROM h))"""
# The data-modifying CTEs run once each, to completion; the inserts read h (the head
# written, or nothing), so they write only after it and only if it was written.
WRITER_SETTINGS: Final = (("plan_cache_mode", "force_generic_plan"), ("enable_seqscan", "off"))
"""Settings of the write connection. The append statement's plan is made once per
connection (a custom plan per call cost about 100 us of planning) and its id check must
use the index however young the events table was when the plan was made (planned with a
sequential scan on a small table, it would scan the whole table for ever: measured 120-140
us of executor time per append at 1,500 events); every statement of the write connection
has an index to use."""

_HEAD_ONE_ROW: Final = "CREATE UNIQUE INDEX head_one_row ON {s}.head ((true))"
"""The head table holds one row. Not a CHECK constraint: PostgreSQL rebuilds a check's
expression at every statement that writes the row (13 us of the 42 us of executor time
of a one-event append); an index on a constant costs nothing to an update that changes no
indexed column (every one of the head's)."""
_HEAD_ONE_ROW_IF_MISSING: Final = ("CREATE UNIQUE INDEX IF NOT EXISTS head_one_row "
                                   "ON {s}.head ((true))")
_HEAD_CHECKS: Final = ("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass "
                       "AND contype = 'c'")

_DDL: Final[tuple[LiteralString, ...]] = (
    "CREATE SCHEMA {s}",
    "CREATE TABLE {s}.meta(key text PRIMARY KEY, value text NOT NULL, crc bigint NOT NULL)",
    """CREATE TABLE {s}.head(
        id smallint PRIMARY KEY, last_pos bigint NOT NULL,
        next_skey bigint NOT NULL, gen bigint NOT NULL, crc bigint NOT NULL)""",
    _HEAD_ONE_ROW,
    """CREATE TABLE {s}.streams(
        skey bigint PRIMARY KEY, stream_id bytea NOT NULL UNIQUE, first bigint NOT NULL,
        state smallint NOT NULL, crc bigint NOT NULL)""",
    """CREATE TABLE {s}.events(
        pos bigint PRIMARY KEY, skey bigint NOT NULL, num bigint NOT NULL,
        eid bytea NOT NULL, crc bigint NOT NULL, rec bytea NOT NULL)""",
    "CREATE UNIQUE INDEX events_stream ON {s}.events(skey, num)",
    "CREATE INDEX events_eid ON {s}.events(eid, skey, num)",
    """CREATE TABLE {s}.snapshots(
        source_uuid bytea NOT NULL, stream_uuid bytea NOT NULL, version bigint NOT NULL,
        created bigint NOT NULL, crc bigint NOT NULL, rec bytea NOT NULL,
        PRIMARY KEY(source_uuid, stream_uuid, version))""",
    """CREATE TABLE {s}.checkpoints(
        name bytea PRIMARY KEY, position bigint NOT NULL, crc bigint NOT NULL)""",
    """CREATE TABLE {s}.subscriptions(
        name bytea PRIMARY KEY, type text NOT NULL, selector text NOT NULL,
        start_from bigint NOT NULL, with_subscriber smallint NOT NULL, crc bigint NOT NULL)""",
    """CREATE TABLE {s}.leader_epoch(
        id smallint PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL, leader text NOT NULL,
        crc bigint NOT NULL)""",
    """CREATE TABLE {s}.members(
        node text PRIMARY KEY, instance text NOT NULL, host text NOT NULL,
        port integer NOT NULL, heartbeat timestamptz NOT NULL, stopped boolean NOT NULL,
        elector_pid integer UNIQUE)""",
)


def schema_name(store_id: str) -> str:
    """The PostgreSQL schema of store ``store_id``: ``exesdb_<store_id>`` (case kept: it
    is always quoted), or, when that is longer than PostgreSQL's 63-byte identifiers,
    ``exesdb_<first 43 characters>_<12 hex digits of the id's SHA-256>``. A shortened name
    that some other store id shares is caught when the store is opened (its meta table
    names its store id)."""
    store_id = check_store_id(store_id)
    name = PREFIX + store_id
    if len(name) <= _MAX_IDENTIFIER:  # store ids are ASCII: characters are bytes
        return name
    digest = hashlib.sha256(store_id.encode()).hexdigest()[:12]
    return f"{PREFIX}{store_id[:_HASHED_KEEP]}_{digest}"


def head_crc(last_pos: int, next_skey: int, gen: int) -> int:
    """The checksum of the head row."""
    return zlib.crc32(_HEAD.pack(last_pos, next_skey, gen))


def verify_head(row: tuple[object, ...] | None) -> tuple[int, int, int]:
    """``(last_pos, next_skey, gen)`` of the head row ``(last_pos, next_skey, gen, crc)``;
    raises :class:`exesdb.StorageError` when it is missing or fails its checksum."""
    if row is None:
        raise StorageError("corrupt store: its head row is missing")
    last_pos, next_skey, gen, crc = row
    if (type(last_pos) is not int or type(next_skey) is not int or type(gen) is not int
            or head_crc(last_pos, next_skey, gen) != crc):
        raise StorageError("corrupt head record: checksum mismatch")
    return last_pos, next_skey, gen


def _meta(store_id: str) -> dict[str, str]:
    return {"format": FORMAT, "schema_version": str(SCHEMA_VERSION), "store_id": store_id}


class Queries:
    """Every statement the backend runs, with the store's schema quoted in, as bytes
    (built once per backend)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        ident = sql.Identifier(schema)

        def q(template: LiteralString) -> bytes:
            return sql.SQL(template).format(s=ident).as_bytes(None)

        self.q = q
        self.ddl = [q(statement) for statement in _DDL]
        function = sql.Identifier(APPEND_FUNCTION)
        body = sql.SQL(_APPEND_BODY).format(s=ident).as_string(None)
        self.create_append = sql.SQL(_APPEND_DDL).format(
            s=ident, f=function, body=sql.Literal(body)).as_bytes(None)
        self.find_append = b"SELECT to_regproc(%s)"
        self.append_name = sql.Identifier(schema, APPEND_FUNCTION).as_string(None)
        # Run through libpq directly (exesdb.storage.postgres_wire): $n placeholders.
        self.append = sql.SQL(_APPEND).format(s=ident, streams=sql.SQL("")).as_bytes(None)
        self.append_new_streams = sql.SQL(_APPEND).format(
            s=ident, streams=sql.SQL(_NEW_STREAMS).format(s=ident)).as_bytes(None)
        self.lock_head = q("SELECT last_pos, next_skey, gen, crc FROM {s}.head WHERE id = 1 "
                           "FOR UPDATE")
        self.read_head = q("SELECT last_pos, next_skey, gen, crc FROM {s}.head WHERE id = 1")
        self.update_head = q("UPDATE {s}.head SET last_pos = %s, next_skey = %s, gen = %s, "
                             "crc = %s WHERE id = 1")
        # The head's update and the commit notice (exesdb.storage.postgres_notify) in one
        # statement: no extra round trip; delivered by PostgreSQL once the transaction
        # commits.
        self.update_head_notify = q(
            "WITH u AS (UPDATE {s}.head SET last_pos = %s, next_skey = %s, gen = %s, "
            "crc = %s WHERE id = 1 RETURNING 1) SELECT pg_notify(%s, %s) FROM u"
        )
        self.insert_head = q("INSERT INTO {s}.head(id, last_pos, next_skey, gen, crc) "
                             "VALUES (1, %s, %s, %s, %s)")
        self.load_streams = q(
            "SELECT s.skey, s.stream_id, s.first, s.state, s.crc, "
            "(SELECT max(num) FROM {s}.events e WHERE e.skey = s.skey) "
            "FROM {s}.streams s WHERE s.stream_id = ANY(%s)"
        )
        self.find_ids = q("SELECT eid, skey, num FROM {s}.events WHERE eid = ANY(%s)")
        # The head and the named streams' states in one statement (one snapshot), without
        # the head's lock: what a writer whose cache is stale needs to decide an append
        # (the append statement then checks the head under the lock). Run through libpq
        # directly: one row per stream found, or one row of NULL stream columns.
        self.refresh = _numbered(q(
            "SELECT h.last_pos, h.next_skey, h.gen, h.crc, s.skey, s.stream_id, s.first, "
            "s.state, s.crc, (SELECT max(num) FROM {s}.events e WHERE e.skey = s.skey) "
            "FROM {s}.head h LEFT JOIN {s}.streams s ON s.stream_id = ANY(%s) "
            "WHERE h.id = 1"))
        # A transaction's events in one statement, one array per column: each statement
        # goes with its Sync, so the server ends a writer stopped inside its transaction
        # (idle_in_transaction_session_timeout) and its head lock goes with it; rows sent
        # in a pipeline (executemany) leave the server waiting for the Sync, unbounded.
        self.insert_events = q(
            "INSERT INTO {s}.events(pos, skey, num, eid, crc, rec) SELECT * FROM unnest("
            "%b::bigint[], %b::bigint[], %b::bigint[], %b::bytea[], %b::bigint[], %b::bytea[])"
        )
        self.insert_stream = q("INSERT INTO {s}.streams(skey, stream_id, first, state, crc) "
                               "VALUES (%s, %s, %s, %s, %s)")
        self.update_stream = q("UPDATE {s}.streams SET first = %s, state = %s, crc = %s "
                               "WHERE skey = %s")
        self.upsert_snapshot = q(
            "INSERT INTO {s}.snapshots(source_uuid, stream_uuid, version, created, crc, rec) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (source_uuid, stream_uuid, version) "
            "DO UPDATE SET created = EXCLUDED.created, crc = EXCLUDED.crc, rec = EXCLUDED.rec"
        )
        self.delete_snapshot = q("DELETE FROM {s}.snapshots WHERE source_uuid = %s AND "
                                 "stream_uuid = %s AND version = %s")
        self.upsert_checkpoint = q(
            "INSERT INTO {s}.checkpoints(name, position, crc) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, crc = EXCLUDED.crc"
        )
        self.delete_checkpoint = q("DELETE FROM {s}.checkpoints WHERE name = %s")
        self.upsert_subscription = q(
            "INSERT INTO {s}.subscriptions(name, type, selector, start_from, with_subscriber, "
            "crc) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
            "type = EXCLUDED.type, selector = EXCLUDED.selector, "
            "start_from = EXCLUDED.start_from, with_subscriber = EXCLUDED.with_subscriber, "
            "crc = EXCLUDED.crc"
        )
        self.delete_subscription = q("DELETE FROM {s}.subscriptions WHERE name = %s")
        self.share_epoch = q("SELECT epoch, leader, crc FROM {s}.leader_epoch WHERE id = 1 "
                             "FOR SHARE")
        self.lock_epoch = q("SELECT epoch, leader, crc FROM {s}.leader_epoch WHERE id = 1 "
                            "FOR UPDATE")
        self.read_epoch = q("SELECT epoch, leader, crc FROM {s}.leader_epoch WHERE id = 1")
        self.update_epoch = q("UPDATE {s}.leader_epoch SET epoch = %s, leader = %s, crc = %s "
                              "WHERE id = 1")
        self.insert_epoch = q("INSERT INTO {s}.leader_epoch(id, epoch, leader, crc) "
                              "VALUES (1, %s, %s, %s)")
        # reads
        self.stream_row = q("SELECT skey, first, state, crc FROM {s}.streams "
                            "WHERE stream_id = %s")
        # A stream's row and its events in one statement (one consistent read): one row
        # per event, the stream's columns first; a stream without events gives one row
        # whose event columns are NULL.
        self.stream_forward = q(
            "SELECT s.skey, s.first, s.state, s.crc, e.pos, e.num, e.crc, e.rec "
            "FROM {s}.streams s LEFT JOIN LATERAL (SELECT pos, num, crc, rec FROM {s}.events "
            "WHERE skey = s.skey AND s.state = 0 AND num >= greatest(%s, s.first) "
            "ORDER BY num LIMIT %s) e ON true WHERE s.stream_id = %s ORDER BY e.num"
        )
        self.stream_backward = q(
            "SELECT s.skey, s.first, s.state, s.crc, e.pos, e.num, e.crc, e.rec "
            "FROM {s}.streams s LEFT JOIN LATERAL (SELECT pos, num, crc, rec FROM {s}.events "
            "WHERE skey = s.skey AND s.state = 0 AND num <= %s AND num >= s.first "
            "ORDER BY num DESC LIMIT %s) e ON true WHERE s.stream_id = %s "
            "ORDER BY e.num DESC"
        )
        self.stream_version = q(
            "SELECT s.skey, s.first, s.state, s.crc, "
            "(SELECT max(num) FROM {s}.events e WHERE e.skey = s.skey) "
            "FROM {s}.streams s WHERE s.stream_id = %s"
        )
        self.all_forward = q("SELECT pos, num, crc, rec, skey FROM {s}.events WHERE pos >= %s "
                             "ORDER BY pos LIMIT %s")
        self.all_backward = q("SELECT pos, num, crc, rec, skey FROM {s}.events "
                              "WHERE pos <= %s ORDER BY pos DESC LIMIT %s")
        # The same, with libpq's placeholders (exesdb.storage.postgres_wire): the reads
        # of subscriptions that follow live.
        self.stream_forward_wire = _numbered(self.stream_forward)
        self.all_forward_wire = _numbered(self.all_forward)
        self.list_streams = q(
            "SELECT s.skey, s.stream_id, s.first, s.state, s.crc, "
            "(SELECT max(num) FROM {s}.events e WHERE e.skey = s.skey) "
            "FROM {s}.streams s ORDER BY s.stream_id"
        )
        self.snapshot_select = q("SELECT source_uuid, stream_uuid, version, created, crc, rec "
                                 "FROM {s}.snapshots")
        self.snapshot_latest = q(
            "SELECT source_uuid, stream_uuid, version, created, crc, rec FROM {s}.snapshots "
            "WHERE source_uuid = %s AND stream_uuid = %s ORDER BY version DESC LIMIT 1"
        )
        self.snapshot_exact = q(
            "SELECT source_uuid, stream_uuid, version, created, crc, rec FROM {s}.snapshots "
            "WHERE source_uuid = %s AND stream_uuid = %s AND version = %s"
        )
        self.checkpoint_row = q("SELECT position, crc FROM {s}.checkpoints WHERE name = %s")
        self.checkpoint_rows = q("SELECT name, position, crc FROM {s}.checkpoints "
                                 "ORDER BY name")
        self.subscription_row = q("SELECT name, type, selector, start_from, with_subscriber, "
                                  "crc FROM {s}.subscriptions WHERE name = %s")
        self.subscription_rows = q("SELECT name, type, selector, start_from, with_subscriber, "
                                   "crc FROM {s}.subscriptions ORDER BY name")
        self.stats = q(
            "SELECT (SELECT count(*) FROM {s}.events), (SELECT count(*) FROM {s}.streams s "
            "WHERE s.state = 0 AND EXISTS "
            "(SELECT 1 FROM {s}.events e WHERE e.skey = s.skey AND e.num >= s.first)), "
            "last_pos, next_skey, gen, crc FROM {s}.head WHERE id = 1"
        )
        self.meta_table = q("SELECT key, value, crc FROM {s}.meta")
        self.insert_meta = q("INSERT INTO {s}.meta(key, value, crc) VALUES (%s, %s, %s)")


def _numbered(query: bytes) -> bytes:
    """``query`` with its ``%s`` placeholders numbered as libpq's (``$1``, ``$2``...)."""
    parts = query.split(b"%s")
    out = [parts[0]]
    for n, part in enumerate(parts[1:], 1):
        out.append(b"$%d" % n)
        out.append(part)
    return b"".join(out)


def _lock_key(schema: str) -> int:
    """The advisory lock's second key: the schema name's CRC-32 as a signed int4."""
    crc = zlib.crc32(schema.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def prepare(conn: psycopg.Connection[tuple[object, ...]], queries: Queries,
            store_id: str) -> None:
    """Create the store's schema if it is missing, else recognise it (see the module
    docstring); commits. ``conn`` must not be in autocommit mode."""
    schema = queries.schema
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, _lock_key(schema)))
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                              (schema,)).fetchone()
        if exists is None:
            _create(conn, queries, store_id)
        else:
            _recognise(conn, queries, store_id)


def _create(conn: psycopg.Connection[tuple[object, ...]], queries: Queries,
            store_id: str) -> None:
    for statement in queries.ddl:
        conn.execute(statement)
    with conn.cursor() as cursor:
        cursor.executemany(queries.insert_meta, [
            (key, value, meta_crc(key, value)) for key, value in _meta(store_id).items()
        ])
    conn.execute(queries.insert_head, (-1, 0, 0, head_crc(-1, 0, 0)))
    conn.execute(queries.insert_epoch, (0, "", epoch_crc(0, "")))
    conn.execute(queries.create_append)


def _add_functions(conn: psycopg.Connection[tuple[object, ...]], queries: Queries) -> None:
    """Create the functions a store created by an older exesdb lacks (additions only:
    older nodes of the same store never call them)."""
    row = conn.execute(queries.find_append, (queries.append_name,)).fetchone()
    if row is None or row[0] is None:
        conn.execute(queries.create_append)


def _migrate(conn: psycopg.Connection[tuple[object, ...]], queries: Queries) -> None:
    """Bring a store created by an older exesdb to this version's tables, in ways its
    older nodes do not notice (so the schema version stays): the head table's CHECK
    constraint becomes a one-row unique index (see :data:`_HEAD_ONE_ROW`)."""
    head = sql.Identifier(queries.schema, "head")
    checks = conn.execute(_HEAD_CHECKS, (head.as_string(None),)).fetchall()
    if not checks:
        return
    for (name,) in checks:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            head, sql.Identifier(str(name))))
    conn.execute(sql.SQL(_HEAD_ONE_ROW_IF_MISSING).format(s=sql.Identifier(queries.schema)))


def _recognise(conn: psycopg.Connection[tuple[object, ...]], queries: Queries,
               store_id: str) -> None:
    schema = queries.schema
    table = conn.execute("SELECT to_regclass(%s)",
                         (sql.Identifier(schema, "meta").as_string(None),)).fetchone()
    if table is None or table[0] is None:
        raise StorageError(
            f"PostgreSQL schema {schema!r}: not an exesdb store (it has no meta table)"
        )
    meta: dict[str, str] = {}
    for key, value, crc in conn.execute(queries.meta_table):
        if type(key) is not str or type(value) is not str or meta_crc(key, value) != crc:
            raise StorageError(
                f"PostgreSQL schema {schema!r}: the store's meta table is corrupt "
                "(checksum mismatch)"
            )
        meta[key] = value
    if meta.get("format") != FORMAT:
        raise StorageError(f"PostgreSQL schema {schema!r}: not an exesdb store (format is "
                           f"{meta.get('format')!r}, expected {FORMAT!r})")
    version = meta.get("schema_version", "")
    if not version.isdigit():
        raise StorageError(f"PostgreSQL schema {schema!r}: the store's schema version "
                           f"{version!r} is not a number; its meta table is damaged")
    if int(version) > SCHEMA_VERSION:
        raise StorageError(
            f"PostgreSQL schema {schema!r}: the store has schema version {version}, newer "
            f"than this exesdb supports ({SCHEMA_VERSION}); open it with a newer exesdb"
        )
    if meta.get("store_id") != store_id:
        raise StorageError(
            f"PostgreSQL schema {schema!r}: it holds store {meta.get('store_id')!r}, not "
            f"{store_id!r} (their schema names coincide; pass another schema)"
        )
    if meta != _meta(store_id):
        raise StorageError(f"PostgreSQL schema {schema!r}: the store's meta table does not "
                           f"match schema version {SCHEMA_VERSION}: {meta!r}")
    _add_functions(conn, queries)
    _migrate(conn, queries)
