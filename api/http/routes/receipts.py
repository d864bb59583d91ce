"""Consent receipts: ``GET /v1/consent/receipts/{seq}``, one consent fact proven and signed,
with its subject's own data opened, for that person to keep and check offline.

The read opens personal data, so it is on the record (invariant 11): the route builds the
receipt, appends ``personal_data.accessed`` (client, scope ``receipts:read``, the stated
``purpose``, the subject, the seq) and answers only once that is committed; if recording
fails, the error is the answer, never the data. ``Accept: application/ld+json`` gives the W3C
DPV JSON-LD form; ``application/json``, ``*/*`` or no Accept the JSON form; an Accept that
admits neither is 406.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from api.http.deps import LedgerDep, QueriesDep, QueryText, ReceiptReader, SingleValues
from api.http.problems import ProblemError, bad_parameter
from api.http.responses import ACCESS_SEQ, ConsentReceipt, DpvConsentRecord, ok, problems
from api.token_store import Scope
from ledger.verifier.receipt import RECEIPT_FORMAT
from projections.queries import NoCheckpointError, NotAConsentFactError

router = APIRouter(tags=["consent"], dependencies=[SingleValues])

MAX_SEQ = 2**63 - 1
MAX_PURPOSE = 500
JSON = "application/json"
JSONLD = "application/ld+json"


def chosen_type(accept: str | None) -> str:
    """The media type to answer with: JSON-LD when the client prefers it, else JSON; a 406
    problem when the client admits neither."""
    if accept is None or not accept.strip():
        return JSON
    weights: dict[str, float] = {}
    for item in accept.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    weight = 0.0
        kind = kind.lower()
        if kind:
            weights[kind] = max(weight, weights.get(kind, 0.0))

    def weight_of(media: str) -> float:
        main = media.split("/")[0]
        for key in (media, f"{main}/*", "*/*"):
            if key in weights:
                return weights[key]
        return 0.0

    linked, plain = weight_of(JSONLD), weight_of(JSON)
    if linked > 0 and linked > plain:
        return JSONLD
    if plain > 0:
        return JSON
    if linked > 0:
        return JSONLD
    detail = f"this route answers {JSON} or {JSONLD}; the Accept header admits neither"
    raise ProblemError(
        406,
        "Not acceptable",
        detail,
        errors=[{"field": "header.accept", "rule": "not_acceptable", "detail": detail}],
    )


@router.get(
    "/v1/consent/receipts/{seq}",
    summary="A consent receipt: the fact proven and signed, its subject's data opened",
    description=(
        f"The receipt (format `{RECEIPT_FORMAT}`, docs/verification.md) of the consent fact at "
        "`seq` (`consent.given`, `consent.refused`, `consent.withdrawn`, "
        "`consent.renewal_requested`): an ISO/IEC TS 27560 record with Kantara v1.1 names, "
        "the signed entry, the body, an RFC 9162 inclusion proof in a signed checkpoint and "
        "the ledger's signed statement. Check it with `python -m ledger.verifier receipt FILE "
        "--key KEY`. `Accept: application/ld+json` gives it as a W3C DPV JSON-LD document "
        "(which carries the receipt). Scope `receipts:read`; every answer is first recorded "
        "as `personal_data.accessed` (with `purpose`, when given). An erased subject's values "
        "show `[erased]`. 404: no such event, or not a consent fact (`not_a_consent_fact`); "
        "406: the Accept header admits neither JSON nor JSON-LD; 503: no checkpoint yet."
    ),
    responses=ok(
        ConsentReceipt,
        "The receipt (JSON), or its W3C DPV JSON-LD form (`Accept: application/ld+json`); "
        "the read is recorded first (`X-Access-Seq`)",
        headers=ACCESS_SEQ,
        also={JSONLD: {"schema": DpvConsentRecord.model_json_schema(by_alias=True)}},
    )
    | problems(
        400,
        401,
        403,
        404,
        406,
        503,
        s400="`seq` not a whole number from 1 to 2^63-1; a `purpose` too long, holding a "
        "control character or blank; a repeated query parameter",
        s403="The token lacks `receipts:read`",
        s404="No such event, or not a consent fact (`not_a_consent_fact`)",
        s406="The Accept header admits neither JSON nor JSON-LD (`not_acceptable`)",
        s503="No checkpoint holds the event yet (`Retry-After`); the read could not be "
        "recorded (the ledger overloaded); storage unavailable; the connection cap",
    ),
)
def consent_receipt(
    request: Request,
    seq: Annotated[int, Path(ge=1, le=MAX_SEQ, description="The consent fact's sequence number")],
    queries: QueriesDep,
    ledger: LedgerDep,
    client: ReceiptReader,
    purpose: Annotated[
        QueryText | None,
        Query(min_length=1, max_length=MAX_PURPOSE, description="Why it is read (recorded)"),
    ] = None,
) -> Response:
    media = chosen_type(request.headers.get("accept"))
    if purpose is not None and not purpose.strip():
        raise bad_parameter(
            "purpose", "required", "purpose, when given, states why: it must not be blank"
        )
    try:
        found = queries.consent_receipt(seq)
    except NotAConsentFactError as exc:
        raise ProblemError(
            404,
            "Not a consent fact",
            str(exc),
            errors=[{"field": "path.seq", "rule": "not_a_consent_fact", "detail": str(exc)}],
        ) from None
    except NoCheckpointError as exc:
        raise ProblemError(503, "No checkpoint yet", str(exc), retry_after=1) from None
    # On the record before the data leaves: if this raises, its error is the answer.
    access = ledger.record_access(
        found.access_record(client.name, Scope.READ_RECEIPTS.value, purpose)
    )
    document: dict[str, Any] = found.as_dpv() if media == JSONLD else found.receipt
    return Response(
        json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(),
        media_type=media,
        headers={"Cache-Control": "no-store", "Vary": "Accept", "X-Access-Seq": str(access.seq)},
    )
