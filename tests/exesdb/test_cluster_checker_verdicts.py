"""The cluster checker's verdicts (:meth:`tests.exesdb.cluster_checker.Scenario.evaluate`),
on records made up here rather than produced by a cluster: a checker is only worth its
scenarios if it says so when a promise is broken. Each test breaks one promise in an
otherwise clean run and expects exactly that violation."""

from __future__ import annotations

import json
import time
from typing import Any

import attrs
import pytest

from .cluster_checker import Sample, Scenario, StoreContents, Stored
from .cluster_clients import EVENT_TYPE, event_id

EVENTS = 4


class NoCluster:
    """What a :class:`Scenario` needs of a cluster to be evaluated (nothing runs)."""

    dsn = "host=unused"
    store_id = "verdicts"
    nodes: list[Any] = []

    def uri(self, **options: str) -> str:
        return "kurrentdb://unused"


@attrs.define
class Run:
    """A clean run: the store, and what each client recorded."""

    store: list[Stored]
    appends: list[dict[str, Any]]
    catchup: list[dict[str, Any]]
    persistent: list[dict[str, Any]]
    samples: list[Sample]
    checkpoints: list[tuple[float, int]]

    def verdict(self, tmp_path) -> list[str]:
        scenario = Scenario(NoCluster(), "s", tmp_path, appenders=1, appends=EVENTS)  # type: ignore[arg-type]
        for label, lines in (("s-a0", self.appends), ("catchup", self.catchup),
                             ("persistent", self.persistent)):
            (scenario.root / f"{label}.jsonl").write_text(
                "".join(json.dumps(line) + "\n" for line in lines))
        scenario.watch.samples = self.samples
        scenario.watch.checkpoints = self.checkpoints
        head = max((e.pos for e in self.store), default=-1)
        return scenario.evaluate(StoreContents(tuple(self.store), head)).violations()


@pytest.fixture
def run() -> Run:
    t = time.time()
    ids = [str(event_id("s-a0", i)) for i in range(EVENTS)]
    store = [Stored(i, "s-a0-0", i, ids[i], EVENT_TYPE) for i in range(EVENTS)]
    appends = [{"kind": "append", "id": ids[i], "stream": "s-a0-0", "num": i,
                "outcome": "ack", "attempts": 1, "errors": []} for i in range(EVENTS)]
    delivered = [{"kind": "delivered", "id": ids[i], "stream": "s-a0-0", "num": i,
                  "pos": i + 1, "type": EVENT_TYPE, "t": t + i} for i in range(EVENTS)]
    persistent: list[dict[str, Any]] = [{"kind": "session", "t": t}]
    for line in delivered:
        persistent += [line, {"kind": "acked", "id": line["id"], "t": line["t"]}]
    return Run(store, appends, [{"kind": "ready"}, *delivered], persistent,
               [Sample(t, "n1", ("n1",), "n1", "n1")], [(t + 1.5, 1)])


def test_a_clean_run_breaks_no_promise(run, tmp_path):
    assert run.verdict(tmp_path) == []


def test_an_acknowledged_event_missing_from_the_store_is_lost(run, tmp_path):
    del run.store[3]
    run.catchup.pop()
    run.persistent = [line for line in run.persistent if line.get("num") != 3]
    assert run.verdict(tmp_path) == ["1 acknowledged events lost"]


def test_an_event_stored_twice_is_duplicated(run, tmp_path):
    run.store.append(attrs.evolve(run.store[1], pos=EVENTS, num=EVENTS))
    assert "1 events stored twice" in run.verdict(tmp_path)


def test_an_unknown_outcome_may_be_present_once(run, tmp_path):
    run.appends[3]["outcome"] = "unknown"
    assert run.verdict(tmp_path) == []


def test_a_gap_in_all_is_found(run, tmp_path):
    run.store[3] = attrs.evolve(run.store[3], pos=5)
    assert "$all has a gap or is out of order" in run.verdict(tmp_path)


def test_a_catch_up_subscriber_seeing_events_out_of_order_is_found(run, tmp_path):
    run.catchup[1], run.catchup[2] = run.catchup[2], run.catchup[1]
    assert run.verdict(tmp_path) == [
        "the catch-up subscriber's events are not $all's, in order"]


def test_a_persistent_redelivery_before_the_checkpoint_passed_is_allowed(run, tmp_path):
    first = run.persistent[1]  # delivered at t, checkpoint past it stored at t + 1.5
    run.persistent += [{"kind": "session"}, {**first, "t": first["t"] + 1.0}]
    assert run.verdict(tmp_path) == []


def test_a_persistent_redelivery_after_the_checkpoint_passed_is_found(run, tmp_path):
    first = run.persistent[1]
    run.persistent += [{"kind": "session"}, {**first, "t": first["t"] + 3.0}]
    assert run.verdict(tmp_path) == ["1 events came again after their checkpoint"]


def test_a_gossip_showing_two_leaders_is_found(run, tmp_path):
    run.samples.append(Sample(time.time(), "n2", ("n1", "n2"), "n1", "n1"))
    assert run.verdict(tmp_path) == ["a gossip showed two leaders"]


def test_a_leader_in_gossip_that_did_not_hold_the_lock_is_found(run, tmp_path):
    run.samples.append(Sample(time.time(), "n2", ("n2",), "n1", "n1"))
    assert run.verdict(tmp_path) == ["1 gossips showed a leader not holding the lock"]
