"""The README's Python examples run as written.

An example right after the marker ``<!-- README test: runs beside `python -m exesdb start
--store-id demo` -->`` is a client of the main job: it runs while that command serves (in
a temporary data directory, on a free port that replaces the example's ``2113``).
"""

import pathlib
import re
import subprocess
import sys
import threading
import time

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"(<!-- README test: runs beside `([^`]*)` -->\n)?```python\n(.*?)```", re.S)
EXAMPLES = [(match.group(2), match.group(3)) for match in _BLOCK.finditer(README.read_text())]
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def test_the_readme_has_examples():
    assert EXAMPLES


def _serve(command: str, data_dir: pathlib.Path) -> tuple[subprocess.Popen[str], int]:
    args = command.split()
    assert args[:4] == ["python", "-m", "exesdb", "start"], command
    proc = subprocess.Popen([sys.executable, *args[1:], "--data-dir", str(data_dir),
                             "--grpc-port", "0"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    log = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line)
        if match := _LISTENING.search(line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(match.group(1))
    proc.kill()
    raise AssertionError("the server did not start:\n" + "".join(log))


@pytest.mark.parametrize("beside, code", EXAMPLES,
                         ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(beside, code, tmp_path):
    server = None
    if beside:
        server, port = _serve(beside, tmp_path)
        code = code.replace("127.0.0.1:2113", f"127.0.0.1:{port}")
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                text=True, timeout=60)
    finally:
        if server is not None:
            server.terminate()
            assert server.wait(30) == 0
    assert result.returncode == 0, result.stderr
