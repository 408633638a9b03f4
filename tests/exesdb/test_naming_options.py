"""exesdb.naming (store-specific names) and exesdb.options (settings and their rules)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import otp
from exesdb import InvalidArgument
from exesdb.naming import (
    REGISTRY,
    child_spec_id,
    extract_store_id,
    genserver_name,
    partition_name,
)
from exesdb.options import StoreOptions, default_data_dir, resolve_options
from exesdb.systems.store import Store


def test_genserver_name_is_a_via_name_keyed_by_store_and_module():
    name = genserver_name(Store, "orders")
    assert name == otp.registry.via(REGISTRY, ("orders", Store))


def test_genserver_names_of_two_stores_differ():
    assert genserver_name(Store, "a") != genserver_name(Store, "b")


def test_genserver_name_without_a_store_is_the_dotted_module_name():
    assert genserver_name(Store, None) == "exesdb.systems.store.Store"


def test_child_spec_id_pairs_module_and_store():
    assert child_spec_id(Store, "a") == (Store, "a")
    assert child_spec_id(Store, None) is Store


def test_extract_store_id_reads_a_mapping_and_is_none_when_absent():
    assert extract_store_id({"store_id": "a", "x": 1}) == "a"
    assert extract_store_id({}) is None


def test_partition_names_are_per_store_and_key():
    assert partition_name(Store, "a", 1) != partition_name(Store, "a", 2)
    assert partition_name(Store, "a", 1) != partition_name(Store, "b", 1)


async def test_a_name_of_one_store_is_not_reachable_from_another():
    async with otp.node():
        await otp.registry.start_link(keys="unique", name=REGISTRY)

        class Holder(otp.GenServer):
            pass

        pid = await otp.gen_server.start_link(Holder, name=genserver_name(Holder, "a"))
        assert otp.whereis(genserver_name(Holder, "a")) == pid
        assert otp.whereis(genserver_name(Holder, "b")) is None


def test_options_have_exesdb_defaults():
    opts = resolve_options(store_id="a", environ={})
    assert (opts.timeout, opts.db_type, opts.writer_idle_ms, opts.reader_idle_ms,
            opts.persistence_interval) == (10_000, "single", 10_000, 10_000, 5_000)
    assert opts.data_dir == default_data_dir()
    assert opts.store_dir == default_data_dir() / "a"


def test_missing_options_come_from_the_environment(tmp_path):
    env = {"EX_ESDB_STORE_ID": "envstore", "EX_ESDB_DATA_DIR": str(tmp_path),
           "EX_ESDB_TIMEOUT": "2500", "EX_ESDB_STORE_TAGS": "a, b", "EX_ESDB_DURABLE": "false"}
    opts = resolve_options(environ=env)
    assert opts.store_id == "envstore"
    assert opts.data_dir == tmp_path
    assert opts.timeout == 2500
    assert opts.store_tags == ("a", "b")
    assert opts.durable is False


def test_keyword_options_win_over_the_environment():
    opts = resolve_options(store_id="kw", environ={"EX_ESDB_STORE_ID": "env"})
    assert opts.store_id == "kw"


def test_the_default_data_dir_follows_xdg_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == Path(tmp_path) / "exesdb"


@pytest.mark.parametrize("store_id", ["", ".hidden", "-dash", "a/b", "é", "x" * 65, 5])
def test_an_invalid_store_id_is_refused(store_id):
    with pytest.raises(InvalidArgument, match=r"^store_id: must"):
        resolve_options(store_id=store_id, environ={})


@pytest.mark.parametrize("store_id", ["a", "A_1", "x" * 64, "orders.v2-eu"])
def test_a_valid_store_id_is_accepted(store_id):
    assert resolve_options(store_id=store_id, environ={}).store_id == store_id


def test_a_missing_store_id_is_refused():
    with pytest.raises(InvalidArgument, match=r"^store_id: required"):
        resolve_options(environ={})


def test_an_unknown_option_is_refused():
    with pytest.raises(InvalidArgument, match=r"^options: unknown option 'colour'"):
        resolve_options(store_id="a", colour="red", environ={})


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("timeout", 0, "timeout: must be a whole number of milliseconds > 0"),
    ("writer_idle_ms", -5, "writer_idle_ms: must be a whole number of milliseconds"),
    ("reader_idle_ms", 1.5, "reader_idle_ms: must be a whole number of milliseconds"),
    ("gateway_pool_size", 0, "gateway_pool_size: must be an int from 1 to 256"),
    ("db_type", "mesh", "db_type: must be 'single' or 'cluster'"),
    ("db_type", "cluster", "pg_dsn: required with db_type='cluster'"),
    ("durable", "yes", "durable: must be true or false"),
    ("store_tags", 5, "store_tags: must be a list of strings"),
])
def test_an_option_breaking_its_rule_names_the_field(field, value, rule):
    with pytest.raises(InvalidArgument, match="^" + re.escape(rule)):
        resolve_options(store_id="a", environ={}, **{field: value})


def test_a_non_numeric_environment_value_names_its_variable():
    with pytest.raises(InvalidArgument, match="EX_ESDB_TIMEOUT must be a whole number"):
        resolve_options(store_id="a", environ={"EX_ESDB_TIMEOUT": "soon"})


def test_options_are_frozen():
    opts = StoreOptions(store_id="a")
    with pytest.raises(AttributeError):
        opts.timeout = 5  # type: ignore[misc]
