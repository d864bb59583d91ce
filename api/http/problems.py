"""RFC 9457 problem details for every error the API returns, keyed by error class."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import (
    ConcurrencyError,
    EventNotFoundError,
    IdempotencyConflictError,
    LedgerError,
    OverloadedError,
    StorageError,
    ValidationError,
)

PROBLEM = "application/problem+json"
# Seconds a client is asked to wait before resending a request whose streams stayed contended.
CONTENDED_RETRY_AFTER = 1


class FieldError(BaseModel):
    """One rule a request broke: where, which rule, why."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)
    index: int | None = Field(default=None, ge=0)
    """The item of a batch (from 0) the problem is in; absent (or null) for a single event, a
    parameter or a problem with the batch as a whole."""
    field: str
    """Where: a dotted path in the event (``purposes[0]``, ``evidence.ip_address``; empty for
    the event or the body as a whole), or ``query.<name>``, ``path.<name>``, ``header.<name>``
    for a parameter."""
    rule: str
    """The rule broken, a word from one vocabulary (``required``, ``unknown_field``,
    ``too_long``, ``offset_out_of_range``, ``policy_unknown``, ... docs/api.md, Errors)."""
    detail: str
    """The rule, said for a person."""


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``): every error the API answers.

    Some problems carry more members, named here; a client ignores those it does not know.
    """

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)
    type: str = "about:blank"
    """Always ``about:blank``: the status and ``title`` say what kind of problem it is."""
    title: str
    """A short summary of the kind of problem (``Invalid event``, ``Forbidden``)."""
    status: int = Field(ge=100, le=599)
    """The HTTP status of the answer."""
    detail: str
    """What went wrong with this request, said for a person."""
    errors: list[FieldError] | None = None
    """Each rule broken (a 400 parameter problem, a 413 batch, a 422 event): where and which."""
    rule: str | None = None
    """The rule broken, when one names the whole problem (export jobs)."""
    event_id: str | None = None
    """409: the event id used before with other content."""
    index: int | None = Field(default=None, ge=0)
    """409: the item of the batch carrying that event id (null for a single event)."""
    retry_after: int | None = Field(default=None, ge=0)
    """503 (and some 409 and 429): seconds to wait before sending the request again, as the
    ``Retry-After`` header says."""
    pending_events: int | None = Field(default=None, ge=0)
    """503 when the ledger is overloaded: events in flight now."""
    max_pending_events: int | None = Field(default=None, ge=0)
    """503 when the ledger is overloaded: the most events it admits in flight."""


PROBLEM_SCHEMA = "Problem"
"""The name of :class:`Problem`'s schema in the OpenAPI document's ``components.schemas``."""
_PROBLEM_REF = {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}


def problem_schemas() -> dict[str, Any]:
    """The component schemas of a problem document: :class:`Problem` and :class:`FieldError`,
    generated from the models above (:func:`api.http.openapi_document.complete` adds them)."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    found: dict[str, Any] = schema.pop("$defs", {})
    return {**found, PROBLEM_SCHEMA: schema}


_MEANING = {
    400: "Malformed request",
    401: "No valid token",
    403: "The token lacks the route's scope",
    404: "Not found",
    408: "The request's body did not arrive in time (the connection is closed)",
    409: "An event id reused with other content",
    413: "Too large",
    421: "Served by a process that answers reads only (serve --role reads)",
    422: "Invalid input: the errors name index, field and rule",
    500: "Internal error",
    503: "Storage unavailable, overloaded, busy, or not caught up yet (Retry-After)",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these statuses: problem documents (the ``Problem`` schema)."""
    return {
        status: {
            "description": _MEANING[status],
            "content": {PROBLEM: {"schema": dict(_PROBLEM_REF)}},
        }
        for status in statuses
    }


class ProblemError(Exception):
    """An error the API answers with a problem document."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra
        super().__init__(detail)


def bad_parameter(
    name: str, rule: str, detail: str, *, title: str = "Invalid parameter", where: str = "query"
) -> ProblemError:
    """The one answer to a bad query or path parameter (docs/api.md, "Parameters"): ``400``,
    the parameter named as ``query.<name>`` (or ``path.<name>``), the rule broken."""
    field = f"{where}.{name}"
    return ProblemError(
        400, title, detail, errors=[{"field": field, "rule": rule, "detail": detail}]
    )


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="consent-ledger"'
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


# -- parameters (docs/api.md, "Conventions") ----------------------------------------------------

PARAMETER_PLACES = frozenset({"query", "path", "header", "cookie"})
"""Where a parameter comes from; a problem with one of them is 400, whatever the route."""
RULES = {
    "missing": "required",
    "int_parsing": "not_an_integer",
    "int_from_float": "not_an_integer",
    "int_type": "not_an_integer",
    "greater_than_equal": "out_of_range",
    "greater_than": "out_of_range",
    "less_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "string_too_long": "too_long",
    "string_too_short": "too_short",
    "bool_parsing": "not_a_boolean",
    "bool_type": "not_a_boolean",
    "datetime_parsing": "not_a_time",
    "datetime_from_date_parsing": "not_a_time",
    "datetime_type": "not_a_time",
    "literal_error": "not_one_of",
    "enum": "not_one_of",
}
"""pydantic's error types, as the one rule vocabulary of parameters names them. The rules the
ledger's own checks raise (``control_character``, ``time_without_offset``,
``offset_out_of_range``, ``time_out_of_range``, ``repeated``, ``cursor_invalid``) pass as they
are."""
_ALTERNATIVES = re.compile(r"\^\(([A-Za-z0-9_]+(?:\|[A-Za-z0-9_]+)+)\)\$")


def parameter_rule(error: Mapping[str, Any]) -> str:
    """The rule of the vocabulary a parameter's validation error breaks."""
    kind = str(error.get("type", ""))
    if kind == "string_pattern_mismatch":
        # A pattern of alternatives (``^(json|csv)$``) is an enumeration; any other a shape.
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        return "not_one_of" if _ALTERNATIVES.fullmatch(pattern) else "malformed"
    return RULES.get(kind, kind)


def invalid_request(errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
    """The answer to a request FastAPI could not validate.

    A query, path or header parameter that is missing or bad is ``400``, its rule from the
    vocabulary (:data:`RULES`), on every route alike; a body that parses but breaks a rule is
    ``422`` with pydantic's rule names, as before (docs/api.md, "Conventions").
    """
    parameters = [e for e in errors if (e.get("loc") or ("",))[0] in PARAMETER_PLACES]
    if parameters:
        listed = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "rule": parameter_rule(e),
                "detail": e.get("msg"),
            }
            for e in parameters
        ]
        first = listed[0]
        return problem(
            400, "Invalid parameter", f"{first['field']}: {first['detail']}", errors=listed
        )
    listed = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ())),
            "rule": e.get("type"),
            "detail": e.get("msg"),
        }
        for e in errors
    ]
    return problem(422, "Invalid request", "the request's body is not valid", errors=listed)


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def api_problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(ValidationError)
    async def invalid(_: Request, exc: ValidationError) -> JSONResponse:
        errors = [
            {"index": p.index, "field": p.field, "rule": p.rule, "detail": p.message}
            for p in exc.problems
        ]
        if any(p.rule == "batch_too_large" for p in exc.problems):
            return problem(413, "Batch too large", str(exc), errors=errors)
        return problem(422, "Invalid event", str(exc), errors=errors)

    @app.exception_handler(IdempotencyConflictError)
    async def conflict(_: Request, exc: IdempotencyConflictError) -> JSONResponse:
        return problem(
            409, "Event id already used", str(exc), event_id=exc.event_id, index=exc.index
        )

    @app.exception_handler(EventNotFoundError)
    async def not_found(_: Request, exc: EventNotFoundError) -> JSONResponse:
        return problem(404, "No such event", str(exc))

    @app.exception_handler(StorageError)
    async def unavailable(_: Request, exc: StorageError) -> JSONResponse:
        return problem(503, "Storage unavailable", "the ledger cannot reach its storage now")

    @app.exception_handler(ConcurrencyError)
    async def contended(_: Request, exc: ConcurrencyError) -> JSONResponse:
        # Other writers kept taking the streams the command needed, every retry: nothing of it
        # was stored, and the same request may be sent again (event ids make it idempotent).
        return problem(
            503,
            "Streams contended",
            f"{exc}: nothing of the request was stored, and sending it again is safe "
            "(its event ids make it idempotent)",
            retry_after=CONTENDED_RETRY_AFTER,
        )

    @app.exception_handler(OverloadedError)
    async def overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
        # Refused before any work: the ledger has as many events in flight as it admits, and
        # Retry-After says when those should be committed at the committer's recent rate.
        return problem(
            503,
            "Ledger overloaded",
            str(exc),
            retry_after=exc.retry_after,
            pending_events=exc.pending,
            max_pending_events=exc.limit,
        )

    @app.exception_handler(LedgerError)
    async def refused(_: Request, exc: LedgerError) -> JSONResponse:
        return problem(422, "Refused", str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        return problem(500, "Internal error", "the ledger could not answer; nothing was stored")
