"""GrpcGateway: the store process that serves the store over KurrentDB's gRPC protocol.

With ``opts.grpc_port`` set, a store's GatewaySystem runs a :class:`GrpcSystem`
(rest_for_one): the persistent subscription groups
(:class:`exesdb.grpc.groups.manager.PersistentGroups`), then :class:`GrpcGateway`, which

* loads the users file (``users_file``), if any, and checks the TLS files;
* builds the services: Streams (:mod:`exesdb.grpc.streams_service`) and persistent
  subscriptions (:mod:`exesdb.grpc.persistent_service`), each method behind the store's
  authorisation check (:func:`authorised`: a user not allowed on the store gets
  KurrentDB's access denied, :func:`exesdb.grpc.convert.access_denied`), plus Gossip and
  ServerFeatures
  (:mod:`exesdb.grpc.gossip_service`);
* keeps the store's :class:`~exesdb.systems.commits.CommitSignal` up to date from the
  store's commit notifications (topic ``"$commits"`` of its system pub/sub);
* runs :func:`exesdb.grpc.server.serve` in a linked process of its own, counting its calls
  and connections in the store's :func:`~exesdb.grpc.stats.grpc_counters`, and waits until it
  listens: a port that cannot be bound (in use, not permitted) fails the store's start
  with :class:`GrpcListenError` naming the address, instead of a restart loop;
* then logs, on logger ``exesdb.grpc`` at INFO, exactly
  ``exesdb.grpc: store <ID> listening on <HOST>:<PORT>`` (`` (tls)`` added with TLS) and
  publishes the bound address for :func:`address`.

When it stops, the server closes every connection (calls in flight end UNAVAILABLE).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import attrs
import trio

import otp
from otp import registry, supervisor
from otp.supervisor import ChildSpec

from ..errors import GrpcListenError, InvalidArgument, StoreUnavailable, TlsConfigError
from ..naming import REGISTRY
from ..options import StoreOptions, check_grpc_files
from ..systems.cluster import advertise_port
from ..systems.commits import commit_signal
from ..systems.processes import StoreServer, StoreSupervisor
from . import gossip_service
from .auth import Users, load_users, may_use
from .cluster import gossip_members, leader_routed
from .convert import access_denied
from .groups.manager import PersistentGroups
from .persistent_service import service as persistent_subscriptions
from .rpc import Call, Method, Service, User
from .server import ServerConfig, TlsFiles, parse_limits, serve
from .stats import grpc_counters
from .streams_service import service as streams

__all__ = ["GrpcGateway", "GrpcListenError", "GrpcSystem", "address", "authorised", "frontend"]

log: Final = logging.getLogger("exesdb.grpc")


def authorised(service: Service, store_id: str) -> Service:
    """``service`` with every handler behind the check that the call's user may use
    ``store_id`` (:func:`exesdb.grpc.auth.may_use`); others end with KurrentDB's access
    denied (``PERMISSION_DENIED`` with ``exception: access-denied``)."""

    def guard(method: Method) -> Method:
        inner = method.handler

        def handler(call: Call) -> Awaitable[None]:  # no coroutine of its own per call
            if not may_use(call.user, store_id):
                raise access_denied()
            return inner(call)

        return attrs.evolve(method, handler=handler)

    return {path: guard(method) for path, method in service.items()}


def address(store_id: str) -> tuple[str, int]:
    """The ``(host, port)`` the store's gRPC gateway listens on.

    Raises :class:`exesdb.StoreUnavailable` if the store runs no listener (not started,
    ``grpc_port`` None, or restarting).
    """
    entries = registry.lookup(REGISTRY, (store_id, GrpcGateway)) if otp.whereis(
        REGISTRY) is not None else []
    if entries and isinstance(entries[0][1], tuple):
        host, port = entries[0][1]
        return str(host), int(port)
    raise StoreUnavailable(store_id, "its gRPC gateway is not listening")


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _flatten(sub)]
    return [exc]


async def _serve_process(services: Mapping[str, Method], config: ServerConfig,
                         ready: trio.MemorySendChannel[Any]) -> None:
    """The process that runs the server: sends the bound address (or the error that
    kept it from binding) on ``ready``, then serves until it is stopped."""
    async with trio.open_nursery() as nursery:
        try:
            bound = await nursery.start(serve, services, config)
        except Exception as exc:  # reported to the starting process, which fails
            ready.send_nowait(exc)
            return
        ready.send_nowait(bound)


def _log_authentication(opts: StoreOptions, users: Users | None) -> None:
    """Say whether the store's calls need credentials; warn when they do but the listener
    is plain text, where the clients never send them (so every call that needs them is
    refused), unless ``insecure`` says that is intended."""
    if users is None:
        log.info("exesdb.grpc: store %s: authentication off (no users file): every client "
                 "may use the store", opts.store_id)
        return
    log.info("exesdb.grpc: store %s: authentication on: %d users from %s", opts.store_id,
             len(users), opts.users_file)
    if not opts.tls and not opts.insecure:
        log.warning("exesdb.grpc: store %s: a users file on a plain-text port: clients send "
                    "credentials over TLS only, so every call that needs them will be "
                    "refused; give --tls-cert and --tls-key, or --insecure if that is "
                    "intended", opts.store_id)


class GrpcGateway(StoreServer):
    """The store's gRPC listener (see the module docstring)."""

    async def init(self, opts: StoreOptions) -> None:
        await super().init(opts)
        assert opts.grpc_port is not None, "GrpcGateway needs opts.grpc_port"
        otp.trap_exits(True)  # so that a shutdown runs terminate (stops the server first)
        self.serving: otp.Pid | None = None
        self.commits = commit_signal(opts.store_id)
        await trio.to_thread.run_sync(check_grpc_files, opts)
        users = await trio.to_thread.run_sync(load_users, opts.users_file) \
            if opts.users_file is not None else None
        self.bound: tuple[str, int] = (opts.grpc_host, opts.grpc_port)
        services = self._services(opts)
        config = self._config(opts, users.authenticate if users is not None else None)
        send, receive = trio.open_memory_channel[Any](1)
        self.serving = otp.spawn_link(_serve_process, services, config, send)
        result = await receive.receive()
        where = f"{opts.grpc_host}:{opts.grpc_port}"
        if isinstance(result, BaseException):
            errors = _flatten(result)
            reasons = "; ".join(str(e) or type(e).__name__ for e in errors)
            if any(isinstance(e, TlsConfigError) for e in errors):
                raise GrpcListenError(f"tls_cert_file: store {opts.store_id} cannot serve TLS "
                                      f"on {where}: {reasons}")
            raise GrpcListenError(
                f"grpc_port: store {opts.store_id} cannot listen on {where}: {reasons}")
        host, port = result[0], int(result[1])
        self.bound = (str(host), port)
        registry.update_value(REGISTRY, (opts.store_id, GrpcGateway), lambda _: self.bound)
        if opts.db_type == "cluster":
            advertise_port(opts.store_id, port)  # what gossip tells the other nodes' clients
        log.info("exesdb.grpc: store %s listening on %s:%d%s", opts.store_id, host, port,
                 " (tls)" if opts.tls else "")
        _log_authentication(opts, users)

    def _services(self, opts: StoreOptions) -> dict[str, Method]:
        services: dict[str, Method] = {}
        # In cluster mode, calls that need the leader are sent to it (exesdb.grpc.cluster).
        services.update(leader_routed(authorised(streams(opts.store_id, self.commits),
                                                 opts.store_id), opts))
        services.update(leader_routed(authorised(persistent_subscriptions(opts.store_id),
                                                 opts.store_id), opts))
        instance = uuid.uuid4()
        services.update(gossip_service.gossip(
            lambda: self.bound, instance,
            lambda: gossip_members(opts.store_id, instance,
                                   (opts.advertised_host, self.bound[1]), opts.timeout_s)))
        services.update(gossip_service.server_features(services))
        return services

    @staticmethod
    def _config(opts: StoreOptions,
                authenticator: Callable[[str, str], User | None] | None) -> ServerConfig:
        tls = (TlsFiles(opts.tls_cert_file, opts.tls_key_file)
               if opts.tls_cert_file is not None and opts.tls_key_file is not None else None)
        assert opts.grpc_port is not None
        try:
            limits = parse_limits(opts.grpc_limits or "")
        except ValueError as exc:
            raise InvalidArgument(f"grpc_limits: {exc}") from None
        return ServerConfig(host=opts.grpc_host, port=opts.grpc_port, tls=tls,
                            authenticator=authenticator,
                            counters=grpc_counters(opts.store_id), **limits)

    async def handle_info(self, msg: Any) -> Any:
        if type(msg) is otp.Exit and msg.pid == self.serving:
            self.serving = None
            return otp.Stop(msg.reason)  # the server ended: start again
        return await super().handle_info(msg)

    async def terminate(self, reason: Any) -> None:
        pid, self.serving = self.serving, None
        if pid is None or not otp.is_alive(pid):
            return
        ref = otp.monitor(pid)
        otp.exit(pid, otp.SHUTDOWN)
        grace = self.child_shutdown if isinstance(self.child_shutdown, float) else 10.0
        try:
            await otp.receive(timeout=grace, match=lambda m: type(m) is otp.Down and m.ref == ref)
        except otp.ReceiveTimeout:
            otp.exit(pid, otp.KILL)


class GrpcSystem(StoreSupervisor):
    """rest_for_one, 5 restarts in 30 s: the persistent subscription groups, then the
    :class:`GrpcGateway` (a restart of the groups restarts the listener, whose
    subscriptions used them; a restart of the listener alone leaves the groups)."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        return supervisor.Spec(
            [PersistentGroups.child_spec(opts), GrpcGateway.child_spec(opts)],
            strategy="rest_for_one", intensity=5, period=30,
        )


def frontend(opts: StoreOptions) -> ChildSpec | None:
    """The store's gRPC gateway as a front end of its GatewaySystem
    (:data:`exesdb.systems.Frontend`): a :class:`GrpcSystem` when ``grpc_port`` is set."""
    return GrpcSystem.child_spec(opts) if opts.grpc_port is not None else None
