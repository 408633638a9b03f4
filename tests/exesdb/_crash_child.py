"""The child process of the crash test: appends in a loop and reports acknowledged appends.

Usage: ``python _crash_child.py STORE_DIR SEED``. Prints ``ready`` once the store is open,
then one JSON line per acknowledged append: ``{"stream", "first", "last", "ids"}``. Four
appender processes share the store's writer (so appends are group-committed); each
appends 1 to 5 events at a time with an exact expected version. Every event's data
names its append (``append``), its index in it and the append's size, so the parent can
tell a torn append. Runs until it is killed.
"""

from __future__ import annotations

import json
import random
import sys
import uuid

import trio

import otp
from exesdb import NewEvent
from exesdb.storage import SQLiteBackend, writer

STREAMS = 4


async def main(directory: str, seed: int) -> None:
    rng = random.Random(seed)
    backend = await SQLiteBackend.open(directory)
    pid = await writer.start_link(backend)
    versions = {f"s{i}": await backend.stream_version(f"s{i}") for i in range(STREAMS)}
    print("ready", flush=True)

    async def appender(stream: str) -> None:
        while True:
            count = rng.randint(1, 5)
            append_id = uuid.uuid4().hex
            events = [NewEvent("Appended", {"append": append_id, "index": k, "count": count,
                                            "stream": stream, "pad": "x" * rng.randint(0, 300)})
                      for k in range(count)]
            last = await writer.append(pid, stream, versions[stream], events)
            versions[stream] = last
            print(json.dumps({"stream": stream, "first": last - count + 1, "last": last,
                              "ids": [str(e.event_id) for e in events]}), flush=True)

    async with trio.open_nursery() as nursery:
        for stream in versions:
            nursery.start_soon(appender, stream)


if __name__ == "__main__":
    otp.run(main, sys.argv[1], int(sys.argv[2]))
