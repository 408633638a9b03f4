"""The commit listener's watcher signals another node's notice itself when it follows on
from what was signalled, names its streams and types, and the listener has nothing in
hand (``backlog`` 0); everything else goes to the listener, in order."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from exesdb.storage.postgres_notify import encode_notice
from exesdb.systems.cluster import listener as listener_module
from exesdb.systems.cluster.listener import PgListener
from exesdb.systems.commits import Committed

OWN = "a" * 16
OTHER = "b" * 16


@pytest.fixture
def signals(monkeypatch: pytest.MonkeyPatch) -> list[Committed]:
    sent: list[Committed] = []
    monkeypatch.setattr(listener_module, "notify_commit",
                        lambda store_id, committed: sent.append(committed))
    return sent


def _listener(known: int | None, backlog: int = 0) -> tuple[PgListener, list[int]]:
    listener = PgListener.__new__(PgListener)  # no process: take() is synchronous
    listener.store_id = "s"
    listener.known = known
    listener.marker = None
    listener.backlog = backlog
    seen: list[int] = []
    backend: Any = SimpleNamespace(notify_token=OWN, saw_committed=seen.append)
    listener._backend = lambda: backend  # type: ignore[method-assign]
    return listener, seen


def _notice(first: int, last: int, token: str, streams: list[str] | None = None) -> str:
    return encode_notice(first, last, token, streams or ["s"], ["T"])


def test_another_nodes_notice_that_follows_on_is_signalled_by_the_watcher(
        signals: list[Committed]) -> None:
    listener, seen = _listener(4)
    assert listener.take([_notice(5, 6, OTHER, ["x", "y"])]) == ()
    assert signals == [Committed(6, frozenset({"x", "y"}), frozenset({"T"}))]
    assert seen == [6]  # the storage's last position moved first
    assert listener.known == 6


def test_own_and_other_notices_in_order_are_all_taken(signals: list[Committed]) -> None:
    listener, _ = _listener(4)
    payloads = [_notice(5, 5, OWN), _notice(6, 6, OTHER), _notice(7, 7, OWN),
                _notice(8, 9, OTHER)]
    assert listener.take(payloads) == ()
    assert [c.last_position for c in signals] == [6, 9]
    assert listener.known == 9


def test_while_the_listener_has_notices_in_hand_everything_goes_to_it(
        signals: list[Committed]) -> None:
    listener, _ = _listener(4, backlog=1)
    payloads = [_notice(5, 5, OWN), _notice(6, 6, OTHER), _notice(7, 7, OTHER)]
    assert listener.take(payloads) == tuple(payloads[1:])
    assert signals == []
    assert listener.known == 5  # own notices before the first other still move known


def test_a_gap_goes_to_the_listener_with_everything_after_it(
        signals: list[Committed]) -> None:
    listener, _ = _listener(4)
    payloads = [_notice(5, 5, OTHER), _notice(8, 8, OTHER), _notice(9, 9, OTHER)]
    assert listener.take(payloads) == tuple(payloads[1:])  # 6 and 7 must be read
    assert [c.last_position for c in signals] == [5]


def test_a_notice_without_its_streams_goes_to_the_listener(signals: list[Committed]) -> None:
    listener, _ = _listener(4)
    payload = f'{{"f":5,"l":5,"t":"{OTHER}"}}'  # too large to name its streams
    assert listener.take([payload]) == (payload,)
    assert signals == []


def test_what_is_not_a_notice_goes_to_the_listener(signals: list[Committed]) -> None:
    listener, _ = _listener(4)
    assert listener.take(["hello"]) == ("hello",)
    assert signals == []


def test_a_notice_already_signalled_is_dropped(signals: list[Committed]) -> None:
    listener, _ = _listener(9)
    assert listener.take([_notice(5, 7, OTHER)]) == ()
    assert signals == []
    assert listener.known == 9


def test_before_the_first_head_is_known_everything_goes_to_the_listener(
        signals: list[Committed]) -> None:
    listener, _ = _listener(None)
    payload = _notice(0, 0, OTHER)
    assert listener.take([payload]) == (payload,)
    assert signals == []


def test_a_restarted_storages_own_notice_moves_known_and_its_mark(
        signals: list[Committed]) -> None:
    listener, _ = _listener(4)
    assert listener.take([_notice(5, 5, OWN)]) == ()
    new: Any = SimpleNamespace(notify_token=OTHER, saw_committed=lambda p: None)
    listener._backend = lambda: new  # type: ignore[method-assign]
    assert listener.take([_notice(6, 6, OTHER)]) == ()  # its own now: not signalled
    assert signals == []
    assert listener.known == 6
    assert listener.marker == f'"t":"{OTHER}"'
