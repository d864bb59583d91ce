"""Incidents: what each step records, how an incident moves, and its clocks (GDPR 33, 34).

An incident moves ``open`` -> ``assessed`` -> ``contained`` -> ``closed`` and never back. The
latest assessment and containment are the ones shown (a re-assessment replaces the earlier
one), while the *first* notification of the authority and of the subjects is the one shown: it
is the one that met, or missed, the deadline. The authority must be told within 72 hours of
detection (configurable) unless the risk is ``unlikely``; a ``high_risk`` incident must also be
told to the subjects.

Standard library only: the incident register and the offline verifier's report use these, the
steps through the one fold they share (:mod:`ledger.verifier.incidents_fold`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ledger.verifier.times import utc

OPENED = "incident.opened"
ASSESSED = "incident.assessed"
CONTAINED = "incident.contained"
AUTHORITY_NOTIFIED = "incident.authority_notified"
SUBJECTS_NOTIFIED = "incident.subjects_notified"
CLOSED = "incident.closed"
INCIDENT_TYPES = frozenset(
    {OPENED, ASSESSED, CONTAINED, AUTHORITY_NOTIFIED, SUBJECTS_NOTIFIED, CLOSED}
)

STATUSES = ("open", "assessed", "contained", "closed")
"""In the order an incident moves through them; it never moves back."""
STEP_STATUS = {ASSESSED: "assessed", CONTAINED: "contained", CLOSED: "closed"}
STEP_SEQ = {
    ASSESSED: "assessed_seq",
    CONTAINED: "contained_seq",
    AUTHORITY_NOTIFIED: "authority_notified_seq",
    SUBJECTS_NOTIFIED: "subjects_notified_seq",
    CLOSED: "closed_seq",
}
"""The field holding the seq of the event a step's fields show."""
FIRST_WINS = frozenset({AUTHORITY_NOTIFIED, SUBJECTS_NOTIFIED})
"""Steps shown by their first event (the others by their latest)."""
DEFAULT_AUTHORITY_DEADLINE_HOURS = 72


def contribution(
    type_name: str, seq: int, occurred_at: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The fields of the incident an event fills, times in the stored form."""
    if type_name == OPENED:
        return {
            "detected_at": utc(data["detected_at"]),
            "summary": data["summary"],
            "recipient_id": data.get("recipient_id"),
            "data_categories": list(data.get("data_categories", [])),
        }
    if type_name == ASSESSED:
        rule = data.get("affected_rule")
        return {
            "risk": data["risk"],
            "data_categories": list(data["data_categories"]),
            "likely_consequences": data["likely_consequences"],
            "affected_rule": None if rule is None else normalised_rule(rule),
            "approximate_subject_count": data.get("approximate_subject_count"),
            "assessed_at": occurred_at,
            "assessed_seq": seq,
        }
    if type_name == CONTAINED:
        return {"measures": data["measures"], "contained_at": occurred_at, "contained_seq": seq}
    if type_name == AUTHORITY_NOTIFIED:
        return {
            "authority": data["authority"],
            "authority_reference": data.get("reference"),
            "dpo_contact": data["dpo_contact"],
            "delay_reason": data.get("delay_reason"),
            "authority_notified_at": occurred_at,
            "authority_notified_seq": seq,
        }
    if type_name == SUBJECTS_NOTIFIED:
        return {
            "subjects_notified_channel": data["channel"],
            "subjects_notified_count": data["subject_count"],
            "subjects_notified_at": occurred_at,
            "subjects_notified_seq": seq,
        }
    if type_name == CLOSED:
        return {"resolution": data["resolution"], "closed_at": occurred_at, "closed_seq": seq}
    raise ValueError(f"{type_name} is not an incident fact")


def step(
    type_name: str,
    seq: int,
    occurred_at: str,
    data: Mapping[str, Any],
    status: str,
    step_seq: int | None,
) -> dict[str, Any]:
    """The fields a step after the opening changes, given the incident's ``status`` and the
    seq its fields of this kind show now (``step_seq``)."""
    fields = contribution(type_name, seq, occurred_at, data)
    if type_name in FIRST_WINS and step_seq is not None:
        fields = {}  # a follow-up: the first notification stays the one shown
    if type_name in STEP_STATUS:
        fields["status"] = later(status, STEP_STATUS[type_name])
    fields["last_seq"] = seq
    return fields


def normalised_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "recipient_id": rule["recipient_id"],
        "disclosed_from": utc(rule["disclosed_from"]),
        "disclosed_to": utc(rule["disclosed_to"]),
    }


def rule_selects(rule: Mapping[str, Any], recipient_id: str, occurred_at: str) -> bool:
    """Whether an assessment's ``affected_rule`` selects a disclosure to ``recipient_id`` that
    occurred at ``occurred_at``: the rule's recipient, in [from, to). The rule as the register
    and the report keep it (:func:`normalised_rule`) and the time in the stored form, so that
    the times compare as strings.

    The one reading of a rule: the incident register's ``subjects_by_rule``, a subject's
    history, the bundles' closure (:class:`ledger.verifier.scopes.Closure`) and the report all
    call it."""
    start, end = str(rule["disclosed_from"]), str(rule["disclosed_to"])
    return recipient_id == rule["recipient_id"] and start <= occurred_at < end


def at_recipient(fields: Mapping[str, Any], recipient_id: str) -> bool:
    """Whether an incident (its fields as shown: the opening's ``recipient_id``, the latest
    assessment's ``affected_rule``) concerns a recipient: opened against it, or its rule
    names it."""
    rule = fields.get("affected_rule")
    return fields.get("recipient_id") == recipient_id or (
        isinstance(rule, Mapping) and rule.get("recipient_id") == recipient_id
    )


def later(current: str, reached: str) -> str:
    return max(current, reached, key=STATUSES.index)


# -- clocks ------------------------------------------------------------------------------------


def authority_deadline(
    detected_at: datetime, hours: int = DEFAULT_AUTHORITY_DEADLINE_HOURS
) -> datetime:
    """When the authority must have been told (GDPR 33(1): 72 hours after detection)."""
    return detected_at + timedelta(hours=hours)


def authority_overdue(
    notified_at: datetime | None, risk: str | None, deadline: datetime, now: datetime
) -> bool:
    """Not notified, the risk is not ``unlikely`` (or not assessed yet), the deadline passed."""
    return notified_at is None and risk != "unlikely" and now > deadline


def authority_notified_late(notified_at: datetime | None, deadline: datetime) -> bool:
    return notified_at is not None and notified_at > deadline


def subjects_notification_due(risk: str | None, subjects_notified_at: object | None) -> bool:
    """High risk, and the subjects were not told yet (GDPR 34)."""
    return risk == "high_risk" and subjects_notified_at is None


def article_33_3(
    fields: Mapping[str, Any], affected_count: int, notified_late: bool = False
) -> dict[str, Any]:
    """GDPR 33(3): (a) the nature, with categories and numbers of subjects; (b) the DPO's
    contact; (c) the likely consequences; (d) the measures taken or proposed. And, for a
    notification made after the deadline (``notified_late``), GDPR 33(1)'s reasons for the
    delay: ``delay_reason`` is missing until one is recorded."""
    count = fields.get("approximate_subject_count")
    categories = list(fields.get("data_categories") or [])
    nature = {
        "summary": fields.get("summary"),
        "data_categories": categories,
        "approximate_subject_count": count,
        "affected_subject_count": affected_count,
    }
    known = {
        # The numbers: estimated, named, or defined by a rule (the ledger counts its
        # subjects; every bundle that shows the incident holds its rule, not always them).
        "nature": bool(categories)
        and (count is not None or affected_count > 0 or fields.get("affected_rule") is not None),
        "dpo_contact": fields.get("dpo_contact") is not None,
        "likely_consequences": fields.get("likely_consequences") is not None,
        "measures": fields.get("measures") is not None,
        "delay_reason": not notified_late or fields.get("delay_reason") is not None,
    }
    return {
        "nature": nature,
        "dpo_contact": fields.get("dpo_contact"),
        "likely_consequences": fields.get("likely_consequences"),
        "measures": fields.get("measures"),
        "missing": [name for name, present in known.items() if not present],
    }
