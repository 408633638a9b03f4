"""Helpers for otp's own package layout (nothing here is about processes)."""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

__all__ = ["fixup_module_metadata"]


def _is_private(module_name: str) -> bool:
    """True for a module of otp that is not public: one of its components starts with _."""
    parts = module_name.split(".")
    return parts[0] == "otp" and any(part.startswith("_") for part in parts)


def fixup_module_metadata(module_name: str, namespace: Mapping[str, Any]) -> None:
    """Make the classes and functions a module exports report it as their module.

    ``namespace`` is the module's namespace; what it exports is what its ``__all__`` lists.

    As trio's ``_util.fixup_module_metadata``: what a public module re-exports from a
    private one (``otp._errors.NoProc`` as ``otp.NoProc``) gets that public module as its
    ``__module__``, so reprs, tracebacks, pickles and docs name it where users find it.
    The name it is exported under becomes its ``__name__``/``__qualname__``, and the
    classes and functions nested in an exported class are fixed the same way (with
    ``Outer.inner`` as their qualified name).

    Only objects of otp's private modules are changed (one defined in a public module
    already reports a public one), and each only once: call it for the most public module
    first (``otp``), then for the submodules, and an object they share keeps ``otp``.
    """
    seen: set[int] = set()

    def fix_one(qualname: str, name: str, obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if not isinstance(obj, type | types.FunctionType):
            return
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str) or not _is_private(module):
            return
        obj.__module__ = module_name
        obj.__name__ = name
        obj.__qualname__ = qualname
        if isinstance(obj, type):
            for attr_name, attr_value in vars(obj).items():
                fix_one(f"{qualname}.{attr_name}", attr_name, attr_value)

    for name in namespace["__all__"]:
        fix_one(name, name, namespace[name])
