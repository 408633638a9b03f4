"""Helpers shared by the supervisor tests: a recording worker, its child spec, and ways
to end a child and wait until its supervisor has dealt with it."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

import otp
from otp import gen_server, supervisor
from otp.supervisor import ChildSpec


class Recorder(otp.GenServer):
    """A worker that logs ("start", tag), ("terminate", tag, reason) and ("done", tag).

    Options: ``trap`` (trap exits, default True), ``delay`` (seconds terminate takes),
    ``fail`` (init raises that exception), ``ignore`` (init returns Ignore).
    """

    async def init(self, log: list[Any], tag: Any, opts: dict[str, Any] | None = None) -> Any:
        opts = opts or {}
        if "fail" in opts:
            raise opts["fail"]
        if opts.get("ignore"):
            return otp.Ignore()
        if opts.get("trap", True):
            otp.trap_exits(True)
        self.log, self.tag, self.delay = log, tag, opts.get("delay", 0)
        log.append(("start", tag))
        return None

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        return self.tag

    async def handle_cast(self, msg: Any) -> Any:
        return otp.Stop(msg)

    async def terminate(self, reason: Any) -> None:
        self.log.append(("terminate", self.tag, reason))
        if self.delay:
            await trio.sleep(self.delay)
        self.log.append(("done", self.tag))


def spec(log: list[Any], tag: Any, opts: dict[str, Any] | None = None, **fields: Any) -> ChildSpec:
    return Recorder.child_spec(log, tag, opts, id=tag, **fields)


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def wait_down(pid: otp.Pid) -> Any:
    ref = otp.monitor(pid)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    return down.reason


async def pids_of(sup: Any) -> dict[Any, otp.Pid | None]:
    return {child_id: pid for child_id, pid, _ in await supervisor.which_children(sup)}


async def end(pid: otp.Pid, reason: Any = otp.KILL) -> None:
    """End a worker with ``reason`` (killed, or stopped by a cast of it) and wait until
    its supervisor has dealt with it."""
    if reason is otp.KILL:
        otp.exit(pid, otp.KILL)
    else:
        gen_server.cast(pid, reason)
    await wait_down(pid)
    await settle()


async def crash(sup: Any, child_id: Any, reason: Any = otp.KILL) -> otp.Pid:
    """End child ``child_id`` of ``sup`` as :func:`end` does; return its pid."""
    pid = (await pids_of(sup))[child_id]
    assert pid is not None
    await end(pid, reason)
    return pid


def starts(log: list[Any]) -> list[Any]:
    return [entry[1] for entry in log if entry[0] == "start"]


def terminates(log: list[Any]) -> list[Any]:
    return [entry[1] for entry in log if entry[0] == "terminate"]
