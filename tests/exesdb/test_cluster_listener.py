"""The commit listener's watcher keeps only the notices the listener must handle: this
node's own that follow on from what was signalled are dropped (they only move ``known``);
everything from the first other notice on is passed on, in order."""

from __future__ import annotations

from types import SimpleNamespace

from exesdb.storage.postgres_notify import encode_notice
from exesdb.systems.cluster.listener import PgListener

OWN = "a" * 16
OTHER = "b" * 16


def _listener(known: int | None) -> PgListener:
    listener = PgListener.__new__(PgListener)  # no process: others() is synchronous
    listener.known = known
    listener.marker = None
    backend = SimpleNamespace(notify_token=OWN)
    listener._backend = lambda: backend  # type: ignore[method-assign]
    return listener


def _notice(first: int, last: int, token: str) -> str:
    return encode_notice(first, last, token, ["s"], ["T"])


def test_own_notices_that_follow_on_are_dropped_and_move_known():
    listener = _listener(4)
    assert listener.others([_notice(5, 5, OWN), _notice(6, 8, OWN)]) == ()
    assert listener.known == 8


def test_everything_from_the_first_other_notice_on_is_passed_on_in_order():
    listener = _listener(4)
    payloads = [_notice(5, 5, OWN), _notice(6, 6, OTHER), _notice(7, 7, OWN)]
    assert listener.others(payloads) == tuple(payloads[1:])
    assert listener.known == 5  # the listener signals 6, then finds 7 its own


def test_an_own_notice_after_a_gap_is_passed_on():
    listener = _listener(4)
    payload = _notice(7, 7, OWN)  # 5 and 6 were never signalled here
    assert listener.others([payload]) == (payload,)
    assert listener.known == 4


def test_before_the_first_head_is_known_everything_is_passed_on():
    listener = _listener(None)
    payload = _notice(0, 0, OWN)
    assert listener.others([payload]) == (payload,)


def test_notices_of_a_storage_restarted_with_a_new_token_are_passed_on():
    listener = _listener(4)
    assert listener.others([_notice(5, 5, OWN)]) == ()
    listener._backend = lambda: SimpleNamespace(notify_token=OTHER)  # type: ignore[method-assign]
    payload = _notice(6, 6, OTHER)  # the new storage's token: the listener handles it
    assert listener.others([payload]) == (payload,)
