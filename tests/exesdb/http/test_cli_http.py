"""``python -m exesdb start`` runs the node's HTTP listener: it logs the console's URL,
serves ``/metrics``, and its options fail the start with one line naming them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

CONSOLE_LINE = re.compile(r"exesdb\.http: console at (http://127\.0\.0\.1:(\d+)/) "
                          r"\(metrics at http://127\.0\.0\.1:\d+/metrics\)")


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """A server; its log up to the line saying it serves."""
    proc = subprocess.Popen([sys.executable, "-m", "exesdb", "start", "--grpc-port", "0",
                             *args], stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    log = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log += line
        if "exesdb: serving" in line:
            return proc, log
    proc.kill()
    raise AssertionError(f"the server did not start:\n{log}")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    return proc.returncode


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exesdb", "start", "--grpc-port", "0", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_start_logs_the_console_url_and_serves_metrics_there(tmp_path):
    with socket.socket() as probe:  # a port of our choosing, given by the environment
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "EX_ESDB_HTTP_PORT": str(port)}
    proc, log = start("--store-id", "demo", "--data-dir", str(tmp_path), env=env)
    try:
        match = CONSOLE_LINE.search(log)
        assert match, log
        url = match.group(1)
        assert url == f"http://127.0.0.1:{port}/"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url + "metrics", timeout=10) as response:
            families = {f.name for f in text_string_to_metric_families(response.read().decode())}
        with opener.open(url, timeout=10) as response:
            page = response.read().decode()
    finally:
        assert stop(proc) == 0
    assert {"exesdb_events_appended", "exesdb_node_processes"} <= families
    assert "<title>exesdb console</title>" in page
    assert "HttpSystem" in log and "TreeWatcher" in log and "HttpListener" in log  # the tree


def test_no_http_runs_no_listener(tmp_path):
    proc, log = start("--store-id", "s", "--data-dir", str(tmp_path), "--no-http")
    assert stop(proc) == 0
    assert "exesdb.http" not in log and "HttpSystem" not in log


def test_a_port_in_use_fails_the_start_with_one_line_naming_the_option(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--store-id", "s", "--data-dir", str(tmp_path), "--http-port", str(port))
    assert result.returncode == 2
    assert re.search(rf"^exesdb: http_port: cannot listen on 127\.0\.0\.1:{port}: .*in use$",
                     result.stderr, re.MULTILINE), result.stderr


def test_bad_http_options_fail_before_anything_starts(tmp_path):
    result = run("--store-id", "s", "--data-dir", str(tmp_path), "--http-host", "0.0.0.0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "exesdb: http_host: listening on 0.0.0.0 needs TLS (tls_cert_file and tls_key_file) "
        "or insecure=True")
    env = {**os.environ, "EX_ESDB_HTTP_PORT": "any"}
    result = run("--store-id", "s", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "exesdb: http_port: EX_ESDB_HTTP_PORT must be a whole number, got 'any'")
    assert not (tmp_path / "s").exists()


def test_start_help_names_the_http_options_their_variables_and_the_default_port():
    out = subprocess.run([sys.executable, "-m", "exesdb", "start", "--help"],
                         capture_output=True, text=True, timeout=60).stdout
    for text in ("--http-host", "EX_ESDB_HTTP_HOST", "--http-port", "EX_ESDB_HTTP_PORT",
                 "2112", "--no-http", "/metrics"):
        assert text in out, text
