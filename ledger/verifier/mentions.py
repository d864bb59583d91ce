"""Mentions: how a fact about many subjects names each of them without naming them to others.

A disclosure lists the subjects whose data went out (``subjects``), an incident assessment the
subjects it affects (``affected_subjects``): each item is ``{"subject": ..., "ref": ...}``.
The ``ref`` (the emitter's reference) is sealed under that subject's own key. The ``subject``
(the pseudonym) is sealed too, under the ledger's *mention key*, so that a body shown to one
subject (in their bundle, or their history) holds nothing of the others: no pseudonym that
would let its reader test the log's tags for them, or recognise them in another bundle.

Whoever may see a mention is shown it opened: the ledger's own readers (read models,
``verify-log``) open every mention with the mention key; a bundle carries, in its ``opened``
column, the pseudonym of every mention in its scope and :data:`WITHHELD` for the others (only
a subject's bundle withholds any). The verifier does not take an opened pseudonym on trust:
the entry is tagged for each subject it mentions, so an opened pseudonym whose tag is not in
the entry is named as a forgery (:func:`ledger.verifier.events.EventChecker`).

A value that is not sealed is a pseudonym as such (bodies written before mentions were sealed).

Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

SEALED_PREFIX = "sealed:v1:"
WITHHELD = "[another subject]"
MENTION_LISTS = ("subjects", "affected_subjects")
"""Data fields that list subjects, each item as ``{"subject": <mention>, ...}``."""
MENTION_STRINGS = ("concerned_subjects", "opened_subjects", "told_subjects")
"""Data fields that list mentions as such (a correction's subjects, the subjects whose data a
``personal_data.accessed`` read opened, the subject a notice to a recipient is about)."""

_PSEUDONYM = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

Opener = Callable[[str, str], str]
"""Opens one sealed mention: (sealed value, its path such as ``subjects[2].subject``) to the
pseudonym, or :data:`WITHHELD`."""


def is_pseudonym(value: object) -> bool:
    """A pseudonym as bodies write it: a lower-case UUID."""
    return isinstance(value, str) and _PSEUDONYM.match(value) is not None


def mention_paths(data: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """``(list field, index, value)`` of every mention in ``data``, in body order."""
    found: list[tuple[str, int, str]] = []
    for name, listed in data.items():
        if not isinstance(listed, list):
            continue
        if name in MENTION_LISTS:
            for index, item in enumerate(listed):
                if isinstance(item, Mapping) and isinstance(item.get("subject"), str):
                    found.append((name, index, item["subject"]))
        elif name in MENTION_STRINGS:
            found += [(name, i, item) for i, item in enumerate(listed) if isinstance(item, str)]
    return found


def _path(name: str, index: int) -> str:
    return f"{name}[{index}]" if name in MENTION_STRINGS else f"{name}[{index}].subject"


def resolve(data: Mapping[str, Any], opener: Opener) -> dict[str, Any]:
    """``data`` with every sealed mention replaced by what ``opener`` gives for it (nothing
    else opened): a new mapping when there is one, else ``data`` itself (read it, never
    change it), so that the events with no mention, nearly all, cost no copy."""
    paths = [(n, i, v) for n, i, v in mention_paths(data) if v.startswith(SEALED_PREFIX)]
    if not paths:
        return data if isinstance(data, dict) else dict(data)
    resolved = dict(data)
    for name in {name for name, _, _ in paths}:
        resolved[name] = [dict(item) if isinstance(item, Mapping) else item for item in data[name]]
    for name, index, value in paths:
        opened = opener(value, _path(name, index))
        if name in MENTION_STRINGS:
            resolved[name][index] = opened
        else:
            resolved[name][index]["subject"] = opened
    return resolved


def resolve_from_shown(data: Mapping[str, Any], shown: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (as signed) with each sealed mention replaced by the value ``shown`` (the data
    with its sealed values opened, as a bundle's ``opened`` column gives them) holds there.

    Withheld mentions become ``[another subject 1]``, ``[another subject 2]`` ... in body
    order, so that they stay distinct (an incident's count of affected subjects counts them)."""
    count = 0

    def opener(_: str, path: str) -> str:
        nonlocal count
        name, _, rest = path.partition("[")
        value = shown[name][int(rest.partition("]")[0])]
        if name not in MENTION_STRINGS:
            value = value["subject"]
        if isinstance(value, str) and value != WITHHELD:
            return value
        count += 1
        return f"{WITHHELD[:-1]} {count}]"

    return resolve(data, opener)


def is_withheld(value: object) -> bool:
    """A mention :func:`resolve_from_shown` withheld."""
    return isinstance(value, str) and value.startswith(WITHHELD[:-1])


def withheld(data: Mapping[str, Any]) -> int:
    """How many mentions of resolved ``data`` are withheld."""
    return sum(1 for _, _, value in mention_paths(data) if is_withheld(value))


def without_withheld(data: Mapping[str, Any]) -> dict[str, Any]:
    """Resolved ``data`` without its withheld items (what scopes and closures are drawn from);
    ``data`` itself when none is withheld."""
    if not withheld(data):
        return data if isinstance(data, dict) else dict(data)
    kept = dict(data)
    for name in MENTION_LISTS:
        listed = data.get(name)
        if isinstance(listed, list):
            kept[name] = [
                item
                for item in listed
                if not (isinstance(item, Mapping) and is_withheld(item.get("subject")))
            ]
    for name in MENTION_STRINGS:
        listed = data.get(name)
        if isinstance(listed, list):
            kept[name] = [item for item in listed if not is_withheld(item)]
    return kept


__all__ = [
    "MENTION_LISTS",
    "MENTION_STRINGS",
    "WITHHELD",
    "Opener",
    "is_pseudonym",
    "is_withheld",
    "mention_paths",
    "resolve",
    "resolve_from_shown",
    "withheld",
    "without_withheld",
]
