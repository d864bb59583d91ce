"""The people an incident affects, opened for notification: ``GET /v1/incidents/{id}/affected``.

A responder notifying the people of a breach (GDPR 34) needs their references and contact
data, which the register shows only as pseudonyms. This route opens them, page by page, under
a scope of its own (``incidents:identify``, which ``admin`` does not imply), and only after the
read is on the record: each page appends a ``personal_data.accessed`` event naming the client,
the incident, the stated ``purpose`` and the people it opened (invariant 11). No record, no
data: if the ledger cannot append (overloaded, storage down), the answer is that error.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.http.deps import Identifier, LedgerDep, QueriesDep, QueryText, SingleValues
from api.http.problems import ProblemError, bad_parameter
from api.http.responses import ACCESS_SEQ, CSV, LINK, TEXT_SCHEMA, AffectedPeoplePage, ok, problems
from ledger.application import AccessAction, AccessRecord
from ledger.verifier.spreadsheet import csv_row
from projections.queries import AffectedPage

router = APIRouter(tags=["histories and registers"], dependencies=[SingleValues])

COLUMNS = ("subject", "named", "by_rule", "subject_ref", "contact", "erased")
_PSEUDONYM = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

PERSON_EXAMPLE = {
    "subject": "3f0c7a52-5d0e-4c1b-9a51-7d2f0e3a9b10",
    "named": False,
    "by_rule": True,
    "subject_ref": "user-20917",
    "contact": "mika@example.org",
    "erased": False,
}


@router.get(
    "/v1/incidents/{incident_id}/affected",
    summary="The people an incident affects, opened to notify them (each read is recorded)",
    responses=ok(
        AffectedPeoplePage,
        "A page of people (JSON), or the same rows as CSV (format=csv); the read is recorded "
        "first as event `access_seq`",
        {
            "incident_id": "inc-2026-003",
            "total": 1,
            "items": [PERSON_EXAMPLE],
            "next_cursor": None,
            "access_seq": 58,
        },
        headers=LINK | ACCESS_SEQ,
        also={CSV: {"schema": TEXT_SCHEMA}},
    )
    | problems(
        400,
        401,
        403,
        404,
        503,
        s400="A bad or repeated query or path parameter, a blank `purpose` (`required`), or a "
        "cursor this API did not give (`cursor_invalid`)",
        s403="The token lacks `incidents:identify` (`admin` does not imply it)",
        s404="No incident of this id was opened",
        s503="The read could not be recorded (the ledger overloaded, its streams contended: "
        "`Retry-After`), storage unavailable, or the server at its connection cap",
    ),
)
async def affected(
    request: Request,
    incident_id: Annotated[QueryText, Path(min_length=1, max_length=128)],
    ledger: LedgerDep,
    queries: QueriesDep,
    client: Identifier,
    purpose: Annotated[
        QueryText,
        Query(
            min_length=1,
            max_length=500,
            description="Why the people are opened (recorded with the read; name nobody)",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=36, description="next_cursor of the page before")
    ] = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Response:
    if cursor is not None and not _PSEUDONYM.fullmatch(cursor):
        raise bad_parameter(
            "cursor", "cursor_invalid", "the cursor is not one this API gave", title="Bad cursor"
        )
    if not purpose.strip():
        raise bad_parameter(
            "purpose", "required", "say why the people are opened: purpose must not be blank"
        )

    def answer() -> tuple[AffectedPage, int] | None:
        page = queries.affected_people(incident_id, cursor, limit)
        if page is None:
            return None
        receipt = ledger.record_access(
            AccessRecord(
                client=client.name,
                action=AccessAction.INCIDENT_AFFECTED,
                scope="incidents:identify",
                purpose=purpose,
                subjects=page.opened,
                count=len(page.opened),
                details={"incident_id": incident_id, **({"after": cursor} if cursor else {})},
            )
        )
        return page, receipt.seq

    found = await run_in_threadpool(answer)
    if found is None:
        raise ProblemError(404, "No such incident", f"no incident {incident_id} was opened")
    page, access_seq = found
    items = [person.as_dict() for person in page.people]
    headers = {"X-Access-Seq": str(access_seq)}
    if page.next_after is not None:
        query = {**request.query_params, "cursor": page.next_after}
        headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    if format == "csv" or "text/csv" in request.headers.get("accept", ""):
        return Response(_csv(items), media_type="text/csv", headers=headers)
    body: dict[str, Any] = {
        "incident_id": incident_id,
        "total": page.total,
        "items": items,
        "next_cursor": page.next_after,
        "access_seq": access_seq,
    }
    return JSONResponse(body, headers=headers)


def _csv(items: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item in items:
        writer.writerow(csv_row(item[c] for c in COLUMNS))
    return out.getvalue()
