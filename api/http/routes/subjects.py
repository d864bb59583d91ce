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
from api.http.examples import EVENT
from api.http.problems import bad_parameter
from api.http.responses import SubjectHistory, ok, problems
from api.token_store import Scope
from ledger.application import AccessAction, AccessRecord

router = APIRouter(prefix="/v1/subjects", tags=["subjects"], dependencies=[SingleValues])


@router.get(
    "/history",
    summary="Everything the log holds about a subject (an access request)",
    responses=ok(
        SubjectHistory,
        "The subject's pseudonym and events (none: an empty list); the read recorded first",
        {"subject": EVENT["stream"], "events": [EVENT]},
    )
    | problems(
        400,
        401,
        403,
        503,
        s400="A bad or repeated query parameter, or a blank `purpose` (`required`)",
        s403="The token lacks `history:read`",
        s503="The read could not be recorded (the ledger overloaded, its streams contended: "
        "`Retry-After`), storage unavailable, or the server at its connection cap",
    ),
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
    if purpose is not None and not purpose.strip():
        # As every read that records its purpose (docs/api.md, "Parameters"): a reason that
        # says nothing is no reason, refused before anything is opened (was 422 from the record).
        raise bad_parameter(
            "purpose", "required", "purpose, when given, states why: it must not be blank"
        )

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
