"""Consent questions: a subject's state, and "may purpose P be used now / at T?"."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.http.deps import QueriesDep, QueryText, QueryTime, SingleValues, StateReader
from api.http.examples import DECISION, STATE
from api.http.problems import ProblemError
from api.http.responses import (
    ConsentState,
    Decision,
    ReadModelStopped,
    UnknownPurpose,
    ok,
    problems,
    with_members,
)
from projections.queries import (
    NoSuchEventYetError,
    NotCaughtUpError,
    Queries,
    ReadModelFailure,
    ReadModelStoppedError,
    UnknownPurposeError,
)

router = APIRouter(prefix="/v1/consent", tags=["consent"], dependencies=[SingleValues])

Subject = Annotated[
    QueryText, Query(min_length=1, max_length=256, description="The emitter's reference")
]
Purpose = Annotated[QueryText, Query(min_length=1, max_length=64, description="A purpose id")]
At = Annotated[
    QueryTime | None,
    Query(
        description="RFC 3339 with its offset, 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z; "
        "default now"
    ),
]
WaitFor = Annotated[
    int | None, Query(ge=1, le=2**63 - 1, description="A receipt's seq to wait for (bounded)")
]

WAIT_SECONDS = 5.0
READ_MODEL = "consent_state"
STOPPED_RETRY_SECONDS = 30


def _stopped(failure: ReadModelFailure) -> ProblemError:
    """503 naming the stopped read model, the event and the error: its answers would miss
    every fact recorded after that event (a withdrawal), so none is given."""
    return ProblemError(
        503,
        "Read model stopped",
        f"{failure.describe()}; consent questions are answered again once it is fixed and "
        "rebuilt (docs/operations.md, When a read model fails)",
        retry_after=STOPPED_RETRY_SECONDS,
        **failure.as_dict(),
    )


def _wait(queries: Queries, seq: int | None) -> None:
    """Read your writes: wait, bounded, until the consent state has processed ``seq``; 503 at
    once while the consent state is stopped at an event (with or without ``seq``).

    In the threadpool, with the question it precedes (one hop for both)."""
    try:
        queries.wait_for(seq, WAIT_SECONDS, READ_MODEL)
    except ReadModelStoppedError as exc:
        raise _stopped(exc.failure) from None
    except NoSuchEventYetError as exc:
        # Every receipt names a committed event; a later number names none.
        raise ProblemError(422, "No such event yet", str(exc)) from None
    except NotCaughtUpError as exc:
        raise ProblemError(
            503,
            "Not yet",
            f"event {exc.seq} is not in the consent state yet; retry shortly",
            retry_after=1,
        ) from None


WHY = {
    "s400": "A bad or repeated query parameter (`errors` names it and its rule)",
    "s401": "No token, or one not valid",
    "s403": "The token lacks `state:read`",
    "s422": "`wait_for` names an event after the end of the log (no receipt names it)",
    "s503": "The consent read model did not reach `wait_for` in time (`Not yet`), or is "
    "stopped at an event (`Read model stopped`); storage unavailable; the server at its "
    "connection cap. `Retry-After` says when to ask again",
}


@router.get(
    "/state",
    summary="Every purpose a subject decided on, as it stands at a moment",
    responses=ok(ConsentState, "The subject's purposes (none: an empty list)", STATE)
    | with_members(problems(400, 401, 403, 422, 503, **WHY), 503, ReadModelStopped),
)
async def state(
    queries: QueriesDep,
    _: StateReader,
    subject: Subject,
    at: At = None,
    wait_for: WaitFor = None,
) -> dict[str, Any]:
    def answer() -> dict[str, Any]:  # one hop to the threadpool: wait, pseudonym and query
        _wait(queries, wait_for)
        found = queries.consent_state(subject, at)
        return {
            "subject": found.subject,
            "erased": None if found.erasure is None else found.erasure.as_dict(),
            "purposes": [s.as_dict() for s in found.purposes],
        }

    return await run_in_threadpool(answer)


@router.get(
    "/decision",
    summary="May this purpose be used for this subject, now or at a moment?",
    description=(
        "`answer` tells three answers apart: `yes` (valid consent: `allowed` true, `status` "
        "`given`, the consent's event), `no` (`allowed` false; `status` says why: `refused`, "
        "`withdrawn`, `expired`, `renewal_required`, `invalid_minor`, `guardian_not_allowed`, "
        "`erased`, or null when no decision was ever recorded; `decided_by_seq` the deciding "
        "event) and `not_required` (`allowed` true: the policy version in effect declares "
        "another `legal_basis` than consent for the purpose; `decided_by_seq` is that version's "
        "event). A purpose no published policy version declares is `404`, rule "
        "`unknown_purpose`, with the `policy_versions` and `known_purposes`."
    ),
    responses=ok(Decision, "The answer, its reason and the deciding event", DECISION)
    | with_members(
        with_members(
            problems(
                400,
                401,
                403,
                404,
                422,
                503,
                s404="`unknown_purpose`: no published policy version declares the purpose "
                "(`policy_versions` and `known_purposes` say which are known)",
                **WHY,
            ),
            404,
            UnknownPurpose,
        ),
        503,
        ReadModelStopped,
    ),
)
async def decision(
    queries: QueriesDep,
    _: StateReader,
    subject: Subject,
    purpose: Purpose,
    at: At = None,
    wait_for: WaitFor = None,
) -> dict[str, Any]:
    def answer() -> dict[str, Any]:  # one hop to the threadpool: wait, pseudonym and query
        _wait(queries, wait_for)
        try:
            return queries.decision(subject, purpose, at).as_dict()
        except UnknownPurposeError as exc:
            raise ProblemError(
                404,
                "Unknown purpose",
                str(exc),
                errors=[{"field": "query.purpose", "rule": "unknown_purpose", "detail": str(exc)}],
                purpose=exc.purpose,
                policy_versions=exc.policy_versions,
                known_purposes=exc.purposes,
            ) from None

    return await run_in_threadpool(answer)
