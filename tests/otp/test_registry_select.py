"""otp.registry queries with predicates: match, count_match, select, count_select and
unregister_match.

Elixir writes these with ETS match patterns and guards; here each is one predicate. The
ported cases name their upstream test (Elixir's lib/elixir/test/elixir/registry/ and the
doctests of lib/elixir/lib/registry.ex) and keep its registrations and expectations,
except where Elixir's ``===`` tells ``1`` from ``1.0`` (Python's ``==`` does not).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import otp
from otp import gen_server, registry

from .registry_helpers import agent, kill, run_in


class Idle(gen_server.GenServer):
    """A server that does nothing: something to start under a via name."""


def is_triple(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 3


# -- match and count_match (ported) --------------------------------------------------------


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_match_supports_patterns_as_predicates(keys: Any) -> None:
    """registry/unique_test.exs and duplicate_test.exs: "supports match patterns"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        me = otp.self()
        value = (1, "atom", 1)
        registry.register("reg", "hello", value)
        assert registry.match("reg", "hello", lambda v: v[0] == 1) == [(me, value)]
        assert registry.match("reg", "hello", lambda v: v[0] == 2) == []
        assert registry.match("reg", "hello", lambda v: v[1] == "atom") == [(me, value)]
        assert registry.match("reg", "hello", lambda v: v[0] == v[2]) == [(me, value)]
        assert registry.match("reg", "hello", lambda v: True) == [(me, value)]
        assert registry.match("reg", "_", lambda v: True) == []

        value2 = {"a": "a", "b": "b"}
        registry.register("reg", "world", value2)
        assert registry.match("reg", "world", lambda v: v.get("b") == "b") == [(me, value2)]


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_match_supports_guards_as_predicates(keys: Any) -> None:
    """registry/unique_test.exs: "supports guard conditions"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        me = otp.self()
        value = (1, "atom", 2)
        registry.register("reg", "hello", value)
        assert registry.match("reg", "hello", lambda v: v[2] > 1) == [(me, value)]
        assert registry.match("reg", "hello", lambda v: v[2] > 2) == []
        assert registry.match("reg", "hello", lambda v: isinstance(v[1], str)) == [(me, value)]


async def test_match_returns_each_passing_entry_of_a_duplicate_key() -> None:
    """registry/duplicate_test.exs: "supports guards"."""
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        me = otp.self()
        value1, value2 = (1, "atom", 1), (2, "atom", 2)
        registry.register("reg", "hello", value1)
        registry.register("reg", "hello", value2)
        assert registry.match("reg", "hello", lambda v: v[0] < 2) == [(me, value1)]
        assert registry.match("reg", "hello", lambda v: v[0] > 3) == []
        assert registry.match("reg", "hello", lambda v: v[0] < 3) == [(me, value1), (me, value2)]


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_count_match_supports_patterns_as_predicates(keys: Any) -> None:
    """registry/unique_test.exs and duplicate_test.exs: "count_match supports match
    patterns"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        registry.register("reg", "hello", (1, "atom", 1))
        assert registry.count_match("reg", "hello", lambda v: v[0] == 1) == 1
        assert registry.count_match("reg", "hello", lambda v: v[0] == 2) == 0
        assert registry.count_match("reg", "hello", lambda v: v[1] == "atom") == 1
        assert registry.count_match("reg", "hello", lambda v: v[0] == v[2]) == 1
        assert registry.count_match("reg", "hello", lambda v: True) == 1
        assert registry.count_match("reg", "_", lambda v: True) == 0

        registry.register("reg", "world", {"a": "a", "b": "b"})
        assert registry.count_match("reg", "world", lambda v: v.get("b") == "b") == 1


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_count_match_supports_guards_as_predicates(keys: Any) -> None:
    """registry/unique_test.exs and duplicate_test.exs: "count_match supports guard
    conditions"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        registry.register("reg", "hello", (1, "atom", 2))
        assert registry.count_match("reg", "hello", lambda v: v[2] > 1) == 1
        assert registry.count_match("reg", "hello", lambda v: v[2] > 2) == 0
        assert registry.count_match("reg", "hello", lambda v: isinstance(v[1], str)) == 1


async def test_count_match_counts_each_entry_of_a_duplicate_key() -> None:
    """The doctest of Registry.count_match/4."""
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        registry.register("reg", "hello", (1, "atom", 1))
        registry.register("reg", "hello", (2, "atom", 2))
        assert registry.count_match("reg", "hello", lambda v: v[0] == 1) == 1
        assert registry.count_match("reg", "hello", lambda v: v[0] == 2) == 1
        assert registry.count_match("reg", "hello", lambda v: v[1] == "atom") == 2
        assert registry.count_match("reg", "hello", lambda v: v[0] == v[2]) == 2
        assert registry.count_match("reg", "hello", lambda v: v[2] > 1) == 1
        assert registry.count_match("reg", "hello", lambda v: isinstance(v[1], str)) == 2


async def test_match_and_count_match_use_exact_complex_keys() -> None:
    """registry/duplicate_test.exs: "uses exact complex keys in lookup and match"."""
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        me = otp.self()
        tuple_key = ("_", "topic")
        frozen_key = frozenset({("b", "b")})
        registry.register("reg", tuple_key, "tuple")
        registry.register("reg", ("other", "topic"), "other_tuple")
        registry.register("reg", frozen_key, "map")
        registry.register("reg", frozenset({("a", "a"), ("b", "b")}), "superset_map")
        assert registry.lookup("reg", tuple_key) == [(me, "tuple")]
        assert registry.match("reg", tuple_key, lambda v: True) == [(me, "tuple")]
        assert registry.count_match("reg", tuple_key, lambda v: True) == 1
        assert registry.lookup("reg", frozen_key) == [(me, "map")]
        assert registry.match("reg", frozen_key, lambda v: True) == [(me, "map")]
        assert registry.count_match("reg", frozen_key, lambda v: True) == 1


async def test_what_a_match_predicate_raises_propagates() -> None:
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "k", None)
        with pytest.raises(TypeError):
            registry.count_match("reg", "k", lambda v: v[0] == 1)


# -- select and count_select (ported) ------------------------------------------------------


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_select_of_an_empty_registry_is_empty(keys: Any) -> None:
    """registry/unique_test.exs and duplicate_test.exs: "empty list for empty registry"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        assert registry.select("reg", lambda k, p, v: True) == []
        assert registry.count_select("reg", lambda k, p, v: True) == 0


async def test_select_all_of_a_unique_registry() -> None:
    """registry/unique_test.exs: "select all"."""
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        pid = await gen_server.start_link(Idle, name=registry.via("reg", "hello"))
        registry.register("reg", "world", "value")
        assert sorted(registry.select("reg", lambda k, p, v: True)) == [
            ("hello", pid, None),
            ("world", otp.self(), "value"),
        ]


async def test_select_all_of_a_duplicate_registry() -> None:
    """registry/duplicate_test.exs: "select all"."""
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        me = otp.self()
        registry.register("reg", "hello", "value")
        registry.register("reg", "hello", "value")
        assert registry.select("reg", lambda k, p, v: True) == [
            ("hello", me, "value"),
            ("hello", me, "value"),
        ]


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_select_supports_full_match_specs_as_predicates(keys: Any) -> None:
    """registry/unique_test.exs and duplicate_test.exs: "select supports full match
    specs"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        me = otp.self()
        value = (1, "atom", 1)
        registry.register("reg", "hello", value)
        assert registry.select("reg", lambda k, p, v: k == "hello") == [("hello", me, value)]
        assert registry.select("reg", lambda k, p, v: p == me) == [("hello", me, value)]
        assert registry.select("reg", lambda k, p, v: v == value) == [("hello", me, value)]
        assert registry.select("reg", lambda k, p, v: k == "world") == []
        assert registry.select("reg", lambda k, p, v: is_triple(v) and v[1] == "atom") == [
            ("hello", me, value)
        ]
        assert registry.select("reg", lambda k, p, v: is_triple(v) and v[0] == v[2]) == [
            ("hello", me, value)
        ]

        value2 = {"a": "a", "b": "b"}
        registry.register("reg", "world", value2)
        assert [
            "match"
            for k, p, v in registry.select(
                "reg", lambda k, p, v: k == "world" and p == me and v.get("b") == "b"
            )
        ] == ["match"]
        assert sorted(k for k, _, _ in registry.select("reg", lambda k, p, v: True)) == [
            "hello",
            "world",
        ]


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_select_supports_guards_as_predicates(keys: Any) -> None:
    """registry/unique_test.exs and duplicate_test.exs: "select supports guard
    conditions"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        me = otp.self()
        registry.register("reg", "hello", (1, "atom", 2))
        assert registry.select("reg", lambda k, p, v: v[2] > 1) == [("hello", me, (1, "atom", 2))]
        assert registry.select("reg", lambda k, p, v: v[2] > 2) == []
        assert [k for k, _, _ in registry.select("reg", lambda k, p, v: isinstance(v[1], str))
                ] == ["hello"]


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_select_allows_several_alternatives_in_one_predicate(keys: Any) -> None:
    """registry/unique_test.exs and duplicate_test.exs: "select allows multiple specs"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        registry.register("reg", "hello", "value")
        registry.register("reg", "world", "value")
        assert sorted(
            k for k, _, _ in registry.select("reg", lambda k, p, v: k == "hello" or k == "world")
        ) == ["hello", "world"]
        assert registry.count_select("reg", lambda k, p, v: k == "hello" or k == "world") == 2


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_count_select_supports_match_specs_as_predicates(keys: Any) -> None:
    """registry/unique_test.exs and duplicate_test.exs: "count_select supports match
    specs" and "count_select supports guard conditions"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        value = (1, "atom", 1)
        registry.register("reg", "hello", value)
        assert registry.count_select("reg", lambda k, p, v: v == value) == 1
        assert registry.count_select("reg", lambda k, p, v: k == "hello") == 1
        assert registry.count_select("reg", lambda k, p, v: v[:2] == (1, "atom")) == 1
        assert registry.count_select("reg", lambda k, p, v: v[0] == v[2]) == 1
        assert registry.count_select("reg", lambda k, p, v: k == "hello" and v is None) == 0
        assert registry.count_select("reg", lambda k, p, v: v[2] > 1) == 0

        registry.register("reg", "world", {"a": "a", "b": "b"})
        assert registry.count_select("reg", lambda k, p, v: k == "world") == 1


async def test_select_of_keys_only() -> None:
    """The doctest of Registry.select/2 ("If you want to get keys...")."""
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        registry.register("reg", "hello", "value")
        registry.register("reg", "world", "value")
        assert sorted(k for k, _, _ in registry.select("reg", lambda k, p, v: True)) == [
            "hello",
            "world",
        ]


async def test_select_sees_the_entries_of_every_process() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        other = await agent()
        registry.register("reg", "k", 1)
        await run_in(other, lambda: registry.register("reg", "k", 2))
        await run_in(other, lambda: registry.register("reg", "j", 3))
        assert Counter(registry.select("reg", lambda k, p, v: True)) == Counter(
            [("k", otp.self(), 1), ("k", other, 2), ("j", other, 3)]
        )
        assert registry.select("reg", lambda k, p, v: p == other and v > 2) == [("j", other, 3)]


async def test_a_select_predicate_may_change_the_registry() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        registry.register("reg", "k", 1)

        def register_more(key: Any, pid: otp.Pid, value: Any) -> bool:
            registry.register("reg", ("seen", key), value)
            return True

        assert registry.select("reg", register_more) == [("k", otp.self(), 1)]
        assert registry.count("reg") == 2


# -- unregister_match (ported) -------------------------------------------------------------


async def test_unregister_match_in_a_unique_registry_supports_patterns() -> None:
    """registry/unique_test.exs: "unregister_match supports patterns"."""
    async with otp.node():
        await registry.start_link(keys="unique", name="reg")
        me = otp.self()
        value = (1, "atom", 1)
        registry.register("reg", "hello", value)
        assert registry.unregister_match("reg", "hello", lambda v: v[0] == 2) is None
        assert registry.lookup("reg", "hello") == [(me, value)]
        registry.unregister_match("reg", "hello", lambda v: v[1] == "atom")
        assert registry.lookup("reg", "hello") == []
        assert registry.keys("reg", me) == []


async def test_unregister_match_in_a_duplicate_registry_supports_patterns() -> None:
    """registry/duplicate_test.exs: "unregister_match supports patterns"."""
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        me = otp.self()
        value1, value2 = (1, "atom", 1), (2, "atom", 2)
        registry.register("reg", "hello", value1)
        registry.register("reg", "hello", value2)
        registry.unregister_match("reg", "hello", lambda v: v[0] == 2)
        assert registry.lookup("reg", "hello") == [(me, value1)]

        registry.register("reg", "hello", value2)
        registry.unregister_match("reg", "hello", lambda v: v[0] == 3)
        assert registry.lookup("reg", "hello") == [(me, value1), (me, value2)]
        registry.unregister_match("reg", "hello", lambda v: v[1] == "atom")
        assert registry.lookup("reg", "hello") == []


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
async def test_unregister_match_supports_guards_as_predicates(keys: Any) -> None:
    """registry/unique_test.exs and duplicate_test.exs: "unregister_match supports
    guards"."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        registry.register("reg", "hello", (1, "atom", 1))
        registry.unregister_match("reg", "hello", lambda v: v[0] < 2)
        assert registry.lookup("reg", "hello") == []


async def test_unregister_match_keeps_keys_and_count_in_step() -> None:
    """The doctest of Registry.unregister_match/4 (duplicate registries)."""
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        me = otp.self()
        for value in ("world_a", "world_b", "world_c"):
            registry.register("reg", "hello", value)
        registry.register("reg", "other", "x")
        registry.unregister_match("reg", "hello", lambda v: v == "world_a")
        assert Counter(registry.keys("reg", me)) == Counter(["hello", "hello", "other"])
        assert registry.lookup("reg", "hello") == [(me, "world_b"), (me, "world_c")]
        assert registry.count("reg") == 3


async def test_unregister_match_leaves_other_processes_entries_alone() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        other = await agent()
        await run_in(other, lambda: registry.register("reg", "k", 1))
        registry.register("reg", "k", 1)
        registry.unregister_match("reg", "k", lambda v: True)
        assert registry.lookup("reg", "k") == [(other, 1)]


async def test_unregister_match_removes_nothing_when_the_predicate_raises() -> None:
    async with otp.node():
        await registry.start_link(keys="duplicate", name="reg")
        registry.register("reg", "k", 1)
        registry.register("reg", "k", "one")
        with pytest.raises(TypeError):
            registry.unregister_match("reg", "k", lambda v: v < 5)
        assert registry.count("reg") == 2


# -- the model -----------------------------------------------------------------------------

_KEYS = ("a", "b", "c")
_AGENTS = 3

_operations = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, _AGENTS - 1), st.sampled_from(_KEYS),
                  st.integers(0, 3)),
        st.tuples(st.just("unregister_match"), st.integers(0, _AGENTS - 1),
                  st.sampled_from(_KEYS), st.integers(0, 3)),
        st.tuples(st.just("die"), st.integers(0, _AGENTS - 1)),
    ),
    max_size=20,
)

_queries = st.lists(
    st.tuples(st.sampled_from(_KEYS), st.integers(0, 3), st.integers(-1, _AGENTS - 1)),
    min_size=1,
    max_size=4,
)


@pytest.mark.parametrize("keys", ["unique", "duplicate"])
@given(operations=_operations, queries=_queries)
async def test_the_queries_agree_with_a_list_model(
    keys: Any, operations: list[tuple[Any, ...]], queries: list[tuple[str, int, int]]
) -> None:
    """After any run of registrations, removals and deaths, match, count_match, select
    and count_select give what filtering a plain list of entries gives."""
    async with otp.node():
        await registry.start_link(keys=keys, name="reg")
        agents = [await agent() for _ in range(_AGENTS)]
        model: list[tuple[str, int, int]] = []  # (key, agent index, value)
        for op in operations:
            if op[0] == "register":
                _, who, key, value = op
                taken = keys == "unique" and any(k == key for k, _, _ in model)
                try:
                    await run_in(agents[who],
                                 lambda k=key, v=value: registry.register("reg", k, v))
                except registry.AlreadyRegistered:
                    assert taken
                else:
                    assert not taken
                    model.append((key, who, value))
            elif op[0] == "unregister_match":
                _, who, key, bound = op
                await run_in(agents[who], lambda k=key, b=bound: registry.unregister_match(
                    "reg", k, lambda v: v >= b))
                model = [e for e in model if not (e[0] == key and e[1] == who and e[2] >= bound)]
            else:
                _, who = op
                await kill(agents[who])
                agents[who] = await agent()
                model = [e for e in model if e[1] != who]

        entries = [(key, agents[who], value) for key, who, value in model]
        for key, bound, who in queries:
            pid = agents[who] if who >= 0 else None

            def passes(v: int, b: int = bound) -> bool:
                return v >= b

            def selected(k: str, p: otp.Pid, v: int, b: int = bound,
                         pid: otp.Pid | None = pid) -> bool:
                return v >= b and (pid is None or p == pid)

            expected_match = [(p, v) for k, p, v in entries if k == key and passes(v)]
            assert Counter(registry.match("reg", key, passes)) == Counter(expected_match)
            assert registry.count_match("reg", key, passes) == len(expected_match)
            expected_select = [e for e in entries if selected(*e)]
            assert Counter(registry.select("reg", selected)) == Counter(expected_select)
            assert registry.count_select("reg", selected) == len(expected_select)
        assert registry.count("reg") == len(model)
