"""Global options anywhere on the command line: moved in front, values kept, nothing else
reordered, nothing after ``--`` touched."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.cli import GLOBAL_OPTIONS, hoist_global_options

words = st.text(alphabet="abcxyz19-_./", min_size=1, max_size=8).filter(
    lambda w: w.split("=", 1)[0] not in GLOBAL_OPTIONS and w != "--"
)
options = st.sampled_from(GLOBAL_OPTIONS).flatmap(
    lambda name: st.one_of(
        words.map(lambda value: [name, value]), words.map(lambda value: [f"{name}={value}"])
    )
)


def test_examples() -> None:
    assert hoist_global_options(["show", "9", "--data-dir", "d"]) == [
        "--data-dir",
        "d",
        "show",
        "9",
    ]
    assert hoist_global_options(["a", "--database-url=u", "b"]) == ["--database-url=u", "a", "b"]
    assert hoist_global_options(["a", "--", "--data-dir", "d"]) == ["a", "--", "--data-dir", "d"]
    assert hoist_global_options(["a", "--data-dir"]) == ["a", "--data-dir"]  # click says: no value


@given(st.lists(st.one_of(words.map(lambda w: [w]), options), max_size=8))
def test_others_keep_their_order_and_globals_theirs(parts: list[list[str]]) -> None:
    args = [arg for part in parts for arg in part]
    hoisted = hoist_global_options(args)
    globals_ = [arg for part in parts if part[0].split("=")[0] in GLOBAL_OPTIONS for arg in part]
    others = [arg for part in parts if part[0].split("=")[0] not in GLOBAL_OPTIONS for arg in part]
    assert hoisted == globals_ + others
    assert hoist_global_options(hoisted) == hoisted
