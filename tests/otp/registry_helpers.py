"""Helpers shared by the registry tests: processes that run a function when asked."""

from __future__ import annotations

from typing import Any

import otp
from otp import gen_server


class Agent(gen_server.GenServer):
    """Runs the functions it is called with, in its own process; returns their outcome."""

    async def handle_call(self, request: Any, from_: Any) -> Any:
        try:
            return ("ok", request())
        except Exception as exc:
            return ("error", exc)


async def agent() -> otp.Pid:
    """A new unlinked :class:`Agent`."""
    pid = await gen_server.start(Agent)
    assert pid is not None
    return pid


async def run_in(pid: otp.Pid, fn: Any) -> Any:
    """``fn()`` run inside the process ``pid``; re-raises what it raised."""
    tag, value = await gen_server.call(pid, fn)
    if tag == "error":
        raise value
    return value


async def kill(pid: otp.Pid) -> None:
    """Kill ``pid`` and return once its Down has been received."""
    ref = otp.monitor(pid)
    otp.exit(pid, otp.KILL)
    await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
