"""Erlang terms that have no Python equivalent: atoms, references, exit reasons, timeouts.

An exit reason is any value. These constants and :func:`shutdown` name the reasons the
runtime itself produces or understands; an exception instance is the reason of a process
whose function raised it. Python has no atoms, so the strings ``"normal"`` and
``"shutdown"`` are the same reasons as :data:`NORMAL` and :data:`SHUTDOWN` wherever a reason
is accepted or compared (``NORMAL == "normal"``); the runtime passes on whichever was given.

A timeout, wherever ``otp`` takes one, is a number of seconds ``>= 0``, or ``None`` or the
string ``"infinity"`` for no limit (:func:`check_timeout`).
"""

from __future__ import annotations

import itertools
from numbers import Real
from typing import Any, ClassVar, Final, Literal, TypeAlias

import attrs

__all__ = [
    "KILL",
    "KILLED",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "TIMEOUT",
    "Atom",
    "Ref",
    "Shutdown",
    "Timeout",
    "check_timeout",
    "is_normal",
    "is_normal_exit",
    "make_ref",
    "same_reason",
    "shutdown",
]


class Atom:
    """An interned symbol, like an Erlang atom: ``Atom("normal") is NORMAL``.

    Atoms hash cheaply and make good exit reasons and message tags. An atom equals only
    itself, except that :data:`NORMAL` and :data:`SHUTDOWN` also equal the strings
    ``"normal"`` and ``"shutdown"`` (and hash like them), since those strings are the same
    reasons. The constants print as their names in ``otp`` (``otp.NORMAL``); other atoms as
    ``otp.Atom('name')``.
    """

    __slots__ = ("name",)
    _table: ClassVar[dict[str, Atom]] = {}
    _constants: ClassVar[dict[str, str]] = {}  # name -> the otp constant that holds it
    name: str

    def __new__(cls, name: str) -> Atom:
        atom = cls._table.get(name)
        if atom is None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"Atom name must be a non-empty str, got {name!r}")
            atom = object.__new__(cls)
            object.__setattr__(atom, "name", name)
            cls._table[name] = atom
        return atom

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("atoms are immutable")

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if isinstance(other, str) and other in _REASON_STRINGS:
            return other == self.name
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        constant = self._constants.get(self.name)
        return constant if constant is not None else f"otp.Atom({self.name!r})"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Atom, (self.name,))


_REASON_STRINGS: Final = frozenset({"normal", "shutdown"})
"""The strings that are the same reasons as the atoms of that name."""


def _constant(name: str, constant: str) -> Atom:
    atom = Atom(name)
    Atom._constants[name] = f"otp.{constant}"
    return atom


NORMAL: Final = _constant("normal", "NORMAL")
"""The reason of a process that finished its work; links ignore it unless trapping."""
SHUTDOWN: Final = _constant("shutdown", "SHUTDOWN")
"""The reason a supervisor sends to stop a child; a normal termination."""
KILL: Final = _constant("kill", "KILL")
"""Sent with :func:`otp.exit` to kill a process; cannot be trapped."""
KILLED: Final = _constant("killed", "KILLED")
"""The reason observed for a process that was sent :data:`KILL`."""
NOPROC: Final = _constant("noproc", "NOPROC")
"""The reason reported when the target process does not exist."""
TIMEOUT: Final = _constant("timeout", "TIMEOUT")
"""Delivered to ``handle_info`` when a gen_server's idle timeout expires."""


@attrs.frozen(repr=False)
class Shutdown:
    """The reason ``{shutdown, Term}``: a normal termination that carries a term."""

    term: Any

    def __repr__(self) -> str:
        return f"otp.shutdown({self.term!r})"


def shutdown(term: Any) -> Shutdown:
    """Return the reason ``{shutdown, term}``: normal, not logged, never restarts transients."""
    return Shutdown(term)


def is_normal_exit(reason: object) -> bool:
    """True for the reasons OTP treats as normal: :data:`NORMAL`, :data:`SHUTDOWN`,
    ``shutdown(term)`` and the strings ``"normal"`` and ``"shutdown"``.

    A normal exit is not logged as a crash, does not end a linked process that does not
    trap exits (:data:`NORMAL` only, as in Erlang), and does not restart a transient child.
    """
    return (
        reason is NORMAL
        or reason is SHUTDOWN
        or type(reason) is Shutdown
        or (type(reason) is str and reason in _REASON_STRINGS)
    )


def is_normal(reason: object) -> bool:
    """True for :data:`NORMAL` and the string ``"normal"``: the reason a link ignores."""
    return reason is NORMAL or (type(reason) is str and reason == "normal")


def same_reason(a: object, b: object) -> bool:
    """True when ``a`` and ``b`` are the same exit reason: equal, or the same object (so an
    exception is the same reason only as itself), with ``"normal"`` and ``"shutdown"`` the
    same as :data:`NORMAL` and :data:`SHUTDOWN`."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # a value whose == raises or is ambiguous is only itself
        return False


Timeout: TypeAlias = "float | Literal['infinity'] | None"
"""A timeout in seconds; ``None`` or ``"infinity"``: no limit."""


def check_timeout(timeout: object, argument: str = "timeout") -> float | None:
    """Return ``timeout`` as seconds (a float or int ``>= 0``), or None for no limit.

    Accepts a real number ``>= 0`` (``math.inf`` included), ``None`` and ``"infinity"``.
    Raises ``TypeError`` for anything that is not a number (``bool`` included) and
    ``ValueError`` for a negative number, NaN or another string; the message names
    ``argument``. Functions call it before they send anything, so an invalid timeout
    leaves no request behind.
    """
    kind = type(timeout)
    if kind is float or kind is int:
        if timeout >= 0:  # type: ignore[operator]  # False for NaN
            return timeout  # type: ignore[return-value]
    elif timeout is None:
        return None
    elif kind is str:
        if timeout == "infinity":
            return None
        raise ValueError(
            f"{argument} must be a number of seconds >= 0, None or 'infinity', got {timeout!r}"
        )
    elif isinstance(timeout, Real) and not isinstance(timeout, bool):
        seconds = float(timeout)
        if seconds >= 0:
            return seconds
    else:
        raise TypeError(
            f"{argument} must be a number of seconds >= 0, None or 'infinity', "
            f"got {timeout!r} ({kind.__name__})"
        )
    raise ValueError(
        f"{argument} must be a number of seconds >= 0, None or 'infinity', got {timeout!r}"
    )


_ref_ids = itertools.count(1)


class Ref:
    """A unique reference, like Erlang's ``make_ref()``: equal only to itself."""

    __slots__ = ("_id",)

    def __init__(self) -> None:
        self._id = next(_ref_ids)

    def __repr__(self) -> str:
        return f"#Ref<{self._id}>"


def make_ref() -> Ref:
    """Return a new reference, unique within this Python process."""
    return Ref()
