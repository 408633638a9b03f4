"""Stream ACLs (``$acl`` in stream metadata, the defaults of ``$settings`` and KurrentDB's
built-in ones) enforced when the server has users, through the real ``kurrentdbclient``.

One TLS server with a users file runs store ``s`` for the module: ``admin`` ($admins),
``alice`` and ``dave`` (members of ``s``), ``carol`` (``s`` and ``$ops``) and ``walt``
(``s`` and ``writers``). Every test uses streams of its own; the one that changes
``$settings`` puts KurrentDB's defaults back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import AccessDeniedError

from exesdb.grpc import acl, auth
from exesdb.grpc.rpc import User

from .conftest import Server, start_server

PASSWORDS = {"admin": "admin-pw", "alice": "alice-pw", "carol": "carol-pw",
             "dave": "dave-pw", "walt": "walt-pw"}
GROUPS = {"admin": ["$admins"], "alice": ["s"], "carol": ["s", "$ops"], "dave": ["s"],
          "walt": ["s", "writers"]}
READ_DEADLINE = 20.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("acl")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    users = folder / "users"
    for name, password in PASSWORDS.items():
        auth.add_user(users, name, password, GROUPS[name])
    with start_server(folder / "data", "--tls-cert", str(cert_file), "--tls-key",
                      str(key_file), "--users-file", str(users)) as server:
        yield server


@pytest.fixture(scope="module")
def clients(secure: Server, ca: trustme.CA) -> Iterator[dict[str, KurrentDBClient]]:
    made = {name: KurrentDBClient(secure.uri_for("s", name, password, tls=True),
                                  root_certificates=ca.cert_pem.bytes())
            for name, password in PASSWORDS.items()}
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def as_(clients: dict[str, KurrentDBClient]) -> Callable[[str], KurrentDBClient]:
    return clients.__getitem__


def stream(prefix: str = "acl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def event() -> NewEvent:
    return NewEvent(type="Happened", data=b"{}")


def with_acl(admin: KurrentDBClient, name: str, **roles: Any) -> str:
    """Create ``name`` with one event and ``$acl`` ``roles`` (``r=...`` is ``$r``)."""
    admin.append_to_stream(name, current_version=StreamState.NO_STREAM, events=[event()])
    admin.set_stream_metadata(name, metadata={"$acl": {f"${k}": v for k, v in roles.items()}},
                              current_version=StreamState.ANY)
    return name


# -- the built-in defaults -------------------------------------------------------------------


def test_a_user_stream_is_open_to_every_user_by_default(as_):
    name = stream()
    as_("alice").append_to_stream(name, current_version=StreamState.NO_STREAM,
                                  events=[event()])
    assert len(as_("dave").get_stream(name)) == 1


def test_reading_all_is_for_admins_by_default(as_):
    with pytest.raises(AccessDeniedError):
        list(as_("alice").read_all(limit=1))
    with pytest.raises(AccessDeniedError):
        next(iter(as_("alice").subscribe_to_all(timeout=READ_DEADLINE)))
    assert len(list(as_("admin").read_all(limit=1))) == 1


def test_a_system_stream_is_for_admins_by_default(as_):
    name = stream("$acl-system")
    with pytest.raises(AccessDeniedError):
        as_("alice").append_to_stream(name, current_version=StreamState.ANY,
                                      events=[event()])
    as_("admin").append_to_stream(name, current_version=StreamState.ANY, events=[event()])
    with pytest.raises(AccessDeniedError):
        as_("alice").get_stream(name)


def test_reading_all_is_opened_by_the_acl_of_all(as_):
    admin = as_("admin")
    admin.set_stream_metadata("$all", metadata={"$acl": {"$r": "dave"}},
                              current_version=StreamState.ANY)
    try:
        assert len(list(as_("dave").read_all(limit=1))) == 1
        with pytest.raises(AccessDeniedError):
            list(as_("alice").read_all(limit=1))
    finally:
        admin.set_stream_metadata("$all", metadata={}, current_version=StreamState.ANY)


# -- a stream's $acl ------------------------------------------------------------------------


def test_a_read_role_naming_a_user_lets_only_that_user_read(as_):
    name = with_acl(as_("admin"), stream(), r="dave")
    assert len(as_("dave").get_stream(name)) == 1
    with pytest.raises(AccessDeniedError):
        as_("alice").get_stream(name)
    with pytest.raises(AccessDeniedError):
        next(iter(as_("alice").subscribe_to_stream(name, timeout=READ_DEADLINE)))


def test_a_write_role_naming_a_group_lets_its_members_append(as_):
    name = with_acl(as_("admin"), stream(), w=["writers"])
    as_("walt").append_to_stream(name, current_version=StreamState.ANY, events=[event()])
    with pytest.raises(AccessDeniedError):  # one event: the Append call
        as_("alice").append_to_stream(name, current_version=StreamState.ANY, events=event())
    with pytest.raises(AccessDeniedError):  # a list: the BatchAppend call
        as_("alice").append_to_stream(name, current_version=StreamState.ANY,
                                      events=[event()])
    assert len(as_("alice").get_stream(name)) == 2  # reading stays open to all


def test_a_delete_role_guards_delete_and_tombstone(as_):
    name = with_acl(as_("admin"), stream(), d="dave")
    with pytest.raises(AccessDeniedError):
        as_("alice").delete_stream(name, current_version=StreamState.ANY)
    with pytest.raises(AccessDeniedError):
        as_("alice").tombstone_stream(name, current_version=StreamState.ANY)
    as_("dave").delete_stream(name, current_version=StreamState.ANY)


def test_metadata_reads_and_writes_are_guarded_by_mr_and_mw(as_):
    name = with_acl(as_("admin"), stream(), mr="dave", mw="dave")
    with pytest.raises(AccessDeniedError):
        as_("alice").get_stream_metadata(name)
    with pytest.raises(AccessDeniedError):
        as_("alice").set_stream_metadata(name, metadata={"$maxCount": 1},
                                         current_version=StreamState.ANY)
    metadata, _ = as_("dave").get_stream_metadata(name)
    assert metadata["$acl"]["$mw"] == "dave"


def test_the_all_role_opens_an_action_to_every_user(as_):
    name = with_acl(as_("admin"), stream("$acl-open"), r="$all")  # a system stream
    assert len(as_("alice").get_stream(name)) == 1


def test_an_admin_passes_every_acl(as_):
    name = with_acl(as_("admin"), stream(), r="dave", w="dave", d="dave")
    as_("admin").append_to_stream(name, current_version=StreamState.ANY, events=[event()])
    assert len(as_("admin").get_stream(name)) == 2


# -- $settings -------------------------------------------------------------------------------


def test_settings_change_the_default_acl_of_user_streams(as_):
    admin = as_("admin")
    name = stream()
    admin.append_to_stream(name, current_version=StreamState.NO_STREAM, events=[event()])
    admin.append_to_stream("$settings", current_version=StreamState.ANY, events=[NewEvent(
        type="settings", data=b'{"$userStreamAcl": {"$r": "dave"}}')])
    try:
        assert len(as_("dave").get_stream(name)) == 1
        with pytest.raises(AccessDeniedError):
            as_("alice").get_stream(name)
        as_("alice").append_to_stream(name, current_version=StreamState.ANY,
                                      events=[event()])  # $w left to the built-in $all
    finally:
        admin.append_to_stream("$settings", current_version=StreamState.ANY,
                               events=[NewEvent(type="settings", data=b"{}")])
    assert len(as_("alice").get_stream(name)) == 2


# -- persistent subscriptions ----------------------------------------------------------------


def test_managing_groups_is_for_admins_and_ops(as_):
    name = stream()
    with pytest.raises(AccessDeniedError):
        as_("alice").create_subscription_to_stream("g", name)
    as_("carol").create_subscription_to_stream("g", name)
    assert as_("alice").get_subscription_info("g", name).group_name == "g"  # any user
    with pytest.raises(AccessDeniedError):
        as_("alice").update_subscription_to_stream("g", name, max_retry_count=1)
    with pytest.raises(AccessDeniedError):
        as_("alice").replay_parked_events("g", name)
    with pytest.raises(AccessDeniedError):
        as_("alice").delete_subscription("g", name)
    as_("carol").delete_subscription("g", name)


def test_reading_a_group_needs_the_read_role_of_its_stream(as_):
    name = with_acl(as_("admin"), stream(), r="dave")
    as_("admin").create_subscription_to_stream("g", name)
    with pytest.raises(AccessDeniedError):
        next(iter(as_("alice").read_subscription_to_stream("g", name,
                                                           timeout=READ_DEADLINE)))
    with as_("dave").read_subscription_to_stream("g", name, timeout=READ_DEADLINE) as sub:
        delivered = next(iter(sub))
        sub.ack(delivered)
    assert delivered.stream_name == name


# -- the rules, without a server --------------------------------------------------------------


def test_a_role_left_out_of_an_acl_comes_from_the_settings_then_the_defaults():
    alice = User("alice", frozenset({"s"}))
    only_dave_writes = acl.StreamAcl(write=("dave",))
    assert acl.permitted(alice, "orders", "read", only_dave_writes, acl.SystemSettings())
    assert not acl.permitted(alice, "orders", "write", only_dave_writes, acl.SystemSettings())
    settings = acl.SystemSettings(user_stream_acl=acl.StreamAcl(read=("$admins",)))
    assert not acl.permitted(alice, "orders", "read", only_dave_writes, settings)


def test_an_acl_that_does_not_read_counts_as_absent():
    assert acl.StreamAcl.parse({"$r": 5}) is None
    assert acl.StreamAcl.parse("dave") is None
    assert acl.StreamAcl.parse({"$r": ["a", "b"], "$x": 1}) == acl.StreamAcl(read=("a", "b"))
