"""application: a named unit of a program, with an environment and a supervision tree.

An :class:`Application` says how to start its top supervisor from its environment (a
mapping of settings) and which applications it needs. :func:`start` starts the ones it
needs first, then it; :func:`stop` stops its tree in order. The top supervisor is linked
to the process that called :func:`start`, so when the tree gives up, that process gets the
exit signal (by default a program ends when its application does, as a permanent
application in OTP stops its node).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from . import supervisor
from ._errors import AlreadyStarted, NoProc
from ._process import NodeVar, Pid, on_exit
from ._terms import Timeout, check_timeout

__all__ = ["Application", "get_env", "start", "stop", "which_applications"]


def _freeze(env: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(env))


@attrs.frozen
class Application:
    """An application: ``name``, its ``env``, and how to start and stop it.

    ``start(env)`` starts the top supervisor linked to the caller and returns its pid.
    ``stop(env)``, if given, runs after the tree has stopped. ``applications`` are the
    applications this one needs; they are started first.
    """

    name: str
    start: Callable[[Mapping[str, Any]], Awaitable[Pid | None]]
    env: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze)
    applications: tuple[Application, ...] = attrs.field(default=(), converter=tuple)
    stop: Callable[[Mapping[str, Any]], Awaitable[None]] | None = None
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")


@attrs.define
class _Running:
    app: Application
    pid: Pid | None


_running: NodeVar[dict[str, _Running]] = NodeVar("otp.application.running", factory=dict)
"""The applications running on the node, by name, in start order."""


def _table() -> dict[str, _Running]:
    return _running.get()


async def start(app: Application) -> Pid | None:
    """Start ``app`` (after the applications it needs); return its top supervisor's pid.

    Raises :class:`otp.AlreadyStarted` if an application of that name runs, and what the
    start function raises if it fails (the applications started for it keep running).
    """
    table = _table()
    running = table.get(app.name)
    if running is not None:
        raise AlreadyStarted(app.name, running.pid)
    for needed in app.applications:
        if needed.name not in table:
            await start(needed)
    pid = await app.start(app.env)
    if pid is not None and not isinstance(pid, Pid):
        raise TypeError(f"{app.name}: start returned {pid!r}, not a pid or None")
    table[app.name] = _Running(app, pid)
    if pid is not None and pid._proc is not None:
        on_exit(pid, lambda _reason: _forget(table, app.name, pid))
    return pid


def _forget(table: dict[str, _Running], name: str, pid: Pid) -> None:
    running = table.get(name)
    if running is not None and running.pid is pid:
        del table[name]


async def stop(app: Application | str, timeout: Timeout = None) -> None:
    """Stop the application's tree in order, then run its ``stop``.

    Raises :class:`otp.NoProc` if it is not running, and ``TypeError``/``ValueError`` for
    a ``timeout`` that is not seconds ``>= 0``, None or ``"infinity"`` (the application
    then keeps running).
    """
    timeout = check_timeout(timeout)
    name = app if isinstance(app, str) else app.name
    table = _table()
    running = table.pop(name, None)
    if running is None:
        raise NoProc(name)
    if running.pid is not None and running.pid._proc is not None:
        await supervisor.stop(running.pid, timeout=timeout)
    if running.app.stop is not None:
        await running.app.stop(running.app.env)


def which_applications() -> list[Application]:
    """The applications running on this node, in start order."""
    return [r.app for r in _table().values()]


def get_env(app: Application | str, key: str, default: Any = None) -> Any:
    """A setting of a running application (``default`` when unset)."""
    name = app if isinstance(app, str) else app.name
    running = _table().get(name)
    if running is None:
        raise NoProc(name)
    return running.app.env.get(key, default)
