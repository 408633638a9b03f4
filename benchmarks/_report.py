"""Benchmark results and their two renderings: a table for people, JSON Lines for programs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Result", "best_of", "render_json", "render_table"]


@attrs.frozen
class Result:
    """One measured figure: ``value`` in ``unit``, and the floor it is compared with.

    ``ratio`` is ``value / floor``; ``target`` says in words what the issue asks for.
    """

    name: str
    value: float
    unit: str
    floor: float | None = None
    target: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value, "unit": self.unit}
        if self.floor is not None:
            out["floor"] = self.floor
            out["ratio"] = self.ratio
        if self.target:
            out["target"] = self.target
        return out


def render_json(results: list[Result]) -> str:
    """One JSON object per line."""
    return "\n".join(json.dumps(r.as_dict()) for r in results)


def render_table(results: list[Result]) -> str:
    """An aligned table: name, value, unit, floor, ratio, target."""
    rows = [("benchmark", "value", "unit", "floor", "ratio", "target")]
    for r in results:
        rows.append((
            r.name,
            _fmt(r.value),
            r.unit,
            "" if r.floor is None else _fmt(r.floor),
            "" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def best_of(repeats: int, fn: Callable[[], float]) -> float:
    """The smallest of ``repeats`` measurements (the least disturbed by the machine)."""
    return min(fn() for _ in range(repeats))


def now() -> float:
    """A monotonic clock in seconds, for timing."""
    return time.perf_counter()
