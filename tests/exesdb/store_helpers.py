"""Helpers for tests that run whole stores: walking a store's tree, waiting for restarts."""

from __future__ import annotations

import contextlib
from typing import Any

import trio

import otp
from exesdb import gateway
from exesdb.errors import StoreUnavailable


async def tree(sup: otp.Pid) -> dict[Any, Any]:
    """``{child_id: (pid, kind, subtree)}`` for the whole tree under ``sup``."""
    out: dict[Any, Any] = {}
    for child_id, pid, kind in await otp.supervisor.which_children(sup):
        sub = await tree(pid) if kind == "supervisor" and pid is not None else {}
        out[child_id] = (pid, kind, sub)
    return out


async def all_pids(sup: otp.Pid) -> list[otp.Pid]:
    """Every live pid under ``sup`` (depth first), ``sup`` excluded."""
    found: list[otp.Pid] = []
    for _, pid, kind in await otp.supervisor.which_children(sup):
        if pid is None:
            continue
        found.append(pid)
        if kind == "supervisor":
            with contextlib.suppress(otp.NoProc, otp.ServerExited):
                found.extend(await all_pids(pid))
    return found


def find(subtree: dict[Any, Any], *path: type) -> otp.Pid:
    """The pid at ``path`` (child classes, from the top) in a :func:`tree` result."""
    node: Any = None
    level = subtree
    for cls in path:
        for child_id, (pid, _kind, sub) in level.items():
            head = child_id[0] if isinstance(child_id, tuple) else child_id
            if head is cls:
                node, level = pid, sub
                break
        else:
            raise LookupError(f"{cls.__qualname__} not found under {list(level)}")
    assert node is not None
    return node


async def kill_and_wait(pid: otp.Pid) -> None:
    """Kill ``pid`` and return once it has exited."""
    ref = otp.monitor(pid)
    otp.exit(pid, otp.KILL)
    await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)


async def until_available(store_id: str, limit: float = 10.0) -> None:
    """Retry a read until the store answers (it may be restarting)."""
    with trio.fail_after(limit):
        while True:
            try:
                await gateway.get_streams(store_id)
                return
            except StoreUnavailable:
                await trio.sleep(0.01)
