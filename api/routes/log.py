"""The log's public face: its latest checkpoint and verifier keys; health and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import Admin, LedgerDep, ReadModelsDep
from api.examples import CHECKPOINT, KEYS, example, text_example
from api.problems import COMMON, ProblemError
from ledger.signing import Keyring
from ledger.verifier.note import format_verifier_key

router = APIRouter(tags=["log"], responses=COMMON)

READY_LAG_EVENTS = 10_000


@router.get(
    "/v1/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint",
    responses=text_example(CHECKPOINT),
)
def checkpoint(ledger: LedgerDep) -> str:
    latest = ledger.ledger.latest_checkpoint()
    if latest is None:
        raise ProblemError(404, "No checkpoint yet", "no checkpoint has been signed yet")
    return latest.note


@router.get(
    "/v1/keys",
    response_class=PlainTextResponse,
    summary="Verifier keys, one a line",
    responses=text_example(KEYS),
)
def keys(request: Request, ledger: LedgerDep) -> str:
    assert ledger.checkpointer is not None
    keyring: Keyring = request.app.state.keyring
    origin = ledger.checkpointer.origin
    return "".join(format_verifier_key(origin, key) + "\n" for key in keyring.public_keys.values())


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (admin)",
    responses=text_example("ledger_head 44.0\n"),
)
def metrics(request: Request, _: Admin) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", summary="The process answers", responses=example({"status": "ok"}))
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Storage answers and the read models keep up",
    responses=example({"status": "ready", "head": 44}),
)
def readyz(ledger: LedgerDep, models: ReadModelsDep) -> dict[str, Any]:
    try:
        head = ledger.head()
        statuses = models.runner.status()
    except Exception:
        raise ProblemError(503, "Not ready", "storage does not answer") from None
    failed = [s.name for s in statuses if s.error]
    lagging = [s.name for s in statuses if s.lag_events > READY_LAG_EVENTS]
    if failed or lagging:
        raise ProblemError(
            503, "Not ready", "read models are failing or behind", failed=failed, lagging=lagging
        )
    return {"status": "ready", "head": head}
