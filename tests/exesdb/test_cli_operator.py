"""What the command line shows its operator: bad input gets one line and exit status 2,
never a traceback; a failed start says its root cause in one line; the read-only
commands say what is missing; ``start --help`` names every ``EX_ESDB_*`` variable."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import otp
from exesdb import NewEvent, gateway, start_store, stop_store
from exesdb.grpc import auth
from exesdb.options import DEFAULTS

README = Path(__file__).resolve().parents[2] / "README.md"


def exesdb(*args: str, stdin: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exesdb", *args], capture_output=True,
                          text=True, timeout=120, input=stdin if stdin is not None else "",
                          env=env if env is not None else _clean_env())


def _clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("EX_ESDB_")}, **extra}


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused command printed (asserting there is one, exit 2)."""
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# -- bad input -------------------------------------------------------------------------------


def test_the_same_store_id_twice_is_refused_in_one_line(tmp_path):
    line = one_line_error(exesdb("start", "--store-id", "a", "--store-id", "a",
                                 "--data-dir", str(tmp_path)))
    assert line == ("exesdb: store_id: 'a' is given more than once (each --store-id runs "
                    "one store)")
    assert list(tmp_path.iterdir()) == []


def test_the_same_store_id_twice_in_the_environment_is_refused_in_one_line(tmp_path):
    line = one_line_error(exesdb("start", "--data-dir", str(tmp_path),
                                 env=_clean_env(EX_ESDB_STORE_ID="a,b,a")))
    assert "store_id: 'a' is given more than once" in line


@pytest.mark.parametrize("level", ["LOUD", "INFO,hpack=LOUD", "hpack=DEBUG"])
def test_an_unknown_log_level_is_refused_in_one_line(tmp_path, level):
    line = one_line_error(exesdb("start", "--store-id", "a", "--data-dir", str(tmp_path),
                                 "--log-level", level))
    assert line.startswith("exesdb: log_level: ")
    assert list(tmp_path.iterdir()) == []


def test_user_add_without_a_terminal_or_password_stdin_is_refused_in_one_line(tmp_path):
    users = tmp_path / "users"
    line = one_line_error(exesdb("user", "add", "bob", "--users-file", str(users)))
    assert line == ("exesdb: password: no terminal to ask for it on; give --password-stdin "
                    "and the password on the first line of stdin")
    assert not users.exists()


def test_an_argument_error_is_one_line_not_a_usage_block():
    line = one_line_error(exesdb("start", "--grpc-port", "http"))
    assert line.startswith("python -m exesdb start: argument --grpc-port")


def test_read_from_a_negative_event_number_names_the_option(tmp_path):
    _make_store(tmp_path)
    line = one_line_error(exesdb("read", "orders", "--store-id", "demo", "--data-dir",
                                 str(tmp_path), "--from", "-3"))
    assert line == "exesdb: --from: must be an event number >= 0, got -3"


def _make_store(root: Path) -> None:
    async def main() -> None:
        await start_store(store_id="demo", data_dir=root)
        await gateway.append_events("demo", "orders", [NewEvent("Placed", {})])
        await stop_store("demo")

    otp.run(main)


def test_read_of_a_missing_stream_says_so_and_exits_1(tmp_path):
    _make_store(tmp_path)
    result = exesdb("read", "nothing-here", "--store-id", "demo", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == ("exesdb: stream 'nothing-here': not found in store demo "
                                     "(no events)")
    assert result.stdout == ""


def test_read_of_an_existing_stream_still_exits_0(tmp_path):
    _make_store(tmp_path)
    result = exesdb("read", "orders", "--store-id", "demo", "--data-dir", str(tmp_path))
    assert result.returncode == 0 and "Placed" in result.stdout


# -- a failed start --------------------------------------------------------------------------


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_failed_start_prints_its_root_cause_in_one_line_and_no_nested_reports(tmp_path):
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        result = exesdb("start", "--store-id", "demo", "--data-dir", str(tmp_path),
                        "--grpc-port", str(port), "--no-http")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"exesdb: grpc_port: store demo cannot listen on 127.0.0.1:{port}: [Errno 98] "
        "Address already in use")
    for noise in ("Traceback", "StartChildError", "failed to start", " ERROR "):
        assert noise not in result.stderr


def test_a_failed_start_keeps_the_nested_reports_at_debug(tmp_path):
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        result = exesdb("start", "--store-id", "demo", "--data-dir", str(tmp_path),
                        "--grpc-port", str(port), "--no-http", "--log-level", "DEBUG")
    assert result.returncode == 2
    reports = [line for line in result.stderr.splitlines() if "failed to start" in line]
    assert reports and all(" DEBUG otp.supervisor: " in line for line in reports)


# -- help ------------------------------------------------------------------------------------


def test_start_help_names_every_environment_variable_the_readme_promises():
    promised = set(re.findall(r"EX_ESDB_[A-Z_]+[A-Z]", README.read_text()))
    promised.discard("EX_ESDB_")
    helped = exesdb("start", "--help").stdout
    missing = sorted(v for v in promised if v not in helped)
    assert missing == []


def test_start_help_names_the_environment_variables_of_every_store_option():
    helped = exesdb("start", "--help").stdout
    missing = sorted(f"EX_ESDB_{name.upper()}" for name in DEFAULTS
                     if f"EX_ESDB_{name.upper()}" not in helped)
    assert missing == []


# -- users -------------------------------------------------------------------------------------


def test_user_add_for_an_existing_user_keeps_its_groups(tmp_path):
    users = tmp_path / "users"
    auth.add_user(users, "alice", "old", ["orders", "billing"])
    result = exesdb("user", "add", "alice", "--users-file", str(users), "--password-stdin",
                    stdin="new\n")
    assert result.returncode == 0, result.stderr
    assert "updated alice (groups: orders, billing)" in result.stdout
    loaded = auth.load_users(users)
    assert auth.user_groups(loaded)["alice"] == ("orders", "billing")
    assert loaded.authenticate("alice", "new") is not None


def test_user_add_with_group_replaces_the_groups(tmp_path):
    users = tmp_path / "users"
    auth.add_user(users, "alice", "old", ["orders", "billing"])
    result = exesdb("user", "add", "alice", "--users-file", str(users), "--password-stdin",
                    "--group", "$admins", stdin="new\n")
    assert result.returncode == 0, result.stderr
    assert auth.user_groups(auth.load_users(users))["alice"] == ("$admins",)


def test_a_new_user_without_group_has_none(tmp_path):
    users = tmp_path / "users"
    result = exesdb("user", "add", "bob", "--users-file", str(users), "--password-stdin",
                    stdin="pw\n")
    assert result.returncode == 0 and "added bob (groups: none)" in result.stdout
