"""The store's gRPC listener: one port per store, isolated data, clear start errors, clean
stops; and the options that configure it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import trio
from kurrentdbclient import KurrentDBClient, NewEvent, StreamState
from kurrentdbclient.exceptions import NotFoundError

import otp
from exesdb import InvalidArgument, StoreUnavailable, start_store, stop_store
from exesdb.grpc import address
from exesdb.options import check_grpc_files, resolve_options

from .conftest import Server, start_server


def run_exesdb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exesdb", *args], capture_output=True,
                          text=True, timeout=60)


def new_event(kind: str = "Happened") -> NewEvent:
    return NewEvent(type=kind, data=b"{}", content_type="application/json")


def types(client: KurrentDBClient, stream: str) -> list[str]:
    return [e.type for e in client.get_stream(stream)]


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with start_server(tmp_path_factory.mktemp("two"), store_ids=("a", "b")) as server:
        yield server


@pytest.fixture
def clients(two_stores: Server) -> Iterator[dict[str, KurrentDBClient]]:
    opened = {s: KurrentDBClient(two_stores.uri_for(s)) for s in ("a", "b")}
    yield opened
    for client in opened.values():
        client.close()


# -- several stores --------------------------------------------------------------------------


def test_each_store_listens_on_its_own_port(two_stores):
    assert set(two_stores.ports) == {"a", "b"}
    assert two_stores.ports["a"] != two_stores.ports["b"]
    for store_id, port in two_stores.ports.items():
        assert f"exesdb.grpc: store {store_id} listening on 127.0.0.1:{port}" \
            in two_stores.output


def test_a_stream_of_one_store_is_not_in_another(clients):
    stream = f"orders-{uuid.uuid4()}"
    clients["a"].append_to_stream(stream, current_version=StreamState.NO_STREAM,
                                  events=[new_event("Placed")])
    with pytest.raises(NotFoundError):
        types(clients["b"], stream)


def test_two_stores_keep_the_same_stream_name_apart(clients):
    stream = f"orders-{uuid.uuid4()}"
    clients["a"].append_to_stream(stream, current_version=StreamState.NO_STREAM,
                                  events=[new_event("InA")])
    clients["b"].append_to_stream(stream, current_version=StreamState.NO_STREAM,
                                  events=[new_event("InB1"), new_event("InB2")])
    assert types(clients["a"], stream) == ["InA"]
    assert types(clients["b"], stream) == ["InB1", "InB2"]


def test_data_survives_a_restart_on_the_same_port(tmp_path):
    stream = f"orders-{uuid.uuid4()}"
    with start_server(tmp_path) as server:
        port = server.port
        client = KurrentDBClient(server.uri)
        try:
            client.append_to_stream(stream, current_version=StreamState.NO_STREAM,
                                    events=[new_event("Placed")])
        finally:
            client.close()
        server.restart()  # SIGTERM, exit code 0 asserted, started again
        assert server.port == port
        client = KurrentDBClient(server.uri)
        try:
            assert types(client, stream) == ["Placed"]
        finally:
            client.close()


def test_sigterm_with_a_live_subscription_exits_0(tmp_path):
    with start_server(tmp_path) as server:
        client = KurrentDBClient(server.uri)
        subscription = client.subscribe_to_all()
        try:
            assert server.stop() == 0  # the subscription is still open
        finally:
            subscription.stop()
            client.close()


# -- start errors ----------------------------------------------------------------------------


def test_a_port_in_use_fails_the_start_naming_the_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_exesdb("start", "--store-id", "s", "--data-dir", str(tmp_path),
                            "--grpc-port", str(port))
    assert result.returncode == 2, result.stderr
    assert re.search(
        rf"^exesdb: grpc_port: store s cannot listen on 127\.0\.0\.1:{port}: .*in use",
        result.stderr, re.MULTILINE), result.stderr


def test_one_port_per_store_must_match_the_stores(tmp_path):
    result = run_exesdb("start", "--store-id", "a", "--store-id", "b", "--store-id", "c",
                        "--data-dir", str(tmp_path), "--grpc-port", "0", "--grpc-port", "0")
    assert result.returncode == 2
    assert "grpc_port: give one --grpc-port (store i listens on PORT+i) or one per " \
           "--store-id, got 2 for 3 stores" in result.stderr


def test_a_bad_grpc_port_variable_stops_start_naming_it(tmp_path):
    env = {**os.environ, "EX_ESDB_GRPC_PORT": "any"}
    result = subprocess.run([sys.executable, "-m", "exesdb", "start", "--store-id", "s",
                             "--data-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 2
    assert "grpc_port: EX_ESDB_GRPC_PORT must be a whole number, got 'any'" in result.stderr


def test_no_grpc_starts_the_stores_without_a_listener(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "exesdb", "start", "--store-id", "s", "--data-dir",
         str(tmp_path), "--no-grpc"], stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "exesdb: serving" in line:
                break
        process.terminate()
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert "exesdb: serving s" in output
    assert "listening on" not in output


# -- embedded --------------------------------------------------------------------------------


async def test_an_embedded_store_has_no_listener_by_default(tmp_path):
    async with otp.node():
        await start_store("e", tmp_path)
        with pytest.raises(StoreUnavailable):
            address("e")
        await stop_store("e")


async def test_address_reports_the_port_an_embedded_store_listens_on(tmp_path):
    async with otp.node():
        await start_store("e", tmp_path, grpc_port=0)
        host, port = address("e")
        assert host == "127.0.0.1" and port > 0
        stream = await trio.open_tcp_stream(host, port)  # it accepts connections
        await stream.aclose()
        await stop_store("e")
        with pytest.raises(StoreUnavailable):
            address("e")


async def test_an_embedded_store_with_a_missing_users_file_does_not_start(tmp_path):
    async with otp.node():
        with pytest.raises(InvalidArgument, match=r"^users_file: .*nope does not exist"):
            await start_store("e", tmp_path / "data", grpc_port=0,
                              users_file=str(tmp_path / "nope"))
    assert not (tmp_path / "data").exists()  # refused before anything started


# -- options ---------------------------------------------------------------------------------


def test_grpc_options_default_to_no_listener_on_loopback():
    opts = resolve_options(store_id="a", environ={})
    assert (opts.grpc_host, opts.grpc_port, opts.tls_cert_file, opts.tls_key_file,
            opts.users_file, opts.insecure) == ("127.0.0.1", None, None, None, None, False)


def test_grpc_options_come_from_the_environment():
    opts = resolve_options(store_id="a", environ={
        "EX_ESDB_GRPC_HOST": "0.0.0.0", "EX_ESDB_GRPC_PORT": "2200",
        "EX_ESDB_INSECURE": "true", "EX_ESDB_USERS_FILE": "/etc/users"})
    assert (opts.grpc_host, opts.grpc_port, opts.insecure, opts.users_file) == (
        "0.0.0.0", 2200, True, "/etc/users")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "localhost"])
def test_a_loopback_host_needs_no_tls(host):
    assert resolve_options(store_id="a", grpc_host=host, environ={}).grpc_host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
def test_a_non_loopback_host_needs_tls_or_insecure(host):
    with pytest.raises(InvalidArgument, match=re.escape(
            f"grpc_host: listening on {host} needs TLS (tls_cert_file and tls_key_file) "
            "or insecure=True")):
        resolve_options(store_id="a", grpc_host=host, environ={})
    assert resolve_options(store_id="a", grpc_host=host, insecure=True, environ={}).insecure
    assert resolve_options(store_id="a", grpc_host=host, tls_cert_file="c",
                           tls_key_file="k", environ={}).tls


@pytest.mark.parametrize(("options", "rule"), [
    ({"grpc_port": 65536}, "grpc_port: must be a port from 0 (a free one) to 65535"),
    ({"grpc_port": -1}, "grpc_port: must be a port"),
    ({"grpc_port": "2113"}, "grpc_port: must be a port"),
    ({"grpc_host": ""}, "grpc_host: must be a host name or address"),
    ({"tls_cert_file": "c"}, "tls_key_file: required with tls_cert_file"),
    ({"tls_key_file": "k"}, "tls_cert_file: required with tls_key_file"),
    ({"users_file": 5}, "users_file: must be a file path"),
    ({"insecure": "yes"}, "insecure: must be true or false"),
])
def test_a_grpc_option_breaking_its_rule_names_the_field(options, rule):
    with pytest.raises(InvalidArgument, match="^" + re.escape(rule)):
        resolve_options(store_id="a", environ={}, **options)


def test_a_non_numeric_grpc_port_variable_names_it():
    with pytest.raises(InvalidArgument, match="EX_ESDB_GRPC_PORT must be a whole number"):
        resolve_options(store_id="a", environ={"EX_ESDB_GRPC_PORT": "any"})


def test_files_that_do_not_exist_are_refused_naming_the_option(tmp_path):
    opts = resolve_options(store_id="a", users_file=str(tmp_path / "nope"), environ={})
    with pytest.raises(InvalidArgument, match=r"^users_file: .*nope does not exist"):
        check_grpc_files(opts)


def test_start_help_documents_each_grpc_flag_and_its_variable():
    out = run_exesdb("start", "--help").stdout
    for flag, variable in [("--grpc-host", "EX_ESDB_GRPC_HOST"),
                           ("--grpc-port", "EX_ESDB_GRPC_PORT"),
                           ("--tls-cert", "EX_ESDB_TLS_CERT_FILE"),
                           ("--tls-key", "EX_ESDB_TLS_KEY_FILE"),
                           ("--users-file", "EX_ESDB_USERS_FILE"),
                           ("--insecure", "EX_ESDB_INSECURE")]:
        assert flag in out and variable in out
    assert "--no-grpc" in out
