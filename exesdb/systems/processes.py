"""The two kinds of process in a store's tree, with the seed's ``start_link(opts)`` /
``child_spec(opts)`` pair: every one is registered under its store-specific name.

A :class:`StoreServer` is a gen_server and a :class:`StoreSupervisor` a supervisor of one
store; both register as ``genserver_name(cls, opts.store_id)`` and use
``child_spec_id(cls, opts.store_id)`` as their child id, so several stores' trees share a
node without sharing a name.
"""

from __future__ import annotations

from typing import Any, ClassVar

import otp
from otp import gen_server, supervisor
from otp.supervisor import ChildSpec

from ..naming import child_spec_id, genserver_name
from ..options import StoreOptions

__all__ = ["StoreServer", "StoreSupervisor"]


class StoreServer(otp.GenServer):
    """A worker of one store: ``await Cls.start_link(opts)`` or ``Cls.child_spec(opts)``.

    ``init(self, opts)`` receives the store's :class:`StoreOptions`.
    """

    child_shutdown: ClassVar[float | str] = 10.0
    """How long the supervisor waits for it on shutdown (ExESDB's 10_000 ms): the
    ``shutdown`` :meth:`child_spec` gives by default, as for any :class:`otp.GenServer`."""

    @classmethod
    async def start_link(cls, opts: StoreOptions) -> otp.Pid:
        """Start this process for ``opts.store_id`` under its store-specific name."""
        pid = await gen_server.start_link(cls, opts, name=genserver_name(cls, opts.store_id))
        assert pid is not None
        return pid

    @classmethod
    def child_spec(cls, opts: StoreOptions, **overrides: Any) -> ChildSpec:  # type: ignore[override]
        """The child spec that starts this process with :meth:`start_link` (``shutdown``
        :attr:`child_shutdown` unless ``overrides`` say otherwise)."""
        overrides.setdefault("shutdown", cls.child_shutdown)
        return _store_child_spec(cls, opts, overrides)

    async def init(self, opts: StoreOptions) -> Any:
        """Keep the options; subclasses extend this."""
        self.opts = opts
        self.store_id = opts.store_id
        return None


class StoreSupervisor(otp.Supervisor):
    """A supervisor of one store: ``init(self, opts)`` returns its :class:`Spec`."""

    @classmethod
    async def start_link(cls, opts: StoreOptions) -> otp.Pid:
        """Start this supervisor for ``opts.store_id`` under its store-specific name."""
        pid = await supervisor.start_link(cls, opts, name=genserver_name(cls, opts.store_id))
        assert pid is not None
        return pid

    @classmethod
    def child_spec(cls, opts: StoreOptions, **overrides: Any) -> ChildSpec:  # type: ignore[override]
        """The child spec (type ``"supervisor"``) that starts it with :meth:`start_link`."""
        overrides.setdefault("type", "supervisor")
        return _store_child_spec(cls, opts, overrides)

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        """Return the children and flags for ``opts.store_id``."""
        raise TypeError(f"{type(self).__qualname__} must define init(opts)")


def _store_child_spec(
    cls: type[StoreServer] | type[StoreSupervisor], opts: StoreOptions,
    overrides: dict[str, Any],
) -> ChildSpec:
    """The spec that starts ``cls`` for ``opts.store_id`` under its store-specific id."""

    async def start(*_extra: Any) -> otp.Pid:
        return await cls.start_link(opts)

    return ChildSpec(id=child_spec_id(cls, opts.store_id), start=start, **overrides)
