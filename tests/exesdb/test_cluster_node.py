"""A node in cluster mode, in this test process, on the session's real PostgreSQL: it
serves the gateway API, leads alone, hears other nodes' commits, fences its late
writes after a stall, and rides out the loss of the database.

"Another node" here is what another node's storage does to the shared schema: a
:class:`PostgresBackend` of the same store appending, or a session taking the leader lock.
The multi-process behaviours (SIGKILL, SIGSTOP, gossip, redirects) are in
``test_cluster_failover.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql

import exesdb
import otp
from exesdb import NewEvent, StoreUnavailable, gateway
from exesdb.storage import Append
from exesdb.storage.fencing import epoch_crc
from exesdb.storage.postgres_cluster import MembershipSession, leader_lock
from exesdb.storage.postgres_schema import schema_name
from exesdb.systems.cluster import cluster_view, current_view
from exesdb.systems.store import is_leader

pytestmark = pytest.mark.slow

LEASE_MS = 1000
INTERVAL_MS = 200
WAIT = 15.0


async def eventually(check: Callable[[], Awaitable[Any]], limit: float = WAIT) -> Any:
    """``await check()`` until it returns something true (then return it), at most
    ``limit`` seconds."""
    with trio.fail_after(limit):
        while not (result := await check()):  # noqa: ASYNC110 (state in the database)
            await trio.sleep(0.02)
        return result


async def start_node(dsn: str, store_id: str, **options: Any) -> None:
    options.setdefault("node_name", "n1")
    await exesdb.start_store(store_id=store_id, db_type="cluster", pg_dsn=dsn,
                             leader_lease_ms=LEASE_MS, election_interval_ms=INTERVAL_MS,
                             member_timeout_ms=2000, **options)


async def leads(store_id: str) -> bool:
    try:
        return await is_leader(store_id)
    except otp.OTPError:
        return False


@pytest.fixture
async def node(pg_server, pg_store_id):
    """Store ``pg_store_id`` in cluster mode on this node (``n1``), leading."""
    async with otp.node():
        await start_node(pg_server.dsn, pg_store_id)
        await eventually(lambda: leads(pg_store_id))
        yield pg_store_id


@pytest.fixture
def other_node(pg_backend):
    """The storage of another node of the same store (it shares the schema)."""
    return pg_backend


async def test_a_node_alone_leads_and_serves_the_gateway_api(node):
    version = await gateway.append_events(node, "order-1", [NewEvent("Placed", {"n": 1})])
    assert version == 0
    assert [e.event_type for e in await gateway.get_events(node, "order-1")] == ["Placed"]
    async with gateway.subscribe(node, "by_stream", "$all") as events:
        async for event in events:
            assert (event.stream_id, event.event_number) == ("order-1", 0)
            break
    names = [s.name for s in await gateway.get_subscriptions(node)]
    assert "all-events" in names  # the leader created the default subscription
    view = cluster_view(node)
    assert view is not None
    assert [(m.node, m.alive) for m in view.members] == [("n1", True)]

    async def leader() -> str | None:
        view = cluster_view(node)
        return None if view is None or view.leader is None else view.leader.node

    assert await eventually(leader) == "n1"


async def test_fresh_reads_of_the_cluster_view_asked_together_share_one_statement(
        node, monkeypatch):
    """Gossip asks for a view read after it asked; a burst of such requests (or a backlog
    whose callers gave up) is answered by the reads that start after each, not one
    statement each."""
    statements = 0
    members = MembershipSession.members

    def counted(self: MembershipSession, *args: Any) -> Any:
        nonlocal statements
        statements += 1
        time.sleep(0.05)  # a slow database: requests pile up behind the read
        return members(self, *args)

    monkeypatch.setattr(MembershipSession, "members", counted)
    views: list[tuple[float, Any]] = []

    async def ask() -> None:
        asked = trio.current_time()
        views.append((asked, await current_view(node, 10)))

    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(ask)
    assert len(views) == 100
    assert all(view is not None and view.as_of >= asked for asked, view in views)
    assert statements <= 3


async def test_a_member_dead_for_the_removal_period_leaves_the_cluster(pg_server,
                                                                      pg_store_id):
    """KurrentDB's DeadMemberRemovalPeriod: a member whose heartbeat is older than
    ``dead_member_removal_ms`` is removed (by the next heartbeat of a live node); one dead
    for less is kept, shown not alive."""
    async with otp.node():
        await start_node(pg_server.dsn, pg_store_id, dead_member_removal_ms=60_000)
        await eventually(lambda: leads(pg_store_id))
        members = sql.Identifier(schema_name(pg_store_id), "members")
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            for node, age in [("long-gone", 61), ("just-died", 10)]:
                conn.execute(sql.SQL(
                    "INSERT INTO {} (node, instance, host, port, heartbeat, stopped) "
                    "VALUES (%s, 'x', '127.0.0.1', 1, clock_timestamp() "
                    "- make_interval(secs => %s), false)").format(members), (node, age))

        async def listed() -> list[tuple[str, bool]] | None:
            view = await current_view(pg_store_id, 5)
            names = None if view is None else [(m.node, m.alive) for m in view.members]
            return names if names is not None and ("long-gone", False) not in names else None

        assert await eventually(listed) == [("just-died", False), ("n1", True)]


async def test_a_commit_of_another_node_reaches_a_catch_up_subscriber_here(node, other_node):
    async with gateway.subscribe(node, "by_stream", "$order-9") as events:
        await trio.sleep(0.3)  # caught up (nothing yet) and waiting: only a notice wakes it
        await other_node.append("order-9", exesdb.ANY, [NewEvent("Placed", {"n": 9})])
        with trio.fail_after(5):
            async for event in events:
                assert (event.stream_id, event.data) == ("order-9", {"n": 9})
                break


async def test_a_commit_too_large_to_name_its_streams_still_wakes_their_subscribers(
        node, other_node):
    streams = [f"{'x' * 900}-{i}" for i in range(12)]  # ~11 kB of names: over the payload
    async with gateway.subscribe(node, "by_stream", f"${streams[7]}") as events:
        await trio.sleep(0.3)  # caught up and waiting, as above
        results = await other_node.write(
            [Append(s, exesdb.ANY, [NewEvent("Placed", {"i": i})])
             for i, s in enumerate(streams)])
        assert all(isinstance(r, int) for r in results)
        with trio.fail_after(5):
            async for event in events:
                assert event.data == {"i": 7}
                break


async def test_a_new_term_keeps_this_nodes_transient_subscriptions(node, pg_server):
    """The elector's session is lost: the node steps down and is elected again. A
    transient subscription of this node's goes on through both changes."""
    async with gateway.subscribe(node, "by_stream", "$order-3") as events:
        await gateway.append_events(node, "order-3", [NewEvent("Placed", {"n": 1})])
        await trio.to_thread.run_sync(pg_server.terminate, f"exesdb {node} n1 elector")
        await eventually(lambda: _not(leads(node)))
        await eventually(lambda: leads(node))
        await gateway.append_events(node, "order-3", [NewEvent("Placed", {"n": 2})])
        seen = []
        with trio.fail_after(5):
            async for event in events:
                seen.append(event.data["n"])
                if seen == [1, 2]:
                    break


def _rival(dsn: str, store_id: str, taken: threading.Event, release: threading.Event,
           result: list[int]) -> None:
    """Another node's elector, in a plain thread: wait for the leader lock, start the next
    epoch, hold the lock until ``release``."""
    schema = schema_name(store_id)
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                               leader_lock(schema)).fetchone()[0]:
            time.sleep(0.05)
        with conn.transaction():
            epoch = conn.execute(sql.SQL("SELECT epoch FROM {}.leader_epoch FOR UPDATE")
                                 .format(sql.Identifier(schema))).fetchone()[0] + 1
            conn.execute(sql.SQL("UPDATE {}.leader_epoch SET epoch = %s, leader = 'rival', "
                                 "crc = %s").format(sql.Identifier(schema)),
                         (epoch, epoch_crc(epoch, "rival")))
        result.append(epoch)
        taken.set()
        release.wait(30)


def _checkpoint(dsn: str, store_id: str, name: str) -> int | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT position FROM {}.checkpoints WHERE name = %s")
                           .format(sql.Identifier(schema_name(store_id))),
                           (name.encode(),)).fetchone()
        return None if row is None else int(row[0])


async def test_a_leader_stalled_past_its_lease_is_fenced_and_steps_down(
        node, pg_server, caplog):
    """The whole node stalls (its trio thread blocked, as a long pause would) with a
    checkpoint of the default subscription pending: the database ends its elector's
    idle session after the lease, another node takes the lock and starts a new epoch.
    When the node runs again, its late checkpoint write is refused (StaleEpoch) and it
    steps down."""
    async def default_subscription() -> bool:
        return "all-events" in [s.name for s in await gateway.get_subscriptions(node)]

    async def stored() -> int | None:
        position = await trio.to_thread.run_sync(_checkpoint, pg_server.dsn, node,
                                                 "all-events")
        return None if position is None else position + 1  # 0 is stored, and true

    await eventually(default_subscription)
    await gateway.append_events(node, "order-1", [NewEvent("Placed", {})])
    before = await eventually(stored) - 1
    taken, release, epochs = threading.Event(), threading.Event(), []
    rival = threading.Thread(target=_rival, args=(pg_server.dsn, node, taken, release, epochs))
    rival.start()
    try:
        head = await gateway.append_events(node, "order-2", [NewEvent("Placed", {})])
        assert head == 0
        # The stall: nothing of this node runs until the rival has taken over.
        assert taken.wait(LEASE_MS / 1000 * 10)
        resumed = time.monotonic()
        with caplog.at_level(logging.WARNING):
            await eventually(lambda: _not(leads(node)))
            stepped_down = time.monotonic() - resumed
            await trio.sleep(0.5)  # the emitter's pending checkpoint timer has fired
        assert stepped_down < INTERVAL_MS / 1000 + 0.5  # its lease expired meanwhile
        refused = [r.getMessage() for r in caplog.records
                   if f"the store's leader epoch is {epochs[0]}" in r.getMessage()]
        assert refused, [r.getMessage() for r in caplog.records]
        after = await trio.to_thread.run_sync(_checkpoint, pg_server.dsn, node, "all-events")
        assert after == before  # nothing the stale leader tried to store was stored
    finally:
        release.set()
        await trio.to_thread.run_sync(rival.join)
    await eventually(lambda: leads(node))  # the rival gone, the node leads again


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def test_losing_the_database_fails_calls_with_store_unavailable_then_the_node_rejoins(
        pg_server, pg_store_id):
    role = f"node_{pg_store_id}"
    pg_server.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)).as_string())
    pg_server.execute(sql.SQL("GRANT CREATE ON DATABASE postgres TO {}")
                      .format(sql.Identifier(role)).as_string())
    dsn = f"host=127.0.0.1 port={pg_server.port} user={role} dbname=postgres"
    async with otp.node():
        await start_node(dsn, pg_store_id, timeout=4000)
        await eventually(lambda: leads(pg_store_id))
        await gateway.append_events(pg_store_id, "s", [NewEvent("Before", {})])

        def cut() -> None:  # the database refuses the node and drops its sessions
            pg_server.execute(sql.SQL("ALTER ROLE {} NOLOGIN")
                              .format(sql.Identifier(role)).as_string())
            pg_server.terminate(f"exesdb {pg_store_id} %")

        await trio.to_thread.run_sync(cut)
        for call in (lambda: gateway.append_events(pg_store_id, "s", [NewEvent("Lost", {})]),
                     lambda: gateway.get_events(pg_store_id, "s")):
            started = trio.current_time()
            with pytest.raises(StoreUnavailable):
                await call()
            assert trio.current_time() - started < 4.0  # never past the store's timeout
        await eventually(lambda: _not(leads(pg_store_id)))

        await trio.to_thread.run_sync(pg_server.execute, sql.SQL("ALTER ROLE {} LOGIN")
                                      .format(sql.Identifier(role)).as_string())
        back = trio.current_time()
        await eventually(lambda: leads(pg_store_id))
        rejoined = trio.current_time() - back
        await gateway.append_events(pg_store_id, "s", [NewEvent("After", {})])
        types = [e.event_type for e in await gateway.get_events(pg_store_id, "s")]
        assert types == ["Before", "After"]
        assert rejoined < LEASE_MS / 1000 + 2 * INTERVAL_MS / 1000 + 2
