"""The HTTP listener's options: one listener per node, serving every store of the node.

They mirror the gRPC gateway's (:mod:`exesdb.options`): ``http_host`` (``127.0.0.1`` by
default; an address that is not loopback is refused unless ``tls_cert_file`` and
``tls_key_file`` are given or ``insecure`` is true), ``http_port`` (:data:`DEFAULT_HTTP_PORT`,
2112; 0 for a free port), and the same TLS files and users file as the gRPC side
(``tls_cert_file``, ``tls_key_file``, ``users_file``, ``insecure``): with a users file every
request but the health checks needs HTTP Basic credentials of one of its users.

:func:`resolve_http_options` reads each option missing from its keywords from its
environment variable: ``EX_ESDB_HTTP_HOST``, ``EX_ESDB_HTTP_PORT``, and the gRPC side's
``EX_ESDB_TLS_CERT_FILE``, ``EX_ESDB_TLS_KEY_FILE``, ``EX_ESDB_USERS_FILE``,
``EX_ESDB_INSECURE``. Anything invalid raises :class:`exesdb.InvalidArgument` naming the
option and the rule, before anything starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ..errors import InvalidArgument
from ..options import ENV_PREFIX, check_files, check_listener

__all__ = ["DEFAULT_HTTP_PORT", "HttpOptions", "check_http_files", "resolve_http_options"]

DEFAULT_HTTP_PORT: Final = 2112
"""The port the HTTP listener takes by default (the console, ``/metrics``, health)."""


def _check_host(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"http_host: must be a host name or address, got {value!r}")


def _check_port(_: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise InvalidArgument(
            f"http_port: must be a port from 0 (a free one) to 65535, got {value!r}")


def _check_file(_: Any, attribute: Any, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidArgument(f"{attribute.name}: must be a file path, got {value!r}")


def _check_bool(_: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{attribute.name}: must be true or false, got {value!r}")


def _to_file(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


@attrs.frozen
class HttpOptions:
    """The settings of a node's HTTP listener. Build it with :func:`resolve_http_options`."""

    http_host: str = attrs.field(default="127.0.0.1", validator=_check_host)
    """The address to listen on (loopback unless TLS or ``insecure``)."""
    http_port: int = attrs.field(default=DEFAULT_HTTP_PORT, validator=_check_port)
    """The port; 0 for a free one (:func:`exesdb.http.url` tells which)."""
    tls_cert_file: str | None = attrs.field(default=None, converter=_to_file,
                                            validator=_check_file)
    """The PEM certificate (chain) to serve HTTPS with; needs ``tls_key_file``."""
    tls_key_file: str | None = attrs.field(default=None, converter=_to_file,
                                           validator=_check_file)
    """The PEM private key of ``tls_cert_file``."""
    users_file: str | None = attrs.field(default=None, converter=_to_file,
                                         validator=_check_file)
    """The users file (:mod:`exesdb.grpc.auth`): every request but the health checks then
    needs HTTP Basic credentials."""
    insecure: bool = attrs.field(default=False, validator=_check_bool)
    """Allow a non-loopback ``http_host`` without TLS (plain text on the network)."""

    def __attrs_post_init__(self) -> None:
        check_listener("http_host", self.http_host, self.tls_cert_file, self.tls_key_file,
                       self.insecure)

    @property
    def tls(self) -> bool:
        """True when the listener serves HTTPS."""
        return self.tls_cert_file is not None


_NAMES: Final = tuple(f.name for f in attrs.fields(HttpOptions))


def _from_env(name: str, raw: str) -> Any:
    variable = f"{ENV_PREFIX}{name.upper()}"
    if name == "http_port":
        try:
            return int(raw)
        except ValueError:
            raise InvalidArgument(
                f"http_port: {variable} must be a whole number, got {raw!r}") from None
    if name == "insecure":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise InvalidArgument(f"insecure: {variable} must be true or false, got {raw!r}")
    return raw


def resolve_http_options(
    options: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> HttpOptions:
    """Build :class:`HttpOptions` from ``options`` and keywords, filling each missing one
    (or None) from ``EX_ESDB_<KEY>`` in ``environ`` (``os.environ`` by default).

    Raises :class:`InvalidArgument` for an unknown option or a value that breaks its rule.
    """
    given = {**(options or {}), **kwargs}
    unknown = sorted(set(given) - set(_NAMES))
    if unknown:
        raise InvalidArgument(f"options: unknown HTTP option {unknown[0]!r}; known: "
                              f"{', '.join(_NAMES)}")
    env = os.environ if environ is None else environ
    values = {k: v for k, v in given.items() if v is not None}
    for name in _NAMES:
        if name not in values:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw:
                values[name] = _from_env(name, raw)
    return HttpOptions(**values)


def check_http_files(opts: HttpOptions) -> None:
    """Raise :class:`InvalidArgument` naming the option if ``tls_cert_file``,
    ``tls_key_file`` or ``users_file`` is given but is not a readable file.

    Blocking (it looks at the file system): call it in a thread or before trio runs.
    """
    check_files(opts)
