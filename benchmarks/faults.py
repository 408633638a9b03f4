"""A fault campaign against ``python -m exesdb start``: real OS processes, real faults, and
the store checked after every round.

:func:`run_campaign` starts the server as an OS process (its data on a small tmpfs where
this machine lets it mount one, so that the disk can really fill up), several appender
processes and a subscriber process, all speaking KurrentDB's protocol through
``kurrentdbclient`` (``python -m benchmarks.faults appender|subscriber ...``), then runs
rounds. Each round lets the clients work for a moment, injects one fault drawn from a
seeded schedule, and checks the store:

* ``kill``: SIGKILL the server, start it again on the same port;
* ``pause``: SIGSTOP the server for up to a second, then SIGCONT;
* ``full``: fill the store's file system with a file; while it is full, send an append
  too large to fit in what SQLite's write-ahead log can reuse (8 MiB), which the server
  must refuse with ``RESOURCE_EXHAUSTED`` and not write (the clients' small appends may
  or may not fit meanwhile); then free the space (only with the tmpfs; otherwise the
  schedule has no ``full`` rounds and says so);
* ``drop``: SIGKILL an appender (its connection drops, most likely mid-call) and start a
  new one on the same streams;
* ``hostile``: a raw socket sends garbage, another an HTTP/2 preface and a flood of PING
  frames (the server must go on serving everyone else).

The check, after each round and at the end (after a clean SIGTERM stop, exit status 0):
every acknowledged event is stored exactly once, at the stream and version it was
acknowledged at; no event of an append refused for a full disk is stored; no event id is
stored twice; every stream is numbered 0, 1, 2, ...
in ``$all`` order; ``$all`` positions are 0, 1, 2, ... (SQLite's); and what the
subscriber received is, in order, exactly the first events of ``$all``. Acknowledgements
and deliveries are read before the store, so each of them was committed when the store
was read. The appenders also read their streams back through the server and report any
acknowledged event they do not find where it was acknowledged.

Everything random comes from the seed (the faults, their timing, the clients' batch
sizes), so a run can be repeated; the machine's timing still varies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import attrs
import trio

from exesdb.storage import SQLiteBackend

__all__ = ["FAULTS", "CampaignReport", "main", "run_campaign"]

FAULTS: Final = ("kill", "pause", "full", "drop", "hostile")
"""The kinds of fault a round injects."""
STORE_ID: Final = "faults"
SERVE_TIMEOUT: Final = 60.0
STREAMS_PER_APPENDER: Final = 3
_H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@attrs.define
class CampaignReport:
    """What a campaign did and found. ``lost``: acknowledged events not stored where they
    were acknowledged; ``duplicated``: event ids stored more than once; ``violations``: every
    broken invariant, one line each (empty when all held)."""

    seed: int
    rounds: int = 0
    faults: Counter[str] = attrs.field(factory=Counter)
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    delivered: int = 0
    read_back: int = 0
    checks: int = 0
    full_disk_failures: int = 0
    full_disk_refused: int = 0
    full_disk_accepted: int = 0
    hostile_cut: int = 0
    elapsed: float = 0.0
    disk: str = ""
    violations: list[str] = attrs.field(factory=list)

    @property
    def kills(self) -> int:
        """How many times the server was killed with SIGKILL."""
        return self.faults["kill"]

    def summary(self) -> str:
        """The figures, one per line."""
        faults = ", ".join(f"{kind} {self.faults[kind]}" for kind in FAULTS)
        return "\n".join([
            f"seed {self.seed}: {self.rounds} rounds in {self.elapsed:.1f} s ({self.disk})",
            f"faults: {faults}",
            f"acknowledged events: {self.acknowledged}, stored: {self.stored}",
            f"lost: {self.lost}, duplicated: {self.duplicated}, other violations: "
            f"{len(self.violations) - bool(self.lost) - bool(self.duplicated)}",
            f"subscriber deliveries checked: {self.delivered}; appenders' read-back checks: "
            f"{self.read_back}; store checks: {self.checks}",
            f"full disk: {self.full_disk_refused} large appends refused with "
            f"RESOURCE_EXHAUSTED and not written, {self.full_disk_accepted} fitted; "
            f"{self.full_disk_failures} failed-write lines in the server's log",
            f"hostile connections: {self.hostile_cut} cut-off warnings in the server's log "
            "(it logs at most one per 10 s)",
        ])

    def as_json(self) -> dict[str, Any]:
        """The figures as a JSON object."""
        return {"seed": self.seed, "rounds": self.rounds, "faults": dict(self.faults),
                "kills": self.kills, "acknowledged": self.acknowledged, "stored": self.stored,
                "lost": self.lost, "duplicated": self.duplicated,
                "delivered": self.delivered, "read_back": self.read_back,
                "checks": self.checks, "full_disk_failures": self.full_disk_failures,
                "full_disk_refused": self.full_disk_refused,
                "full_disk_accepted": self.full_disk_accepted,
                "hostile_cut": self.hostile_cut, "elapsed": round(self.elapsed, 1),
                "disk": self.disk,
                "violations": self.violations}


# -- the server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EX_ESDB_")}


class _Server:
    """``python -m exesdb start`` on a fixed port, its log in a file."""

    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "exesdb", "start", "--store-id", STORE_ID,
                 "--data-dir", str(self.data_dir), "--grpc-port", str(self.port),
                 "--no-http", "--activity-interval", "0"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=_clean_env())
        deadline = time.monotonic() + SERVE_TIMEOUT
        while time.monotonic() < deadline:
            with open(self.log, "rb") as log:
                log.seek(offset)
                if b"exesdb: serving" in log.read():
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}); see "
                                   f"{self.log}")
            time.sleep(0.02)
        raise RuntimeError(f"the server did not serve within {SERVE_TIMEOUT} s; see {self.log}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()

    def stop(self) -> int:
        """SIGTERM; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -signal.SIGKILL

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


# -- the client processes ----------------------------------------------------------------------


class _Clients:
    """The appender and subscriber processes, each writing JSON lines to a file."""

    def __init__(self, work: Path, uri: str, appenders: int, seed: int) -> None:
        self.work = work
        self.uri = uri
        self.seed = seed
        self.appenders: dict[int, subprocess.Popen[bytes]] = {}
        self.generation: Counter[int] = Counter()
        self.tails: dict[Path, _Tail] = {}
        for index in range(appenders):
            self.start_appender(index)
        self.subscriber = self._spawn(["subscriber", "--out", str(work / "subscriber.jsonl")],
                                      work / "subscriber.err")

    def _spawn(self, args: list[str], err: Path) -> subprocess.Popen[bytes]:
        with open(err, "ab") as errors:
            return subprocess.Popen(
                [sys.executable, "-m", "benchmarks.faults", *args, "--uri", self.uri],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                env=_clean_env())

    def start_appender(self, index: int) -> None:
        self.generation[index] += 1
        seed = self.seed * 1000 + index * 100 + self.generation[index]
        self.appenders[index] = self._spawn(
            ["appender", "--name", f"a{index}", "--seed", str(seed),
             "--out", str(self.work / f"appender-{index}.jsonl")],
            self.work / f"appender-{index}.err")

    def drop(self, index: int) -> None:
        """SIGKILL appender ``index`` (mid-call, most likely) and start a new one."""
        process = self.appenders[index]
        process.kill()
        process.wait()
        self.start_appender(index)

    def ack_files(self) -> list[Path]:
        return sorted(self.work.glob("appender-*.jsonl"))

    def wait_working(self, timeout: float = 120.0) -> None:
        """Wait until every appender has had an append acknowledged and the subscriber has
        received an event (they start slowly on a busy machine)."""
        deadline = time.monotonic() + timeout
        files = [self.work / f"appender-{i}.jsonl" for i in self.appenders]
        files.append(self.work / "subscriber.jsonl")
        while time.monotonic() < deadline:
            if all(path.exists() and path.stat().st_size > 0 for path in files):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the clients did not start working within {timeout} s; see "
                           f"the *.err files in {self.work}")

    def tail(self, path: Path) -> _Tail:
        """The incremental reader of one of the clients' files."""
        if path not in self.tails:
            self.tails[path] = _Tail(path)
        return self.tails[path]

    def stop(self) -> None:
        for process in [*self.appenders.values(), self.subscriber]:
            if process.poll() is None:
                process.kill()
                process.wait()


# -- the faults ---------------------------------------------------------------------------------


def _hostile(port: int, rng: random.Random) -> None:
    """Garbage on one connection, an HTTP/2 preface and a PING flood on another."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 5) as a:
        a.sendall(rng.randbytes(4096))
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 5) as b:
        b.settimeout(5)
        settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + bytes(8)
        b.sendall(_H2_PREFACE + settings + ping * 2000)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline and b.recv(65536):
            pass


def _fill(directory: Path) -> Path:
    path = directory / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 1 << 16, 4096, 512):
            try:
                while True:
                    os.write(fd, bytes(size))
            except OSError as exc:
                if exc.errno != 28:  # ENOSPC
                    raise
    finally:
        os.close(fd)
    return path


@contextlib.contextmanager
def _small_disk(work: Path, size: str) -> Iterator[Path | None]:
    """A tmpfs of ``size`` under ``work`` (None where it cannot be mounted), unmounted on
    leaving."""
    mount = work / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        yield None
        return
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                             str(mount)], capture_output=True, timeout=30)
    if result.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True,
                          timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


# -- the check ------------------------------------------------------------------------------------


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of ``path`` (a line cut by a kill is left out)."""
    return _Tail(path).read()


class _Tail:
    """The JSON lines of a file that only grows, read incrementally: each :meth:`read`
    parses only what was added since, up to the last complete line (a line cut by a
    kill, and completed by nothing but the next process's newline, is skipped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.records: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return self.records
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            chunk = file.read()
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].split(b"\n")[:-1]:
            with contextlib.suppress(ValueError):
                self.records.append(json.loads(line))
        self.offset += end
        return self.records


async def _read_store(directory: Path) -> list[tuple[int, str, int, str]]:
    """Every event of the store as ``(position, stream, number, event id)``, in ``$all``
    order, read through the storage (every record's checksum verified)."""
    backend = await SQLiteBackend.open(directory, read_only=True)
    try:
        out: list[tuple[int, str, int, str]] = []
        start = 0
        while True:
            page = await backend.read_all(start, 5000)
            out.extend((r.position, r.stream_id, r.event_number, str(r.event_id))
                       for r in page)
            if len(page) < 5000:
                return out
            start = page[-1].position + 1
    finally:
        await backend.close()


def _check(report: CampaignReport, store_dir: Path, clients: _Clients, final: bool) -> None:
    """Check every invariant (see the module docstring); record what broke."""
    acks = [line for path in [*clients.ack_files(), clients.work / "driver.jsonl"]
            for line in clients.tail(path).read()]
    delivered = clients.tail(clients.work / "subscriber.jsonl").read()
    events = trio.run(_read_store, store_dir)  # read after the acks and deliveries
    report.checks += 1
    report.stored = len(events)
    where = "at the end" if final else f"after round {report.rounds}"
    problems: list[str] = []

    positions = [e[0] for e in events]
    if positions != list(range(len(events))):
        problems.append(f"{where}: $all positions are not 0..{len(events) - 1} in order")
    counts = Counter(e[3] for e in events)
    duplicated = sorted(i for i, n in counts.items() if n > 1)
    if duplicated:
        problems.append(f"{where}: {len(duplicated)} event ids stored more than once, "
                        f"e.g. {duplicated[0]}")
    numbers: dict[str, int] = {}
    for position, stream, number, _id in events:
        expected = numbers.get(stream, -1) + 1
        if number != expected:
            problems.append(f"{where}: stream {stream!r} has version {number} at $all "
                            f"position {position}, expected {expected}")
        numbers[stream] = number
    located = {(e[1], e[2]): e[3] for e in events}
    lost = 0
    acknowledged = 0
    read_back = 0
    for ack in acks:
        if ack["kind"] == "violation":
            problems.append(f"{where}: an appender read back: {ack['detail']}")
            continue
        if ack["kind"] == "read":
            read_back += 1
            continue
        if ack["kind"] == "refused":
            stored = [i for i in ack["ids"] if counts.get(i)]
            if stored:
                problems.append(f"{where}: an append refused for a full disk was stored "
                                f"({ack['stream']})")
            continue
        for offset, event_id in enumerate(ack["ids"]):
            acknowledged += 1
            if located.get((ack["stream"], ack["first"] + offset)) != event_id:
                lost += 1
    if lost:
        problems.append(f"{where}: {lost} acknowledged events are not stored where they "
                        "were acknowledged")
    ids = [e[3] for e in events]
    seen = [d["id"] for d in delivered]
    if seen != ids[:len(seen)]:
        first = next((i for i, (a, b) in enumerate(zip(seen, ids, strict=False)) if a != b),
                     len(ids))
        problems.append(f"{where}: the subscriber's deliveries are not the first events of "
                        f"$all in order (they differ from delivery {first} on, of "
                        f"{len(seen)})")
    report.acknowledged = acknowledged
    report.lost = max(report.lost, lost)
    report.duplicated = max(report.duplicated, len(duplicated))
    report.delivered = len(seen)
    report.read_back = read_back
    for problem in problems:
        if problem not in report.violations:
            report.violations.append(problem)


# -- the campaign ------------------------------------------------------------------------------


def _schedule(rng: random.Random, kinds: Sequence[str]) -> str:
    weights = {"kill": 6, "pause": 1, "full": 1, "drop": 1, "hostile": 1}
    return rng.choices(list(kinds), [weights[k] for k in kinds])[0]


def run_campaign(work: Path, seed: int, *, kills: int | None = None,
                 seconds: float | None = None, appenders: int = 2,
                 disk_size: str = "64m", log: TextIO | None = None) -> CampaignReport:
    """Run rounds until ``kills`` SIGKILLs were made, or for ``seconds`` once the clients
    work (whichever is given; both: whichever comes first), in the empty directory
    ``work``; return the report. Raises if the server or the clients cannot start."""
    if kills is None and seconds is None:
        raise ValueError("give kills or seconds")
    rng = random.Random(seed)
    report = CampaignReport(seed)
    started = time.monotonic()
    with _small_disk(work, disk_size) as disk:
        data_dir = disk if disk is not None else work / "data"
        report.disk = (f"data on a {disk_size} tmpfs" if disk is not None
                       else "data on the work directory's disk: no full-disk rounds")
        kinds = [k for k in FAULTS if k != "full" or disk is not None]
        port = _free_port()
        server = _Server(data_dir, port, work / "server.log")
        server.start()
        clients = _Clients(work, f"kurrentdb://127.0.0.1:{port}?Tls=false", appenders, seed)
        store_dir = data_dir / STORE_ID
        try:
            clients.wait_working()
            working = time.monotonic()  # ``seconds`` counts from here
            while True:
                if kills is not None and report.kills >= kills:
                    break
                if seconds is not None and time.monotonic() - working >= seconds:
                    break
                report.rounds += 1
                kind = _schedule(rng, kinds)
                report.faults[kind] += 1
                _inject(kind, rng, report, server, clients, data_dir, port)
                time.sleep(rng.uniform(0.2, 0.6))  # the clients work on (or recover)
                if not server.alive():
                    report.violations.append(f"round {report.rounds} ({kind}): the server "
                                             "died by itself; see its log")
                    server.start()
                _check(report, store_dir, clients, final=False)
                if log is not None:
                    print(f"round {report.rounds} {kind}: {report.stored} stored, "
                          f"{report.acknowledged} acknowledged, {len(report.violations)} "
                          "violations", file=log, flush=True)
            time.sleep(0.5)
            clients.stop()
            status = server.stop()
            if status != 0:
                report.violations.append(f"the server's SIGTERM stop exited {status}")
            _check(report, store_dir, clients, final=True)
            _read_server_log(report, server.log)
        finally:
            clients.stop()
            server.kill()
        report.elapsed = time.monotonic() - started
    return report


def _read_server_log(report: CampaignReport, log: Path) -> None:
    """Count what the server logged of the faults, and check that each restart after a
    SIGKILL said the previous run did not stop cleanly (and no other start did)."""
    text = log.read_text(errors="replace")
    report.full_disk_failures = sum(
        1 for line in text.splitlines()
        if "exesdb.storage.writer" in line and "the disk holding the store is full" in line)
    report.hostile_cut = text.count("closing connection from")
    unclean = text.count("did not stop cleanly")
    if unclean != report.kills:
        report.violations.append(f"the server said {unclean} times at start that the "
                                 f"previous run did not stop cleanly, after {report.kills} "
                                 "kills")


PROBE_BYTES: Final = 8 * 1024 * 1024
"""The size of the append a full disk must refuse: more than SQLite's write-ahead log
(which it reuses after a checkpoint, about 4 MiB here) can hold."""


def _probe_full_disk(report: CampaignReport, clients: _Clients, port: int) -> None:
    """Send an append of :data:`PROBE_BYTES` to a new stream: refused with
    ``RESOURCE_EXHAUSTED`` (recorded as ``refused``: it must not be stored), or, if it
    fitted after all, acknowledged (recorded as ``ack``); any other answer is a
    violation."""
    from kurrentdbclient import KurrentDBClient, NewEvent, StreamState

    stream = f"probe-{report.rounds}"
    event = NewEvent(type="Probe", data=bytes(PROBE_BYTES), id=uuid.uuid4())
    client = KurrentDBClient(f"kurrentdb://127.0.0.1:{port}?Tls=false")
    record: dict[str, Any]
    try:
        client.append_to_stream(stream, events=[event], current_version=StreamState.NO_STREAM,
                                timeout=30)
    except Exception as exc:
        if "RESOURCE_EXHAUSTED" in str(exc) and "full" in str(exc):
            report.full_disk_refused += 1
            record = {"kind": "refused", "stream": stream, "ids": [str(event.id)]}
        else:
            report.violations.append(f"round {report.rounds}: an append to a full disk "
                                     f"failed otherwise than RESOURCE_EXHAUSTED: {exc!r}"
                                     [:300])
            return
    else:
        report.full_disk_accepted += 1
        record = {"kind": "ack", "stream": stream, "first": 0, "ids": [str(event.id)]}
    finally:
        client.close()
    with open(clients.work / "driver.jsonl", "a") as out:
        _write(out, record)


def _inject(kind: str, rng: random.Random, report: CampaignReport, server: _Server,
            clients: _Clients, data_dir: Path, port: int) -> None:
    if kind == "kill":
        time.sleep(rng.uniform(0.0, 0.3))
        server.kill()
        server.start()
    elif kind == "pause":
        server.signal(signal.SIGSTOP)
        time.sleep(rng.uniform(0.2, 1.0))
        server.signal(signal.SIGCONT)
    elif kind == "full":
        filler = _fill(data_dir)
        try:
            time.sleep(rng.uniform(0.1, 0.4))
            _probe_full_disk(report, clients, port)
        finally:
            filler.unlink()
    elif kind == "drop":
        clients.drop(rng.randrange(len(clients.appenders)))
    elif kind == "hostile":
        _hostile(port, rng)


# -- the client processes' code -------------------------------------------------------------------


def _write(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


def _appender(uri: str, name: str, seed: int, path: Path) -> None:
    """Append to this appender's streams forever; an acknowledged append is written as
    ``{"kind": "ack", "stream", "first", "ids"}``; an append that fails in any way is sent
    again with the same ids and expected version until it is acknowledged (a re-send of
    an append that was written is not written again). Now and then it reads a stream back
    through the server: ``{"kind": "read"}``, or ``{"kind": "violation", "detail"}``."""
    from kurrentdbclient import KurrentDBClient, NewEvent
    from kurrentdbclient.exceptions import NotFoundError

    rng = random.Random(seed)
    streams = [f"{name}-s{i}" for i in range(STREAMS_PER_APPENDER)]
    client = KurrentDBClient(uri)
    versions: dict[str, int] = {}
    acknowledged: dict[str, dict[int, str]] = {s: {} for s in streams}
    for acked in _json_lines(path):  # an earlier process of this appender's
        if acked.get("kind") == "ack":
            for offset, event_id in enumerate(acked["ids"]):
                acknowledged[acked["stream"]][acked["first"] + offset] = event_id
    with open(path, "a") as out:
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            out.write("\n")  # end the line a killed process of this appender left cut
        for stream in streams:
            while stream not in versions:
                try:
                    current = client.get_current_version(stream)
                    versions[stream] = current if isinstance(current, int) else -1
                except NotFoundError:
                    versions[stream] = -1
                except Exception:
                    time.sleep(0.1)
        while True:
            stream = rng.choice(streams)
            count = rng.randint(1, 5)
            events = [NewEvent(type="Appended", data=json.dumps({"n": k}).encode(),
                               id=uuid.uuid4()) for k in range(count)]
            expected = versions[stream]
            while True:
                try:
                    client.append_to_stream(stream, events=events,
                                            current_version=expected if expected >= 0
                                            else _no_stream(), timeout=5)
                    break
                except Exception:
                    time.sleep(rng.uniform(0.02, 0.1))
            first = expected + 1
            versions[stream] = expected + count
            ids = [str(e.id) for e in events]
            for offset, event_id in enumerate(ids):
                acknowledged[stream][first + offset] = event_id
            _write(out, {"kind": "ack", "stream": stream, "first": first, "ids": ids})
            if rng.random() < 0.1:
                _read_back(client, stream, acknowledged[stream], out)


def _no_stream() -> Any:
    from kurrentdbclient import StreamState

    return StreamState.NO_STREAM


def _read_back(client: Any, stream: str, acknowledged: dict[int, str], out: TextIO) -> None:
    try:
        recorded = client.get_stream(stream, timeout=5)
    except Exception:
        return  # the server is down: the store check covers it
    found = {e.stream_position: str(e.id) for e in recorded}
    missing = [v for v, event_id in acknowledged.items() if found.get(v) != event_id]
    if missing:
        _write(out, {"kind": "violation", "detail": f"{stream}: acknowledged versions "
                                                     f"{missing[:5]} not read back"})
    else:
        _write(out, {"kind": "read"})


def _subscriber(uri: str, path: Path) -> None:
    """Subscribe to ``$all`` from the start; after any failure, again after the last event
    received. Each event: ``{"position", "stream", "number", "id"}``."""
    from kurrentdbclient import KurrentDBClient

    last: int | None = None
    with open(path, "a") as out:
        while True:
            try:
                client = KurrentDBClient(uri)
                try:
                    subscription = client.subscribe_to_all(commit_position=last,
                                                           filter_exclude=())
                    for event in subscription:
                        _write(out, {"position": event.commit_position,
                                     "stream": event.stream_name,
                                     "number": event.stream_position, "id": str(event.id)})
                        last = event.commit_position
                finally:
                    client.close()
            except Exception:
                time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.faults appender|subscriber ...``: a client process of the
    campaign (see :func:`run_campaign`)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults")
    parser.add_argument("role", choices=["appender", "subscriber"])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--name", default="a0")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "appender":
        _appender(args.uri, args.name, args.seed, args.out)
    else:
        _subscriber(args.uri, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
