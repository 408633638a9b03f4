"""The store's supervision tree: its shape, its strategies, and what restarts when a
process of it dies."""

from __future__ import annotations

import pytest
import trio

import otp
from exesdb import NewEvent, gateway, start_store, stop_store
from exesdb.naming import genserver_name, partition_name
from exesdb.options import resolve_options
from exesdb.storage import Writer
from exesdb.systems import CoreSystem, System
from exesdb.systems.gateway import GatewaySystem, GatewayWorker
from exesdb.systems.notification import (
    EmitterSystem,
    LeaderSystem,
    LeaderTracker,
    LeaderWorker,
    NotificationSystem,
    SubscriptionHealthMonitor,
)
from exesdb.systems.persistence import (
    PersistenceSystem,
    PersistenceWorker,
    Snapshots,
    Streams,
    StreamsWriterWorker,
    Subscriptions,
    SubscriptionsReader,
    SubscriptionsWriter,
    flush,
)
from exesdb.systems.pubsub import LoggingSystem, LogWorker, PubSubSystem
from exesdb.systems.store import Store, StoreCluster, StoreRegistry, StoreSystem

from .store_helpers import find, kill_and_wait, tree, until_available


def _heads(level):
    return [cid[0] if isinstance(cid, tuple) else cid for cid in level]


async def test_the_tree_has_the_reference_shape(tmp_path):
    async with otp.node():
        sup = await start_store(store_id="s", data_dir=tmp_path)
        top = await tree(sup)
        assert _heads(top) == [PubSubSystem, LoggingSystem, CoreSystem, GatewaySystem]
        core = top[(CoreSystem, "s")][2]
        assert _heads(core) == [StoreSystem, PersistenceSystem, NotificationSystem]
        assert _heads(core[(StoreSystem, "s")][2]) == [Store, Writer, StoreCluster,
                                                       StoreRegistry]
        persistence = core[(PersistenceSystem, "s")][2]
        assert _heads(persistence) == [PersistenceWorker, Streams, Snapshots, Subscriptions]
        assert _heads(persistence[(Subscriptions, "s")][2]) == [SubscriptionsReader,
                                                                SubscriptionsWriter]
        notification = core[(NotificationSystem, "s")][2]
        assert _heads(notification) == [LeaderSystem, EmitterSystem, SubscriptionHealthMonitor]
        assert _heads(notification[(LeaderSystem, "s")][2]) == [LeaderTracker, LeaderWorker]
        assert _heads(top[(LoggingSystem, "s")][2]) == [LogWorker]
        gateways = top[(GatewaySystem, "s")][2]
        assert _heads(gateways) == [GatewayWorker] * 4


async def test_every_supervisor_is_a_supervisor_and_every_worker_a_worker(tmp_path):
    async with otp.node():
        sup = await start_store(store_id="s", data_dir=tmp_path)

        def check(level):
            for child_id, (pid, kind, sub) in level.items():
                assert pid is not None, child_id
                assert (kind == "supervisor") == bool(sub) or kind == "supervisor"
                check(sub)

        check(await tree(sup))


@pytest.mark.parametrize(("cls", "strategy", "intensity", "period"), [
    (System, "rest_for_one", 10, 60),
    (CoreSystem, "one_for_all", 3, 60),
    (PersistenceSystem, "one_for_one", 10, 60),
    (NotificationSystem, "rest_for_one", 5, 30),
    (StoreSystem, "rest_for_one", 5, 30),
    (LeaderSystem, "rest_for_one", 3, 5),
    (GatewaySystem, "one_for_one", 15, 60),
    (PubSubSystem, "one_for_one", 3, 5),
])
async def test_each_subsystem_has_exesdbs_strategy_and_limits(cls, strategy, intensity,
                                                              period):
    spec = await cls().init(resolve_options(store_id="s", environ={}))
    assert (spec.strategy, spec.intensity, spec.period) == (strategy, intensity, period)


async def test_every_process_is_named_for_its_store(tmp_path):
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        for cls in (System, CoreSystem, StoreSystem, Store, StoreCluster, StoreRegistry,
                    PersistenceSystem, PersistenceWorker, NotificationSystem, LeaderWorker,
                    GatewaySystem, Writer):
            assert otp.whereis(genserver_name(cls, "s")) is not None, cls
            assert otp.whereis(genserver_name(cls, None)) is None, cls


async def test_appends_go_straight_to_the_writer_without_a_stream_writer(tmp_path):
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        await gateway.append_events("s", "orders", [NewEvent("A", {"n": 1})])
        assert otp.whereis(partition_name(StreamsWriterWorker, "s", "orders")) is None


async def test_a_killed_stream_writer_is_not_restarted_and_nothing_acknowledged_is_lost(
        tmp_path):
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        await gateway.append_events("s", "orders", [NewEvent("A", {"n": 1})])
        await gateway.delete_stream("s", "orders")  # deletes go through the stream writer
        worker = otp.whereis(partition_name(StreamsWriterWorker, "s", "orders"))
        assert worker is not None
        await kill_and_wait(worker)
        assert otp.whereis(partition_name(StreamsWriterWorker, "s", "orders")) is None
        assert await gateway.append_events("s", "orders", [NewEvent("B", {"n": 2})]) == 1
        await gateway.delete_stream("s", "orders", expected_version=1)
        assert await gateway.append_events("s", "orders", [NewEvent("C", {"n": 3})]) == 2
        events = await gateway.get_events("s", "orders")
        assert [e.event_type for e in events] == ["C"]
        assert [e.event_type for e in await gateway.read_all("s")] == ["A", "B", "C"]


async def test_a_stream_writer_ends_after_writer_idle_ms(tmp_path):
    # Real time: the storage's fsync runs in a thread, which a mock clock would skip past.
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path, writer_idle_ms=200)
        await gateway.delete_stream("s", "orders")
        worker = otp.whereis(partition_name(StreamsWriterWorker, "s", "orders"))
        assert worker is not None
        ref = otp.monitor(worker)
        down = await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref,
                                 timeout=5)
        assert down.reason is otp.NORMAL


async def test_a_killed_gateway_worker_alone_is_restarted(tmp_path):
    async with otp.node():
        sup = await start_store(store_id="s", data_dir=tmp_path)
        before = await tree(sup)
        gateways = before[(GatewaySystem, "s")][2]
        victim = gateways[(GatewayWorker, "s", 0)][0]
        await kill_and_wait(victim)
        await until_available("s")
        after = await tree(sup)
        assert after[(GatewaySystem, "s")][2][(GatewayWorker, "s", 0)][0] != victim
        for i in (1, 2, 3):
            assert (after[(GatewaySystem, "s")][2][(GatewayWorker, "s", i)][0]
                    == gateways[(GatewayWorker, "s", i)][0])
        assert find(after, CoreSystem) == find(before, CoreSystem)


async def test_a_killed_store_restarts_the_rest_of_store_system_only(tmp_path):
    async with otp.node():
        sup = await start_store(store_id="s", data_dir=tmp_path)
        await gateway.append_events("s", "orders", [NewEvent("A", {})])
        before = await tree(sup)
        await kill_and_wait(find(before, CoreSystem, StoreSystem, Store))
        await until_available("s")
        after = await tree(sup)
        for path in [(CoreSystem, StoreSystem, Store), (CoreSystem, StoreSystem, Writer),
                     (CoreSystem, StoreSystem, StoreCluster),
                     (CoreSystem, StoreSystem, StoreRegistry)]:
            assert find(after, *path) != find(before, *path), path
        for path in [(CoreSystem,), (CoreSystem, StoreSystem),
                     (CoreSystem, PersistenceSystem), (GatewaySystem,), (PubSubSystem,)]:
            assert find(after, *path) == find(before, *path), path
        assert [e.event_type for e in await gateway.get_events("s", "orders")] == ["A"]


async def test_a_killed_core_system_restarts_it_and_the_gateway_but_not_pubsub(tmp_path):
    async with otp.node():
        sup = await start_store(store_id="s", data_dir=tmp_path)
        await gateway.append_events("s", "orders", [NewEvent("A", {})])
        before = await tree(sup)
        await kill_and_wait(find(before, CoreSystem))
        await until_available("s")
        after = await tree(sup)
        assert find(after, CoreSystem) != find(before, CoreSystem)
        assert find(after, GatewaySystem) != find(before, GatewaySystem)
        assert find(after, PubSubSystem) == find(before, PubSubSystem)
        assert find(after, LoggingSystem) == find(before, LoggingSystem)
        assert [e.event_type for e in await gateway.get_events("s", "orders")] == ["A"]


async def test_a_crash_inside_core_system_restarts_all_of_it(tmp_path):
    async with otp.node():
        sup = await start_store(store_id="s", data_dir=tmp_path)
        before = await tree(sup)
        await kill_and_wait(find(before, CoreSystem, NotificationSystem))
        await until_available("s")
        after = await tree(sup)
        assert find(after, CoreSystem) == find(before, CoreSystem)
        for path in [(CoreSystem, StoreSystem), (CoreSystem, PersistenceSystem),
                     (CoreSystem, NotificationSystem)]:
            assert find(after, *path) != find(before, *path), path


async def test_stop_store_stops_the_tree_and_frees_name_and_lock(tmp_path):
    async with otp.node():
        sup = await start_store(store_id="s", data_dir=tmp_path)
        await gateway.append_events("s", "orders", [NewEvent("A", {})])
        await stop_store("s")
        assert not otp.is_alive(sup)
        again = await start_store(store_id="s", data_dir=tmp_path)
        assert otp.is_alive(again)
        assert [e.event_type for e in await gateway.get_events("s", "orders")] == ["A"]


async def test_a_killed_system_frees_name_and_lock_at_once(tmp_path):
    async with otp.node():
        otp.trap_exits(True)
        sup = await start_store(store_id="s", data_dir=tmp_path)
        await gateway.append_events("s", "orders", [NewEvent("A", {})])
        await kill_and_wait(sup)
        again = await start_store(store_id="s", data_dir=tmp_path)
        assert otp.is_alive(again)
        assert [e.event_type for e in await gateway.get_events("s", "orders")] == ["A"]


async def test_the_leader_worker_is_active_in_single_mode(tmp_path):
    from exesdb.systems.notification import is_active
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        assert await is_active("s")


async def test_the_store_logs_through_its_logging_topic(tmp_path, caplog):
    import logging

    from exesdb.systems.notification import is_active

    with caplog.at_level(logging.INFO, logger="exesdb.systems.store.s"):
        async with otp.node():
            await start_store(store_id="s", data_dir=tmp_path)
            assert await is_active("s")  # answered once the leader worker activated
            await until_available("s")
    messages = [r.getMessage() for r in caplog.records if r.name == "exesdb.systems.store.s"]
    assert any(m.startswith("storage open:") for m in messages)
    assert "this node leads the store" in messages


async def test_the_leader_tracker_loads_the_stored_subscriptions(tmp_path):
    from exesdb.storage import SQLiteBackend

    backend = await SQLiteBackend.open(tmp_path / "s")
    await backend.save_subscription("projector", "by_event_type", "Placed", 0)
    await backend.save_checkpoint("projector", 41)
    await backend.close()
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        subs = {s.name: s for s in await gateway.get_subscriptions("s")}
        assert (subs["projector"].type, subs["projector"].selector,
                subs["projector"].position) == ("by_event_type", "Placed", 41)


async def test_the_health_monitor_reports_each_subscription_lag(tmp_path):
    from exesdb.storage import SQLiteBackend
    from exesdb.systems.notification import health

    backend = await SQLiteBackend.open(tmp_path / "s")
    await backend.append("x", -1, [NewEvent("E", {}) for _ in range(5)])
    await backend.save_subscription("projector", "by_stream", "$all", 0)
    await backend.save_checkpoint("projector", 1)
    await backend.close()
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        report = await health("s")
        entry = report["projector"]
        assert (entry["head"], entry["subscriber"], entry["running"]) == (4, None, True)
        # with no subscriber it broadcasts, so its position reaches the head (lag 0)
        assert entry["lag"] == 4 - entry["position"]


async def test_the_persistence_worker_moves_the_log_into_the_database_file(tmp_path):
    db = tmp_path / "s" / "exesdb.sqlite3"
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path)
        before = db.stat().st_size
        await gateway.append_events("s", "x", [NewEvent("E", {"pad": "x" * 1000})
                                               for _ in range(50)])
        assert db.stat().st_size == before  # the new pages are still in the WAL
        await flush("s")
        assert db.stat().st_size > before


async def test_the_persistence_worker_flushes_every_persistence_interval(tmp_path):
    db = tmp_path / "s" / "exesdb.sqlite3"
    async with otp.node():
        await start_store(store_id="s", data_dir=tmp_path, persistence_interval=50)
        before = db.stat().st_size
        await gateway.append_events("s", "x", [NewEvent("E", {"pad": "x" * 1000})
                                               for _ in range(50)])
        with trio.fail_after(5):
            while db.stat().st_size == before:  # noqa: ASYNC110 (a file, no event to wait on)
                await trio.sleep(0.02)
