"""Hypothesis strategies generated from the catalogue's own pydantic models (ledger/events.py).

:class:`FactBuilder` walks a fact model's fields and their annotations (types, string and
number constraints, the catalogue's validators and markers) and draws JSON facts biased towards
the extremes the bounds are about: the first and last moments allowed and just outside them,
offsets of +-14 h (and beyond), leap days, the longest strings and lists (and one longer),
Unicode edge cases (NUL and other controls, RTL marks, combining and astral characters), and
ids drawn again from a pool of those already used, so that facts meet the stream they refer to
(or repeat an id they should not).

Nothing here knows an event type: a new fact type or field is generated as soon as the
catalogue has it. What the builder needs to know is what a field's *name* refers to (a policy
version, a recipient, ...), so that ids are reused; :data:`POOL_OF` says it.
"""

from __future__ import annotations

import enum
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import uuid4

import annotated_types
from hypothesis import strategies as st
from pydantic import AfterValidator, AwareDatetime, BaseModel, StringConstraints
from pydantic.fields import FieldInfo

from ledger import events as ev

POOL_OF = {
    "version": "version",
    "policy_version": "version",
    "recipient_id": "recipient",
    "parent_recipient_id": "recipient",
    "incident_id": "incident",
    "request_id": "request",
    "disclosure_id": "disclosure",
    "corrects_event_id": "event",
    "subject": "subject",
    "subjects": "subject",
    "affected_subjects": "subject",
    "purposes": "purpose",
    "purpose": "purpose",
    "id": "purpose",
    "data_categories": "category",
}
"""What an id field refers to, by the field's name: ids of one pool are drawn again."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Characters that are hard on storage, rendering and the report (never a lone surrogate,
# which is not JSON text).
ODD_CHARACTERS = [
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\t",
    "\n",
    "\r",
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\u0301",  # combining acute
    "\ufeff",
    "\u2028",
    "\U0001f600",
    "\U0010fffd",
    '"',
    "\\",
    "=",
    "<",
    ";",
    ",",
]


@dataclass
class Pools:
    """Ids already used, by what they name; facts draw from them (or make new ones)."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    """event_id -> fact type, for corrections."""

    def add(self, pool: str, value: str) -> None:
        known = self.ids.setdefault(pool, [])
        if value not in known:
            known.append(value)

    def learn(self, fact: Mapping[str, Any]) -> None:
        """An accepted fact's ids join the pools."""
        self._learn(fact)
        if isinstance(fact.get("event_id"), str) and isinstance(fact.get("type"), str):
            self.types[fact["event_id"]] = fact["type"]
            self.add("event", fact["event_id"])

    def _learn(self, value: Any, name: str = "") -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if key != "corrected_fields":
                    self._learn(item, key)
        elif isinstance(value, list):
            for item in value:
                self._learn(item, name)
        elif isinstance(value, str) and name in POOL_OF:
            self.add(POOL_OF[name], value)


def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


def _rfc3339(moment: datetime) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") and moment.microsecond % 2 else text


def _shifted(utc: datetime, minutes: int) -> str:
    """``utc`` written with an offset of ``minutes`` (the same instant)."""
    return _rfc3339(utc.astimezone(_offset(minutes)))


EDGE_OFFSETS = [0, 14 * 60, -14 * 60, -12 * 60, 5 * 60 + 45, 9 * 60]
ONE_MICROSECOND = timedelta(microseconds=1)


def times(now: datetime, happened: bool, hostile: bool) -> st.SearchStrategy[str]:
    """RFC 3339 times at the bounds (and, for ``happened``, around ``now``); ``hostile``:
    just outside them too, and beyond what Python's datetime can hold once in UTC."""
    edges = [
        ev.EARLIEST,
        ev.LATEST - ONE_MICROSECOND,
        datetime(2000, 2, 29, 12, tzinfo=UTC),
        datetime(2096, 2, 29, 23, 59, 59, tzinfo=UTC),
        datetime(2024, 2, 29, 10, tzinfo=UTC),
        now - timedelta(days=1),
        now,
        now + timedelta(minutes=4),
    ]
    if happened:  # the future is refused: keep most draws at or before the clock
        edges = [e for e in edges if e <= now + timedelta(minutes=4)]
    inside = st.one_of(
        st.sampled_from(edges),
        st.datetimes(
            min_value=datetime(1970, 1, 2),
            max_value=(now if happened else datetime(2099, 12, 30)).replace(tzinfo=None),
        ).map(lambda d: d.replace(tzinfo=UTC)),
    )
    valid = st.builds(_shifted, inside, st.sampled_from(EDGE_OFFSETS))
    beyond = st.sampled_from(  # out of Python's range once in UTC, or nearly
        [
            "9999-12-31T23:59:59-12:00",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59.999999Z",
        ]
    )
    just_outside = st.sampled_from(
        [
            "1969-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00+00:01",
            "2100-01-01T00:00:00Z",
            "2099-12-31T23:00:00-01:00",
            "2026-03-01T00:00:00+14:01",
            "2026-03-01T00:00:00",
            "2026-02-29T00:00:00Z",
            _shifted(now + timedelta(hours=1), 0),
        ]
    )
    return st.one_of(beyond, just_outside) if hostile else valid


@dataclass
class _Constraints:
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    ge: int | None = None
    le: int | None = None
    validators: list[Callable[..., Any]] = field(default_factory=list)
    happened: bool = False


def _constraints(metadata: list[Any]) -> _Constraints:
    found = _Constraints()
    pending = list(metadata)
    while pending:
        item = pending.pop(0)
        if isinstance(item, FieldInfo):
            pending[:0] = item.metadata
        elif isinstance(item, StringConstraints):
            found.min_length = item.min_length if item.min_length is not None else found.min_length
            found.max_length = item.max_length if item.max_length is not None else found.max_length
            found.pattern = item.pattern if isinstance(item.pattern, str) else found.pattern
        elif isinstance(item, annotated_types.MinLen):
            found.min_length = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            found.max_length = item.max_length
        elif isinstance(item, annotated_types.Ge):
            found.ge = int(item.ge)  # type: ignore[call-overload]
        elif isinstance(item, annotated_types.Le):
            found.le = int(item.le)  # type: ignore[call-overload]
        elif isinstance(item, AfterValidator):
            found.validators.append(item.func)
        elif isinstance(item, ev.Happened):
            found.happened = True
    return found


def _holds_time(annotation: Any) -> bool:
    """Whether a time is in the annotation (nested in a model or a list included)."""
    if annotation is AwareDatetime or annotation is datetime:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(_holds_time(f.annotation) for f in annotation.model_fields.values())
    return any(_holds_time(arg) for arg in get_args(annotation))


class FactBuilder:
    """Strategies for the catalogue's facts, from the models' fields and annotations."""

    def __init__(self, pools: Pools, now: datetime, *, hostile: bool = False) -> None:
        self.pools = pools
        self.now = now
        self.hostile = hostile
        """Leaf values just outside their bounds too (for :meth:`hostile_fact`)."""
        self._breaking = self if hostile else FactBuilder(pools, now, hostile=True)

    def any_hostile_fact(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of([self.hostile_fact(model) for model in ev.FACT_TYPES.values()])

    def hostile_fact(
        self, model: type[BaseModel], field: str | None = None
    ) -> st.SearchStrategy[dict[str, Any]]:
        """A fact within every bound but one: one field (``field``, or any; nested or in a
        list, perhaps) holds a value just outside its bound, or beyond, so that the rest of
        it is one the ledger would accept, and the broken value is all that can refuse it."""
        return self._breaking_model(model, field)

    @staticmethod
    def breakable_fields(model: type[BaseModel]) -> list[str]:
        """The fields :meth:`hostile_fact` may break (every one but the type)."""
        return [n for n in model.model_fields if n not in ("type", "corrects_event_id")]

    def _breaking_model(
        self, model: type[BaseModel], field: str | None = None
    ) -> st.SearchStrategy[dict[str, Any]]:
        names = [field] if field is not None else self.breakable_fields(model)
        # Times are what the stack computes with: each is three times as likely to be broken.
        names += [n for n in names if _holds_time(model.model_fields[n].annotation)] * 2

        def broken(pair: tuple[dict[str, Any], str]) -> st.SearchStrategy[dict[str, Any]]:
            fact, name = pair
            if name == "corrected_fields":
                return self._correction(breaking=True).map(
                    lambda c: {**fact, "corrects_event_id": c[0], "corrected_fields": c[1]}
                )
            info = model.model_fields[name]
            value = self._breaking_value(name, info.annotation, list(info.metadata))
            return value.map(lambda v: {**fact, name: v})

        return st.tuples(self.model(model), st.sampled_from(names)).flatmap(broken)

    def _breaking_value(
        self, name: str, annotation: Any, metadata: list[Any]
    ) -> st.SearchStrategy[Any]:
        origin = get_origin(annotation)
        if origin is Annotated:
            inner, *extra = get_args(annotation)
            return self._breaking_value(name, inner, [*metadata, *extra])
        if origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            return st.sampled_from(options).flatmap(
                lambda option: self._breaking_value(name, option, metadata)
            )
        if origin is Literal:
            return st.just("not.a.type")
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self._breaking_model(annotation)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return st.sampled_from(["not-a-value", ""])
        if annotation is bool:
            return st.sampled_from(["yes", 1])
        limits = _constraints(metadata)
        if origin is list:
            element = get_args(annotation)[0]
            items = self.annotation(name, element, [])
            longest = limits.max_length if limits.max_length is not None else 100
            one_broken = st.tuples(
                st.lists(items, min_size=max(limits.min_length or 0, 1), max_size=3),
                self._breaking_value(name, element, []),
            ).map(lambda pair: [*pair[0][:-1], pair[1]])
            return st.one_of(one_broken, items.map(lambda item: [item] * (longest + 1)))
        return self._breaking_leaf(name, annotation, limits)

    def _breaking_leaf(
        self, name: str, annotation: Any, limits: _Constraints
    ) -> st.SearchStrategy[Any]:
        """A value that breaks the field's own bound (and only that, where it can)."""
        if annotation is int:
            low = limits.ge if limits.ge is not None else -(2**31)
            high = limits.le if limits.le is not None else 2**31
            return st.sampled_from([low - 1, high + 1, 2**63, -(2**63)])
        if annotation is AwareDatetime or annotation is datetime:
            return times(self.now, limits.happened, hostile=True)
        if annotation is not str:
            return self._leaf(name, annotation, limits)
        free = ev.check_free_text in limits.validators
        controls = [c for c in map(chr, [*range(32), 127]) if not (free and c in "\t\n\r")]
        within = self._leaf(name, str, limits)

        def insert(drawn: tuple[str, str, int]) -> str:
            text, control, index = drawn
            at = index % (len(text) + 1)
            return text[:at] + control + text[at:]

        with_control = st.tuples(within, st.sampled_from(controls), st.integers(0, 10**6))
        breaking = [with_control.map(insert)] * 2
        if limits.max_length is not None:
            breaking.append(st.just("y" * (limits.max_length + 1)))
        return st.one_of(breaking)

    def any_fact(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of([self.fact(model) for model in ev.FACT_TYPES.values()])

    def fact(self, model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
        return self.model(model)

    def model(self, model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for name, info in model.model_fields.items():
            if name == "event_id":  # new, mostly; now and then one already used
                strategy = st.one_of(
                    st.builds(lambda: f"evt-{uuid4().hex}"),
                    st.builds(lambda: f"evt-{uuid4().hex}"),
                    *([self._pooled("event", st.nothing())] if self.hostile else []),
                )
            elif name in ("corrected_fields", "corrects_event_id"):
                continue  # drawn together below: the fields are the corrected event's
            else:
                strategy = self.annotation(name, info.annotation, list(info.metadata))
            (required if info.is_required() else optional)[name] = strategy
        drawn = st.fixed_dictionaries(required, optional=optional)
        if "corrected_fields" not in model.model_fields:
            return drawn
        return st.tuples(drawn, self._correction()).map(
            lambda pair: {
                **pair[0],
                "corrects_event_id": pair[1][0],
                "corrected_fields": pair[1][1],
            }
        )

    def annotation(self, name: str, annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
        origin = get_origin(annotation)
        if origin is Annotated:
            inner, *extra = get_args(annotation)
            return self.annotation(name, inner, [*metadata, *extra])
        if origin in (Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
            return st.one_of(
                st.none(), *[self.annotation(name, option, metadata) for option in options]
            )
        if origin is Literal:
            return st.sampled_from(get_args(annotation))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.model(annotation)
        return self._leaf(name, annotation, _constraints(metadata))

    def _leaf(self, name: str, annotation: Any, limits: _Constraints) -> st.SearchStrategy[Any]:
        origin = get_origin(annotation)
        if origin is list:
            return self._list(name, get_args(annotation)[0], limits)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.model(annotation)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return st.sampled_from([member.value for member in annotation])
        if annotation is bool:
            return st.booleans()
        if annotation is int:
            return self._integer(limits)
        if annotation is AwareDatetime or (
            isinstance(annotation, type) and issubclass(annotation, datetime)
        ):
            return times(self.now, limits.happened, self.hostile)
        if annotation is str:
            return self._string(name, limits)
        raise TypeError(f"no strategy for {name}: {annotation!r}")

    # -- kinds of value ----------------------------------------------------------------------

    def _integer(self, limits: _Constraints) -> st.SearchStrategy[int]:
        low = limits.ge if limits.ge is not None else -(2**31)
        high = limits.le if limits.le is not None else 2**31
        return st.one_of(
            st.sampled_from([low, high]),
            st.integers(low, high),
            *([st.sampled_from([low - 1, high + 1, 2**63])] * (3 * self.hostile)),
        )

    def _string(self, name: str, limits: _Constraints) -> st.SearchStrategy[str]:
        longest = limits.max_length or 4000
        shortest = limits.min_length or 0
        if limits.pattern is not None:
            fresh = self._patterned(limits.pattern, shortest, longest)
        else:
            free = ev.check_free_text in limits.validators
            fresh = self._text(shortest, longest, free)
        pool = POOL_OF.get(name)
        return fresh if pool is None else self._pooled(pool, fresh)

    def _pooled(self, pool: str, fresh: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        """An id used before (two times in three, once there are some) or a new one.

        Both are always drawn, so the shape of the draw does not depend on the pool."""
        pools = self.pools

        def pick(drawn: tuple[int, str]) -> str:
            index, new = drawn
            ids = pools.ids.get(pool, [])
            return ids[index % len(ids)] if ids and index % 3 else new

        return st.tuples(st.integers(0, 3000), fresh).map(pick)

    def _patterned(self, pattern: str, shortest: int, longest: int) -> st.SearchStrategy[str]:
        compiled = re.compile(pattern)
        extremes = [
            c * n
            for c in ("a", "A", "0", "Z")
            for n in {max(shortest, 1), longest, longest + self.hostile}
        ]
        if not self.hostile:
            extremes = [e for e in extremes if compiled.fullmatch(e) and len(e) <= longest]
        return st.one_of(
            st.from_regex(compiled, fullmatch=True).filter(lambda s: len(s) <= longest),
            *([st.sampled_from(extremes)] if extremes else []),
        )

    def _text(self, shortest: int, longest: int, free: bool) -> st.SearchStrategy[str]:
        """Text of any Unicode (no lone surrogate: that is not JSON), at its longest now and
        then; controls only where the field takes them (free text: tab and line breaks), or
        when hostile."""
        ordinary = st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"])
        allowed = [c for c in ODD_CHARACTERS if not _CONTROL.match(c) or (free and c in "\t\n\r")]
        odd = st.sampled_from(ODD_CHARACTERS if self.hostile else allowed)
        alphabet = st.one_of(ordinary, ordinary, ordinary, odd)
        return st.one_of(
            st.text(alphabet, min_size=shortest, max_size=min(longest, 40)),
            st.text(alphabet, min_size=max(shortest, 1), max_size=8).map(
                lambda s: (s * longest)[:longest]  # the longest allowed
            ),
            st.just("y" * (longest + self.hostile)),  # the longest, or one too long
            st.sampled_from(
                ["\u200f\u05e9\u05dc\u05d5\u05dd\u202e", "a\u0301", "\U0001f600" * 3, "=1+2"]
            ),
        ).filter(lambda s: shortest <= len(s) <= longest + self.hostile)

    def _list(self, name: str, element: Any, limits: _Constraints) -> st.SearchStrategy[list[Any]]:
        items = self.annotation(name, element, [])
        shortest = limits.min_length or 0
        longest = limits.max_length if limits.max_length is not None else 100
        return st.one_of(
            st.lists(items, min_size=shortest, max_size=min(longest, 4)),
            st.lists(items, min_size=shortest, max_size=min(longest, 4)),
            items.map(lambda item: [item] * longest),  # the longest, one value repeated
            items.map(lambda item: [item] * (longest + self.hostile)),
            *([st.just([])] if self.hostile or not shortest else []),
        )

    def _correction(self, breaking: bool = False) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        """An event to correct (from the pool, or unknown) and corrected values for it: fields
        of its type, generated as that type's own fields are (or, now and then, another's)."""
        pools = self.pools

        def fields_of(type_name: str) -> st.SearchStrategy[dict[str, Any]]:
            model = ev.FACT_TYPES[type_name]
            value = self._breaking_value if breaking else self.annotation
            strategies = {
                name: value(name, info.annotation, list(info.metadata))
                for name, info in model.model_fields.items()
                if name not in ("type", "event_id", "corrected_fields", "corrects_event_id")
            }
            names = sorted(strategies)
            return st.one_of(
                st.just({}),
                st.sampled_from(names).flatmap(lambda n: strategies[n].map(lambda v: {n: v})),
                st.sampled_from(names).flatmap(lambda n: strategies[n].map(lambda v: {n: v})),
            )

        def pick(drawn: tuple[int, tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
            # The event is picked after the fields are drawn, so the shape of the draw does
            # not depend on the pool: one of that type if any (three times in four), else any.
            index, (type_name, fields) = drawn
            same = sorted(e for e, t in pools.types.items() if t == type_name)
            anyone = sorted(pools.types)
            if same and index % 4:
                return same[index % len(same)], fields
            return (anyone[index % len(anyone)] if anyone else "never-recorded"), fields

        typed = st.sampled_from(sorted(ev.FACT_TYPES)).flatmap(
            lambda n: fields_of(n).map(lambda f: (n, f))
        )
        return st.tuples(st.integers(0, 10_000), typed).map(pick)
