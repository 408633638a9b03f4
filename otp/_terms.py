"""Erlang terms that have no Python equivalent: atoms, references and exit reasons.

An exit reason is any value. These constants and :func:`shutdown` name the reasons the
runtime itself produces or understands; an exception instance is the reason of a process
whose function raised it.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar, Final

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
    "is_normal_exit",
    "make_ref",
    "shutdown",
]


class Atom:
    """An interned symbol, like an Erlang atom: ``Atom("normal") is NORMAL``.

    Atoms compare by identity, hash cheaply and print as their bare name, so they make
    good exit reasons and message tags.
    """

    __slots__ = ("name",)
    _table: ClassVar[dict[str, Atom]] = {}
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

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Atom, (self.name,))


NORMAL: Final = Atom("normal")
"""The reason of a process that finished its work; links ignore it unless trapping."""
SHUTDOWN: Final = Atom("shutdown")
"""The reason a supervisor sends to stop a child; a normal termination."""
KILL: Final = Atom("kill")
"""Sent with :func:`otp.exit` to kill a process; cannot be trapped."""
KILLED: Final = Atom("killed")
"""The reason observed for a process that was sent :data:`KILL`."""
NOPROC: Final = Atom("noproc")
"""The reason reported when the target process does not exist."""
TIMEOUT: Final = Atom("timeout")
"""Delivered to ``handle_info`` when a gen_server's idle timeout expires."""


@attrs.frozen(repr=False)
class Shutdown:
    """The reason ``{shutdown, Term}``: a normal termination that carries a term."""

    term: Any

    def __repr__(self) -> str:
        return f"shutdown({self.term!r})"


def shutdown(term: Any) -> Shutdown:
    """Return the reason ``{shutdown, term}``: normal, not logged, never restarts transients."""
    return Shutdown(term)


def is_normal_exit(reason: object) -> bool:
    """True for the reasons OTP treats as normal: NORMAL, SHUTDOWN and ``shutdown(term)``."""
    return reason is NORMAL or reason is SHUTDOWN or type(reason) is Shutdown


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
