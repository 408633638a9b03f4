"""A store's persistent subscription groups as processes: :class:`PersistentGroups` (a
store supervisor, rest_for_one: a dynamic supervisor of the
:class:`~exesdb.grpc.groups.group.PersistentGroup` processes, then
:class:`GroupManager`).

The manager serialises creations, updates and deletions (the settings durably in
:data:`~exesdb.grpc.groups.config.CONFIG_STREAM` first) and, when it starts, starts a
process for every stored group, so groups survive a restart of the store or of the node.
Before each request it reads the settings again if that stream moved since it last read
or wrote it: in cluster mode the leader before this node's may have changed them, so a
group made there is served here after a failover, and this manager never writes back
settings that miss it. And when this node began a new term as leader since it started
the group processes, it starts them afresh: a process kept from an earlier term holds
what it knew then (events in flight, its ledger) while another leader acknowledged and
checkpointed past it, and would deliver those events again.
Settings that do not read never make it remove a group or its checkpoint (see
:class:`GroupManager`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final, assert_never

import attrs

import otp
from otp import dynamic_supervisor, gen_server, supervisor
from otp.supervisor import ChildSpec

from ... import gateway
from ...constants import END
from ...errors import ExESDBError, StreamDeleted, SubscriptionNotFound
from ...events import EventRecord, NewEvent
from ...naming import child_spec_id, partition_name
from ...options import StoreOptions
from ...systems.leadership import leadership
from ...systems.processes import StoreServer, StoreSupervisor
from ..convert import rpc_error, store_position
from ..rpc import RpcError
from .config import (
    ALL,
    CONFIG_EVENT_TYPE,
    CONFIG_STREAM,
    PREFIX,
    GroupConfig,
    GroupSettings,
    StartSpec,
    config_event_data,
    describe_raw,
    parked_stream,
    raw_name,
    read_config_event,
    same_start,
    subscription_name,
)
from .group import RETRY, SHUTDOWN, PersistentGroup, group_name
from .messages import (
    CALL_TIMEOUT,
    ApplySettings,
    CreateGroup,
    DeleteGroup,
    DescribeGroup,
    Drop,
    FindGroup,
    GetInfo,
    GroupInfo,
    GroupKey,
    GroupRequest,
    ListGroups,
    ManagerRequest,
    ReplayGroupParked,
    ReplayParked,
    RestartGroups,
    UpdateGroup,
    manager_name,
)
from .rpc_errors import exists, failed, not_found, unavailable

__all__ = ["GroupManager", "PersistentGroups"]

log: Final = logging.getLogger("exesdb.grpc.groups")

START_PAST_END: Final = ("Invalid Start From position: commit position must be less than or "
                         "equal to the last commit position in the transaction file.")
"""KurrentDB's reason for refusing a group on ``$all`` that starts past its end."""


def _groups_sup_name(store_id: str) -> Any:
    """The registered name of the dynamic supervisor of store ``store_id``'s groups."""
    return partition_name(PersistentGroups, store_id, "groups")


class GroupManager(StoreServer):
    """Keeps the store's groups: creates, updates and deletes them one at a time (the
    settings durably in :data:`CONFIG_STREAM` first), and starts a :class:`PersistentGroup`
    for each stored group when it starts. It is registered under
    :func:`~exesdb.grpc.groups.messages.manager_name` and serves
    :data:`~exesdb.grpc.groups.messages.ManagerRequest`; replies are values or
    :class:`RpcError` instances (an unknown request ends it with ``ValueError``).

    What it reads at start never removes anything it cannot account for: the settings are
    the last event of :data:`CONFIG_STREAM` that reads (events that do not, or groups in it
    that do not, are logged as errors and skipped; a group it skips is not started but its
    settings are written back with every later change, its exesdb subscription, checkpoint
    and parked events kept). An exesdb subscription of a group those settings do not name
    is looked for in earlier settings (and restarted from them, logged), or else kept
    untouched and logged; the only ones removed are those the server itself recorded as
    being deleted (a deletion interrupted between its two steps)."""

    @classmethod
    async def start_link(cls, opts: StoreOptions) -> otp.Pid:
        """Start the manager of ``opts.store_id`` under its
        :func:`~exesdb.grpc.groups.messages.manager_name`."""
        pid = await gen_server.start_link(cls, opts, name=manager_name(opts.store_id))
        assert pid is not None
        return pid

    async def init(self, opts: StoreOptions) -> Any:
        """Start with no groups; they are loaded right after (``handle_continue``)."""
        await super().init(opts)
        self.groups: dict[GroupKey, GroupConfig] = {}
        self.unreadable: list[Any] = []  # stored groups that do not read: kept as they are
        self.loaded = False
        self.version = -1  # CONFIG_STREAM's version when the settings were last read/written
        self.term: int | None = None  # this node's leader term when the groups were started
        return otp.Continue("load")

    async def handle_continue(self, arg: Any) -> Any:
        """Load the stored groups and start their processes (or try again after
        :data:`~exesdb.grpc.groups.group.RETRY` s)."""
        return await self._load()

    async def handle_info(self, msg: Any) -> Any:
        """The timeout of a load to try again."""
        if msg is otp.TIMEOUT and not self.loaded:
            return await self._load()
        if msg is otp.TIMEOUT:
            return None
        return await super().handle_info(msg)

    async def _load(self) -> Any:
        store_id = self.store_id
        try:
            version = await self._stored_version()
            groups, unreadable, deleting, recovered = await self._read_config()
            self.version, self.term = version, self._term()
            for sub in await gateway.get_subscriptions(store_id):
                if sub.name in deleting:  # the deletion was interrupted: finish it
                    with contextlib.suppress(SubscriptionNotFound):
                        await gateway.remove_subscription(store_id, sub.type, sub.selector,
                                                          sub.name)
            self.groups, self.unreadable = groups, unreadable
            if recovered:  # write the repaired settings, so that the next start reads them
                await self._save(groups)
        except ExESDBError as exc:
            log.debug("store %r: persistent subscription groups not loaded yet: %s",
                      store_id, exc)
            return otp.NoReply(timeout=RETRY)
        for config in groups.values():
            await self._start_group(config)
        self.loaded = True
        return None

    async def _config_events(self) -> AsyncIterator[EventRecord]:
        """The events of :data:`CONFIG_STREAM`, newest first (none when it is deleted)."""
        position: Any = END
        while True:
            try:
                batch = await gateway.get_events(self.store_id, CONFIG_STREAM, position, 100,
                                                 "backward")
            except StreamDeleted:
                log.error("store %r: %s is deleted: no persistent subscription settings "
                          "read", self.store_id, CONFIG_STREAM)
                return
            for event in batch:
                yield event
            if len(batch) < 100 or batch[-1].event_number <= 0:
                return
            position = batch[-1].event_number - 1

    async def _read_config(self) -> tuple[dict[GroupKey, GroupConfig], list[Any],
                                          set[str], bool]:
        """``(groups, unreadable, deleting, recovered)``: the groups of the last settings
        that read, the stored groups in them that do not (raw), the exesdb subscriptions
        whose deletion the server recorded, and whether the settings must be written
        again (events after the last that reads, or groups taken from earlier ones)."""
        store_id = self.store_id
        pending = {sub.name for sub in await gateway.get_subscriptions(store_id)
                   if sub.name.startswith(PREFIX)}
        groups: dict[GroupKey, GroupConfig] = {}
        unreadable: list[Any] = []
        deleting: set[str] = set()
        current = True  # still looking for the current settings
        recovered = False
        async for event in self._config_events():
            try:
                raws, deleted = read_config_event(event)
            except ValueError as exc:
                log.error("store %r: event %d of %s does not read as persistent subscription "
                          "settings (%s): skipped", store_id, event.event_number,
                          CONFIG_STREAM, exc)
                recovered = recovered or current  # the settings read are written again
                continue
            for raw in raws:
                try:
                    config = GroupConfig.from_json(raw)
                except ValueError as exc:
                    if current:
                        log.error("store %r: the settings of group %s in %s do not read "
                                  "(%s): it is not started; its subscription, checkpoint "
                                  "and parked events are kept", store_id, describe_raw(raw),
                                  CONFIG_STREAM, exc)
                        unreadable.append(raw)
                        pending.discard(raw_name(raw))
                    continue
                name = subscription_name(*config.key)
                if current:
                    groups[config.key] = config
                elif name in pending and config.key not in groups:
                    log.warning("store %r: group %r is not in the last settings of %s but "
                                "its subscription exists: started with its settings of "
                                "event %d", store_id, name, CONFIG_STREAM, event.event_number)
                    groups[config.key] = config
                    recovered = True
                pending.discard(name)
            if current:
                deleting = deleted & pending
                pending -= deleting
                current = False
            if not pending:
                break
        for name in sorted(pending):
            log.error("store %r: no settings of group %r read from %s: it is not started; "
                      "its subscription and checkpoint are kept", store_id, name,
                      CONFIG_STREAM)
        return groups, unreadable, deleting, recovered

    async def _start_group(self, config: GroupConfig) -> None:
        name = group_name(self.store_id, *config.key)
        if otp.whereis(name) is not None:
            return
        opts = self.opts

        async def start(*_extra: Any) -> otp.Pid | None:
            return await gen_server.start_link(PersistentGroup, opts, config, name=name)

        spec = ChildSpec(id=("group", *config.key), start=start, shutdown=SHUTDOWN)
        with contextlib.suppress(otp.AlreadyStarted):
            await dynamic_supervisor.start_child(_groups_sup_name(self.store_id), spec)

    async def _stop_group(self, key: GroupKey) -> None:
        pid = otp.whereis(group_name(self.store_id, *key))
        if pid is None:
            return
        with contextlib.suppress(otp.OTPError):
            await dynamic_supervisor.terminate_child(_groups_sup_name(self.store_id), pid)

    async def _save(self, groups: dict[GroupKey, GroupConfig],
                    deleting: Iterable[str] = ()) -> None:
        """Store ``groups`` (with the stored groups that do not read, as they are) and
        the exesdb subscriptions about to be removed (so that a start finishes that)."""
        names = {subscription_name(*key) for key in groups}
        self.unreadable = [raw for raw in self.unreadable if raw_name(raw) not in names]
        data = config_event_data(groups.values(), self.unreadable, deleting)
        self.version = await gateway.append_events(self.store_id, CONFIG_STREAM,
                                                   [NewEvent(CONFIG_EVENT_TYPE, data)])
        self.groups = groups

    async def _stored_version(self) -> int:
        """:data:`CONFIG_STREAM`'s version now (-1: none, or deleted)."""
        try:
            return await gateway.get_version(self.store_id, CONFIG_STREAM)
        except StreamDeleted:
            return -1

    def _term(self) -> int | None:
        """This node's term as the store's leader (None in ``single`` mode)."""
        record = leadership(self.store_id)
        return None if record is None else record.term

    async def _refresh(self) -> None:
        """Read the settings again if :data:`CONFIG_STREAM` moved since this manager read
        or wrote it (another node wrote them), and start every group afresh if this node
        began a term as leader since the groups started (see the module docstring): start
        the groups that appeared, tell the running ones their new settings, stop those
        that went."""
        version, term = await self._stored_version(), self._term()
        if version == self.version and term == self.term:
            return
        old = self.groups
        groups, unreadable = old, self.unreadable
        if version != self.version:
            groups, unreadable, _deleting, _recovered = await self._read_config()
        renew = term != self.term
        for key in list(old) if renew else old.keys() - groups.keys():
            await self._stop_group(key)
        self.groups, self.unreadable, self.version, self.term = groups, unreadable, version, term
        for config in groups.values():
            if not renew and old.get(config.key) not in (None, config):
                await self._tell_group(config.key, ApplySettings(config.settings))
            await self._start_group(config)

    async def handle_call(self, request: Any, from_: gen_server.From) -> Any:
        """Serve a :data:`~exesdb.grpc.groups.messages.ManagerRequest`: its value, or
        the :class:`RpcError` for what went wrong (``UNAVAILABLE`` until loaded)."""
        if not isinstance(request, ManagerRequest):
            raise ValueError(f"GroupManager: unknown request {request!r}")
        if not self.loaded:
            return unavailable("persistent subscriptions are loading")
        try:
            await self._refresh()
            return await self._serve(request)
        except RpcError as exc:
            return exc
        except ExESDBError as exc:
            return rpc_error(exc)
        except otp.OTPError as exc:
            return unavailable(str(exc))

    async def _serve(self, request: ManagerRequest) -> Any:
        match request:
            case CreateGroup(new):
                self._check_strategy(new)
                start_from = await self._resolve_start(new)
                name = subscription_name(*new.key)
                if any(subscription_name(*key) == name for key in self.groups):
                    raise exists(*new.key)  # or another group of the same exesdb name
                self._check_buffers(new)
                new = attrs.evolve(new, start_from=start_from)
                await self._save({**self.groups, new.key: new})
                await self._start_group(new)
                return None
            case ListGroups(stream):
                return [await self._info(c) for c in self.groups.values()
                        if stream is None or c.stream == stream]
            case RestartGroups():
                for key in list(self.groups):
                    await self._stop_group(key)
                for each in self.groups.values():
                    await self._start_group(each)
                return None
            case UpdateGroup(key, settings, start):
                config = self._config(key)
                changed = attrs.evolve(config, settings=settings,
                                       start=config.start if start is None else start)
                self._check_strategy(changed)
                if start is not None:
                    await self._resolve_start(changed)  # refuses a start past the end
                self._check_buffers(changed)
                await self._update(config, settings, start)
                return None
            case DeleteGroup(key):
                await self._delete(self._config(key))
                return None
            case DescribeGroup(key):
                return await self._info(self._config(key))
            case FindGroup(key):
                return await self._find(self._config(key))
            case ReplayGroupParked(key, stop_at):
                self._config(key)
                return await self._ask_group(key, ReplayParked(stop_at))
            case _:
                assert_never(request)

    @staticmethod
    def _check_strategy(config: GroupConfig) -> None:
        """Refuse an unknown consumer strategy as KurrentDB does (``failed``)."""
        problem = config.settings.strategy_problem()
        if problem is not None:
            raise failed(*config.key, problem)

    @staticmethod
    def _check_buffers(config: GroupConfig) -> None:
        """Refuse a read batch not below the history buffer as KurrentDB does
        (``failed``)."""
        problem = config.settings.buffer_problem()
        if problem is not None:
            raise failed(*config.key, problem)

    def _config(self, key: GroupKey) -> GroupConfig:
        """The group ``key``; raises ``NOT_FOUND`` when there is none."""
        config = self.groups.get(key)
        if config is None:
            raise not_found(*key)
        return config

    async def _delete(self, config: GroupConfig) -> None:
        """Drop the group's consumers, stop it, store the settings without it (recording
        its exesdb subscription as being deleted), remove that subscription, and truncate
        its parked events away."""
        key = config.key
        await self._tell_group(key, Drop())
        await self._stop_group(key)
        await self._save({k: c for k, c in self.groups.items() if k != key},
                         deleting=[subscription_name(*key)])
        with contextlib.suppress(SubscriptionNotFound):
            await gateway.remove_subscription(
                self.store_id, "by_stream", ALL if config.is_all else f"${config.stream}",
                subscription_name(*key))
        parked = parked_stream(*key)
        last = await gateway.get_version(self.store_id, parked)
        if last >= 0:  # a group created again later starts with no parked events
            await gateway.append_events(self.store_id, f"${parked}",
                                        [NewEvent("$metadata", {"$tb": last + 1})])

    async def _find(self, config: GroupConfig) -> otp.Pid:
        """The pid of the group's process (started if it is not running)."""
        name = group_name(self.store_id, *config.key)
        pid = otp.whereis(name)
        if pid is None:
            await self._start_group(config)
            pid = otp.whereis(name)
        if pid is None:
            raise unavailable("the group is restarting")
        return pid

    async def _update(self, config: GroupConfig, settings: GroupSettings,
                      start: StartSpec | None) -> None:
        """Store and apply new settings; move the start while nothing was acknowledged
        (see :func:`exesdb.grpc.groups.client.update_group`)."""
        key = config.key
        config = attrs.evolve(config, settings=settings)
        if start is None or same_start(start, config.start):
            await self._save({**self.groups, key: config})
            await self._tell_group(key, ApplySettings(config.settings))
            return
        moved = attrs.evolve(config, start=start)
        if await self._position(key) is not None:  # it goes on from its checkpoint
            await self._save({**self.groups, key: moved})
            await self._tell_group(key, ApplySettings(moved.settings))
            return
        moved = attrs.evolve(moved, start_from=await self._resolve_start(moved))
        await self._stop_group(key)  # an orderly stop checkpoints what was acknowledged
        if await self._position(key) is not None:
            moved = attrs.evolve(moved, start_from=config.start_from)
        else:  # nothing acknowledged: the group starts over from the new position
            with contextlib.suppress(SubscriptionNotFound):
                await gateway.remove_subscription(
                    self.store_id, "by_stream", ALL if config.is_all else f"${config.stream}",
                    subscription_name(*key))
        await self._save({**self.groups, key: moved})
        await self._start_group(moved)

    async def _position(self, key: GroupKey) -> int | None:
        """The stored position (checkpoint) of a group's exesdb subscription, if any."""
        name = subscription_name(*key)
        for sub in await gateway.get_subscriptions(self.store_id):
            if sub.name == name:
                return sub.position
        return None

    async def _resolve_start(self, config: GroupConfig) -> int:
        """The exesdb start (inclusive) of a new group; a commit position past the end of
        ``$all`` is refused as KurrentDB refuses it (``failed``)."""
        store_id = self.store_id
        if config.is_all:
            last = await gateway.read_all(store_id, END, 1, "backward")
            head = last[0].position if last else -1
            if config.start == "start":
                return 0
            if config.start == "end":
                return head + 1
            start = store_position(config.start)  # a commit position: its $all position
            if start > head + 1:
                raise failed(*config.key, START_PAST_END)
            return max(start, 0)
        if config.start == "start":
            return 0
        if config.start == "end":
            return await gateway.get_version(store_id, config.stream) + 1
        return config.start

    async def _ask_group(self, key: GroupKey, request: GroupRequest) -> Any:
        """Call group ``key``'s process; ``UNAVAILABLE`` when it is not running."""
        try:
            return await gen_server.call(group_name(self.store_id, *key), request,
                                         CALL_TIMEOUT)
        except (otp.NoProc, otp.ServerExited, otp.CallTimeout):
            raise unavailable("the group is restarting") from None

    async def _tell_group(self, key: GroupKey, request: ApplySettings | Drop) -> None:
        """Call group ``key``'s process if it runs (one that does not is not told: it
        reads its settings when it starts, and one being deleted is not started again)."""
        with contextlib.suppress(otp.NoProc, otp.ServerExited, otp.CallTimeout):
            await gen_server.call(group_name(self.store_id, *key), request, CALL_TIMEOUT)

    async def _info(self, config: GroupConfig) -> GroupInfo:
        try:
            info: GroupInfo = await gen_server.call(group_name(self.store_id, *config.key),
                                                    GetInfo(), CALL_TIMEOUT)
            return attrs.evolve(info, config=config)  # the settings as stored
        except (otp.NoProc, otp.ServerExited, otp.CallTimeout):
            return GroupInfo(config, "NotReady")


class PersistentGroups(StoreSupervisor):
    """A store's groups, rest_for_one: the dynamic supervisor of the
    :class:`PersistentGroup` processes, then the :class:`GroupManager`."""

    async def init(self, opts: StoreOptions) -> supervisor.Spec:
        """The dynamic supervisor of the groups, then the manager (rest_for_one)."""
        name = _groups_sup_name(opts.store_id)

        async def start() -> otp.Pid | None:
            return await dynamic_supervisor.start_link(name=name, intensity=20, period=10)

        sup_spec = ChildSpec(id=(child_spec_id(PersistentGroups, opts.store_id), "groups"),
                             start=start, type="supervisor")
        return supervisor.Spec([sup_spec, GroupManager.child_spec(opts)],
                               strategy="rest_for_one", intensity=10, period=30)

