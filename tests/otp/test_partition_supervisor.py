"""otp.partition_supervisor: stable partitioning of children over dynamic supervisors."""

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import gen_server
from otp import partition_supervisor as ps


class Echo(otp.GenServer):
    async def init(self, *args):
        self.args = args

    async def handle_call(self, request, from_):
        return self.args


keys = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
    lambda inner: st.tuples(inner, inner),
    max_leaves=4,
)


@given(keys, st.integers(min_value=1, max_value=64))
def test_partition_for_is_in_range_and_deterministic(key, partitions):
    index = ps.partition_for(key, partitions)
    assert 0 <= index < partitions
    assert ps.partition_for(key, partitions) == index


def test_partition_for_is_the_same_in_another_process():
    sample = ["stream-1", ("store", "orders"), 12345, b"\x00\xff"]
    here = [ps.partition_for(k, 7) for k in sample]
    code = (
        "from otp.partition_supervisor import partition_for;"
        f"print([partition_for(k, 7) for k in {sample!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == repr(here)


def test_partition_for_rejects_a_partition_count_below_one():
    with pytest.raises(ValueError, match="partitions must be an int >= 1"):
        ps.partition_for("k", 0)


async def test_start_link_starts_one_dynamic_supervisor_per_partition():
    async with otp.node():
        sup = await ps.start_link(partitions=3, name="parts")
        children = await ps.which_children("parts")
        assert [(i, t) for i, _, t in children] == [(0, "supervisor"), (1, "supervisor"),
                                                    (2, "supervisor")]
        assert all(otp.is_alive(pid) for _, pid, _ in children)
        assert ps.partitions(sup) == [pid for _, pid, _ in children]


async def test_start_child_puts_the_child_under_the_partition_of_its_key():
    async with otp.node():
        await ps.start_link(partitions=4, name="parts")
        pid = await ps.start_child("parts", "orders-7", Echo.child_spec("x"))
        partition = ps.partitions("parts")[ps.partition_for("orders-7", 4)]
        listed = await otp.dynamic_supervisor.which_children(partition)
        assert (None, pid, "worker") in listed


async def test_extra_args_reach_every_child_first():
    async with otp.node():
        await ps.start_link(partitions=2, name="parts", extra_args=("store-a",))
        pid = await ps.start_child("parts", 1, Echo.child_spec("stream"))
        assert await gen_server.call(pid, "args") == ("store-a", "stream")


async def test_start_child_on_a_missing_partition_supervisor_raises_noproc():
    async with otp.node():
        with pytest.raises(otp.NoProc):
            await ps.start_child("nobody", "k", Echo.child_spec())


async def test_a_crashed_partition_is_restarted_and_used_again():
    async with otp.node():
        await ps.start_link(partitions=2, name="parts")
        old = ps.partitions("parts")[0]
        ref = otp.monitor(old)
        otp.exit(old, otp.KILL)
        await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        await ps.which_children("parts")  # the supervisor saw the EXIT before our DOWN
        new = ps.partitions("parts")[0]
        assert new is not None and new != old and otp.is_alive(new)
        key = next(k for k in range(100) if ps.partition_for(k, 2) == 0)
        assert await ps.start_child("parts", key, Echo.child_spec()) is not None


async def test_stop_stops_every_partition_and_child():
    async with otp.node():
        sup = await ps.start_link(partitions=2, name="parts")
        child = await ps.start_child("parts", "k", Echo.child_spec())
        parts = ps.partitions(sup)
        await ps.stop(sup)
        assert not otp.is_alive(child)
        assert not any(otp.is_alive(p) for p in parts if p is not None)
        with pytest.raises(otp.NoProc):
            ps.partitions(sup)
