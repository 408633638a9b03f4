"""Crash safety: a writer killed with SIGKILL at random moments loses no acknowledged
append, duplicates nothing, keeps the order and never leaves a torn append."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

from exesdb.storage import SQLiteBackend

CHILD = Path(__file__).with_name("_crash_child.py")
KILLS = 22


def _run_child_and_kill(directory: Path, seed: int, rng: random.Random) -> list[dict]:
    """Start the child, SIGKILL it at a random moment, return the appends it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(directory), str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.4))  # sometimes while it opens or recovers the store
        else:
            ready, _, _ = select.select([child.stdout], [], [], 60)
            assert ready, "child did not start within 60 s"
            line = child.stdout.readline()
            assert line == "ready\n", f"child failed to start: {line!r} {child.stderr.read()}"
            time.sleep(rng.uniform(0.0, 0.25))
        assert child.poll() is None, f"child ended early: {child.stderr.read()}"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        output = child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    lines = output.split("\n")[:-1]  # the last piece is "" or a line cut by the kill
    return [json.loads(line) for line in lines if line != "ready"]


async def _check(directory: Path, acknowledged: list[dict]) -> int:
    """Check every invariant on the reopened store; return how many events it holds."""
    store = await SQLiteBackend.open(directory)
    try:
        everything = []
        while True:
            page = await store.read_all(everything[-1].position + 1 if everything else 0, 1000)
            everything.extend(page)
            if len(page) < 1000:
                break
        positions = [record.position for record in everything]
        assert positions == sorted(set(positions)), "$all positions are not strictly increasing"
        ids = [record.event_id for record in everything]
        assert len(ids) == len(set(ids)), "an event is stored twice"

        by_stream: dict[str, list] = {}
        for record in everything:
            by_stream.setdefault(record.stream_id, []).append(record)
        for stream, records in by_stream.items():
            assert [r.event_number for r in records] == list(range(len(records))), stream
            assert await store.read_stream(stream, 0, 10**9) == records
            assert await store.stream_version(stream) == len(records) - 1

        appends: dict[str, list] = {}
        for record in everything:
            appends.setdefault(record.data["append"], []).append(record)
        for records in appends.values():
            count = records[0].data["count"]
            assert [r.data["index"] for r in records] == list(range(count)), "torn append"
            numbers = [r.event_number for r in records]
            assert numbers == list(range(numbers[0], numbers[0] + count)), "torn append"

        for ack in acknowledged:
            records = by_stream.get(ack["stream"], [])[ack["first"]:ack["last"] + 1]
            assert [str(r.event_id) for r in records] == ack["ids"], f"lost {ack}"
        return len(everything)
    finally:
        await store.close()


def test_acknowledged_appends_survive_sigkill_exactly_once_in_order(tmp_path):
    directory = tmp_path / "store"
    rng = random.Random(20240601)
    acknowledged: list[dict] = []
    started = time.monotonic()
    for kill in range(KILLS):
        acknowledged.extend(_run_child_and_kill(directory, kill, rng))
        stored = trio.run(_check, directory, acknowledged)
        assert stored >= sum(len(ack["ids"]) for ack in acknowledged)
    assert acknowledged, "the child never acknowledged an append"
    assert time.monotonic() - started < 120
