"""The child spec: how a supervisor starts, restarts and stops one child.

A module of its own, below both :mod:`otp.gen_server` (whose ``child_spec()`` builds one)
and the supervisors (which run them), so that neither has to import the other. It depends
on nothing of ``otp`` but the :class:`Pid` type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import attrs

if TYPE_CHECKING:
    from ._process import Pid

__all__ = ["ChildSpec", "ChildType", "Restart", "ShutdownValue"]

Restart: TypeAlias = Literal["permanent", "transient", "temporary"]
"""When a child is restarted: always, after an abnormal exit only, or never."""
ChildType: TypeAlias = Literal["worker", "supervisor"]
"""What a child is; a supervisor child gets ``"infinity"`` to shut down by default."""
ShutdownValue: TypeAlias = "float | Literal['brutal_kill', 'infinity']"
"""Seconds to wait after ``SHUTDOWN`` before a kill, ``"brutal_kill"`` or ``"infinity"``."""

_RESTARTS: Final = ("permanent", "transient", "temporary")
_TYPES: Final = ("worker", "supervisor")


def _check_restart(_: Any, attribute: Any, value: Any) -> None:
    if value not in _RESTARTS:
        raise ValueError(f"restart must be one of {_RESTARTS}, got {value!r}")


def _check_type(_: Any, attribute: Any, value: Any) -> None:
    if value not in _TYPES:
        raise ValueError(f"type must be 'worker' or 'supervisor', got {value!r}")


def _check_significant(_: Any, attribute: Any, value: Any) -> None:
    if type(value) is not bool:
        raise TypeError(f"significant must be True or False, got {value!r}")


def _check_start(_: Any, attribute: Any, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"start must be an async callable returning a pid or None, got {value!r}")


@attrs.frozen
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    ``start`` is an async callable that starts a process linked to the caller and returns
    its pid, or None to be ignored. ``restart``: ``"permanent"`` (always restarted),
    ``"transient"`` (only after an abnormal exit) or ``"temporary"`` (never; forgotten when
    it ends). ``shutdown``: seconds to wait after the ``SHUTDOWN`` signal before a kill,
    ``"brutal_kill"`` or ``"infinity"``; it defaults to 5.0 for workers and
    ``"infinity"`` for supervisors. ``type``: ``"worker"`` or ``"supervisor"``.

    ``significant`` (OTP 24's significant children): when a significant child ends on its
    own (a ``"transient"`` one normally, a ``"temporary"`` one with any reason), a
    supervisor started with ``auto_shutdown="any_significant"`` shuts itself down, one with
    ``"all_significant"`` does once no significant child is left running. A significant
    child must be transient or temporary, and its supervisor's ``auto_shutdown`` other than
    ``"never"``: a supervisor refuses it otherwise (``ValueError``), as OTP does.
    """

    id: Any
    start: Callable[..., Awaitable[Pid | None]] = attrs.field(validator=_check_start)
    restart: Restart = attrs.field(default="permanent", validator=_check_restart)
    shutdown: ShutdownValue | None = None
    type: ChildType = attrs.field(default="worker", validator=_check_type)
    significant: bool = attrs.field(default=False, validator=_check_significant)

    def __attrs_post_init__(self) -> None:
        if self.shutdown is None:
            default = "infinity" if self.type == "supervisor" else 5.0
            object.__setattr__(self, "shutdown", default)
        elif self.shutdown not in ("brutal_kill", "infinity") and not (
            isinstance(self.shutdown, int | float) and self.shutdown >= 0
        ):
            raise ValueError(
                "shutdown must be seconds >= 0, 'brutal_kill' or 'infinity', "
                f"got {self.shutdown!r}"
            )
