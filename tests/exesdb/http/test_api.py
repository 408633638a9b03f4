"""The console's JSON API: streams, events, subscriptions, the tree and its processes, the
cluster; and the supervision tree as data."""

from __future__ import annotations

import urllib.parse

import trio
from kurrentdbclient import KurrentDBClient

import otp
from exesdb import NewEvent, gateway
from exesdb.grpc.listener import address
from exesdb.http import tree_snapshot
from exesdb.http.tree import MAX_CHILDREN
from exesdb.http.views import hex_dump, payload_view
from exesdb.http.watcher import board, refresh
from exesdb.naming import child_label as label
from exesdb.systems.gateway import GatewayWorker, gateway_worker_name

from .helpers import eventually, running

CONSOLE = {"X-Exesdb-Console": "1"}


def q(**params: object) -> str:
    return urllib.parse.urlencode(params)


async def test_streams_are_listed_sorted_by_prefix_and_in_pages(tmp_path):
    async with running(tmp_path) as console:
        for name in ["order-2", "order-1", "user-1", "order-3"]:
            await gateway.append_events("s", name, [NewEvent("E", {})])
        everything = (await console.get("/api/stores/s/streams")).json()
        assert everything == {"streams": ["order-1", "order-2", "order-3", "user-1"],
                              "more": False, "total": 4}
        first = (await console.get(f"/api/stores/s/streams?{q(prefix='order-', limit=2)}"))
        assert first.json()["streams"] == ["order-1", "order-2"] and first.json()["more"]
        rest = await console.get(
            f"/api/stores/s/streams?{q(prefix='order-', limit=2, after='order-2')}")
        assert rest.json()["streams"] == ["order-3"] and not rest.json()["more"]
        assert (await console.get("/api/stores/s/streams?limit=0")).status == 400
        assert (await console.get("/api/stores/nope/streams")).status == 404


async def test_a_stream_pages_forwards_and_backwards_from_either_end(tmp_path):
    async with running(tmp_path) as console:
        await gateway.append_events("s", "big", [NewEvent("E", {"i": i}) for i in range(25)])

        async def page(**params: object) -> list[int]:
            body = (await console.get(f"/api/stores/s/events?{q(stream='big', **params)}")).json()
            assert body["version"] == 24
            return [e["event_number"] for e in body["events"]]

        assert await page(count=10) == list(range(10))
        assert await page(**{"from": 10, "count": 10}) == list(range(10, 20))
        assert await page(**{"from": 20, "count": 10}) == list(range(20, 25))
        assert await page(**{"from": "end", "count": 10, "direction": "backward"}) == list(
            range(24, 14, -1))
        assert await page(**{"from": 14, "count": 10, "direction": "backward"}) == list(
            range(14, 4, -1))
        bad = await console.get(f"/api/stores/s/events?{q(stream='big', direction='up')}")
        assert bad.status == 400 and "direction" in bad.json()["error"]


async def test_event_data_shows_as_pretty_json_or_as_hex_for_bytes(tmp_path):
    async with running(tmp_path) as console:
        await gateway.append_events("s", "mixed", [
            NewEvent("Json", {"b": [1, 2], "a": "<i>é</i>"}, metadata={"m": True}),
            NewEvent("Raw", bytes(range(20)))])
        events = (await console.get(f"/api/stores/s/events?{q(stream='mixed')}")).json()[
            "events"]
    assert events[0]["data"] == {"kind": "json", "size": len(
        '{\n  "b": [\n    1,\n    2\n  ],\n  "a": "<i>é</i>"\n}'.encode()),
        "text": '{\n  "b": [\n    1,\n    2\n  ],\n  "a": "<i>é</i>"\n}', "truncated": False}
    assert events[0]["metadata"]["text"] == '{\n  "m": true\n}'
    assert events[1]["data"]["kind"] == "bytes" and events[1]["data"]["size"] == 20
    assert events[1]["data"]["hex"].splitlines()[0].startswith(
        "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f")
    assert events[1]["metadata"] is None


def test_a_hex_dump_shows_offsets_bytes_and_printable_text():
    assert hex_dump(b"AB\x00") == "00000000  41 42 00" + " " * 39 + "  AB."
    assert payload_view(b"x" * 70_000)["truncated"] is True


async def test_subscriptions_list_every_kind_with_their_lag(tmp_path):
    async with running(tmp_path) as console:
        me = otp.self()
        await gateway.save_subscription("s", "by_event_type", "Placed", subscriber=me)
        await gateway.save_subscription("s", "by_stream", "$order-1", name="audit")
        body = (await console.get("/api/stores/s/subscriptions")).json()
    by_key = {s["key"]: s for s in body["subscriptions"]}
    assert by_key["audit"]["kind"] == "persistent"
    assert by_key["audit"]["selector"] == "$order-1"
    assert by_key["all-events"]["lag"] == 0
    transient = [s for s in body["subscriptions"] if s["kind"] == "transient"]
    assert [(s["type"], s["selector"], s["subscriber"]) for s in transient] == [
        ("by_event_type", "Placed", repr(me))]
    assert body["groups"] is None  # no gRPC listener: no groups


async def test_the_tree_names_each_store_process_and_marks_a_restart(tmp_path):
    async with running(tmp_path, tree_interval=60) as console:
        await refresh()
        before = (await console.get("/api/tree")).json()
        worker = otp.whereis(gateway_worker_name("s", 2))
        answer = await console.post(f"/api/processes/{worker!r}/kill", headers=CONSOLE)
        assert answer.status == 200
        path = answer.json()["path"]
        assert path.endswith("GatewayWorker[s] 2")
        await eventually(lambda: otp.whereis(gateway_worker_name("s", 2)) not in (None, worker))
        await refresh()
        after = (await console.get("/api/tree")).json()
        info = await console.get(f"/api/processes/{otp.whereis(gateway_worker_name('s', 2))!r}")
    assert after["version"] > before["version"]
    nodes = {n["path"]: n for n in _walk(after["tree"])}
    assert nodes[path]["restarted_at"] is not None
    assert nodes[path.rsplit("/", 1)[0]]["restarts"] == 1
    assert info.status == 200
    assert (info.json()["path"], info.json()["restarts"]) == (path, 0)
    assert info.json()["restarted_at"] == nodes[path]["restarted_at"]


async def test_a_pid_outside_the_tree_is_not_found_and_cannot_be_killed(tmp_path):
    async with running(tmp_path) as console:
        await refresh()
        stranger = otp.spawn(otp.receive)
        assert (await console.get(f"/api/processes/{stranger!r}")).status == 404
        answer = await console.post(f"/api/processes/{stranger!r}/kill", headers=CONSOLE)
        assert answer.status == 404 and otp.is_alive(stranger)
        otp.exit(stranger, otp.KILL)


async def test_the_cluster_of_a_single_node_store_is_this_node_leading(tmp_path):
    async with running(tmp_path, grpc=True) as console:
        clusters = (await console.get("/api/cluster")).json()
    [store] = clusters
    assert (store["store_id"], store["db_type"], store["status"]) == ("s", "single", "running")
    [member] = store["members"]
    assert member["leader"] and member["alive"] and member["me"]
    assert store["leader"] == member["node"]
    assert member["address"].startswith("127.0.0.1:")


async def test_a_tree_snapshot_lists_supervisors_nested_and_stays_whole_when_one_ends(
        tmp_path):
    async with running(tmp_path):
        snapshot = await tree_snapshot()
        paths = [n.path for n in snapshot.walk()]
        assert snapshot.kind == "node"  # no exesdb application here: the node holds them
        assert "node/System[s]/GatewaySystem[s]/GatewayWorker[s] 0" in paths
        assert all(len(n.children) <= MAX_CHILDREN for n in snapshot.walk())
        assert board().snapshot is not None


def test_child_ids_read_as_module_and_store():
    assert label((GatewayWorker, "s", 3)) == "GatewayWorker[s] 3"
    assert label(((GatewayWorker, "s"), "pools")) == "GatewayWorker[s] pools"
    assert label(GatewayWorker) == "GatewayWorker"
    assert label("exesdb.registry") == "exesdb.registry"


def _walk(node: dict) -> list[dict]:
    return [node, *[n for child in node["children"] for n in _walk(child)]]


async def test_grpc_groups_show_their_parked_messages_which_the_console_replays(tmp_path):
    async with running(tmp_path, grpc=True) as console:
        host, port = address("s")
        await gateway.append_events("s", "orders", [NewEvent("Placed", {"n": n})
                                                    for n in range(3)])
        client = KurrentDBClient(f"kurrentdb://{host}:{port}?Tls=false")
        try:
            await trio.to_thread.run_sync(
                lambda: client.create_subscription_to_stream("g", "orders"))
            subscription = await trio.to_thread.run_sync(
                lambda: client.read_subscription_to_stream("g", "orders"))
            first = await trio.to_thread.run_sync(next, subscription)
            await trio.to_thread.run_sync(subscription.nack, first.ack_id, "park")

            async def parked() -> list[dict]:
                groups = (await console.get("/api/stores/s/subscriptions")).json()["groups"]
                return [g for g in groups if g["parked"] == 1]

            [group] = await eventually(parked)
            assert (group["stream"], group["group"], group["consumers"]) == ("orders", "g", 1)
            replayed = await console.post("/api/stores/s/groups/replay-parked",
                                          {"stream": "orders", "group": "g"}, headers=CONSOLE)
            assert replayed.status == 200
            again = await trio.to_thread.run_sync(_next_number, subscription, 0)
            assert again == 0  # the parked event, delivered once more
            unknown = await console.post("/api/stores/s/groups/replay-parked",
                                         {"stream": "orders", "group": "nope"},
                                         headers=CONSOLE)
            assert unknown.status == 404
            subscription.stop()
        finally:
            await trio.to_thread.run_sync(client.close)


def _next_number(subscription, number: int) -> int:
    """Acknowledge events until the one numbered ``number`` arrives; return its number."""
    for event in subscription:
        if event.stream_position == number:
            subscription.ack(event.ack_id)
            return event.stream_position
        subscription.ack(event.ack_id)
    raise AssertionError("the subscription ended")
