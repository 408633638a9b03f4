"""Store-specific names, as ExESDB's ``StoreNaming``: one name per ``(store_id, module)``.

Every process of a store's tree registers through :func:`genserver_name`, a via name in
the node's exesdb registry keyed by ``(store_id, module)``, so any number of stores run
on one node and no process of one store can be reached under a name another store could
claim. With ``store_id=None`` the name falls back to the module's plain dotted name, so
code written for a single store keeps working (the seed's backward compatibility).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Hashable, Mapping
from typing import Any, Final

import otp
from otp import registry
from otp.registry import RegistryName

__all__ = [
    "REGISTRY",
    "child_label",
    "child_spec_id",
    "ensure_registry",
    "extract_store_id",
    "genserver_name",
    "module_name",
    "partition_name",
]

REGISTRY: Final = "exesdb.registry"
"""The local name of the node's unique registry that holds every store process's name."""


def module_name(module: type) -> str:
    """The dotted name of a process class: ``f"{cls.__module__}.{cls.__qualname__}"``."""
    return f"{module.__module__}.{module.__qualname__}"


def genserver_name(module: type, store_id: str | None) -> RegistryName | str:
    """The name of ``module``'s process in store ``store_id``.

    A via name keyed by ``(store_id, module)`` in :data:`REGISTRY`; for ``store_id=None``
    the plain local name :func:`module_name`. Names are cached: they are built on every
    call through the gateway.
    """
    name: RegistryName | str = _genserver_name(module, store_id)
    return name


@functools.lru_cache(maxsize=4096)
def _genserver_name(module: Any, store_id: Any) -> Any:
    if store_id is None:
        return module_name(module)
    return registry.via(REGISTRY, (store_id, module))


def partition_name(module: type, store_id: str | None, *key: Hashable) -> RegistryName | str:
    """The name of one of several processes of ``module`` in a store (a partition, a
    pool member, a per-stream worker): keyed by ``(store_id, module, *key)``."""
    name: RegistryName | str = _partition_name(module, store_id, *key)
    return name


@functools.lru_cache(maxsize=65536)
def _partition_name(module: Any, store_id: Any, *key: Any) -> Any:
    if store_id is None:
        return ".".join([module_name(module), *map(str, key)])
    return registry.via(REGISTRY, (store_id, module, *key))


def child_spec_id(module: type, store_id: str | None) -> Any:
    """The child id of ``module`` in store ``store_id`` (the plain module when None)."""
    return module if store_id is None else (module, store_id)


def child_label(child_id: Any) -> str:
    """A child id as text, as the logged tree and the web console show it:
    ``Module[store] extra`` for the store-specific ids of exesdb's trees (``(Module,
    store_id, ...)``, ``((Module, store_id), kind)``), a class's name, else ``str``."""
    if isinstance(child_id, tuple) and child_id:
        head, *rest = child_id
        if isinstance(head, tuple):
            return f"{child_label(head)} {' '.join(map(str, rest))}".strip()
        if isinstance(head, type) and rest:
            extra = f" {' '.join(map(str, rest[1:]))}" if len(rest) > 1 else ""
            return f"{head.__qualname__}[{rest[0]}]{extra}"
    return getattr(child_id, "__qualname__", None) or str(child_id)


def extract_store_id(opts: Mapping[str, Any] | Any) -> str | None:
    """The ``store_id`` of a mapping of options (or an options object), None when absent."""
    value = opts.get("store_id") if isinstance(opts, Mapping) else getattr(opts, "store_id", None)
    return value if isinstance(value, str) else None


async def ensure_registry() -> None:
    """Start :data:`REGISTRY` as a node service if it is not running.

    Started this way it belongs to no caller (an application may instead list
    ``otp.registry.child_spec(keys="unique", name=REGISTRY)`` in its tree).
    """
    if otp.whereis(REGISTRY) is None:
        with contextlib.suppress(otp.AlreadyStarted):
            await registry.start(keys="unique", name=REGISTRY)
