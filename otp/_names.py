"""Names: local registered names, via names, and resolving any name to a process.

A name is a ``str`` (registered on the node with :func:`register`), a :class:`Pid`, or a
:class:`Via` name, which hands registration and lookup to another module, as Erlang's
``{via, Module, Name}`` does. Every function of ``otp`` that takes a server or a
destination resolves it through :func:`resolve`, so a new kind of via name plugs in
without changing them.
"""

from __future__ import annotations

import abc
from typing import Any, TypeAlias

from ._errors import AlreadyStarted, NoProc
from ._process import DEAD, Pid, _Process, current_node

__all__ = ["Name", "Via", "register", "unregister", "whereis"]


class Via(abc.ABC):
    """A name whose registration another module keeps (Erlang's ``{via, Module, Name}``).

    Subclass it to plug a name service into ``otp``: ``register_name`` must raise
    :class:`otp.AlreadyStarted` when the name is held by a live process and must forget
    the name when that process exits; ``whereis_name`` returns the live holder or None.
    Instances must be hashable and compare equal when they name the same thing.
    """

    @abc.abstractmethod
    def register_name(self, pid: Pid) -> None:
        """Bind the name to ``pid`` until it exits or :meth:`unregister_name` is called."""

    @abc.abstractmethod
    def unregister_name(self) -> None:
        """Release the name; does nothing when it is not bound."""

    @abc.abstractmethod
    def whereis_name(self) -> Pid | None:
        """The live process bound to the name, or None."""


Name: TypeAlias = "str | Pid | Via"
"""Anything that addresses a process: a pid, a local name or a via name."""


def register(name: str, pid: Pid) -> None:
    """Register ``pid`` under the local ``name`` until it exits or is unregistered.

    Raises :class:`otp.AlreadyStarted` if a live process holds the name, :class:`otp.NoProc`
    if ``pid`` is not alive, ``ValueError`` if the process already has a name, and
    ``TypeError`` if the name is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    node = current_node()
    holder = node.names.get(name)
    if holder is not None:
        raise AlreadyStarted(name, holder.pid)
    proc = pid._proc
    if proc is None or proc.state != 0:
        raise NoProc(pid)
    if proc.name is not None:
        raise ValueError(f"{pid!r} is already registered as {proc.name!r}")
    node.names[name] = proc
    proc.name = name


def unregister(name: str) -> None:
    """Remove the local ``name``; raises :class:`otp.NoProc` if nothing holds it."""
    proc = current_node().names.pop(name, None)
    if proc is None:
        raise NoProc(name)
    proc.name = None


def whereis(name: Name) -> Pid | None:
    """The live process under ``name`` (a local or via name, or a pid), else None."""
    proc = lookup(name)
    return proc.pid if proc is not None else None


def lookup(name: Any) -> _Process | None:
    """The live process state under ``name``, or None."""
    if type(name) is Pid:
        proc = name._proc
    elif type(name) is str:
        proc = current_node().names.get(name)
    elif isinstance(name, Via):
        pid = name.whereis_name()
        proc = pid._proc if pid is not None else None
    else:
        raise TypeError(f"not a process name: {name!r} (expected a Pid, str or Via)")
    if proc is None or proc.state != 0:
        return None
    return proc


def resolve(name: Any) -> _Process:
    """The live process state under ``name``; raises :class:`otp.NoProc` if there is none."""
    proc = lookup(name)
    if proc is None:
        raise NoProc(name)
    return proc


def register_name(name: Any, proc: _Process) -> None:
    """Bind a start option ``name`` (str or Via) to ``proc``; raises AlreadyStarted."""
    if isinstance(name, Via):
        name.register_name(proc.pid)
        proc.name = name
    else:
        register(name, proc.pid)


def is_dead(proc: _Process | None) -> bool:
    return proc is None or proc.state == DEAD
