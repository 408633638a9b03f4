"""The HTTP listener's options: defaults, the environment, and the rules they keep."""

from __future__ import annotations

import pytest

from exesdb import InvalidArgument
from exesdb.http import DEFAULT_HTTP_PORT, HttpOptions, resolve_http_options
from exesdb.http.options import check_http_files


def test_by_default_it_listens_on_loopback_port_2112_without_tls_or_users():
    assert resolve_http_options(environ={}) == HttpOptions(
        http_host="127.0.0.1", http_port=2112, tls_cert_file=None, tls_key_file=None,
        users_file=None, insecure=False)
    assert DEFAULT_HTTP_PORT == 2112


def test_options_come_from_the_environment_with_the_grpc_sides_tls_and_users_files():
    opts = resolve_http_options(environ={
        "EX_ESDB_HTTP_HOST": "0.0.0.0", "EX_ESDB_HTTP_PORT": "8080",
        "EX_ESDB_TLS_CERT_FILE": "c.pem", "EX_ESDB_TLS_KEY_FILE": "k.pem",
        "EX_ESDB_USERS_FILE": "users", "EX_ESDB_INSECURE": "no"})
    assert (opts.http_host, opts.http_port, opts.tls, opts.users_file) == (
        "0.0.0.0", 8080, True, "users")
    assert resolve_http_options(http_port=1, environ={"EX_ESDB_HTTP_PORT": "2"}).http_port == 1


@pytest.mark.parametrize("options, message", [
    ({"http_port": 70000}, "http_port: must be a port from 0 (a free one) to 65535"),
    ({"http_port": "80"}, "http_port: must be a port"),
    ({"http_host": ""}, "http_host: must be a host name or address"),
    ({"http_host": "10.0.0.1"}, "http_host: listening on 10.0.0.1 needs TLS"),
    ({"tls_cert_file": "c.pem"}, "tls_key_file: required with tls_cert_file"),
    ({"insecure": "yes"}, "insecure: must be true or false"),
    ({"colour": "blue"}, "options: unknown HTTP option 'colour'"),
])
def test_a_bad_option_is_refused_naming_it_and_its_rule(options, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_http_options(environ={}, **options)


def test_a_non_loopback_address_is_allowed_with_tls_or_insecure():
    assert resolve_http_options(http_host="10.0.0.1", insecure=True, environ={}).insecure
    assert resolve_http_options(http_host="10.0.0.1", tls_cert_file="c", tls_key_file="k",
                                environ={}).tls


def test_missing_files_are_named(tmp_path):
    with pytest.raises(InvalidArgument, match=r"users_file: .* does not exist"):
        check_http_files(resolve_http_options(users_file=str(tmp_path / "nope"), environ={}))
