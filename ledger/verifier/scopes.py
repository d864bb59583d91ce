"""Scopes and tags: how an entry says whom it concerns without saying it to anyone else.

Every event concerns a few **scopes**, named as text:

==========================  ================================================================
``subject:<pseudonym>``     a subject the event names (consents, age, requests, disclosures,
                            incident assessments that list affected subjects)
``recipient:<id>``          a recipient's registration, update or termination
``disclosed-to:<id>``       a disclosure to that recipient
``incident:<id>``           an incident's events
``policy``                  a policy version
``day:<YYYY-MM-DD>``        the UTC day the event occurred (every event)
==========================  ================================================================

A correction concerns the scopes of the event it corrects (recorded in its data, under
``concerns``), and the day it occurred.

The entry carries one **tag** per scope: the first 16 bytes of
``HMAC-SHA256(key = SHA-256("consent-ledger/tag/v1" || 0x00 || scope), message = seq as 8 bytes
big-endian)``. A tag differs from one entry to the next, so tags link nothing; whoever knows a
scope's name (an exported bundle gives the names of its scopes) can test every entry for it.
A subject's scope name holds the pseudonym, which only the ledger can compute from the
subject's reference, so the tags of other people's events tell a bundle's reader nothing.
Organisation-level scopes (recipients, incidents, days, policy) can be tested by anyone who
guesses the name: they reveal that some event concerned that recipient or that day, never whom.

Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

TAG_DOMAIN = b"consent-ledger/tag/v1\x00"
SUBJECT_LISTS = ("subjects", "affected_subjects")
"""Data fields that list subjects, each as ``{"subject": pseudonym, ...}``."""


def scopes_of(type_name: str, data: Mapping[str, Any], occurred_at: str) -> list[str]:
    """The scopes an event concerns, from its type and its data as stored (sorted)."""
    scopes = {f"day:{occurred_at[:10]}"}
    family = type_name.partition(".")[0]
    if family == "correction":
        concerns = data.get("concerns", [])
        if isinstance(concerns, list):
            scopes.update(str(scope) for scope in concerns)
        return sorted(scopes)
    subject = data.get("subject")
    if isinstance(subject, str):
        scopes.add(f"subject:{subject}")
    for name in SUBJECT_LISTS:
        listed = data.get(name)
        if isinstance(listed, list):
            scopes.update(
                f"subject:{item['subject']}"
                for item in listed
                if isinstance(item, Mapping) and isinstance(item.get("subject"), str)
            )
    recipient = data.get("recipient_id")
    if family == "recipient" and isinstance(recipient, str):
        scopes.add(f"recipient:{recipient}")
    elif family == "disclosure" and isinstance(recipient, str):
        scopes.add(f"disclosed-to:{recipient}")
    incident = data.get("incident_id")
    if family == "incident" and isinstance(incident, str):
        scopes.add(f"incident:{incident}")
    if family == "policy":
        scopes.add("policy")
    return sorted(scopes)


def without_days(scopes: Iterable[str]) -> list[str]:
    """The scopes a correction inherits from the event it corrects (not its day)."""
    return sorted(scope for scope in scopes if not scope.startswith("day:"))


def tag_key(scope: str) -> bytes:
    """The key whose HMACs are a scope's tags."""
    return hashlib.sha256(TAG_DOMAIN + scope.encode()).digest()


def tag(key: bytes, seq: int) -> bytes:
    """The tag an entry at ``seq`` carries for the scope of ``key``."""
    return hmac.new(key, seq.to_bytes(8, "big"), hashlib.sha256).digest()[:16]


def tags_for(scopes: Iterable[str], seq: int) -> list[bytes]:
    """The tags of an entry at ``seq`` that concerns ``scopes``, sorted."""
    return sorted({tag(tag_key(scope), seq) for scope in scopes})
