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
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from .errors import InvalidArgument
from .validation import check_store_id

__all__ = ["DEFAULTS", "ENV_PREFIX", "StoreOptions", "check_grpc_files", "default_data_dir",
           "is_loopback", "resolve_options", "validate_store_id"]

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
    if value == "cluster":
        raise InvalidArgument(
            "db_type: 'cluster' needs the cluster subsystem, which this version does not "
            "have; use 'single'"
        )
    if value != "single":
        raise InvalidArgument(f"db_type: must be 'single' or 'cluster', got {value!r}")


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

    def __attrs_post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            missing, given = (("tls_key_file", "tls_cert_file") if self.tls_key_file is None
                              else ("tls_cert_file", "tls_key_file"))
            raise InvalidArgument(f"{missing}: required with {given} (TLS needs both "
                                  "tls_cert_file and tls_key_file, or neither)")
        if not is_loopback(self.grpc_host) and self.tls_cert_file is None and not self.insecure:
            raise InvalidArgument(
                f"grpc_host: listening on {self.grpc_host} needs TLS (tls_cert_file and "
                "tls_key_file) or insecure=True")

    @property
    def tls(self) -> bool:
        """True when the gRPC gateway serves TLS."""
        return self.tls_cert_file is not None

    @property
    def store_dir(self) -> Path:
        """The store's own folder: ``<data_dir>/<store_id>``."""
        return self.data_dir / self.store_id

    @property
    def timeout_s(self) -> float:
        """``timeout`` in seconds, for otp calls."""
        return self.timeout / 1000

    def as_dict(self) -> dict[str, Any]:
        """The options as plain values (paths as strings)."""
        out = attrs.asdict(self)
        out["data_dir"] = str(self.data_dir)
        out["store_tags"] = list(self.store_tags)
        return out


DEFAULTS: Final = {f.name for f in attrs.fields(StoreOptions)}
"""The option names."""

_INTS: Final = {"timeout", "writer_idle_ms", "reader_idle_ms", "persistence_interval",
                "gateway_pool_size", "grpc_port"}
_BOOLS: Final = {"durable", "insecure"}


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


def check_grpc_files(opts: StoreOptions) -> None:
    """Raise :class:`InvalidArgument` naming the option if ``tls_cert_file``,
    ``tls_key_file`` or ``users_file`` is given but is not a readable file.

    Blocking (it looks at the file system): call it in a thread or before trio runs.
    """
    for name in ("tls_cert_file", "tls_key_file", "users_file"):
        path = getattr(opts, name)
        if path is None:
            continue
        if not os.path.isfile(path):
            raise InvalidArgument(f"{name}: {path} does not exist or is not a file")
        if not os.access(path, os.R_OK):
            raise InvalidArgument(f"{name}: {path} is not readable")
