"""The messages the runtime puts in a mailbox on its own: trapped exits and monitor DOWNs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._process import Pid
    from ._terms import Ref

__all__ = ["Down", "Exit"]


@attrs.frozen
class Exit:
    """A trapped exit signal, Erlang's ``{'EXIT', Pid, Reason}``: ``pid`` ended or sent it.

    ``pid`` is None when the signal was sent from outside any process.
    """

    pid: Pid | None
    reason: Any


@attrs.frozen
class Down:
    """A monitor fired, Erlang's ``{'DOWN', Ref, process, Pid, Reason}``.

    ``pid`` is the monitored process, or the name that was monitored when nothing was
    registered under it (with ``reason`` :data:`otp.NOPROC`).
    """

    ref: Ref
    pid: Any
    reason: Any
