"""Security of the gRPC gateway: TLS, users with hashed passwords, who may use which
store, and the listening address rules.

One TLS server with a users file runs two stores (``s`` and ``other``) for the module;
the real ``kurrentdbclient`` connects with the test CA as its root certificate.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import AccessDeniedError, UnauthenticatedError

from exesdb import InvalidArgument
from exesdb.grpc import auth
from exesdb.grpc.protos import gossip_pb2, serverfeatures_pb2, shared_pb2
from exesdb.grpc.rpc import User

from .conftest import Server, start_server

PASSWORDS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw"}
GROUPS = {"admin": ["$admins"], "alice": ["s"], "bob": ["other"]}


def run_exesdb(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exesdb", *args], capture_output=True,
                          text=True, timeout=60, input=stdin)


def new_event(kind: str = "Happened") -> NewEvent:
    return NewEvent(type=kind, data=b"{}", content_type="application/json")


def stream() -> str:
    return f"secure-{uuid.uuid4()}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file)


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("users") / "users"
    for name, password in PASSWORDS.items():
        auth.add_user(path, name, password, GROUPS[name])
    return str(path)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[str, str],
           users_file: str) -> Iterator[Server]:
    cert_file, key_file = tls_files
    with start_server(tmp_path_factory.mktemp("secure"), "--tls-cert", cert_file,
                      "--tls-key", key_file, "--users-file", users_file,
                      store_ids=("s", "other")) as server:
        yield server


def connect(server: Server, ca: trustme.CA, user: str, password: str,
            store_id: str = "s") -> KurrentDBClient:
    return KurrentDBClient(server.uri_for(store_id, user, password, tls=True),
                           root_certificates=ca.cert_pem.bytes())


@pytest.fixture
def as_user(secure: Server, ca: trustme.CA) -> Iterator[object]:
    """``as_user(name, password=None, store_id="s")``: a client, closed after the test."""
    clients: list[KurrentDBClient] = []

    def make(name: str, password: str | None = None, store_id: str = "s") -> KurrentDBClient:
        client = connect(secure, ca, name, PASSWORDS[name] if password is None else password,
                         store_id)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# -- TLS and credentials ---------------------------------------------------------------------


def test_the_listener_logs_that_it_serves_tls(secure):
    assert secure.tls
    assert re.search(rf"store s listening on 127\.0\.0\.1:{secure.port} \(tls\)", secure.output)


def test_right_credentials_over_tls_append_and_read(as_user):
    client = as_user("admin")
    name = stream()
    client.append_to_stream(name, current_version=StreamState.NO_STREAM,
                            events=[new_event("Placed"), new_event("Paid")])
    assert [e.type for e in client.get_stream(name)] == ["Placed", "Paid"]


def test_a_wrong_password_is_refused_on_append(as_user):
    client = as_user("admin", "not-the-password")
    with pytest.raises(UnauthenticatedError):
        client.append_to_stream(stream(), current_version=StreamState.ANY,
                                events=[new_event()])


def test_a_wrong_password_is_refused_on_read(as_user):
    name = stream()
    as_user("admin").append_to_stream(name, current_version=StreamState.ANY,
                                      events=[new_event()])
    with pytest.raises(UnauthenticatedError):
        list(as_user("admin", "not-the-password").get_stream(name))


def test_a_wrong_password_is_refused_on_a_subscription(as_user):
    client = as_user("alice", "not-the-password")
    with pytest.raises(UnauthenticatedError):
        subscription = client.subscribe_to_stream(stream())
        try:
            next(iter(subscription))
        finally:
            subscription.stop()


def test_a_wrong_password_is_refused_on_persistent_subscriptions(as_user):
    with pytest.raises(UnauthenticatedError):
        as_user("alice", "not-the-password").create_subscription_to_stream(
            group_name=f"g-{uuid.uuid4()}", stream_name=stream())


def test_an_unknown_user_is_refused(as_user, secure, ca):
    client = connect(secure, ca, "mallory", "admin-pw")
    try:
        with pytest.raises(UnauthenticatedError):
            client.append_to_stream(stream(), current_version=StreamState.ANY,
                                    events=[new_event()])
    finally:
        client.close()


# -- what a client asks before it logs in ----------------------------------------------------


SUPPORTED_METHODS = "/event_store.client.server_features.ServerFeatures/GetSupportedMethods"
GOSSIP_READ = "/event_store.client.gossip.Gossip/Read"


def anonymous_call(server: Server, ca: trustme.CA, path: str, response: Any,
                   metadata: tuple[tuple[str, str], ...] = ()) -> Any:
    """Call ``path`` over TLS as the Node.js client calls GetSupportedMethods: no
    credentials unless ``metadata`` carries some."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    with grpc.secure_channel(f"127.0.0.1:{server.port}", credentials) as channel:
        call = channel.unary_unary(path, request_serializer=shared_pb2.Empty.SerializeToString,
                                   response_deserializer=response.FromString)
        return call(shared_pb2.Empty(), timeout=10, metadata=metadata)


def test_server_features_answer_a_call_without_credentials(secure, ca):
    answer = anonymous_call(secure, ca, SUPPORTED_METHODS, serverfeatures_pb2.SupportedMethods)
    methods = {(m.service_name, m.method_name) for m in answer.methods}
    assert ("event_store.client.streams.streams", "append") in methods


def test_gossip_answers_a_call_without_credentials(secure, ca):
    answer = anonymous_call(secure, ca, GOSSIP_READ, gossip_pb2.ClusterInfo)
    assert [m.http_end_point.port for m in answer.members] == [secure.port]


def test_server_features_still_refuse_wrong_credentials(secure, ca):
    token = base64.b64encode(b"admin:not-the-password").decode()
    with pytest.raises(grpc.RpcError) as caught:
        anonymous_call(secure, ca, SUPPORTED_METHODS, serverfeatures_pb2.SupportedMethods,
                       (("authorization", f"Basic {token}"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- which store a user may use --------------------------------------------------------------


def test_a_member_of_the_store_group_may_use_the_store(as_user):
    client = as_user("alice", store_id="s")
    name = stream()
    client.append_to_stream(name, current_version=StreamState.NO_STREAM, events=[new_event()])
    assert len(list(client.get_stream(name))) == 1


def test_a_user_not_allowed_on_the_store_is_denied_append(as_user):
    with pytest.raises(AccessDeniedError):
        as_user("bob", store_id="s").append_to_stream(
            stream(), current_version=StreamState.ANY, events=[new_event()])


def test_a_user_not_allowed_on_the_store_gets_kurrentdbs_access_denied_trailer(as_user):
    with pytest.raises(AccessDeniedError) as caught:
        as_user("bob", store_id="s").delete_stream(stream(), current_version=StreamState.ANY)
    denied = caught.value.__context__
    assert isinstance(denied, grpc.Call)
    assert (denied.details(), dict(denied.trailing_metadata() or ())) == (
        "Access Denied", {"exception": "access-denied"})


def test_a_client_of_one_store_cannot_read_another(as_user):
    name = stream()
    as_user("bob", store_id="other").append_to_stream(
        name, current_version=StreamState.NO_STREAM, events=[new_event()])
    with pytest.raises(AccessDeniedError):
        list(as_user("alice", store_id="other").get_stream(name))


def test_a_user_not_allowed_on_the_store_is_denied_a_subscription(as_user):
    client = as_user("bob", store_id="s")
    with pytest.raises(AccessDeniedError):
        subscription = client.subscribe_to_all()
        try:
            next(iter(subscription))
        finally:
            subscription.stop()


def test_a_user_not_allowed_on_the_store_is_denied_persistent_subscriptions(as_user):
    with pytest.raises(AccessDeniedError):
        as_user("bob", store_id="s").create_subscription_to_stream(
            group_name=f"g-{uuid.uuid4()}", stream_name=stream())


def test_an_admin_may_use_every_store(as_user):
    for store_id in ("s", "other"):
        client = as_user("admin", store_id=store_id)
        name = stream()
        client.append_to_stream(name, current_version=StreamState.NO_STREAM,
                                events=[new_event()])
        assert len(list(client.get_stream(name))) == 1


# -- the listening address -------------------------------------------------------------------


def test_a_non_loopback_host_without_tls_refuses_to_start(tmp_path):
    result = run_exesdb("start", "--store-id", "s", "--data-dir", str(tmp_path),
                        "--grpc-host", "0.0.0.0", "--grpc-port", "0")
    assert result.returncode != 0
    assert ("grpc_host: listening on 0.0.0.0 needs TLS (tls_cert_file and tls_key_file) "
            "or insecure=True") in result.stderr
    assert not (tmp_path / "s").exists()  # refused before anything started


def test_insecure_allows_a_non_loopback_host(tmp_path):
    with start_server(tmp_path, "--grpc-host", "0.0.0.0", "--insecure") as server:
        assert re.search(rf"store s listening on 0\.0\.0\.0:{server.port}$", server.output,
                         re.MULTILINE)
        client = KurrentDBClient(server.uri)  # connect on loopback only
        try:
            name = stream()
            client.append_to_stream(name, current_version=StreamState.NO_STREAM,
                                    events=[new_event()])
            assert len(list(client.get_stream(name))) == 1
        finally:
            client.close()


def test_tls_files_allow_a_non_loopback_host(tmp_path, tls_files, ca):
    cert_file, key_file = tls_files
    with start_server(tmp_path, "--grpc-host", "0.0.0.0", "--tls-cert", cert_file,
                      "--tls-key", key_file) as server:
        client = KurrentDBClient(server.uri_for("s", "anyone", "any", tls=True),
                                 root_certificates=ca.cert_pem.bytes())
        try:
            client.append_to_stream(stream(), current_version=StreamState.NO_STREAM,
                                    events=[new_event()])
        finally:
            client.close()


def test_a_missing_tls_file_is_refused_naming_the_option(tmp_path, tls_files):
    result = run_exesdb("start", "--store-id", "s", "--data-dir", str(tmp_path),
                        "--grpc-port", "0", "--tls-cert", tls_files[0],
                        "--tls-key", str(tmp_path / "missing.key"))
    assert result.returncode == 2
    assert f"tls_key_file: {tmp_path / 'missing.key'} does not exist" in result.stderr


def test_an_unusable_tls_certificate_fails_the_start_naming_it(tmp_path, tls_files):
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    result = run_exesdb("start", "--store-id", "s", "--data-dir", str(tmp_path / "data"),
                        "--grpc-port", "0", "--tls-cert", str(garbage),
                        "--tls-key", tls_files[1])
    assert result.returncode == 2
    assert re.search(r"^exesdb: tls_cert_file: store s cannot serve TLS on 127\.0\.0\.1:0: "
                     r".*garbage\.crt", result.stderr, re.MULTILINE), result.stderr


def test_a_tls_cert_without_a_key_is_refused(tmp_path, tls_files):
    result = run_exesdb("start", "--store-id", "s", "--data-dir", str(tmp_path),
                        "--grpc-port", "0", "--tls-cert", tls_files[0])
    assert result.returncode == 2
    assert "tls_key_file: required with tls_cert_file" in result.stderr


def test_a_malformed_users_file_is_refused_naming_the_line(tmp_path):
    users = tmp_path / "users"
    users.write_text("# users\nadmin:not-a-hash:$admins\n")
    result = run_exesdb("start", "--store-id", "s", "--data-dir", str(tmp_path / "data"),
                        "--grpc-port", "0", "--users-file", str(users))
    assert result.returncode == 2
    assert f"users_file: {users} line 2: the password hash must be scrypt$N$r$p$salt$hash" \
        in result.stderr


# -- the users file --------------------------------------------------------------------------


def test_a_password_hash_is_salted_scrypt_with_its_parameters():
    first, second = auth.hash_password("pw"), auth.hash_password("pw")
    assert first.startswith(f"scrypt${auth.SCRYPT_N}${auth.SCRYPT_R}${auth.SCRYPT_P}$")
    assert first != second  # a fresh salt each time
    assert auth.verify_password("pw", first) and auth.verify_password("pw", second)
    assert not auth.verify_password("pW", first)


def test_a_malformed_hash_never_verifies():
    assert not auth.verify_password("pw", "scrypt$3$8$1$c2FsdA==$aGFzaA==")
    assert not auth.verify_password("pw", "plain")


def test_authenticate_returns_the_user_with_its_groups(users_file):
    users = auth.load_users(users_file)
    assert users.authenticate("alice", "alice-pw") == User("alice", frozenset({"s"}))
    assert users.authenticate("alice", "bob-pw") is None
    assert users.authenticate("nobody", "alice-pw") is None


@pytest.mark.parametrize(("line", "rule"), [
    ("alice", "a user is name:password-hash:groups (3 fields separated by ':'), got 1 field"),
    ("a:b:c:d", "a user is name:password-hash:groups (3 fields separated by ':'), got 4"),
    (":{hash}:", "the user name must not be empty"),
    ("al ice:{hash}:", "the user name 'al ice' must not contain ' '"),
    ("alice:{hash}:s,,bad group", "a group 'bad group' must not contain ' '"),
    ("alice:scrypt$x$8$1$c2FsdA==$aGFzaA==:", "the scrypt parameters N, r and p must be whole"),
    ("alice:scrypt$16384$8$1$!!$aGFzaA==:", "the salt and hash must be base64"),
    ("alice:scrypt$1048576$64$1$c2FsdA==$aGFzaA==:", "the scrypt parameters N=1048576 r=64 "
                                                     "need more than 128 MiB"),
])
def test_a_malformed_users_line_names_the_line_and_the_rule(line, rule):
    text = "# comment\n\n" + line.format(hash=auth.hash_password("pw", n=2)) + "\n"
    with pytest.raises(InvalidArgument, match=r"^users_file: F line 3: " + re.escape(rule)):
        auth.parse_users(text, "F")


def test_a_user_listed_twice_is_refused():
    hashed = auth.hash_password("pw", n=2)
    with pytest.raises(InvalidArgument, match="line 2: the user 'a' is already on line 1"):
        auth.parse_users(f"a:{hashed}:\na:{hashed}:\n", "F")


def test_a_user_may_use_a_store_as_admin_or_member_of_its_group():
    assert auth.may_use(User("root", frozenset({"$admins"})), "any")
    assert auth.may_use(User("alice", frozenset({"s"})), "s")
    assert not auth.may_use(User("alice", frozenset({"s"})), "other")
    assert not auth.may_use(User("nobody"), "s")
    assert auth.may_use(None, "s")  # no users file: everyone may do everything


def test_the_user_command_adds_lists_and_removes_users(tmp_path):
    users = str(tmp_path / "users")
    added = run_exesdb("user", "add", "--users-file", users, "carol", "--group", "s",
                       "--group", "t", "--password-stdin", stdin="carol-pw\n")
    assert added.returncode == 0, added.stderr
    assert auth.load_users(users).authenticate("carol", "carol-pw") == User(
        "carol", frozenset({"s", "t"}))
    assert "carol-pw" not in Path(users).read_text()
    listed = run_exesdb("user", "list", "--users-file", users)
    assert listed.stdout.splitlines() == ["carol\ts,t"]
    removed = run_exesdb("user", "remove", "--users-file", users, "carol")
    assert removed.returncode == 0, removed.stderr
    assert len(auth.load_users(users)) == 0


def test_removing_an_unknown_user_is_an_error(tmp_path):
    users = tmp_path / "users"
    auth.add_user(users, "carol", "pw")
    result = run_exesdb("user", "remove", "--users-file", str(users), "dave")
    assert result.returncode == 2
    assert "name: no user 'dave'" in result.stderr


def test_an_empty_password_is_refused(tmp_path):
    result = run_exesdb("user", "add", "--users-file", str(tmp_path / "users"), "carol",
                        "--password-stdin", stdin="\n")
    assert result.returncode == 2
    assert "password: must not be empty" in result.stderr
