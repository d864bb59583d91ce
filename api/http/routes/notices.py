"""Notices to recipients (GDPR 19, docs/notices.md): the register, and a recipient's
acknowledgement.

A recipient acknowledges with its own token: a client whose name is the recipient's id and
which holds the scope ``notices:ack``. A notice owed to another recipient is, for it, a
notice that does not exist (``404``), as one that never was. The register is read from the
notice service's outbox (``app.state.notices``), which runs where the read models run.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.http.deps import HistoryReader, LedgerDep, SingleValues, authorised
from api.http.examples import ACKNOWLEDGEMENT, NOTICES
from api.http.problems import ProblemError
from api.http.responses import Acknowledgement, NoticeRegister, ok, problems
from api.token_store import Client, Scope
from ledger.application import NoticeNotFoundError
from ledger.errors import ValidationError
from ledger.events import Identifier

router = APIRouter(prefix="/v1/notices", tags=["notices"], dependencies=[SingleValues])

Acknowledger = Annotated[Client, Depends(authorised(Scope.ACK_NOTICES))]
NoticeId = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$",
        description="the notice's id (the webhook-id of its delivery)",
    ),
]


class _Row(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class _Register(Protocol):
    """What the route asks of the notice service (projections/notices.py)."""

    overdue_after: Any

    def register(
        self, *, overdue: bool | None = None, recipient_id: str | None = None, limit: int = ...
    ) -> list[Any]: ...


def _service(request: Request) -> _Register:
    service: _Register | None = getattr(request.app.state, "notices", None)
    if service is None:
        raise ProblemError(
            503, "Notices unavailable", "this server does not run the notice service"
        )
    return service


@router.get(
    "",
    summary="The register of notices to recipients (owed, delivered, acknowledged)",
    responses=ok(NoticeRegister, "The notices, with the hours after which one is overdue", NOTICES)
    | problems(
        400,
        401,
        403,
        503,
        s403="The token lacks `history:read`",
        s503="This server runs no notice service, storage is unavailable, or the server is "
        "at its connection cap",
    ),
)
async def notices(
    request: Request,
    _: HistoryReader,
    overdue: Annotated[
        bool | None,
        Query(description="only the notices overdue (true) or not overdue (false)"),
    ] = None,
    recipient_id: Annotated[Identifier | None, Query(description="one recipient's")] = None,
) -> JSONResponse:
    service = _service(request)
    rows = await run_in_threadpool(
        lambda: service.register(overdue=overdue, recipient_id=recipient_id)
    )
    hours = service.overdue_after.total_seconds() / 3600
    return JSONResponse({"overdue_after_hours": hours, "notices": [row.as_dict() for row in rows]})


@router.post(
    "/{notice_id}/ack",
    status_code=201,
    summary="Acknowledge a notice (the recipient it was owed to, once)",
    responses=ok(
        Acknowledgement,
        "Acknowledged: the `recipient.acknowledged` event's receipt",
        ACKNOWLEDGEMENT,
        status=201,
    )
    | problems(
        400,
        401,
        403,
        404,
        408,
        409,
        413,
        421,
        503,
        s421="A reads process (serve --role reads) answers every write so: send it to the writer",
        s408="The body did not arrive in time (the connection is closed)",
        s400="The id is not a notice's id (`malformed`), a repeated query parameter, or a "
        "body nested too deep",
        s403="The token lacks `notices:ack`",
        s404="`notice_unknown`: no notice of this id is owed to this client's recipient",
        s409="`notice_acknowledged`: the notice was acknowledged already",
        s413="A body over the server's limit (this route reads none)",
        s503="The ledger is overloaded or the streams contended (`Retry-After`), too many "
        "writes in flight, storage unavailable, or the server at its connection cap",
    ),
)
async def acknowledge(notice_id: NoticeId, client: Acknowledger, ledger: LedgerDep) -> JSONResponse:
    try:
        receipt = await run_in_threadpool(
            ledger.acknowledge_notice, notice_id, client.name, client.name
        )
    except NoticeNotFoundError:
        raise ProblemError(
            404,
            "No such notice",
            "no notice with this id is owed to this client's recipient",
            rule="notice_unknown",
            errors=[{"field": "notice_id", "rule": "notice_unknown", "detail": "no such notice"}],
        ) from None
    except ValidationError as exc:
        (problem,) = exc.problems
        raise ProblemError(
            409,
            "Acknowledged already",
            problem.message,
            rule=problem.rule,
            errors=[{"field": "notice_id", "rule": problem.rule, "detail": problem.message}],
        ) from None
    return JSONResponse(
        {
            "notice_id": notice_id,
            "acknowledged_seq": receipt.seq,
            "acknowledged_at": receipt.recorded_at,
            "receipt": {
                "seq": receipt.seq,
                "event_hash": receipt.event_hash,
                "signature": receipt.signature,
                "key_id": receipt.key_id,
            },
        },
        status_code=201,
    )
