"""Small helpers shared by the runtime and gen_server tests."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

import otp


async def wait_down(pid: otp.Pid) -> Any:
    """Monitor ``pid`` and return the reason it ended with (NOPROC if already gone)."""
    ref = otp.monitor(pid)
    down = await otp.receive(match=lambda m: type(m) is otp.Down and m.ref is ref)
    return down.reason


async def settle() -> None:
    """Let every other task run until all of them are blocked."""
    await trio.testing.wait_all_tasks_blocked()


async def drain() -> list[Any]:
    """Take every message already in the caller's mailbox, oldest first, without waiting."""
    out: list[Any] = []
    while True:
        try:
            out.append(await otp.receive(timeout=0))
        except otp.ReceiveTimeout:
            return out


async def sleep_forever() -> None:
    await trio.sleep_forever()


async def echo_forever() -> None:
    """A process that sends every ``(pid, msg)`` it receives back as ``msg``."""
    while True:
        sender, msg = await otp.receive()
        otp.send(sender, msg)
