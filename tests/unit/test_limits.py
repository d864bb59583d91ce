"""JSON nesting is measured without parsing: brackets in strings do not count, depth is exact,
and the shortcut for a body with few brackets (not parsed at all) never changes the answer."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.http.limits import json_depth_exceeds, parsed_too_deep


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"a": [1, {"b": [[]]}], "c": "]]]}}}"},
        [{"x": '\\"[[[["'}, [[["[", "{"]]]],
        {"s": 'a \\" quote then [[[[[[[[[[', "t": [{"u": [[[1]]]}]},
    ],
)
def test_depth_is_exact_whatever_the_strings_hold(value: object) -> None:
    body = orjson.dumps(value)
    depth = depth_of(value)
    assert not json_depth_exceeds(body, depth)
    if depth > 1:
        assert json_depth_exceeds(body, depth - 1)


def test_text_that_is_not_json_is_left_to_the_parser() -> None:
    assert not json_depth_exceeds(b"[[[", 4)
    assert not json_depth_exceeds(b"not json", 4)
    assert not json_depth_exceeds(b"]]]]]]" + b"[" * 2000, 4)  # not JSON: the parser says so
    assert json_depth_exceeds(b"[" * 5000, 4)  # too deep before it is anything else


@pytest.mark.parametrize(
    ("body", "deep"),
    [
        (b"[" * 8_000_000 + b"]" * 8_000_000, True),  # 16 MB, nested 8 million deep
        (b"[" + b",".join([b"[" * 32 + b"]" * 32] * 240_000) + b"]", True),  # 33 deep, often
        (b"[" + b",".join([b"[" * 31 + b"]" * 31] * 8_000) + b"]", False),  # 0.5 MB
    ],
)
def test_a_hostile_body_is_measured_quickly(body: bytes, deep: bool) -> None:
    started = time.monotonic()
    assert json_depth_exceeds(body, 32) is deep
    assert time.monotonic() - started < 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(alphabet='[]{}"\\ ab'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


@given(json_values, st.integers(min_value=1, max_value=40))
def test_a_value_is_refused_exactly_when_it_nests_deeper_than_the_limit(
    value: object, limit: int
) -> None:
    assert json_depth_exceeds(orjson.dumps(value), limit) is (depth_of(value) > limit)


@given(st.binary(max_size=200) | st.text(alphabet='[]{}":,1 a').map(str.encode), st.integers(1, 40))
def test_any_body_gets_the_answer_of_the_full_check(body: bytes, limit: int) -> None:
    assert json_depth_exceeds(body, limit) is parsed_too_deep(body, limit)
