"""sys: look inside a running gen_server, change its state, pause it, trace it.

Erlang's ``sys`` module for the processes of ``otp`` that answer system messages: every
gen_server, and so every supervisor, dynamic supervisor, registry and pub/sub. Each
function sends the server a system message (OTP's ``{system, From, Msg}``) and waits for
its answer. The server serves system messages in its own loop, between two callbacks and
without calling any of them: what they read or change is never seen half way through a
callback.

A gen_server's *state* is its instance's attributes whose names do not start with ``_``:
``{name: value}``, as ``vars(server)`` would list them. Names starting with ``_`` are the
server's private business (and otp's); the state neither shows nor replaces them.

Guarantees:

* Every function is async and waits at most ``timeout`` seconds (5 by default; None or
  ``"infinity"``: no limit). Each raises :class:`otp.NoProc` when no process is there,
  :class:`otp.ServerExited` (``.reason``) when the server ends before answering,
  :class:`otp.CallTimeout` when time runs out (a late answer is dropped),
  ``ValueError`` when ``server`` is the calling process, ``TypeError`` when it is a
  plain process, which answers no system message (nothing is sent to it), and
  ``TypeError``/``ValueError`` for an invalid ``timeout``, before anything is sent.
* A suspended server (:func:`suspend`) takes no call, cast or other message until
  :func:`resume`: they wait in its mailbox, in order. It still answers system messages
  (so every function here works on it), :func:`otp.gen_server.stop`, and, when it traps
  exits, its parent's exit signal (it then shuts down as usual). Its idle timeout does
  not fire meanwhile; it starts again when it resumes.
* Serving a system message does not change the server's idle timeout: it starts again.
* :func:`trace` logs (logger ``otp.sys``, level INFO) every message the server takes and
  every reply it sends itself (a reply sent later with :func:`otp.gen_server.reply` is
  not logged), until turned off.

Differences from Erlang: no ``format_status`` (:func:`get_status` gives the state as
:func:`get_state` does), no ``log``/``statistics``/``install``, and no ``change_code``
(there is no hot code upgrade).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs

from ._names import Name, resolve
from ._process import Pid
from ._terms import Timeout
from .gen_server import (
    _GetState,
    _GetStatus,
    _ReplaceState,
    _Resume,
    _StatusReply,
    _Suspend,
    _system_call,
    _Trace,
)

__all__ = [
    "Status",
    "get_state",
    "get_status",
    "replace_state",
    "resume",
    "suspend",
    "trace",
]


@attrs.frozen
class Status:
    """What :func:`get_status` tells of a server (Erlang's ``sys:get_status/1``).

    * ``pid``, ``name`` (its local or via name, or None) and ``parent`` (the process that
      started it: its supervisor, or None).
    * ``behaviour``: its class (a class-form supervisor's :class:`otp.Supervisor`
      subclass), as :func:`otp.process_info` reports it.
    * ``status``: ``"running"``, or ``"suspended"`` between :func:`suspend` and
      :func:`resume`.
    * ``trace``: whether :func:`trace` is on.
    * ``state``: its state, as :func:`get_state` returns it.
    """

    pid: Pid
    name: Any
    behaviour: type
    status: Literal["running", "suspended"]
    parent: Pid | None
    trace: bool
    state: dict[str, Any]


async def get_state(server: Name, timeout: Timeout = 5.0) -> dict[str, Any]:
    """The server's state: a new dict of its attributes whose names do not start with
    ``_``, read between two callbacks. The dict is a copy, its values are not: changing
    the dict changes nothing in the server (use :func:`replace_state`), changing a
    mutable value does. For a supervisor: its strategy, restart intensity and children,
    as it keeps them. Raises as the module docstring says."""
    state: dict[str, Any] = await _system_call(server, _GetState(), timeout)
    return state


async def replace_state(
    server: Name, fn: Callable[[dict[str, Any]], dict[str, Any]], timeout: Timeout = 5.0
) -> dict[str, Any]:
    """Call ``fn(state)`` in the server, between two callbacks, and make what it returns
    the server's state; return that new state (the very dict ``fn`` returned).

    ``state`` is what :func:`get_state` would return. The attributes of the dict ``fn``
    returns are set on the server, and its public attributes ``fn`` left out are
    removed; those starting with ``_`` stay as they are. ``fn`` is a plain function (not
    async). If it raises, or returns something else than a dict of ``str`` names not
    starting with ``_`` (``TypeError``, ``ValueError``), the server keeps its state and
    carries on, and that exception is raised here. Raises as the module docstring says.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function of the state, got {fn!r}")
    new: dict[str, Any] = await _system_call(server, _ReplaceState(fn), timeout)
    return new


async def get_status(server: Name, timeout: Timeout = 5.0) -> Status:
    """The server's :class:`Status`, its state included, read between two callbacks.
    Raises as the module docstring says."""
    proc = resolve(server)
    reply: _StatusReply = await _system_call(server, _GetStatus(), timeout)
    return Status(
        proc.pid, proc.name, reply.behaviour, reply.status, proc.parent, reply.trace,
        reply.state,
    )


async def suspend(server: Name, timeout: Timeout = 5.0) -> None:
    """Suspend the server: once this returns it takes no message but system messages
    (see the module docstring) until :func:`resume`. Suspending a suspended server does
    nothing. Raises as the module docstring says."""
    await _system_call(server, _Suspend(), timeout)


async def resume(server: Name, timeout: Timeout = 5.0) -> None:
    """Resume a suspended server: it takes the messages that waited, in order. Resuming a
    running server does nothing. Raises as the module docstring says."""
    await _system_call(server, _Resume(), timeout)


async def trace(server: Name, flag: bool, timeout: Timeout = 5.0) -> None:
    """Turn the server's tracing on (``flag`` true) or off: while on, it logs (logger
    ``otp.sys``, level INFO) each message it takes (``got call ...``, ``got cast ...``,
    ``got ...``) and each reply it sends (``sent reply ...``). Raises as the module
    docstring says."""
    await _system_call(server, _Trace(bool(flag)), timeout)
