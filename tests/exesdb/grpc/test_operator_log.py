"""The server's log after "serving", as its operator reads it: whether authentication is
on (and a warning when a users file cannot work, on a plain-text port), connections at
DEBUG, a summary of each store's activity per interval when anything happened, and no
third-party DEBUG noise unless asked for. A real server subprocess and kurrentdbclient."""

from __future__ import annotations

import time

from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

from exesdb.grpc import auth

from .conftest import start_server

SUMMARY = "exesdb: store s, last"


def _append_and_read(uri: str, count: int = 3) -> None:
    client = KurrentDBClient(uri)
    try:
        client.append_to_stream("orders", current_version=StreamState.ANY,
                                events=[NewEvent(type="T", data=b"{}") for _ in range(count)])
        assert len(client.get_stream("orders")) >= count
    finally:
        client.close()


def _wait_for(server, *texts: str, timeout: float = 15.0) -> str:
    """The first line of the server's log holding every one of ``texts``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.output.splitlines():
            if all(text in line for text in texts):
                return line
        time.sleep(0.05)
    raise AssertionError(f"{texts!r} not logged; the log:\n{server.output}")


def test_the_start_log_says_authentication_is_off_without_a_users_file(tmp_path):
    with start_server(tmp_path, "--no-http") as server:
        line = _wait_for(server, "authentication")
    assert "store s: authentication off (no users file)" in line


def test_a_users_file_on_a_plain_text_port_warns_that_calls_will_be_refused(tmp_path):
    users = tmp_path / "users"
    auth.add_user(users, "admin", "pw", ["$admins"])
    with start_server(tmp_path, "--no-http", "--users-file", str(users)) as server:
        on = _wait_for(server, "authentication on")
        warning = _wait_for(server, "plain-text port")
    assert "store s: authentication on: 1 users from" in on
    assert " WARNING " in warning and "every call that needs them will be refused" in warning


def test_insecure_says_a_users_file_on_a_plain_text_port_is_intended(tmp_path):
    users = tmp_path / "users"
    auth.add_user(users, "admin", "pw", ["$admins"])
    with start_server(tmp_path, "--no-http", "--users-file", str(users),
                      "--insecure") as server:
        _wait_for(server, "authentication on")
        assert "plain-text port" not in server.output


def test_a_users_file_with_tls_logs_authentication_on_without_a_warning(tmp_path,
                                                                       certificates):
    _ca, files = certificates
    users = tmp_path / "users"
    auth.add_user(users, "admin", "pw", ["$admins"])
    with start_server(tmp_path, "--no-http", "--users-file", str(users), "--tls-cert",
                      files.cert_file, "--tls-key", files.key_file) as server:
        _wait_for(server, "authentication on")
        assert "plain-text port" not in server.output


def test_connections_opened_and_closed_are_logged_at_debug(tmp_path):
    with start_server(tmp_path, "--no-http", "--log-level", "DEBUG") as server:
        _append_and_read(server.uri)
        opened = _wait_for(server, "connection from", "opened")
        closed = _wait_for(server, "connection from", "closed")
    assert " DEBUG exesdb.grpc: connection from 127.0.0.1:" in opened
    assert " DEBUG exesdb.grpc: connection from 127.0.0.1:" in closed


def test_third_party_debug_noise_stays_off_at_debug(tmp_path):
    with start_server(tmp_path, "--no-http", "--log-level", "DEBUG") as server:
        _append_and_read(server.uri)
        _wait_for(server, "connection from 127.0.0.1")
    assert " DEBUG hpack" not in server.output


def test_third_party_debug_shows_when_named(tmp_path):
    with start_server(tmp_path, "--no-http", "--log-level", "INFO,hpack=DEBUG") as server:
        _append_and_read(server.uri)
        _wait_for(server, " DEBUG hpack")


def test_a_summary_of_the_activity_is_logged_per_interval_when_anything_happened(tmp_path):
    with start_server(tmp_path, "--no-http", "--activity-interval", "0.5") as server:
        _append_and_read(server.uri, count=3)
        line = _wait_for(server, SUMMARY)
    assert " INFO exesdb: " in line
    assert "3 events in" in line and "events out" in line and "calls" in line
    assert "connections opened" in line and "clients" in line and "subscriptions" in line


def test_no_summary_is_logged_while_nothing_happens(tmp_path):
    with start_server(tmp_path, "--no-http", "--activity-interval", "0.2") as server:
        time.sleep(1.5)
        assert SUMMARY not in server.output
