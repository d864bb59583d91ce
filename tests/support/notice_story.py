"""The story the notice tests share: a policy, three recipients, a subject whose data went to
two of them (for two purposes) and a bystander's to the third; a notice service driven by the
test; the notice events in the log."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from ledger.application import LedgerApplication
from ledger.notices import Endpoint
from projections.database import ProjectionDatabase
from projections.notices import NoticeService
from tests import facts


def notice_service(
    ledger: LedgerApplication, db: ProjectionDatabase, endpoints: Mapping[str, str | Endpoint]
) -> NoticeService:
    # No back-off: a failed attempt is due again at the next round (rounds are driven here).
    return NoticeService(ledger, db, lambda: endpoints, retry_first=timedelta(0))


def notice_types(ledger: LedgerApplication, prefix: str = "recipient.n") -> list[dict[str, Any]]:
    found = []
    for record in ledger.iter_records():
        event = ledger.decode(record)
        if event.type.startswith(("recipient.notice", "recipient.notified", "recipient.ack")):
            found.append({"seq": event.seq, "type": event.type, **event.data})
    return [e for e in found if e["type"].startswith(prefix) or prefix == ""]


def notice_story(ledger: LedgerApplication) -> dict[str, str]:
    """A policy; three recipients; one subject who consents to marketing e-mail and whose
    data goes to ``email`` (marketing_email) and ``analytics`` (usage_analytics), and
    another subject whose data goes to ``other``."""
    version = facts.ref("policy")
    names = {k: facts.ref(k) for k in ("email", "analytics", "other")}
    subject, bystander = facts.ref("user"), facts.ref("user")
    ledger.append(
        [
            facts.policy(version),
            *(facts.recipient(r) for r in names.values()),
            facts.consent(subject, version),
            facts.disclosure(names["email"], [subject, bystander], version),
            facts.disclosure(names["analytics"], [subject], version, purpose="usage_analytics"),
            facts.disclosure(names["other"], [bystander], version),
        ]
    )
    return {**names, "subject": subject, "bystander": bystander, "version": version}
