"""Helpers shared by the exesdb tests."""

from __future__ import annotations

from exesdb import NewEvent


def new_events(n: int, event_type: str = "Happened", **data) -> list[NewEvent]:
    """``n`` new events whose data is ``{"i": index, **data}``."""
    return [NewEvent(event_type, {"i": i, **data}) for i in range(n)]


def worker_calls(backend) -> list:
    """The functions a PostgreSQL backend's write thread is given from now on (the
    transactions' path, as opposed to the one statement sent from the trio thread)."""
    calls = []
    run = backend._writes.run

    async def counting(fn, *args):
        calls.append(fn)
        return await run(fn, *args)

    backend._writes.run = counting
    return calls
