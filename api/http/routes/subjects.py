"""A subject's full history: what an access request (GDPR 15) returns.

Every event that concerns the subject: their consent decisions and age attestations, every
disclosure of their data (with the specific recipient), their requests, and the incidents
that concern them (named by an assessment, or selected by an assessment's rule, as the
incident register says) with all their steps, in log order, each with its signature. Other
people named in the same events stay sealed (``[another subject]``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.http.deps import HistoryReader, LedgerDep, QueriesDep, QueryText, SingleValues
from api.http.examples import EVENT, example
from api.http.problems import COMMON
from api.token_store import Scope
from ledger.application import AccessAction, AccessRecord

router = APIRouter(
    prefix="/v1/subjects", tags=["subjects"], responses=COMMON, dependencies=[SingleValues]
)


@router.get(
    "/history",
    summary="Everything the log holds about a subject (an access request)",
    responses=example({"subject": EVENT["stream"], "events": [EVENT]}),
)
async def subject_history(
    queries: QueriesDep,
    ledger: LedgerDep,
    client: HistoryReader,
    subject: Annotated[
        QueryText, Query(min_length=1, max_length=256, description="The emitter's reference")
    ],
    purpose: Annotated[
        QueryText | None,
        Query(min_length=1, max_length=500, description="Why (recorded with the read)"),
    ] = None,
) -> dict[str, Any]:
    def answer() -> dict[str, Any]:
        pseudonym, events = queries.history_events(subject)
        # The subject's data opened is on the record before it is shown (invariant 11); an
        # unknown or erased reference opens nothing and records nothing.
        record = AccessRecord.of_events(
            events,
            client=client.name,
            action=AccessAction.SUBJECT_HISTORY,
            scope=Scope.READ_HISTORY.value,
            purpose=purpose,
        )
        if record is not None:
            ledger.record_access(record)
        return {"subject": pseudonym, "events": [event.as_dict() for event in events]}

    return await run_in_threadpool(answer)
