"""Client regex filters: RE2 semantics in linear time, the clients' ``^(?!X)`` exclude
form evaluated as Python's ``re`` would, everything else outside RE2 refused."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kurrentdbclient import DEFAULT_EXCLUDE_FILTER
from kurrentdbclient.common import (
    construct_filter_exclude_regex,
    construct_filter_include_regex,
)

from exesdb import InvalidArgument
from exesdb.grpc.patterns import MAX_PATTERN_LENGTH, compile_filter

subjects = st.text(alphabet="ab$.PRersultConfig0123 ", max_size=20)
literals = st.lists(st.text(alphabet="ab$.R1", min_size=1, max_size=5).map(re.escape),
                    min_size=1, max_size=4)


@given(literals, subjects)
def test_the_clients_exclude_filters_match_as_pythons_re_does(patterns, subject):
    regex = construct_filter_exclude_regex(patterns)
    assert compile_filter(regex, "f")(subject) == (re.search(regex, subject) is not None)


@given(literals, subjects)
def test_the_clients_include_filters_match_as_pythons_re_does(patterns, subject):
    regex = construct_filter_include_regex(patterns)
    assert compile_filter(regex, "f")(subject) == (re.search(regex, subject) is not None)


@pytest.mark.parametrize("subject", ["$metadata", "PersistentConfig1", "Result"])
def test_the_default_exclude_filter_excludes_system_events(subject):
    assert not compile_filter(construct_filter_exclude_regex(DEFAULT_EXCLUDE_FILTER),
                              "f")(subject)


def test_a_catastrophic_pattern_matches_in_linear_time():
    matches = compile_filter(r"^(a+)+$", "f")
    started = time.perf_counter()
    assert not matches("a" * 100_000 + "b")
    assert time.perf_counter() - started < 5  # Python's re would take longer than the universe


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=x)y", r"^(?!x)y", "(", "a{1001}"])
def test_a_pattern_outside_re2_syntax_is_refused_naming_the_field(pattern):
    with pytest.raises(InvalidArgument, match=r"^filter\.regex: not a valid regular"):
        compile_filter(pattern, "filter.regex")


def test_an_over_long_pattern_is_refused():
    with pytest.raises(InvalidArgument, match=f"at most {MAX_PATTERN_LENGTH} characters"):
        compile_filter("a" * (MAX_PATTERN_LENGTH + 1), "filter.regex")
