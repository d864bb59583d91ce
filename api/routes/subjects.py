"""A subject's full history: what an access request (GDPR 15) returns.

Every event that concerns the subject: their consent decisions and age attestations, every
disclosure of their data (with the specific recipient), their requests, and the incidents
that named them, in log order, each with its signature. Other people named in the same
events stay sealed (``[another subject]``).
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
from projections.read_models import ReadModels

router = APIRouter(
    prefix="/v1/subjects", tags=["subjects"], responses=COMMON, dependencies=[SingleValues]
)


def history(ledger: LedgerApplication, models: ReadModels, subject: str) -> dict[str, Any]:
    pseudonym = ledger.subject_keys.pseudonym(subject)
    records: dict[int, LogRecord] = {}
    streams = [pseudonym]
    streams += [
        str(stream_id("request", r.request_id))
        for r in models.requests.list(datetime.now(UTC), subject=pseudonym)
    ]
    streams += [
        str(stream_id("incident", i.incident_id))
        for i in models.incidents.list(datetime.now(UTC))
        if pseudonym in i.affected_subjects
    ]
    for stream in streams:
        records.update((r.seq, r) for r in ledger.ledger.select_stream_records(stream))
    after = None
    while True:
        rows = models.disclosures.find(subject=pseudonym, after=after, limit=1000)
        for row in rows:
            record = ledger.ledger.get_record(row.seq)
            if record is not None:
                records[record.seq] = record
        if len(rows) < 1000:
            break
        after = (rows[-1].occurred_at, rows[-1].seq, rows[-1].subject)
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
