"""Turn a validated fact into the ``data`` the log stores, and open it again for reading.

Storing (:func:`seal_fact`): the subject reference becomes ``subject`` (the pseudonym) plus
``subject_ref`` (sealed); every other personal-data field is sealed in place under the same
subject's key; a list of subject references becomes a list of ``{"subject", "ref"}`` objects,
each sealed under its own subject's key. Reading (:func:`open_data`): the reverse, with
:data:`ERASED` where a subject's key no longer exists.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any
from uuid import UUID

from ledger.events import FACT_TYPES, Fact, personal_data_paths
from ledger.subject_keys import (
    KeySession,
    KeySource,
    SealError,
    event_aad,
    open_text,
    seal_text,
)
from ledger.verifier.mentions import WITHHELD
from ledger.verifier.mentions import resolve as resolve_mentions

ERASED = "[erased]"
ENVELOPE_FIELDS = ("type", "event_id", "occurred_at")

_PATHS: dict[str, list[tuple[str, str]]] = {
    type_name: personal_data_paths(cls) for type_name, cls in FACT_TYPES.items()
}


def fact_subject_refs(fact: Fact) -> list[str]:
    """The references of every subject the fact names."""
    refs: list[str] = []
    for path, kind in _PATHS[fact.TYPE]:
        if kind != "subject":
            continue
        value = getattr(fact, path.removesuffix("[]"))
        refs.extend(value if isinstance(value, list) else [value])
    return refs


def fact_pseudonyms(fact: Fact, keys: KeySource) -> list[str]:
    """Pseudonyms of every subject the fact names (whose keys sealing will need)."""
    return [keys.pseudonym(ref) for ref in fact_subject_refs(fact)]


def seal_fact(fact: Fact, stream: UUID, stream_version: int, keys: KeySource) -> dict[str, Any]:
    """The stored ``data`` of a fact: envelope fields removed, personal data sealed."""
    data = fact.model_dump(mode="json", exclude_none=True)
    for name in ENVELOPE_FIELDS:
        data.pop(name, None)
    paths = _PATHS[fact.TYPE]
    pseudonyms = fact_pseudonyms(fact, keys)
    subject_keys = keys.keys_for(pseudonyms, create=True)
    owner_key: bytes | None = None
    if fact.SUBJECT_SCOPED:
        pseudonym = keys.pseudonym(data["subject"])
        owner_key = subject_keys[pseudonym]
        data["subject_ref"] = seal_text(
            owner_key, data["subject"], event_aad(stream, stream_version, "subject_ref")
        )
        data["subject"] = pseudonym
    for path, kind in paths:
        if kind == "subject" and path.endswith("[]"):
            name = path[:-2]
            sealed_list = []
            for index, ref in enumerate(data[name]):
                pseudonym = keys.pseudonym(ref)
                aad = event_aad(stream, stream_version, f"{name}[{index}].ref")
                sealed_list.append(
                    {
                        "subject": keys.seal_mention(
                            pseudonym, stream, stream_version, f"{name}[{index}].subject"
                        ),
                        "ref": seal_text(subject_keys[pseudonym], ref, aad),
                    }
                )
            data[name] = sealed_list
        elif kind == "text":
            assert owner_key is not None, f"{fact.TYPE}.{path} has no subject to seal it for"
            _replace(data, path, partial(_seal, owner_key, event_aad(stream, stream_version, path)))
    return data


REQUEST_STEPS = frozenset(
    {"request.identity_verified", "request.extended", "request.fulfilled", "request.refused"}
)
"""Steps of a data-subject request: the request names its subject (a step for another subject
is refused), so their digests leave the reference out and survive the subject's erasure."""


def mentions_opened(
    data: dict[str, Any], stream: UUID | str, stream_version: int, keys: KeySource
) -> dict[str, Any]:
    """Stored ``data`` with its mentions opened and nothing else: what the ledger's own
    readers (scopes at append, read models, ``verify-log``) work from."""
    return resolve_mentions(
        data, lambda sealed, path: keys.open_mention(sealed, stream, stream_version, path)
    )


def blind_fact(fact: Fact, keys: KeySession) -> dict[str, Any]:
    """The fact as its idempotency digest covers it: every subject reference replaced by the
    subject's pseudonym, every other personal-data value by a keyed hash under the subject's
    own key (so nothing in a digest can be tested against a reference or a value once the
    subject is erased); a request step's subject by the constant ``"(the request's)"``."""
    data = fact.model_dump(mode="json")
    if fact.TYPE in REQUEST_STEPS:
        data["subject"] = "(the request's)"
        return data
    owner: str | None = None
    if fact.SUBJECT_SCOPED:
        owner = keys.pseudonym(data["subject"])
        data["subject"] = owner
    for path, kind in _PATHS[fact.TYPE]:
        if kind == "subject" and path.endswith("[]"):
            name = path[:-2]
            data[name] = [keys.pseudonym(ref) for ref in data[name]]
        elif kind == "text" and owner is not None:
            _replace(data, path, partial(keys.blind, owner))
    return data


def open_data(
    type_name: str,
    data: dict[str, Any],
    stream: UUID | str,
    stream_version: int,
    keys: KeySource,
    only: str | None = None,
) -> dict[str, Any]:
    """A copy of stored ``data`` with personal data opened (or :data:`ERASED`), and the
    pseudonyms of a fact about many subjects (its mentions) opened.

    With ``only`` (a pseudonym), only that subject's data and mention are opened; every other
    subject's stay closed as :data:`WITHHELD` (what a subject's own access request may show).
    With ``only`` empty, mentions are opened and no personal data (what a bundle of a
    recipient, an incident or a period shows).

    Raises :class:`SealError` when a sealed value exists but does not open under its
    subject's key: the ciphertext was altered or moved from another event or field.
    """

    def open_mention(sealed: str, path: str) -> str:
        pseudonym = keys.open_mention(sealed, stream, stream_version, path)
        return WITHHELD if only and pseudonym != only else pseudonym

    opened: dict[str, Any] = _deep_copy(resolve_mentions(data, open_mention))
    paths = _PATHS.get(type_name, [])
    needed: list[str] = []
    if "subject" in opened and isinstance(opened["subject"], str):
        needed.append(opened["subject"])
    for path, kind in paths:
        if kind == "subject" and path.endswith("[]"):
            needed.extend(
                item["subject"] for item in opened.get(path[:-2], []) if item["subject"] != WITHHELD
            )
    if only is not None:
        needed = [p for p in needed if p == only]
    found = keys.keys_for(needed, create=False)

    def open_with(pseudonym: str, sealed: str, path: str) -> str:
        if only is not None and pseudonym != only:
            return WITHHELD
        key = found.get(pseudonym)
        if key is None:
            return ERASED
        return open_text(key, sealed, event_aad(stream, stream_version, path))

    owner = opened.get("subject")
    if isinstance(owner, str) and "subject_ref" in opened:
        opened["subject_ref"] = open_with(owner, opened["subject_ref"], "subject_ref")
    for path, kind in paths:
        if kind == "subject" and path.endswith("[]"):
            name = path[:-2]
            for index, item in enumerate(opened.get(name, [])):
                item["ref"] = open_with(item["subject"], item["ref"], f"{name}[{index}].ref")
        elif kind == "text" and isinstance(owner, str):
            _replace(opened, path, lambda v, path=path: open_with(owner, v, path))  # type: ignore[misc]
    return opened


def withhold_others(type_name: str, data: dict[str, Any], only: str) -> dict[str, Any]:
    """Opened ``data`` as one subject may see it: every other subject's pseudonym (in a list
    of subjects, or a correction's ``concerns``) replaced by :data:`WITHHELD`, so that an
    answer about one person names nobody else (their pseudonyms would let anyone holding a
    bundle test the log's tags for them)."""
    shown: dict[str, Any] = _deep_copy(data)
    for path, kind in _PATHS.get(type_name, []):
        if kind == "subject" and path.endswith("[]"):
            for item in shown.get(path[:-2], []):
                if isinstance(item, dict) and item.get("subject") != only:
                    item["subject"] = WITHHELD
    concerns = shown.get("concerns")
    if isinstance(concerns, list):
        shown["concerns"] = [
            f"subject:{WITHHELD}"
            if isinstance(c, str) and c.startswith("subject:") and c != f"subject:{only}"
            else c
            for c in concerns
        ]
    return shown


def _seal(key: bytes, aad: bytes, text: str) -> str:
    return seal_text(key, text, aad)


def _replace(data: dict[str, Any], path: str, transform: Callable[[str], str]) -> None:
    *parents, leaf = path.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict) and isinstance(node.get(leaf), str):
        node[leaf] = transform(node[leaf])


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


__all__ = [
    "ERASED",
    "WITHHELD",
    "SealError",
    "blind_fact",
    "fact_pseudonyms",
    "fact_subject_refs",
    "mentions_opened",
    "open_data",
    "seal_fact",
    "withhold_others",
]
