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

from api.http.deps import HistoryReader, QueriesDep, QueryText, SingleValues
from api.http.examples import EVENT, example
from api.http.problems import COMMON

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
    _: HistoryReader,
    subject: Annotated[
        QueryText, Query(min_length=1, max_length=256, description="The emitter's reference")
    ],
) -> dict[str, Any]:
    return await run_in_threadpool(queries.history, subject)
