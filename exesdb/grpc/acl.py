"""Stream access control lists (``$acl`` in stream metadata), enforced as KurrentDB's legacy
ACL policy enforces them when the server has users (``users_file``).

A stream's ACL is the ``$acl`` object of its metadata (:mod:`exesdb.grpc.metadata`): the
roles that may read (``$r``), write (``$w``), delete (``$d``), read the metadata (``$mr``)
and write the metadata (``$mw``) of the stream, each a role or a list of roles. A role is
a user name, a group of the users file, or ``$all`` (every user). A role an ACL leaves out
comes from the store's settings, the last event of ``$settings`` (``$userStreamAcl``,
``$systemStreamAcl``), else from KurrentDB's built-in defaults
(:data:`DEFAULT_USER_STREAM_ACL`: ``$all`` for everything; :data:`DEFAULT_SYSTEM_STREAM_ACL`:
``$admins`` for everything), per role as KurrentDB's ``EffectiveAcl`` does. A system stream
is one whose name starts with ``$``; ``$all`` is one (so reading ``$all`` is for
``$admins`` unless ``$$$all``'s ``$acl`` says otherwise).

Checks (:func:`check`, :func:`permitted`), in KurrentDB's order:

* without users (``user`` None) everything is allowed;
* ``$all`` can be neither written nor deleted, by anyone;
* an operation on a metadata stream ``$$S`` is the metadata operation on ``S``: reading
  it is ``$mr``, writing it ``$mw``, deleting it is refused to everyone;
* a member of ``$admins`` may do everything else;
* otherwise the user may if one of the roles the ACL gives for the operation is ``$all``,
  its name or one of its groups.

KurrentDB's persistent subscription operations are checked by :func:`check_operations`:
creating, updating, deleting a group, replaying parked events and restarting the
subsystem are for ``$admins`` and ``$ops``; reading a group needs the read right of its
stream (``$all`` for a group on ``$all``).

A refusal is KurrentDB's access denied (:func:`exesdb.grpc.convert.access_denied`).
Settings or an ``$acl`` that do not read (not an object, a role that is not a string or a
list of strings) count as absent, as bad metadata never makes a stream unusable.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal, TypeAlias

import attrs

from .. import gateway
from ..constants import END
from ..errors import StreamDeleted
from . import metadata
from .convert import access_denied
from .rpc import User

__all__ = [
    "ADMINS",
    "ALL_ROLE",
    "DEFAULT_SYSTEM_STREAM_ACL",
    "DEFAULT_USER_STREAM_ACL",
    "OPS",
    "SETTINGS_STREAM",
    "Action",
    "StreamAcl",
    "SystemSettings",
    "allowed",
    "check",
    "check_operations",
    "fetch_settings",
    "is_operator",
    "permitted",
]

Action: TypeAlias = Literal["read", "write", "delete", "metadata_read", "metadata_write"]
"""What a call does to a stream."""

ADMINS: Final = "$admins"
"""The group that may do everything."""
OPS: Final = "$ops"
"""The group that may also run KurrentDB's operations (persistent subscription admin)."""
ALL_ROLE: Final = "$all"
"""The role every user has."""
SETTINGS_STREAM: Final = "$settings"
"""The system stream whose last event holds the store's default ACLs."""

_KEYS: Final[dict[str, Action]] = {"$r": "read", "$w": "write", "$d": "delete",
                                   "$mr": "metadata_read", "$mw": "metadata_write"}


def _roles(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(role, str) for role in value):
        return tuple(value)
    raise ValueError(f"a role must be a string or a list of strings, got {value!r}")


@attrs.frozen
class StreamAcl:
    """The roles allowed each action; None where the ACL says nothing (the role then comes
    from the settings or the defaults)."""

    read: tuple[str, ...] | None = None
    write: tuple[str, ...] | None = None
    delete: tuple[str, ...] | None = None
    metadata_read: tuple[str, ...] | None = None
    metadata_write: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, value: Any) -> StreamAcl | None:
        """The ACL a decoded ``$acl`` value states, None when it does not read (not an
        object, or a role that is neither a string nor a list of strings); unknown keys
        are ignored, as KurrentDB ignores them."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(**{_KEYS[key]: _roles(roles) for key, roles in value.items()
                          if key in _KEYS})
        except ValueError:
            return None

    def roles(self, action: Action) -> tuple[str, ...] | None:
        """The roles this ACL gives for ``action`` (None: it says nothing)."""
        roles: tuple[str, ...] | None = getattr(self, action)
        return roles


DEFAULT_USER_STREAM_ACL: Final = StreamAcl(*((ALL_ROLE,),) * 5)
"""KurrentDB's built-in ACL of user streams: every action for every user."""
DEFAULT_SYSTEM_STREAM_ACL: Final = StreamAcl(*((ADMINS,),) * 5)
"""KurrentDB's built-in ACL of system (``$``) streams: every action for ``$admins``."""


@attrs.frozen
class SystemSettings:
    """The store's default ACLs (``$settings``): of user streams and of system streams;
    None where not set."""

    user_stream_acl: StreamAcl | None = None
    system_stream_acl: StreamAcl | None = None

    @classmethod
    def parse(cls, data: Any) -> SystemSettings:
        """The settings the data of a ``$settings`` event states (JSON bytes or a decoded
        value); anything that does not read counts as absent."""
        value = data
        if isinstance(data, bytes | bytearray):
            try:
                value = json.loads(data)
            except (ValueError, RecursionError):
                return cls()
        if not isinstance(value, dict):
            return cls()
        return cls(StreamAcl.parse(value.get("$userStreamAcl")),
                   StreamAcl.parse(value.get("$systemStreamAcl")))


def is_operator(user: User | None) -> bool:
    """True without users, or for a member of ``$admins`` or ``$ops``."""
    return user is None or ADMINS in user.groups or OPS in user.groups


def permitted(user: User | None, stream_id: str, action: Action, stream_acl: StreamAcl | None,
              settings: SystemSettings) -> bool:
    """Whether ``user`` may do ``action`` on ``stream_id`` (a metadata stream already
    mapped to its stream by the caller) given the stream's ACL and the store's settings:
    the pure part of :func:`check`."""
    if user is None or ADMINS in user.groups:
        return True
    system = stream_id.startswith("$")
    default = DEFAULT_SYSTEM_STREAM_ACL if system else DEFAULT_USER_STREAM_ACL
    configured = settings.system_stream_acl if system else settings.user_stream_acl
    roles: tuple[str, ...] = ()
    for acl in (stream_acl, configured, default):
        found = acl.roles(action) if acl is not None else None
        if found is not None:
            roles = found
            break
    return ALL_ROLE in roles or user.name in roles or any(r in user.groups for r in roles)


def _target(stream_id: str, action: Action) -> tuple[str, Action] | None:
    """The stream and action KurrentDB checks for ``action`` on ``stream_id``; None for
    what nobody may do (writing or deleting ``$all``, deleting a metadata stream)."""
    if stream_id == "$all" and action in ("write", "delete"):
        return None
    if metadata.is_metadata_stream(stream_id):
        if action not in ("read", "write"):
            return None
        return stream_id[2:], "metadata_read" if action == "read" else "metadata_write"
    return stream_id, action


async def fetch_settings(store_id: str) -> SystemSettings:
    """The store's ``$settings`` (none when the stream is empty or deleted)."""
    try:
        last = await gateway.get_events(store_id, SETTINGS_STREAM, END, 1, "backward")
    except StreamDeleted:
        return SystemSettings()
    return SystemSettings.parse(last[0].data) if last else SystemSettings()


async def allowed(store_id: str, user: User | None, stream_id: str, action: Action) -> bool:
    """Whether ``user`` may do ``action`` on ``stream_id`` (``"$all"`` for ``$all``) of
    store ``store_id`` (see the module docstring). Reads the stream's metadata and
    ``$settings`` only for a user who is not an admin; raises what
    :func:`exesdb.gateway.get_events` raises for an unavailable store."""
    if user is None:
        return True
    target = _target(stream_id, action)
    if target is None:
        return False
    if ADMINS in user.groups:
        return True
    stream, checked = target
    meta = await metadata.fetch(store_id, stream)
    return permitted(user, stream, checked, StreamAcl.parse(meta.acl),
                     await fetch_settings(store_id))


async def check(store_id: str, user: User | None, stream_id: str, action: Action) -> None:
    """Raise KurrentDB's access denied unless :func:`allowed`."""
    if not await allowed(store_id, user, stream_id, action):
        raise access_denied()


def check_operations(user: User | None) -> None:
    """Raise KurrentDB's access denied unless ``user`` may run KurrentDB's operations on
    persistent subscriptions (create, update, delete, replay parked events, restart the
    subsystem): without users, or as a member of ``$admins`` or ``$ops``."""
    if not is_operator(user):
        raise access_denied()
