"""``GET /metrics``: the node and its stores in Prometheus's text format, parsed back with
``prometheus_client.parser``; the counters and the lag move as the store works."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any

import trio
from kurrentdbclient import KurrentDBClient, StreamState
from kurrentdbclient import NewEvent as KNewEvent
from kurrentdbclient.exceptions import WrongCurrentVersionError
from prometheus_client.parser import text_string_to_metric_families

import otp
from exesdb import Events, NewEvent, gateway
from exesdb.grpc.listener import address
from exesdb.http.metrics import METRICS
from exesdb.http.watcher import refresh
from exesdb.systems.gateway import gateway_worker_name

from .helpers import Console, eventually, running


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition: (name, labels) -> value."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(console: Console) -> dict[Any, float]:
    answer = await console.get("/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(answer.text)


async def test_metrics_name_every_family_with_its_type_and_the_store_as_a_label(tmp_path):
    async with running(tmp_path) as console:
        families = {f.name: f for f in text_string_to_metric_families(
            (await console.get("/metrics")).text)}
    for name, (kind, _help) in METRICS.items():
        assert families[name].type == kind, name
        assert name.startswith("exesdb_")
        assert families[name].documentation
    assert {s.labels["store"] for s in families["exesdb_events_appended"].samples} == {"s"}
    assert "process_resident_memory_bytes" in families  # the node's memory
    assert families["exesdb_node_processes"].samples[0].value > 20


async def test_appends_move_the_append_counters_histograms_and_the_head(tmp_path):
    async with running(tmp_path) as console:
        before = await scrape(console)
        await gateway.append_events("s", "a", [NewEvent("E", {"i": i}) for i in range(3)])
        await gateway.append_events("s", "b", [NewEvent("E", b"12345")])
        after = await scrape(console)

    def moved(name: str, **labels: str) -> float:
        return (value(after, name, store="s", **labels) or 0) - (
            value(before, name, store="s", **labels) or 0)

    assert moved("exesdb_events_appended_total") == 4
    assert moved("exesdb_appends_total") == 2
    assert moved("exesdb_appended_bytes_total") == 3 * len(b'{"i":0}') + 5
    assert moved("exesdb_append_duration_seconds_count") == 2
    assert moved("exesdb_append_duration_seconds_bucket", le="+Inf") == 2
    assert moved("exesdb_transactions_total") >= 2
    assert moved("exesdb_group_commit_batch_size_count") == moved("exesdb_transactions_total")
    assert moved("exesdb_storage_fsync_duration_seconds_count") >= 2
    assert moved("exesdb_transaction_duration_seconds_sum") > 0
    assert value(after, "exesdb_head_position", store="s") == value(
        before, "exesdb_head_position", store="s") + 4
    assert value(after, "exesdb_store_up", store="s") == 1


async def test_reads_are_counted_with_the_events_they_return(tmp_path):
    async with running(tmp_path) as console:
        await gateway.append_events("s", "a", [NewEvent("E", {}) for _ in range(5)])
        before = await scrape(console)
        await gateway.get_events("s", "a", 0, 3)
        await gateway.read_all("s", 0, 2)
        after = await scrape(console)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, store="s", **labels) - value(before, name, store="s",
                                                                **labels)

    # the subscriptions read too (the default all-events one): at least ours are counted
    assert moved("exesdb_reads_total", target="stream") >= 1
    assert moved("exesdb_reads_total", target="all") >= 1
    assert moved("exesdb_events_read_total") >= 5


async def test_a_subscriptions_lag_grows_while_its_subscriber_does_not_ack(tmp_path):
    async with running(tmp_path) as console:
        me = otp.self()
        await gateway.save_subscription("s", "by_stream", "$all", name="slow", subscriber=me)
        samples = await scrape(console)
        assert value(samples, "exesdb_subscription_lag_events", store="s",
                     subscription="slow", type="by_stream") == 0
        await gateway.append_events("s", "a", [NewEvent("E", {}) for _ in range(4)])

        async def lag() -> float | None:
            return value(await scrape(console), "exesdb_subscription_lag_events", store="s",
                         subscription="slow", type="by_stream")

        await eventually(lambda: _equals(lag(), 4))
        samples = await scrape(console)
        assert value(samples, "exesdb_subscription_in_flight_events", store="s",
                     subscription="slow") == 4
        assert value(samples, "exesdb_subscriptions", store="s", type="by_stream",
                     kind="persistent") == 2  # with the default all-events

        batch = await otp.receive(match=lambda m: isinstance(m, Events))
        await gateway.ack_event("s", "slow", me, batch.events[-1])
        await eventually(lambda: _equals(lag(), 0))


async def test_grpc_calls_are_counted_by_method_and_status_and_connections_are_open(
        tmp_path):
    async with running(tmp_path, grpc=True) as console:
        host, port = address("s")

        def client_work() -> None:
            client = KurrentDBClient(f"kurrentdb://{host}:{port}?Tls=false")
            try:
                client.append_to_stream("g", events=[KNewEvent(type="T", data=b"{}")],
                                        current_version=StreamState.NO_STREAM)
                with contextlib.suppress(WrongCurrentVersionError):  # a second NO_STREAM
                    client.append_to_stream("g", events=[KNewEvent(type="T", data=b"{}")],
                                            current_version=StreamState.NO_STREAM)
                list(client.get_stream("g"))
                samples = trio.from_thread.run(scrape, console)
                assert value(samples, "exesdb_grpc_open_connections", store="s") >= 1
            finally:
                client.close()

        await trio.to_thread.run_sync(client_work)
        samples = await scrape(console)
    calls = {dict(labels)["method"]: v for (name, labels), v in samples.items()
             if name == "exesdb_grpc_calls_total" and dict(labels)["code"] == "OK"}
    assert any(m.endswith("Streams/Append") or m.endswith("Streams/BatchAppend")
               for m in calls), calls
    assert any(m.endswith("Streams/Read") for m in calls), calls
    assert value(samples, "exesdb_grpc_connections_total", store="s") >= 1


async def test_the_node_counts_the_restarts_its_tree_watcher_sees(tmp_path):
    async with running(tmp_path) as console:
        await refresh()
        worker = otp.whereis(gateway_worker_name("s", 0))
        otp.exit(worker, otp.KILL)
        await eventually(lambda: otp.whereis(gateway_worker_name("s", 0)) not in (None, worker))
        await refresh()
        samples = await scrape(console)
    restarts = {dict(labels)["supervisor"]: v for (name, labels), v in samples.items()
                if name == "exesdb_supervisor_restarts_observed_total"}
    assert restarts == {"node/System[s]/GatewaySystem[s]": 1}, restarts


async def _equals(awaitable: Any, expected: Any) -> bool:
    return await awaitable == expected


async def test_long_mailboxes_of_the_tree_are_reported_when_otp_can_tell(tmp_path,
                                                                          monkeypatch):
    async with running(tmp_path) as console:
        await refresh()
        samples = await scrape(console)
        assert not [k for k in samples if k[0] == "exesdb_process_message_queue_length"]
        busy = otp.whereis(gateway_worker_name("s", 0))

        def process_info(pid: otp.Pid) -> Any:  # otp.process_info as the contracts say
            return SimpleNamespace(message_queue_len=250 if pid == busy else 99)

        monkeypatch.setattr(otp, "process_info", process_info, raising=False)
        samples = await scrape(console)
    queues = {dict(labels)["process"]: v for (name, labels), v in samples.items()
              if name == "exesdb_process_message_queue_length"}
    assert queues == {"node/System[s]/GatewaySystem[s]/GatewayWorker[s] 0": 250}

