"""The JSON depth limit's shortcut (a body with few brackets is not parsed) never changes the
answer: for any JSON value, and any text, the limit refuses exactly what nests too deep."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from api.http.limits import ORJSON_MAX_DEPTH, json_depth_exceeds

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(alphabet='[]{}"\\ ab'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


def parsed_too_deep(body: bytes, limit: int) -> bool:
    """The check without its shortcut: parsed inside ``1024 - limit`` arrays."""
    wrap = ORJSON_MAX_DEPTH - limit
    try:
        orjson.loads(b"[" * wrap + body + b"]" * wrap)
    except orjson.JSONDecodeError as exc:
        return str(exc).startswith("depth limit exceeded")
    return False


@given(json_values, st.integers(min_value=1, max_value=40))
def test_a_value_is_refused_exactly_when_it_nests_deeper_than_the_limit(
    value: object, limit: int
) -> None:
    assert json_depth_exceeds(orjson.dumps(value), limit) is (depth_of(value) > limit)


@given(st.binary(max_size=200) | st.text(alphabet='[]{}":,1 a').map(str.encode), st.integers(1, 40))
def test_any_body_gets_the_answer_of_the_full_check(body: bytes, limit: int) -> None:
    assert json_depth_exceeds(body, limit) is parsed_too_deep(body, limit)
