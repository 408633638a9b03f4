r"""Client-supplied regular expressions, matched in linear time.

Filters of ``$all`` reads, subscriptions and persistent subscription groups carry a
regex from the client, matched against every event's stream id or type on the trio
thread that serves every store of the node. Python's ``re`` backtracks, so a pattern
such as ``^(a+)+$`` can take exponential time on one subject and freeze the node. These
are compiled with RE2 instead (``google-re2``), whose matching time is linear in the
subject whatever the pattern: RE2 syntax (Perl's, without backreferences and
lookaround), searched anywhere in the subject as .NET's ``Regex.IsMatch`` does.

One lookaround form is accepted, because the official clients build their exclude
filters with it (kurrentdbclient: ``^(?!(\$.+$|PersistentConfig\d+$|Result$))``): a whole
pattern ``^(?!X)`` matches the subjects where ``X`` does not match at the start, which
is how it is evaluated (``X`` in RE2 syntax).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import re2  # type: ignore[import-untyped]

from ..errors import InvalidArgument

__all__ = ["MAX_PATTERN_LENGTH", "compile_filter"]

MAX_PATTERN_LENGTH: Final = 4096
"""The longest pattern accepted, in characters."""

_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the client's error, answered, not logged


def compile_filter(pattern: str, field: str) -> Callable[[str], bool]:
    """A predicate telling whether ``pattern`` is found in a subject, in time linear in
    the subject's length. Raises :class:`exesdb.InvalidArgument` naming ``field`` for a
    pattern that is not a str, is longer than :data:`MAX_PATTERN_LENGTH`, or is not valid
    RE2 syntax (backreferences and lookaround are not, but for a whole ``^(?!X)``)."""
    if not isinstance(pattern, str):
        raise InvalidArgument(f"{field}: must be a str, got {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidArgument(f"{field}: must be at most {MAX_PATTERN_LENGTH} characters, "
                              f"got {len(pattern)}")
    inner = _leading_negative_lookahead(pattern)
    try:
        if inner is not None:
            excluded = re2.compile(inner, options=_RE2_OPTIONS).match
            return lambda subject: excluded(subject) is None
        compiled = re2.compile(pattern, options=_RE2_OPTIONS)
    except (re2.error, re.error, ValueError, TypeError, RecursionError, OverflowError) as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidArgument(f"{field}: not a valid regular expression in RE2 syntax "
                              "(no backreferences, no lookaround but a whole ^(?!X)): "
                              f"{reason}") from None
    search = compiled.search

    def matches(subject: str) -> bool:
        return search(subject) is not None

    return matches


def _leading_negative_lookahead(pattern: str) -> str | None:
    """``X`` when ``pattern`` is exactly ``^(?!X)`` (the group closing at its end), else
    None."""
    if not (pattern.startswith("^(?!") and pattern.endswith(")")):
        return None
    depth = 0
    in_class = False
    i = 1
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return pattern[4:-1] if i == len(pattern) - 1 else None
        i += 1
    return None
