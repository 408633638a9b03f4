"""Several stores on one node: their names, data and failures are independent."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import otp
from exesdb import NewEvent, gateway, start_store, stop_store
from exesdb.errors import StoreNotFound, StoreUnavailable
from exesdb.systems import system_name
from otp.testing import fault_reasons

from .store_helpers import all_pids, until_available

STORES = ("a", "b", "c")


async def _start_all(root: Path) -> dict[str, otp.Pid]:
    return {s: await start_store(store_id=s, data_dir=root) for s in STORES}


async def test_three_stores_keep_their_data_apart(tmp_path):
    async with otp.node():
        await _start_all(tmp_path)
        for store in STORES:
            await gateway.append_events(store, "shared-name", [NewEvent(f"from-{store}", {})])
        for store in STORES:
            events = await gateway.get_events(store, "shared-name")
            assert [e.event_type for e in events] == [f"from-{store}"]
        assert sorted(info.store_id for info in await gateway.list_stores()) == list(STORES)


async def test_stores_share_a_data_dir_in_folders_of_their_own(tmp_path):
    async with otp.node():
        await _start_all(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == list(STORES)


async def test_stopping_one_store_leaves_the_others_running(tmp_path):
    async with otp.node():
        systems = await _start_all(tmp_path)
        b_pids = await all_pids(systems["b"])
        await stop_store("a")
        assert not otp.is_alive(systems["a"])
        assert await all_pids(systems["b"]) == b_pids
        assert await gateway.get_streams("b") == []
        try:
            await gateway.get_streams("a")
        except StoreNotFound:
            pass
        else:
            raise AssertionError("store a still answers")


@settings(deadline=None)
@given(faults=st.lists(st.tuples(st.integers(min_value=0, max_value=10_000),
                                 fault_reasons()), min_size=1, max_size=25))
async def test_faults_in_one_store_never_touch_another(faults):
    with tempfile.TemporaryDirectory() as root:
        async with otp.node():
            otp.trap_exits(True)  # store a may give up: its System's exit must not end us
            systems = await _start_all(Path(root))
            for store in ("b", "c"):
                await gateway.append_events(store, "s", [NewEvent("before", {})])
            others = {s: await all_pids(systems[s]) for s in ("b", "c")}
            for n, (pick, reason) in enumerate(faults):
                victims = await all_pids(systems["a"]) if otp.is_alive(systems["a"]) else []
                if victims:
                    otp.exit(victims[pick % len(victims)], reason)
                await trio.lowlevel.checkpoint()
                for store in ("b", "c"):  # b and c answer throughout, unchanged
                    assert await gateway.append_events(store, "s",
                                                       [NewEvent("n", {"n": n})]) == n + 1
                    assert await all_pids(systems[store]) == others[store]
                with contextlib.suppress(StoreUnavailable, StoreNotFound):
                    await gateway.append_events("a", "s", [NewEvent("a", {"n": n})])
            for store in ("b", "c"):
                assert await gateway.get_version(store, "s") == len(faults)
            if otp.is_alive(systems["a"]):
                await until_available("a")
                a_events = await gateway.get_events("a", "s")
                await stop_store("a")
            else:
                a_events = None
            # starting a again under the same id recovers all of its data
            await start_store(store_id="a", data_dir=root)
            if a_events is not None:
                assert await gateway.get_events("a", "s") == a_events
            assert otp.whereis(system_name("b")) == systems["b"]
