"""Consent questions: a subject's state, and "may purpose P be used now / at T?"."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.deps import LedgerDep, QueryText, QueryTime, ReadModelsDep, SingleValues, StateReader
from api.examples import DECISION, STATE, example
from api.problems import COMMON, ProblemError
from ledger.application import LedgerApplication
from projections.base import ReadModelFailure, ReadModelStoppedError
from projections.consent_facts import SubjectFacts
from projections.read_models import ReadModels

router = APIRouter(
    prefix="/v1/consent", tags=["consent"], responses=COMMON, dependencies=[SingleValues]
)

Subject = Annotated[
    QueryText, Query(min_length=1, max_length=256, description="The emitter's reference")
]
Purpose = Annotated[QueryText, Query(min_length=1, max_length=64, description="A purpose id")]
At = Annotated[
    QueryTime | None,
    Query(description="RFC 3339, 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z; default now"),
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


def _wait(models: ReadModels, seq: int | None) -> None:
    """Read your writes: wait, bounded, until the consent state has processed ``seq``; 503 at
    once while the consent state is stopped at an event (with or without ``seq``).

    In the threadpool, with the question it precedes (one hop for both)."""
    failure = models.runner.failure(READ_MODEL, max_age=1.0)
    if failure is not None:
        raise _stopped(failure)
    if seq is None:
        return
    head = models.runner.app.head()
    if seq > head:
        # Every receipt names a committed event; a later number names none.
        raise ProblemError(
            422, "No such event yet", f"no event {seq} was recorded (the log ends at {head})"
        )
    try:
        done = models.runner.wait_for(seq, WAIT_SECONDS, [READ_MODEL])
    except ReadModelStoppedError as exc:
        raise _stopped(exc.failure) from None
    if not done:
        raise ProblemError(
            503,
            "Not yet",
            f"event {seq} is not in the consent state yet; retry shortly",
            retry_after=1,
        )


def _facts(
    ledger: LedgerApplication, models: ReadModels, subject: str, purpose: str | None
) -> SubjectFacts:
    """The facts about the reference's current lifecycle (one query, most of the time).

    Call in the threadpool: the pseudonym may need the key store. An erased pseudonym may be
    out of date here: another process (a second worker) may have begun the reference's next
    lifecycle, which this one has not seen. So an erasure makes it look again, once.
    """
    keys = ledger.subject_keys
    pseudonym = keys.pseudonym(subject)
    facts = models.consent.facts(pseudonym, purpose)
    if facts.erasure is not None:
        keys.refresh([subject])
        current = keys.pseudonym(subject)
        if current != pseudonym:
            facts = models.consent.facts(current, purpose)
    return facts


def _moment(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@router.get(
    "/state",
    summary="Every purpose a subject decided on, as it stands at a moment",
    responses=example(STATE),
)
async def state(
    ledger: LedgerDep,
    models: ReadModelsDep,
    _: StateReader,
    subject: Subject,
    at: At = None,
    wait_for: WaitFor = None,
) -> dict[str, Any]:
    def answer() -> dict[str, Any]:  # one hop to the threadpool: wait, pseudonym and query
        _wait(models, wait_for)
        facts = _facts(ledger, models, subject, None)
        return {
            "subject": facts.subject,
            "erased": None if facts.erasure is None else facts.erasure.as_dict(),
            "purposes": [s.as_dict() for s in models.consent.state_of(facts, _moment(at))],
        }

    return await run_in_threadpool(answer)


@router.get(
    "/decision",
    summary="May this purpose be used for this subject, now or at a moment?",
    responses=example(DECISION),
)
async def decision(
    ledger: LedgerDep,
    models: ReadModelsDep,
    _: StateReader,
    subject: Subject,
    purpose: Purpose,
    at: At = None,
    wait_for: WaitFor = None,
) -> dict[str, Any]:
    def answer() -> dict[str, Any]:  # one hop to the threadpool: wait, pseudonym and query
        _wait(models, wait_for)
        facts = _facts(ledger, models, subject, purpose)
        verdict = models.consent.verdict_of(facts, purpose, _moment(at))
        return verdict.answer(facts.subject, purpose)

    return await run_in_threadpool(answer)
