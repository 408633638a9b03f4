"""otp.partition_supervisor: stable partitioning of children over dynamic supervisors."""

import os
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


# -- ported from Elixir's partition_supervisor_test.exs -------------------------------------


async def test_start_link_with_a_local_name_spreads_the_children_over_the_partitions():
    """partition_supervisor_test.exs, start_link/1: "on success with atom name"."""
    async with otp.node():
        await ps.start_link(name="parts")
        keys = [otp.make_ref() for _ in range(100)]
        for key in keys:
            await ps.start_child("parts", key, Echo.child_spec(key))
        found = []
        for _, partition, _ in await ps.which_children("parts"):
            for _, child, _ in await otp.dynamic_supervisor.which_children(partition):
                (key,) = await gen_server.call(child, "args")
                found.append(key)
        assert len(found) == 100
        assert set(found) == set(keys)


async def test_start_link_with_a_via_name():
    """partition_supervisor_test.exs, start_link/1: "on success with via name"."""
    async with otp.node():
        await otp.registry.start_link(keys="unique", name="partition_registry")
        name = otp.registry.via("partition_registry", "parts")
        sup = await ps.start_link(partitions=2, name=name)
        assert otp.whereis(name) == sup
        assert len(ps.partitions(name)) == 2
        child = await ps.start_child(name, "k", Echo.child_spec("hello"))
        assert await gen_server.call(child, "args") == ("hello",)


async def test_with_arguments_gives_each_partition_its_arguments():
    """partition_supervisor_test.exs, start_link/1: "with_arguments"."""
    async with otp.node():
        await ps.start_link(
            partitions=3, name="parts", with_arguments=lambda args, partition: (partition,)
        )
        assert len(ps.partitions("parts")) == 3
        for key in range(12):
            pid = await ps.start_child("parts", key, Echo.child_spec())
            assert await gen_server.call(pid, "args") == (ps.partition_for(key, 3),)


async def test_with_arguments_receives_the_extra_args_and_the_partition():
    async with otp.node():
        seen = []

        def with_arguments(args, partition):
            seen.append((args, partition))
            return [*args, partition]

        await ps.start_link(
            partitions=2, name="parts", extra_args=("store",), with_arguments=with_arguments
        )
        assert seen == [(("store",), 0), (("store",), 1)]
        key = next(k for k in range(100) if ps.partition_for(k, 2) == 1)
        pid = await ps.start_child("parts", key, Echo.child_spec("stream"))
        assert await gen_server.call(pid, "args") == ("store", 1, "stream")


async def test_a_restarted_partition_keeps_its_arguments():
    async with otp.node():
        await ps.start_link(partitions=2, name="parts", with_arguments=lambda a, p: (p,))
        old = ps.partitions("parts")[1]
        ref = otp.monitor(old)
        otp.exit(old, otp.KILL)
        await otp.receive(match=lambda m: isinstance(m, otp.Down) and m.ref is ref)
        await ps.which_children("parts")  # the supervisor saw the EXIT before our DOWN
        key = next(k for k in range(100) if ps.partition_for(k, 2) == 1)
        pid = await ps.start_child("parts", key, Echo.child_spec())
        assert await gen_server.call(pid, "args") == (1,)


async def test_start_link_refuses_a_with_arguments_that_is_not_a_function():
    """partition_supervisor_test.exs, start_link/1: "raises on bad with_arguments"."""
    async with otp.node():
        with pytest.raises(TypeError, match="with_arguments must be a function"):
            await ps.start_link(name="parts", with_arguments=123)
        assert otp.whereis("parts") is None


async def test_start_link_refuses_with_arguments_that_return_no_tuple():
    async with otp.node():
        with pytest.raises(TypeError, match="with_arguments must return a tuple"):
            await ps.start_link(name="parts", partitions=2, with_arguments=lambda a, p: p)
        assert otp.whereis("parts") is None


async def test_start_link_refuses_a_partition_count_below_one():
    """partition_supervisor_test.exs, start_link/1: "raises on bad partitions"."""
    async with otp.node():
        with pytest.raises(ValueError, match="partitions must be an int >= 1, got 0"):
            await ps.start_link(name="parts", partitions=0)


async def test_stop_is_synchronous():
    """partition_supervisor_test.exs, stop/1: "is synchronous"."""
    async with otp.node():
        await ps.start_link(name="parts")
        assert await ps.stop("parts") is None
        assert otp.whereis("parts") is None


async def test_stop_through_a_via_name():
    """partition_supervisor_test.exs, stop/1: "with via tuple"."""
    async with otp.node():
        await otp.registry.start_link(keys="unique", name="reg")
        name = otp.registry.via("reg", "stop_test")
        pid = await ps.start_link(name=name)
        assert otp.is_alive(pid)
        await ps.stop(name)
        assert not otp.is_alive(pid)


async def test_partitions_of_an_unknown_local_name_raises_noproc():
    """partition_supervisor_test.exs, partitions/1: "raises noproc for unknown atom
    partition supervisor"."""
    async with otp.node():
        with pytest.raises(otp.NoProc):
            ps.partitions("unknown")


async def test_partitions_of_an_unknown_via_name_raises_noproc():
    """partition_supervisor_test.exs, partitions/1: "raises noproc for unknown via
    partition supervisor"."""
    async with otp.node():
        await otp.registry.start_link(keys="unique", name="reg")
        with pytest.raises(otp.NoProc):
            ps.partitions(otp.registry.via("reg", "unknown"))


async def test_which_children_returns_all_partitions():
    """partition_supervisor_test.exs, which_children/1: "returns all partitions"."""
    async with otp.node():
        await ps.start_link(name="parts")
        count = len(ps.partitions("parts"))
        assert count == (os.cpu_count() or 1)
        children = await ps.which_children("parts")
        assert children == [
            (index, ps.partitions("parts")[index], "supervisor") for index in range(count)
        ]


async def test_count_children_counts_the_partitions():
    """partition_supervisor_test.exs, count_children/1: "with supervisors" (the
    partitions here are always dynamic supervisors)."""
    async with otp.node():
        await ps.start_link(name="parts")
        count = os.cpu_count() or 1
        assert await ps.count_children("parts") == {
            "specs": count, "active": count, "supervisors": count, "workers": 0,
        }


async def test_count_children_does_not_count_the_children_of_the_partitions():
    async with otp.node():
        await ps.start_link(partitions=2, name="parts")
        for key in range(5):
            await ps.start_child("parts", key, Echo.child_spec())
        assert await ps.count_children("parts") == {
            "specs": 2, "active": 2, "supervisors": 2, "workers": 0,
        }
        per_partition = [
            (await otp.dynamic_supervisor.count_children(pid))["workers"]
            for pid in ps.partitions("parts")
        ]
        assert sum(per_partition) == 5


async def test_count_children_of_an_unknown_partition_supervisor_raises_noproc():
    """partition_supervisor_test.exs, count_children/1: "raises noproc for unknown
    partition supervisor"."""
    async with otp.node():
        with pytest.raises(otp.NoProc):
            await ps.count_children("unknown")


async def test_count_children_through_a_via_name():
    """partition_supervisor_test.exs, count_children/1: "with via tuple"."""
    async with otp.node():
        await otp.registry.start_link(keys="unique", name="reg")
        name = otp.registry.via("reg", "count_test")
        await ps.start_link(partitions=3, name=name)
        assert await ps.count_children(name) == {
            "specs": 3, "active": 3, "supervisors": 3, "workers": 0,
        }
