"""Model-based test: random operations on the SQLite backend against a plain-Python model.

The model keeps every stream as a list of events plus its first visible number and a
hard-deleted flag, ``$all`` as a list in commit order, snapshots and checkpoints as
dicts, and applies the rules of the issue and contracts.md directly. Positions are
opaque to the model: it learns each event's position from the store right after the
write and then checks every later read against it (stable, strictly increasing).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Any

import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from exesdb import (
    ANY,
    END,
    NO_STREAM,
    STREAM_EXISTS,
    ExESDBError,
    Filter,
    NewEvent,
    StreamDeleted,
    WrongExpectedVersion,
)
from exesdb.storage import Append, DeleteStream, SQLiteBackend

STREAMS = ["s1", "t1", "u-x"]
TYPES = ["A", "B", "C"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6,
)
payloads = json_values | st.binary(max_size=8)
expected_versions = st.sampled_from([ANY, STREAM_EXISTS, NO_STREAM]) | st.integers(-1, 6)
starts = st.just(END) | st.integers(0, 8)
directions = st.sampled_from(["forward", "backward"])


@st.composite
def new_events(draw):
    return [
        NewEvent(draw(st.sampled_from(TYPES)), draw(payloads),
                 metadata=draw(st.none() | payloads))
        for _ in range(draw(st.integers(1, 3)))
    ]


@dataclass
class ModelStream:
    events: list[NewEvent] = field(default_factory=list)
    first: int = 0
    hard: bool = False

    @property
    def last(self) -> int:
        return len(self.events) - 1

    @property
    def version(self) -> int:
        return self.last if self.last >= self.first else -1


class Model:
    """The semantics, written plainly."""

    def __init__(self) -> None:
        self.streams: dict[str, ModelStream] = {}
        self.log: list[tuple[str, int]] = []  # $all: (stream, number) in commit order
        self.snapshots: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.checkpoints: dict[str, int] = {}

    def stream(self, stream_id: str) -> ModelStream:
        return self.streams.get(stream_id) or ModelStream()

    def append(self, stream_id: str, expected: Any, events: list[NewEvent]) -> Any:
        s = self.stream(stream_id)
        if s.hard:
            return StreamDeleted
        version = s.version
        visible = {e.event_id: n for n, e in enumerate(s.events) if n >= s.first}
        hits = [visible.get(e.event_id) for e in events]
        if any(h is not None for h in hits):
            n = len(events)
            if expected is ANY:
                base = version - n
            elif expected is STREAM_EXISTS:
                base = None
            elif expected == NO_STREAM:
                base = s.first - 1
            else:
                base = expected
            if (base is not None and base + n <= version and base + 1 >= s.first
                    and hits == list(range(base + 1, base + n + 1))):
                return base + n
            return (WrongExpectedVersion, version)
        if not self._check(expected, version):
            return (WrongExpectedVersion, version)
        self.streams[stream_id] = s
        for event in events:
            s.events.append(event)
            self.log.append((stream_id, s.last))
        return s.last

    @staticmethod
    def _check(expected: Any, version: int) -> bool:
        if expected is ANY:
            return True
        if expected is STREAM_EXISTS:
            return version >= 0
        return expected == version

    def delete(self, stream_id: str, expected: Any, hard: bool) -> Any:
        s = self.stream(stream_id)
        if s.hard:
            return StreamDeleted
        if not self._check(expected, s.version):
            return (WrongExpectedVersion, s.version)
        if hard:
            s.hard = True
            self.streams[stream_id] = s
        elif s.version >= 0:
            s.first = s.last + 1
        return s.last  # a delete answers the stream's last number, deleted or not

    def read_stream(self, stream_id: str, start: Any, count: int, direction: str) -> Any:
        s = self.stream(stream_id)
        if s.hard:
            return StreamDeleted
        numbers = range(s.first, s.last + 1)
        if direction == "forward":
            chosen = [] if start is END else [n for n in numbers if n >= start]
        else:
            top = s.last if start is END else start
            chosen = [n for n in reversed(numbers) if n <= top]
        return [(stream_id, n) for n in chosen[:count]]

    def list_streams(self) -> list[str]:
        return sorted(k for k, s in self.streams.items() if not s.hard and s.version >= 0)


def _result(outcome: Any) -> Any:
    """A store outcome in the model's terms."""
    if isinstance(outcome, WrongExpectedVersion):
        return (WrongExpectedVersion, outcome.actual)
    if isinstance(outcome, ExESDBError):
        return type(outcome)
    return outcome


async def _outcome(awaitable: Any) -> Any:
    try:
        return _result(await awaitable)
    except ExESDBError as exc:
        return _result(exc)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="exesdb-model-")
        self.store = trio.run(self.open_store)
        self.model = Model()
        self.positions: list[int] = []  # position of self.model.log[i]
        self.last_events: list[tuple[str, Any, list[NewEvent]]] = []

    async def open_store(self) -> Any:
        """Open (or reopen) the store under test: SQLite here; test_model_postgres.py
        runs the same machine on PostgreSQL."""
        return await SQLiteBackend.open(self.directory)

    def teardown(self) -> None:
        trio.run(self.store.close)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, fn: Any, *args: Any) -> Any:
        return trio.run(fn, *args)

    def _learn_positions(self) -> None:
        """Read the events written since the last check: they are the model's new log
        entries, in order, with positions above every earlier one."""
        new = self.model.log[len(self.positions):]
        start = self.positions[-1] + 1 if self.positions else 0
        records = self._run(self.store.read_all, start, 1000)
        assert [(r.stream_id, r.event_number) for r in records] == new
        for record in records:
            assert not self.positions or record.position > self.positions[-1]
            self.positions.append(record.position)
            expected = self.model.streams[record.stream_id].events[record.event_number]
            _same_event(record, expected)

    # -- writes --------------------------------------------------------------------------

    @rule(stream_id=st.sampled_from(STREAMS), expected=expected_versions, events=new_events())
    def append(self, stream_id, expected, events):
        got = self._run(_outcome, self.store.append(stream_id, expected, events))
        assert got == self.model.append(stream_id, expected, events)
        self.last_events.append((stream_id, expected, events))
        self._learn_positions()

    @rule(stream_id=st.sampled_from(STREAMS), events=new_events())
    def append_at_the_current_version(self, stream_id, events):
        expected = self.model.stream(stream_id).version
        got = self._run(_outcome, self.store.append(stream_id, expected, events))
        assert got == self.model.append(stream_id, expected, events)
        self.last_events.append((stream_id, expected, events))
        self._learn_positions()

    @precondition(lambda self: self.last_events)
    @rule(data=st.data(), use_any=st.booleans())
    def resend(self, data, use_any):
        """Re-send one of the last appends (the retry of a client that got no answer)."""
        stream_id, expected, events = data.draw(st.sampled_from(self.last_events[-3:]))
        expected = ANY if use_any else expected
        got = self._run(_outcome, self.store.append(stream_id, expected, events))
        assert got == self.model.append(stream_id, expected, events)
        self._learn_positions()

    @precondition(lambda self: self.last_events)
    @rule(data=st.data(), stream_id=st.sampled_from(STREAMS), expected=expected_versions)
    def append_with_an_old_id(self, data, stream_id, expected):
        _, _, old = data.draw(st.sampled_from(self.last_events))
        events = [NewEvent("A", 1), data.draw(st.sampled_from(old))]
        got = self._run(_outcome, self.store.append(stream_id, expected, events))
        assert got == self.model.append(stream_id, expected, events)
        self._learn_positions()

    @rule(data=st.data(), size=st.integers(1, 4))
    def group_write(self, data, size):
        """Several appends and deletes in one transaction, as the writer sends them; an
        append may re-send an earlier one of the same transaction."""
        ops: list[tuple[str, Any, list[NewEvent], bool]] = []
        for _ in range(size):
            stream_id = data.draw(st.sampled_from(STREAMS))
            expected = data.draw(expected_versions)
            appends = [op for op in ops if not op[3]]
            if appends and data.draw(st.booleans()):
                events = data.draw(st.sampled_from(appends))[2]
            else:
                events = data.draw(new_events())
            ops.append((stream_id, expected, events, data.draw(st.integers(0, 4)) == 0))
        batch = [DeleteStream(s, e) if delete else Append(s, e, evs)
                 for s, e, evs, delete in ops]
        got = [_result(r) for r in self._run(self.store.write, batch)]
        want = [self.model.delete(s, e, False) if delete else self.model.append(s, e, evs)
                for s, e, evs, delete in ops]
        assert got == want
        self.last_events.extend((s, e, evs) for s, e, evs, delete in ops if not delete)
        self._learn_positions()

    @rule(stream_id=st.sampled_from(STREAMS), expected=expected_versions, hard=st.booleans())
    def delete(self, stream_id, expected, hard):
        hard = hard and stream_id == "u-x"  # hard deletes are final: keep them to one stream
        got = self._run(_outcome, self.store.delete_stream(stream_id, expected, hard))
        assert got == self.model.delete(stream_id, expected, hard)

    @rule(stream_id=st.sampled_from(STREAMS))
    def soft_delete(self, stream_id):
        got = self._run(_outcome, self.store.delete_stream(stream_id))
        assert got == self.model.delete(stream_id, ANY, False)

    @rule(stream_id=st.sampled_from(STREAMS))
    def hard_delete(self, stream_id):
        if stream_id not in ("t1", "u-x"):
            return
        got = self._run(_outcome, self.store.delete_stream(stream_id, ANY, True))
        assert got == self.model.delete(stream_id, ANY, True)

    @rule()
    def reopen(self):
        trio.run(self.store.close)
        self.store = trio.run(self.open_store)

    # -- reads ---------------------------------------------------------------------------

    @rule(stream_id=st.sampled_from(STREAMS), start=starts, count=st.integers(1, 5),
          direction=directions)
    def read_stream(self, stream_id, start, count, direction):
        want = self.model.read_stream(stream_id, start, count, direction)
        got = self._run(_outcome, self.store.read_stream(stream_id, start, count, direction))
        if isinstance(want, list):
            assert [(r.stream_id, r.event_number) for r in got] == want
            for record in got:
                _same_event(record, self.model.streams[stream_id].events[record.event_number])
                self._check_position(record)
        else:
            assert got == want

    @rule(data=st.data(), count=st.integers(1, 6), direction=directions,
          types=st.lists(st.sampled_from(TYPES), max_size=2),
          prefixes=st.lists(st.sampled_from(["s", "t1", "u-", "x"]), max_size=2))
    def read_all(self, data, count, direction, types, prefixes):
        top = self.positions[-1] + 2 if self.positions else 2
        start = data.draw(st.just(END) | st.integers(0, top)
                          | st.sampled_from(self.positions or [0]))
        chosen = Filter(types, prefixes) if types or prefixes else None
        indexes = range(len(self.positions))
        if direction == "forward":
            order = [] if start is END else [i for i in indexes if self.positions[i] >= start]
        else:
            order = [i for i in reversed(indexes) if start is END or self.positions[i] <= start]
        want = []
        for i in order:
            stream_id, number = self.model.log[i]
            event = self.model.streams[stream_id].events[number]
            if chosen is None or chosen.matches(stream_id, event.event_type):
                want.append(self.positions[i])
        got = self._run(self.store.read_all, start, count, direction, chosen)
        assert [r.position for r in got] == want[:count]

    @rule(stream_id=st.sampled_from(STREAMS))
    def stream_version(self, stream_id):
        s = self.model.stream(stream_id)
        got = self._run(_outcome, self.store.stream_version(stream_id))
        assert got == (StreamDeleted if s.hard else s.version)

    @invariant()
    def streams_are_listed_when_they_have_visible_events(self):
        assert self._run(self.store.list_streams) == self.model.list_streams()

    def _check_position(self, record):
        index = self.model.log.index((record.stream_id, record.event_number))
        assert record.position == self.positions[index]

    # -- snapshots and checkpoints -------------------------------------------------------

    @rule(source=st.sampled_from(["a", "b"]), stream=st.sampled_from(["x", "y"]),
          version=st.integers(0, 3), snapshot=payloads, metadata=st.none() | payloads)
    def record_snapshot(self, source, stream, version, snapshot, metadata):
        self._run(self.store.record_snapshot, source, stream, version, snapshot, metadata)
        self.model.snapshots[(source, stream, version)] = (snapshot, metadata)

    @rule(source=st.sampled_from(["a", "b"]), stream=st.sampled_from(["x", "y"]),
          version=st.none() | st.integers(0, 3))
    def read_snapshot(self, source, stream, version):
        got = self._run(self.store.read_snapshot, source, stream, version)
        versions = sorted(v for s, t, v in self.model.snapshots if (s, t) == (source, stream))
        wanted = versions[-1] if version is None and versions else version
        key = (source, stream, wanted)
        if key in self.model.snapshots:
            assert (got.source_uuid, got.stream_uuid, got.version) == key
            assert (got.data, got.metadata) == self.model.snapshots[key]
        else:
            assert got is None

    @rule(source=st.sampled_from(["a", "b"]), stream=st.sampled_from(["x", "y"]),
          version=st.integers(0, 3))
    def delete_snapshot(self, source, stream, version):
        self._run(self.store.delete_snapshot, source, stream, version)
        self.model.snapshots.pop((source, stream, version), None)

    @rule(source=st.none() | st.sampled_from(["a", "b"]),
          stream=st.none() | st.sampled_from(["x", "y"]))
    def list_snapshots(self, source, stream):
        got = self._run(self.store.list_snapshots, source, stream)
        want = sorted(k for k in self.model.snapshots
                      if source in (None, k[0]) and stream in (None, k[1]))
        assert [(s.source_uuid, s.stream_uuid, s.version) for s in got] == want

    @rule(name=st.sampled_from(["p", "q"]), position=st.integers(0, 50),
          delete=st.booleans())
    def checkpoint(self, name, position, delete):
        if delete:
            self._run(self.store.delete_checkpoint, name)
            self.model.checkpoints.pop(name, None)
        else:
            self._run(self.store.save_checkpoint, name, position)
            self.model.checkpoints[name] = position
        assert self._run(self.store.list_checkpoints) == self.model.checkpoints
        assert self._run(self.store.read_checkpoint, name) == self.model.checkpoints.get(name)


def _same_event(record: Any, event: NewEvent) -> None:
    assert isinstance(record.event_id, uuid.UUID)
    assert (record.event_id, record.event_type, record.data, record.metadata,
            record.content_type) == (event.event_id, event.event_type, event.data,
                                     event.metadata, event.content_type)


StoreMachine.TestCase.settings = settings(stateful_step_count=25)
test_the_store_behaves_like_the_model = StoreMachine.TestCase
