"""Store options: ExESDB's settings, from keyword arguments or ``EX_ESDB_<KEY>`` variables.

Names and units are ExESDB's: ``timeout``, ``writer_idle_ms``, ``reader_idle_ms`` and
``persistence_interval`` are milliseconds. Every option missing from the keyword
arguments is read from its environment variable (``EX_ESDB_STORE_ID``,
``EX_ESDB_DATA_DIR``, ...); anything invalid raises :class:`exesdb.InvalidArgument`
naming the option and the rule, before anything is created or written.

The gRPC gateway (:mod:`exesdb.grpc`) options: ``grpc_port`` (None: no listener, the
embedded default; 0: a free port), ``grpc_host`` (``127.0.0.1`` by default; an address
that is not loopback is refused unless ``tls_cert_file`` and ``tls_key_file`` are given or
``insecure`` is true), ``users_file`` (basic-credential users, see
:mod:`exesdb.grpc.auth`; without it every client may do everything). That the files exist
is checked by :func:`check_grpc_files` (blocking: run it in a thread or before trio).

Cluster mode (``db_type="cluster"``, see :mod:`exesdb.systems.cluster`): ``pg_dsn`` (the
PostgreSQL database every node of the store shares; required), ``node_name`` (this node's
name in the cluster, unique per store; default :func:`default_node_name`),
``advertise_host`` (the host gossip tells clients for this node; default the gRPC listen
host, or this machine's host name when that is a wildcard), ``leader_lease_ms`` (3000: a
leader that has not confirmed its lock for that long steps down, and the database ends
its session), ``election_interval_ms`` (500: how often the elector heartbeats and
followers try for the lock; at most half the lease), ``member_timeout_ms`` (5000: a
member whose heartbeat is older is not alive) and ``dead_member_removal_ms`` (1800000, 30
minutes as KurrentDB's ``DeadMemberRemovalPeriod``: a member dead or stopped that long is
removed from the cluster, more than ``member_timeout_ms``). ``pg_dsn`` may hold a
password: it is never shown (:func:`redact_dsn`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from .errors import InvalidArgument
from .validation import check_store_id

__all__ = ["DEFAULTS", "ENV_PREFIX", "FILE_OPTIONS", "StoreOptions", "check_files",
           "check_grpc_files", "check_listener", "default_data_dir", "default_node_name",
           "is_loopback", "redact_dsn", "resolve_options", "validate_store_id"]

ENV_PREFIX: Final = "EX_ESDB_"

def validate_store_id(store_id: object) -> str:
    """Return ``store_id`` if it is 1-64 ASCII letters, digits, ``_``, ``-`` and ``.``,
    not starting with ``.`` or ``-``; raise :class:`InvalidArgument` otherwise."""
    return check_store_id(store_id)


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/exesdb`` or ``~/.local/share/exesdb``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "exesdb"


def _ms(name: str) -> Any:
    def check(_: Any, attribute: Any, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidArgument(f"{name}: must be a whole number of milliseconds > 0, "
                                  f"got {value!r}")
    return check


def _check_db_type(_: Any, attribute: Any, value: Any) -> None:
    if value not in ("single", "cluster"):
        raise InvalidArgument(f"db_type: must be 'single' or 'cluster', got {value!r}")


def _check_optional_text(_: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{attribute.name}: must be a non-empty string, got "
                              f"{redact_dsn(value) if isinstance(value, str) else value!r}")
    if len(value) > 1024:
        raise InvalidArgument(f"{attribute.name}: must be at most 1024 characters, got "
                              f"{len(value)}")


def _check_node_name(_: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if (not isinstance(value, str) or not 1 <= len(value) <= 128
            or not value.isprintable() or value != value.strip()):
        raise InvalidArgument(f"node_name: must be 1 to 128 printable characters without "
                              f"surrounding spaces, got {value!r}")


_DSN_PASSWORD: Final = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URI_PASSWORD: Final = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@?#]*:)[^@/?#]*@", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """``dsn`` (a libpq URI or ``key=value`` string) with any password replaced by
    ``***``: what logs, errors and :func:`exesdb.gateway.list_stores` show."""
    dsn = _URI_PASSWORD.sub(r"\1***@", dsn)
    dsn = re.sub(r"([?&]password=)[^&#]*", r"\1***", dsn, flags=re.IGNORECASE)
    return _DSN_PASSWORD.sub(r"\1***", dsn) if "://" not in dsn else dsn


def _redacted(value: str | None) -> str:
    return "None" if value is None else repr(redact_dsn(value))


def default_node_name(grpc_port: int | None) -> str:
    """The node name used when ``node_name`` is not given: this machine's host name and
    the gRPC port (``"host:2113"``), or the process id when the port is not fixed
    (``None`` or 0)."""
    suffix = grpc_port if grpc_port else f"pid{os.getpid()}"
    return f"{socket.gethostname()}:{suffix}"


def _check_pool(_: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise InvalidArgument(f"gateway_pool_size: must be an int from 1 to 256, got {value!r}")


def _to_path(value: Any) -> Path:
    if isinstance(value, str | os.PathLike):
        return Path(value).expanduser()
    raise InvalidArgument(f"data_dir: must be a path, got {value!r}")


def _to_tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, list | tuple) and all(isinstance(t, str) for t in value):
        return tuple(value)
    raise InvalidArgument(f"store_tags: must be a list of strings, got {value!r}")


def _check_description(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"store_description: must be a string, got {value!r}")


def _check_bool(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{attribute.name}: must be true or false, got {value!r}")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_host(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"grpc_host: must be a host name or address, got {value!r}")


def _check_port(_: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise InvalidArgument(
            f"grpc_port: must be a port from 0 (a free one) to 65535, or None (no listener), "
            f"got {value!r}")


_LIMIT_ITEM: Final = re.compile(r"\s*[a-z_]+\s*=\s*[0-9.eE+]+\s*")


def _check_grpc_limits(_: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not all(
            _LIMIT_ITEM.fullmatch(item) for item in value.split(",") if item.strip()):
        raise InvalidArgument(f"grpc_limits: must be NAME=NUMBER pairs separated by commas "
                              f"(e.g. 'max_pings_per_window=50,idle_timeout=600'), got {value!r}")


def _check_file_option(_: Any, attribute: Any, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidArgument(f"{attribute.name}: must be a file path, got {value!r}")


def _to_file(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


@attrs.frozen
class StoreOptions:
    """The settings of one store. Build it with :func:`resolve_options`."""

    store_id: str = attrs.field(validator=lambda _, __, v: validate_store_id(v))
    data_dir: Path = attrs.field(factory=default_data_dir, converter=_to_path)
    timeout: int = attrs.field(default=10_000, validator=_ms("timeout"))
    db_type: Literal["single", "cluster"] = attrs.field(default="single",
                                                       validator=_check_db_type)
    writer_idle_ms: int = attrs.field(default=10_000, validator=_ms("writer_idle_ms"))
    reader_idle_ms: int = attrs.field(default=10_000, validator=_ms("reader_idle_ms"))
    persistence_interval: int = attrs.field(default=5_000, validator=_ms("persistence_interval"))
    gateway_pool_size: int = attrs.field(default=4, validator=_check_pool)
    store_description: str = attrs.field(default="", validator=_check_description)
    store_tags: tuple[str, ...] = attrs.field(default=(), converter=_to_tags)
    durable: bool = attrs.field(default=True, validator=_check_bool)
    """Acknowledge writes only once fsynced (the default); False trades that for speed."""
    verify: bool = attrs.field(default=False, validator=_check_bool)
    """Check the whole store (SQLite's integrity check and every record's checksum) before
    starting it, and refuse to start a damaged one (single mode; see
    :mod:`exesdb.storage.verify`)."""
    grpc_host: str = attrs.field(default="127.0.0.1", validator=_check_host)
    """The address the gRPC gateway listens on (loopback unless TLS or ``insecure``)."""
    grpc_port: int | None = attrs.field(default=None, validator=_check_port)
    """The gRPC gateway's port: None for no listener, 0 for a free port (picked again
    whenever the listener restarts; :func:`exesdb.grpc.address` tells the current one)."""
    tls_cert_file: str | None = attrs.field(default=None, converter=_to_file,
                                            validator=_check_file_option)
    """The PEM certificate (chain) the gateway serves TLS with; needs ``tls_key_file``."""
    tls_key_file: str | None = attrs.field(default=None, converter=_to_file,
                                           validator=_check_file_option)
    """The PEM private key of ``tls_cert_file``."""
    users_file: str | None = attrs.field(default=None, converter=_to_file,
                                         validator=_check_file_option)
    """The users file (:mod:`exesdb.grpc.auth`): every call then needs credentials."""
    insecure: bool = attrs.field(default=False, validator=_check_bool)
    """Allow a non-loopback ``grpc_host`` without TLS (plain text on the network)."""
    grpc_limits: str | None = attrs.field(default=None, validator=_check_grpc_limits)
    """The gRPC server's limits against hostile clients to change, ``"NAME=VALUE,..."``
    (names and defaults: :class:`exesdb.grpc.server.ServerConfig`, README "Limits
    against hostile clients"); checked in full when the listener starts."""
    pg_dsn: str | None = attrs.field(default=None, validator=_check_optional_text,
                                     repr=_redacted)
    """Cluster mode: the PostgreSQL database (libpq URI or ``key=value`` string)."""
    node_name: str | None = attrs.field(default=None, validator=_check_node_name)
    """Cluster mode: this node's name (see :attr:`cluster_node_name`)."""
    advertise_host: str | None = attrs.field(default=None, validator=_check_optional_text)
    """Cluster mode: the host gossip advertises (see :attr:`advertised_host`)."""
    leader_lease_ms: int = attrs.field(default=3_000, validator=_ms("leader_lease_ms"))
    """Cluster mode: the leader's lease."""
    election_interval_ms: int = attrs.field(default=500, validator=_ms("election_interval_ms"))
    """Cluster mode: between two heartbeats of the elector (and of the membership)."""
    member_timeout_ms: int = attrs.field(default=5_000, validator=_ms("member_timeout_ms"))
    """Cluster mode: a member whose last heartbeat is older is not alive."""
    dead_member_removal_ms: int = attrs.field(default=1_800_000,
                                              validator=_ms("dead_member_removal_ms"))
    """Cluster mode: a member whose last heartbeat is older is removed from the cluster."""

    def __attrs_post_init__(self) -> None:
        check_listener("grpc_host", self.grpc_host, self.tls_cert_file, self.tls_key_file,
                       self.insecure)
        if self.db_type == "cluster":
            if self.pg_dsn is None:
                raise InvalidArgument(
                    "pg_dsn: required with db_type='cluster' (the PostgreSQL database the "
                    f"nodes share; give pg_dsn= or set {ENV_PREFIX}PG_DSN)")
            if 2 * self.election_interval_ms > self.leader_lease_ms:
                raise InvalidArgument(
                    f"election_interval_ms: must be at most half of leader_lease_ms "
                    f"({self.leader_lease_ms}), got {self.election_interval_ms}")
            if self.member_timeout_ms <= self.election_interval_ms:
                raise InvalidArgument(
                    f"member_timeout_ms: must be more than election_interval_ms "
                    f"({self.election_interval_ms}), got {self.member_timeout_ms}")
            if self.dead_member_removal_ms <= self.member_timeout_ms:
                raise InvalidArgument(
                    f"dead_member_removal_ms: must be more than member_timeout_ms "
                    f"({self.member_timeout_ms}), got {self.dead_member_removal_ms}")

    @property
    def tls(self) -> bool:
        """True when the gRPC gateway serves TLS."""
        return self.tls_cert_file is not None

    @property
    def store_dir(self) -> Path:
        """The store's own folder: ``<data_dir>/<store_id>``."""
        return self.data_dir / self.store_id

    @property
    def cluster_node_name(self) -> str:
        """This node's name in the store's cluster: ``node_name``, or
        :func:`default_node_name`."""
        return self.node_name if self.node_name is not None else default_node_name(
            self.grpc_port)

    @property
    def advertised_host(self) -> str:
        """The host gossip advertises for this node: ``advertise_host``, else
        ``grpc_host``, or this machine's host name when ``grpc_host`` is a wildcard
        address (``0.0.0.0``, ``::``)."""
        if self.advertise_host is not None:
            return self.advertise_host.strip()
        if self.grpc_host.strip() in ("0.0.0.0", "::", "[::]", ""):
            return socket.gethostname()
        return self.grpc_host

    @property
    def timeout_s(self) -> float:
        """``timeout`` in seconds, for otp calls."""
        return self.timeout / 1000

    def as_dict(self) -> dict[str, Any]:
        """The options as plain values (paths as strings)."""
        out = attrs.asdict(self)
        out["data_dir"] = str(self.data_dir)
        out["store_tags"] = list(self.store_tags)
        if self.pg_dsn is not None:
            out["pg_dsn"] = redact_dsn(self.pg_dsn)
        return out


DEFAULTS: Final = {f.name for f in attrs.fields(StoreOptions)}
"""The option names."""

_INTS: Final = {"timeout", "writer_idle_ms", "reader_idle_ms", "persistence_interval",
                "gateway_pool_size", "grpc_port", "leader_lease_ms", "election_interval_ms",
                "member_timeout_ms", "dead_member_removal_ms"}
_BOOLS: Final = {"durable", "insecure", "verify"}


def _from_env(name: str, raw: str) -> Any:
    if name in _INTS:
        try:
            return int(raw)
        except ValueError:
            raise InvalidArgument(
                f"{name}: {ENV_PREFIX}{name.upper()} must be a whole number, got {raw!r}"
            ) from None
    if name in _BOOLS:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise InvalidArgument(
            f"{name}: {ENV_PREFIX}{name.upper()} must be true or false, got {raw!r}")
    return raw


def resolve_options(
    options: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> StoreOptions:
    """Build :class:`StoreOptions` from ``options`` and keywords, filling each missing one
    from ``EX_ESDB_<KEY>`` in ``environ`` (``os.environ`` by default).

    Raises :class:`InvalidArgument` for an unknown option, a missing store id, or any
    value that breaks its rule.
    """
    given = {**(options or {}), **kwargs}
    unknown = sorted(set(given) - DEFAULTS)
    if unknown:
        raise InvalidArgument(f"options: unknown option {unknown[0]!r}; known: "
                              f"{', '.join(sorted(DEFAULTS))}")
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    for name in DEFAULTS - set(values):
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _from_env(name, raw)
    if "store_id" not in values:
        raise InvalidArgument(
            f"store_id: required (give store_id= or set {ENV_PREFIX}STORE_ID)"
        )
    return StoreOptions(**values)


FILE_OPTIONS: Final = ("tls_cert_file", "tls_key_file", "users_file")
"""The options that name a file a listener reads (the gRPC and the HTTP listener's alike)."""


def check_grpc_files(opts: StoreOptions) -> None:
    """Raise :class:`InvalidArgument` naming the option if ``tls_cert_file``,
    ``tls_key_file`` or ``users_file`` is given but is not a readable file.

    Blocking (it looks at the file system): call it in a thread or before trio runs.
    """
    check_files(opts)


def check_listener(host_field: str, host: str, tls_cert_file: str | None,
                   tls_key_file: str | None, insecure: bool) -> None:
    """Raise :class:`InvalidArgument` naming the field when a listener's TLS options do
    not go together: a certificate needs its key and the other way round, and a host
    that is not a loopback address (option ``host_field``) needs TLS unless ``insecure``.
    """
    if (tls_cert_file is None) != (tls_key_file is None):
        missing, given = (("tls_key_file", "tls_cert_file") if tls_key_file is None
                          else ("tls_cert_file", "tls_key_file"))
        raise InvalidArgument(f"{missing}: required with {given} (TLS needs both "
                              "tls_cert_file and tls_key_file, or neither)")
    if not is_loopback(host) and tls_cert_file is None and not insecure:
        raise InvalidArgument(f"{host_field}: listening on {host} needs TLS (tls_cert_file "
                              "and tls_key_file) or insecure=True")


def check_files(opts: object) -> None:
    """Raise :class:`InvalidArgument` naming the option if one of :data:`FILE_OPTIONS`
    of ``opts`` (any options object with those attributes) is given but is not a readable
    file. Blocking, as :func:`check_grpc_files`."""
    for name in FILE_OPTIONS:
        path = getattr(opts, name)
        if path is None:
            continue
        if not os.path.isfile(path):
            raise InvalidArgument(f"{name}: {path} does not exist or is not a file")
        if not os.access(path, os.R_OK):
            raise InvalidArgument(f"{name}: {path} is not readable")
