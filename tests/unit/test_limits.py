"""JSON nesting is measured without parsing: brackets in strings do not count, depth is exact."""

from __future__ import annotations

import time

import orjson
import pytest

from api.http.limits import json_depth_exceeds


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
