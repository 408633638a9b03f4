"""Users of the gRPC gateway: the users file, password hashes, authentication and who may
use which store.

The users file (``users_file`` option, ``--users-file``) is a text file, one user a line::

    # name:password-hash:groups
    admin:scrypt$16384$8$1$<salt base64>$<hash base64>:$admins
    alice:scrypt$16384$8$1$<salt base64>$<hash base64>:orders,billing

* ``name``: 1-128 characters, none of them ``:``, ``,``, a space or a control character;
  each name once;
* the password hash: ``scrypt$N$r$p$salt$hash`` (:func:`hash_password`: :func:`hashlib.scrypt`
  with a random 16-byte salt, the parameters stored with the hash, salt and hash in
  standard base64); the password itself is never stored;
* ``groups``: comma-separated (may be empty), same characters as a name;
* blank lines and lines starting with ``#`` are ignored.

``python -m exesdb user add|remove|list --users-file FILE`` manages it (:func:`add_user`,
:func:`remove_user`); :func:`load_users` reads it and raises
:class:`exesdb.InvalidArgument` naming the file, the line and the rule broken.

Authorisation (:func:`may_use`): a user may use a store if it is in the group ``$admins``
(every store) or in the group named after the store id (that store only), so a client of
one store cannot read or write another store unless a group allows it. Gossip and server
features answer every user, and a call without credentials too (they tell nothing of a
store's data; KurrentDB's clients ask for them before they log in). Within a store, stream
ACLs decide (:mod:`exesdb.grpc.acl`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final

import attrs

from ..errors import InvalidArgument
from .rpc import User

__all__ = [
    "ADMINS",
    "UserEntry",
    "Users",
    "add_user",
    "hash_password",
    "load_users",
    "may_use",
    "parse_users",
    "remove_user",
    "render_users",
    "user_groups",
    "verify_password",
]

ADMINS: Final = "$admins"
"""The group whose members may use every store."""

SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_SALT_BYTES: Final = 16
_KEY_BYTES: Final = 32
_MAX_N: Final = 2**20  # refuse hashes whose parameters would take too long or too much memory
_MAXMEM: Final = 256 * 1024 * 1024
_NAME_MAX: Final = 128


def _check_name(kind: str, value: str) -> str | None:
    """Why ``value`` is not a valid user or group name, or None."""
    if not value:
        return f"{kind} must not be empty"
    if len(value) > _NAME_MAX:
        return f"{kind} must be at most {_NAME_MAX} characters, got {len(value)}"
    bad = [c for c in value if c in ":," or c.isspace() or not c.isprintable()]
    if bad:
        return f"{kind} {value!r} must not contain {bad[0]!r} (':', ',', spaces, control)"
    return None


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R,
                  p: int = SCRYPT_P) -> str:
    """The stored form of ``password``: ``scrypt$N$r$p$salt$hash`` with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM,
                         dklen=_KEY_BYTES)
    return "$".join(["scrypt", str(n), str(r), str(p), base64.b64encode(salt).decode(),
                     base64.b64encode(key).decode()])


@attrs.frozen
class _Hash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes


def _parse_hash(text: str) -> _Hash | str:
    """The parts of a stored hash, or why it is not one."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return "the password hash must be scrypt$N$r$p$salt$hash"
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    except ValueError:
        return "the scrypt parameters N, r and p must be whole numbers"
    if not (1 < n <= _MAX_N and n & (n - 1) == 0) or not 1 <= r <= 64 or not 1 <= p <= 16:
        return (f"the scrypt parameters must be N a power of 2 up to {_MAX_N}, r 1-64, "
                f"p 1-16, got N={n} r={r} p={p}")
    if 128 * n * r > _MAXMEM // 2:
        return (f"the scrypt parameters N={n} r={r} need more than "
                f"{_MAXMEM // 2 // 2**20} MiB (128 * N * r bytes)")
    try:
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (binascii.Error, ValueError):
        return "the salt and hash must be base64"
    if not salt or len(key) < 16:
        return "the salt must not be empty and the hash must be at least 16 bytes"
    return _Hash(n, r, p, salt, key)


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches the stored hash (constant-time comparison); False
    for a wrong password or a malformed hash."""
    parsed = _parse_hash(stored)
    if isinstance(parsed, str):
        return False
    key = hashlib.scrypt(password.encode(), salt=parsed.salt, n=parsed.n, r=parsed.r,
                         p=parsed.p, maxmem=_MAXMEM, dklen=len(parsed.key))
    return hmac.compare_digest(key, parsed.key)


@attrs.frozen
class UserEntry:
    """One line of a users file: the name, the stored password hash and the groups."""

    name: str
    password_hash: str
    groups: tuple[str, ...] = ()


def may_use(user: User | None, store_id: str) -> bool:
    """Whether ``user`` may use store ``store_id``: always without users (None: the server
    has no users file), else for members of ``$admins`` or of the group ``store_id``."""
    return user is None or ADMINS in user.groups or store_id in user.groups


class Users:
    """The users of a users file; :meth:`authenticate` checks a name and password.

    It keeps no state but the entries, so it is safe to call from several threads (the
    server calls it from worker threads and remembers successful checks itself).
    """

    def __init__(self, entries: Iterable[UserEntry]) -> None:
        self.entries: dict[str, UserEntry] = {e.name: e for e in entries}
        self._dummy = hash_password(secrets.token_hex(8))

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Users({sorted(self.entries)!r})"

    def authenticate(self, name: str, password: str) -> User | None:
        """The user ``name`` if ``password`` is its password, else None (an unknown name
        costs the same as a wrong password). Blocking (scrypt, tens of milliseconds):
        call it from a thread."""
        entry = self.entries.get(name)
        if entry is None:
            verify_password(password, self._dummy)
            return None
        if not verify_password(password, entry.password_hash):
            return None
        return User(entry.name, frozenset(entry.groups))


def parse_users(text: str, source: str = "users_file") -> list[UserEntry]:
    """The entries of a users file's text; :class:`InvalidArgument` naming ``source``, the
    line and the rule for the first malformed line."""
    entries: list[UserEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def fail(rule: str, number: int = number) -> InvalidArgument:
            return InvalidArgument(f"users_file: {source} line {number}: {rule}")

        parts = line.split(":")
        if len(parts) != 3:
            raise fail("a user is name:password-hash:groups (3 fields separated by ':'), "
                       f"got {len(parts)} field{'s' if len(parts) != 1 else ''}")
        name, stored, groups_text = parts
        problem = _check_name("the user name", name)
        if problem:
            raise fail(problem)
        if name in seen:
            raise fail(f"the user {name!r} is already on line {seen[name]}")
        parsed = _parse_hash(stored)
        if isinstance(parsed, str):
            raise fail(parsed)
        groups = tuple(g for g in groups_text.split(",") if g) if groups_text else ()
        for group in groups:
            problem = _check_name("a group", group)
            if problem:
                raise fail(problem)
        seen[name] = number
        entries.append(UserEntry(name, stored, groups))
    return entries


def render_users(entries: Iterable[UserEntry]) -> str:
    """The text of a users file holding ``entries`` (what :func:`parse_users` reads)."""
    lines = ["# exesdb users: name:password-hash:groups (see exesdb.grpc.auth)"]
    lines += [f"{e.name}:{e.password_hash}:{','.join(e.groups)}" for e in entries]
    return "\n".join(lines) + "\n"


def load_users(path: str | os.PathLike[str]) -> Users:
    """Read the users file at ``path`` (blocking: call it in a thread from trio).

    Raises :class:`InvalidArgument` (``users_file: ...``) if it cannot be read or a line
    is malformed.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"users_file: cannot read {os.fspath(path)}: {exc}") from None
    return Users(parse_users(text, os.fspath(path)))


def _read_entries(path: Path) -> list[UserEntry]:
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"users_file: cannot read {path}: {exc}") from None
    return parse_users(text, str(path))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (made beside the file, mode 0600), so
    concurrent ``user add`` / ``user remove`` runs change the file one at a time."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise InvalidArgument(f"users_file: cannot write beside {path}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_entries(path: Path, entries: Iterable[UserEntry]) -> None:
    """Replace the file atomically (a crash leaves the old or the new file), mode 0600."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise InvalidArgument(f"users_file: cannot write {path}: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(render_users(entries))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_user(path: str | os.PathLike[str], name: str, password: str,
             groups: Iterable[str] | None = None) -> tuple[bool, tuple[str, ...]]:
    """Add user ``name`` to the users file (created if missing), or replace its password;
    return whether it was new and the groups it has now.

    ``groups`` None keeps an existing user's groups (a new user gets none); any other
    value replaces them, so a password change never takes away a user's stores.
    :class:`InvalidArgument` for a bad name, group or empty password."""
    problem = _check_name("the user name", name)
    if problem:
        raise InvalidArgument(f"name: {problem}")
    group_list = tuple(dict.fromkeys(groups)) if groups is not None else None
    for group in group_list or ():
        problem = _check_name("a group", group)
        if problem:
            raise InvalidArgument(f"group: {problem}")
    if not password:
        raise InvalidArgument("password: must not be empty")
    target = Path(path)
    password_hash = hash_password(password)
    with _locked(target):
        entries = _read_entries(target)
        old = next((e for e in entries if e.name == name), None)
        kept = group_list if group_list is not None else (old.groups if old else ())
        entry = UserEntry(name, password_hash, kept)
        entries = [entry if e.name == name else e for e in entries] + (
            [entry] if old is None else [])
        _write_entries(target, entries)
    return old is None, kept


def remove_user(path: str | os.PathLike[str], name: str) -> None:
    """Remove user ``name`` from the users file; :class:`InvalidArgument` if it is not
    there."""
    target = Path(path)
    with _locked(target):
        entries = _read_entries(target)
        kept = [e for e in entries if e.name != name]
        if len(kept) == len(entries):
            raise InvalidArgument(f"name: no user {name!r} in {target}")
        _write_entries(target, kept)


def user_groups(users: Users) -> Mapping[str, tuple[str, ...]]:
    """Each user's groups, by name (for ``user list``)."""
    return {name: e.groups for name, e in sorted(users.entries.items())}
