"""What the PostgreSQL backend sends, encoded by hand for speed, is what the general
encoders make: the binary array parameters (exesdb.storage.postgres_wire) and the commit
notice's JSON (exesdb.storage.postgres_notify)."""

from __future__ import annotations

import json
import struct

from hypothesis import given
from hypothesis import strategies as st

from exesdb.storage.postgres_notify import MAX_PAYLOAD, decode_notice, encode_notice
from exesdb.storage.postgres_wire import bytea_array, int2_array, int8_array

INT8 = st.integers(-(2**63), 2**63 - 1)
INT2 = st.integers(-(2**15), 2**15 - 1)
NAMES = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


def _array(element: int, values: list[bytes]) -> bytes:
    """A binary one-dimensional array of the given element type, from its elements'
    encodings (PostgreSQL's array_recv format)."""
    if not values:
        return struct.pack("!iiI", 0, 0, element)
    body = b"".join(struct.pack("!i", len(value)) + value for value in values)
    return struct.pack("!iiIii", 1, 0, element, len(values), 1) + body


@given(st.lists(INT8, max_size=300))
def test_bigint_arrays(values):
    expected = _array(20, [struct.pack("!q", v) for v in values])
    assert int8_array(values) == expected
    assert int8_array(tuple(values)) == expected


@given(st.lists(INT2, max_size=300))
def test_smallint_arrays(values):
    assert int2_array(values) == _array(21, [struct.pack("!h", v) for v in values])


@given(st.lists(st.binary(max_size=50), max_size=50))
def test_bytea_arrays(values):
    assert bytea_array(values) == _array(17, values)
    assert bytea_array(tuple(values)) == _array(17, values)


def _notice_by_json(first, last, token, streams, types):
    body = {"f": first, "l": last, "t": token, "s": sorted(streams), "e": sorted(types)}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) <= MAX_PAYLOAD:
        return text
    del body["s"], body["e"]
    return json.dumps(body, separators=(",", ":"))


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1),
       st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
       st.sets(NAMES, max_size=8) | st.sets(st.text(min_size=900, max_size=1200,
                                                    alphabet="aé\U0001f600\""), max_size=8),
       st.sets(NAMES, max_size=8))
def test_the_notice_is_the_json_of_its_fields(first, last, token, streams, types):
    first, last = min(first, last), max(first, last)
    payload = encode_notice(first, last, token, streams, types)
    assert payload == _notice_by_json(first, last, token, streams, types)
    assert len(payload.encode()) <= MAX_PAYLOAD
    notice = decode_notice(payload)
    assert notice is not None and (notice.first, notice.last, notice.token) == (
        first, last, token)
    if notice.streams is not None:
        assert (notice.streams, notice.types) == (streams, types)
