"""A subject's full history: what an access request (GDPR 15) returns.

Every event that concerns the subject: their consent decisions and age attestations, every
disclosure of their data (with the specific recipient), their requests, and the incidents
that concern them (named by an assessment, or selected by an assessment's rule, as the
incident register says) with all their steps, in log order, each with its signature. Other
people named in the same events stay sealed (``[another subject]``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.deps import HistoryReader, LedgerDep, QueryText, ReadModelsDep, SingleValues
from api.examples import EVENT, example
from api.problems import COMMON
from ledger.application import LedgerApplication
from ledger.domain import stream_id
from ledger.recorder import LogRecord
from projections.incidents import disclosure_rows
from projections.read_models import ReadModels

router = APIRouter(
    prefix="/v1/subjects", tags=["subjects"], responses=COMMON, dependencies=[SingleValues]
)


def history(ledger: LedgerApplication, models: ReadModels, subject: str) -> dict[str, Any]:
    """The subject's events: as a subject's export bundle holds them (its own events, its
    disclosures, its requests, and every event of each incident that concerns it: named by an
    assessment, or selected by an assessment's rule, as the incident register says)."""
    pseudonym = ledger.subject_keys.pseudonym(subject)
    now = datetime.now(UTC)
    records: dict[int, LogRecord] = {}
    rows = list(disclosure_rows(models.disclosures, subject=pseudonym))
    for seq in sorted({row.seq for row in rows}):
        record = ledger.ledger.get_record(seq)
        if record is not None:
            records[record.seq] = record
    streams = [pseudonym]
    streams += [
        str(stream_id("request", r.request_id))
        for r in models.requests.list(now, subject=pseudonym)
    ]
    streams += [
        str(stream_id("incident", i.incident_id))
        for i in models.incidents.concerning_subject(
            pseudonym, ((row.recipient_id, row.occurred_at) for row in rows), now
        )
    ]
    for stream in streams:
        records.update((r.seq, r) for r in ledger.ledger.select_stream_records(stream))
    events = [
        ledger.decode(records[seq], only_subject=pseudonym).as_dict() for seq in sorted(records)
    ]
    return {"subject": pseudonym, "events": events}


@router.get(
    "/history",
    summary="Everything the log holds about a subject (an access request)",
    responses=example({"subject": EVENT["stream"], "events": [EVENT]}),
)
async def subject_history(
    ledger: LedgerDep,
    models: ReadModelsDep,
    _: HistoryReader,
    subject: Annotated[
        QueryText, Query(min_length=1, max_length=256, description="The emitter's reference")
    ],
) -> dict[str, Any]:
    return await run_in_threadpool(history, ledger, models, subject)
