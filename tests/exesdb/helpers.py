"""Helpers shared by the exesdb tests."""

from __future__ import annotations

from exesdb import NewEvent


def new_events(n: int, event_type: str = "Happened", **data) -> list[NewEvent]:
    """``n`` new events whose data is ``{"i": index, **data}``."""
    return [NewEvent(event_type, {"i": i, **data}) for i in range(n)]
