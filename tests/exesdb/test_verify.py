"""Finding damage: ``python -m exesdb verify``, :func:`exesdb.storage.verify.verify_store`
and ``start --verify`` (or ``EX_ESDB_VERIFY``), on real files damaged on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from exesdb import NO_STREAM, NewEvent
from exesdb.storage import SQLiteBackend
from exesdb.storage.sqlite_schema import DB_FILE
from exesdb.storage.verify import verify_store

from .helpers import new_events

MARKER = "damage-me-0123456789"
PAGE = 4096


def exesdb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exesdb", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def make_store(directory: Path, events_per_stream: int = 3, streams: int = 3) -> None:
    """A closed store: streams s0, s1, ... (one event of s1, version 1, carries MARKER),
    a snapshot and a checkpoint."""

    async def main() -> None:
        store = await SQLiteBackend.open(directory)
        for s in range(streams):
            events = new_events(events_per_stream, pad="p" * 300)
            if s == 1:
                events[1] = NewEvent("Marked", {"marker": MARKER})
            await store.append(f"s{s}", NO_STREAM, events)
        await store.record_snapshot("src", "s1", 1, {"snap": 1})
        await store.save_checkpoint("sub", 2)
        await store.close()

    trio.run(main)


def flip_marker(directory: Path) -> None:
    path = directory / DB_FILE
    data = bytearray(path.read_bytes())
    assert data.count(MARKER.encode()) == 1
    data[data.index(MARKER.encode()) + 3] ^= 0x21
    path.write_bytes(bytes(data))


def damage_a_page_of_events(directory: Path) -> None:
    """Overwrite one page holding event rows (found by its padding) with garbage."""
    path = directory / DB_FILE
    data = bytearray(path.read_bytes())
    page = data.index(b"p" * 300, PAGE * 2) // PAGE
    data[page * PAGE:(page + 1) * PAGE] = bytes(range(256)) * (PAGE // 256)
    path.write_bytes(bytes(data))


def marked_position(directory: Path) -> int:
    async def main() -> int:
        store = await SQLiteBackend.open(directory, read_only=True)
        try:
            return (await store.read_stream("s1", 1, 1))[0].position
        finally:
            await store.close()

    return trio.run(main)


# -- the library ---------------------------------------------------------------------------


def test_a_clean_store_verifies_clean_and_counts_what_it_checked(tmp_path):
    make_store(tmp_path / "store")
    report = verify_store(tmp_path / "store")
    assert report.ok and report.damage == ()
    assert (report.events, report.streams, report.snapshots, report.checkpoints) == (9, 3, 1, 1)


def test_a_damaged_event_is_reported_with_its_stream_version_and_position(tmp_path):
    directory = tmp_path / "store"
    make_store(directory)
    position = marked_position(directory)
    flip_marker(directory)
    report = verify_store(directory)
    assert not report.ok
    [damage] = report.damage
    assert (damage.kind, damage.stream_id, damage.event_number, damage.position) == (
        "event", "s1", 1, position)
    assert damage.message == (f"corrupt event record at $all position {position} "
                              "(stream 's1', version 1): checksum mismatch")


def test_a_damaged_page_is_reported_by_sqlite_and_as_unreadable_positions(tmp_path):
    directory = tmp_path / "store"
    make_store(directory, events_per_stream=60, streams=4)
    damage_a_page_of_events(directory)
    report = verify_store(directory)
    kinds = {d.kind for d in report.damage}
    assert "sqlite" in kinds, report.damage
    assert kinds & {"unreadable", "event"}, report.damage


def test_verify_never_writes_to_the_store(tmp_path):
    directory = tmp_path / "store"
    make_store(directory)
    flip_marker(directory)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    verify_store(directory)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before


# -- the command ---------------------------------------------------------------------------


def test_the_verify_command_exits_0_for_a_clean_store(tmp_path):
    make_store(tmp_path / "demo")
    result = exesdb("verify", "--store-id", "demo", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("no damage")


def test_the_verify_command_prints_each_damage_and_exits_1(tmp_path):
    make_store(tmp_path / "demo")
    position = marked_position(tmp_path / "demo")
    flip_marker(tmp_path / "demo")
    result = exesdb("verify", "--store-id", "demo", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert (f"damaged: corrupt event record at $all position {position} (stream 's1', "
            "version 1): checksum mismatch") in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1].endswith("1 damaged")


def test_the_verify_command_reports_a_damaged_page_and_exits_1(tmp_path):
    make_store(tmp_path / "demo", events_per_stream=60, streams=4)
    damage_a_page_of_events(tmp_path / "demo")
    result = exesdb("verify", "--store-id", "demo", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "damaged: SQLite integrity check" in result.stdout
    assert "Traceback" not in result.stderr


def test_the_verify_command_speaks_json(tmp_path):
    make_store(tmp_path / "demo")
    flip_marker(tmp_path / "demo")
    result = exesdb("verify", "--store-id", "demo", "--data-dir", str(tmp_path), "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["kind"] == "event" and lines[0]["stream_id"] == "s1"
    assert lines[-1]["ok"] is False and lines[-1]["damaged"] == 1


def test_the_verify_command_on_a_missing_store_says_so_and_exits_2(tmp_path):
    result = exesdb("verify", "--store-id", "nothing", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "no exesdb store here" in result.stderr


# -- at start --------------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EX_ESDB_")}
    return {**env, **extra}


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_start_with_verify_refuses_a_damaged_store_in_one_line(tmp_path, how):
    make_store(tmp_path / "demo")
    flip_marker(tmp_path / "demo")
    args = ["start", "--store-id", "demo", "--data-dir", str(tmp_path), "--no-grpc",
            "--no-http"]
    env = _clean_env()
    if how == "flag":
        args.append("--verify")
    else:
        env["EX_ESDB_VERIFY"] = "true"
    result = exesdb(*args, env=env)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("exesdb: corrupt database file") and "--verify found 1 damaged" \
        in last and "(stream 's1', version 1)" in last
    assert "verify: corrupt event record" in result.stderr  # each damage, logged at ERROR
    assert "Traceback" not in result.stderr and "serving" not in result.stderr
