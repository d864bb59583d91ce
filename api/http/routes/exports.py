"""Exports over HTTP: ask for a bundle of one scope, watch the job, download the zip.

A bundle takes longer than a request may wait, so ``POST /v1/exports`` queues a job and
answers ``202`` at once; the API's export runner makes it (ledger/export_jobs.py). Only the
client that asked (or an admin) sees a job: for anyone else it does not exist (``404``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from api.http.deps import MINIMAL, Exporter, QueryText, QueryTime, SingleValues, prefers_minimal
from api.http.examples import EXPORT_JOB
from api.http.problems import ProblemError, problem
from api.http.responses import ExportJob as JobAnswer
from api.http.responses import ok, problems
from api.token_store import Client
from api.token_store import Scope as ClientScope
from ledger.events import Identifier
from ledger.operations import (
    BundleNotReadyError,
    ExportError,
    ExportJob,
    ExportJobs,
    JobNotFoundError,
    JobState,
    QueueFullError,
    ScopeNotFoundError,
    export_scope,
)

router = APIRouter(prefix="/v1/exports", tags=["exports"], dependencies=[SingleValues])

ZIP = "application/zip"
BINARY = {"type": "string", "contentMediaType": ZIP}
QUEUE_RETRY_AFTER = 60
"""Seconds a client whose queue is full is asked to wait (a bundle takes about that)."""
NOT_READY_RETRY_AFTER = 2


WHY = {
    "s421": "A reads process (serve --role reads) serves no export jobs: ask the writer",
    "s403": "The token lacks `exports:create`",
    "s404": "`export_not_found`: no job of this id that this client may see",
    "s503": "This server runs no export jobs, storage is unavailable, or the server is at its "
    "connection cap",
}
BAD_ID = "The id is not a job's id (`malformed`), or a repeated query parameter"
BUNDLE_PROBLEMS = problems(
    400,
    401,
    403,
    404,
    409,
    410,
    416,
    421,
    503,
    s400=f"{BAD_ID}; a malformed `Range` header (`header.range`, `malformed`)",
    s416="`range_not_satisfiable`: a range that starts past the bundle's end "
    "(`Content-Range: bytes */<size>`)",
    s409="`bundle_not_ready` (`Retry-After`) or `export_failed`",
    s410="`bundle_expired`: the bundle was deleted (its time ran out, or its subject was erased)",
    **WHY,
)
BUNDLE_ANSWERS: dict[int | str, dict[str, Any]] = {
    **BUNDLE_PROBLEMS,
    200: {"description": "The bundle", "content": {ZIP: {"schema": BINARY}}},
    206: {
        "description": "The range asked for (`Range`, and `If-Range` with the ETag); "
        "several ranges as `multipart/byteranges`",
        "content": {
            ZIP: {"schema": BINARY},
            "multipart/byteranges": {"schema": {"type": "string"}},
        },
    },
}


class BundleResponse(FileResponse):
    """The bundle, by Starlette's :class:`FileResponse` (``Range``, ``If-Range``), except that
    its refusals of a ``Range`` header (``400`` malformed, ``416`` not satisfiable), which
    Starlette answers as plain text, are problem documents, as every other 4xx of the API."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused: list[Message] = []

        async def relay(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (400, 416):
                refused.append(message)
                return
            if not refused:
                await send(message)
                return
            if message["type"] != "http.response.body" or message.get("more_body", False):
                return  # the refusal's text is one short body
            start = refused[0]
            status = start["status"]
            said = message.get("body", b"").decode(errors="replace").strip()
            if status == 416:
                title, rule = "Range not satisfiable", "range_not_satisfiable"
                detail = "the range asked for starts past the end of the bundle"
            else:
                title, rule = "Invalid header", "malformed"
                detail = f"the Range header is malformed: {said or 'not bytes=<from>-<to>'}"
            answer = problem(
                status,
                title,
                detail,
                errors=[{"field": "header.range", "rule": rule, "detail": detail}],
            )
            for name, value in start.get("headers", []):
                if name.lower() == b"content-range":
                    answer.headers["Content-Range"] = value.decode("latin-1")
            await answer(scope, receive, send)

        await super().__call__(scope, receive, relay)


JobId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")]
"""A job's id (a UUID, lower-case): anything else cannot name one."""


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "the purpose must say why, not be blank")
    return value


Purpose = Annotated[
    QueryText, StringConstraints(min_length=1, max_length=500), AfterValidator(_not_blank)
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubjectScope(_Body):
    kind: Literal["subject"]
    subject_ref: Annotated[QueryText, StringConstraints(min_length=1, max_length=256)]
    """The person's reference, as the services send it (never stored with the job)."""


class RecipientScope(_Body):
    kind: Literal["recipient"]
    recipient_id: Identifier


class IncidentScope(_Body):
    kind: Literal["incident"]
    incident_id: Identifier


class PeriodScope(_Body):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    kind: Literal["period"]
    start: QueryTime = Field(alias="from")
    end: QueryTime = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> PeriodScope:
        if self.end <= self.start:
            raise ValueError("the period ends (to) at or before it starts (from)")
        return self


class WholeLog(_Body):
    kind: Literal["all"]


AnyScope = Annotated[
    SubjectScope | RecipientScope | IncidentScope | PeriodScope | WholeLog,
    Field(discriminator="kind"),
]


class ExportRequest(_Body):
    scope: AnyScope
    purpose: Purpose
    """Why the bundle is made, in one line: it goes into the access record."""
    answers_request: Identifier | None = None
    """An access request this subject's bundle answers (see docs/api.md, Exports)."""


async def _exports(request: Request) -> ExportJobs:
    jobs: ExportJobs | None = getattr(request.app.state, "exports", None)
    if jobs is None:
        raise ProblemError(503, "Exports unavailable", "this server runs no export jobs")
    return jobs


def _problem(
    status: int, title: str, detail: str, rule: str, field: str, **extra: Any
) -> ProblemError:
    return ProblemError(
        status,
        title,
        detail,
        rule=rule,
        errors=[{"field": field, "rule": rule, "detail": detail}],
        **extra,
    )


def view(job: ExportJob) -> dict[str, Any]:
    """A job as the API shows it."""
    link = f"/v1/exports/{job.job_id}"
    shown: dict[str, Any] = {
        "id": job.job_id,
        "state": job.state,
        "scope": job.scope,
        "purpose": job.purpose,
        "answers_request": job.answers_request,
        "progress": {"phase": job.phase, "done": job.done, "total": job.total},
        "attempts": job.attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "expires_at": job.expires_at,
        "manifest_sha256": job.manifest_sha256,
        "bytes": job.bytes,
        "checkpoint_size": job.checkpoint_size,
        "entries": job.entries,
        "failure": job.failure,
        "links": {"self": link},
    }
    if job.state == JobState.DONE:
        shown["links"]["bundle"] = f"{link}/bundle"
        if job.answers_request is not None:
            # What the service sends in the request.fulfilled that answers the request.
            shown["cite"] = {
                "request_id": job.answers_request,
                "bundle_manifest_sha256": job.manifest_sha256,
            }
    return shown


def _is_admin(client: Client) -> bool:
    return ClientScope.ADMIN in client.scopes


@router.post(
    "",
    status_code=202,
    summary="Start an export job: a verifiable bundle of one scope",
    responses=ok(
        JobAnswer,
        "Queued: the job (at `Location`); no body with `Prefer: return=minimal`",
        EXPORT_JOB,
        status=202,
        headers={
            "Location": {"description": "The job's URL", "schema": {"type": "string"}},
            "Preference-Applied": {
                "description": "`return=minimal` when that preference was applied",
                "schema": {"type": "string"},
            },
        },
    )
    | problems(
        400,
        401,
        403,
        404,
        408,
        413,
        421,
        422,
        429,
        503,
        s400="A body nested too deep, or a repeated query parameter",
        s404="`scope_not_found`: the subject, recipient or incident is not in the log",
        s413="A body over the server's limit",
        s422="A body that is not an export request (`errors` names the field and its rule), "
        "`answers_request_needs_subject`, `invalid_scope`",
        s429="`export_queue_full`: the client has its quota of exports queued or running "
        "(`Retry-After`)",
        s403=WHY["s403"],
        s421=WHY["s421"],
        s408="The body did not arrive in time (the connection is closed)",
        s503="This server runs no export jobs, too many requests with a body in flight, "
        "storage unavailable, or the server at its connection cap",
    ),
)
async def start_export(request: Request, client: Exporter, body: ExportRequest) -> Response:
    jobs = await _exports(request)
    chosen = body.scope
    if body.answers_request is not None and not isinstance(chosen, SubjectScope):
        raise _problem(
            422,
            "Invalid export",
            "only a subject's bundle answers an access request",
            "answers_request_needs_subject",
            "body.answers_request",
        )

    def start() -> ExportJob:
        if isinstance(chosen, SubjectScope):
            scope = export_scope(subject_pseudonym=jobs.pseudonym(chosen.subject_ref))
        elif isinstance(chosen, RecipientScope):
            scope = export_scope(recipient=chosen.recipient_id)
        elif isinstance(chosen, IncidentScope):
            scope = export_scope(incident=chosen.incident_id)
        elif isinstance(chosen, PeriodScope):
            scope = export_scope(period=(chosen.start, chosen.end))
        else:
            scope = export_scope()
        return jobs.start(client.client_id, client.name, scope, body.purpose, body.answers_request)

    try:
        job = await run_in_threadpool(start)
    except ScopeNotFoundError as exc:
        raise _problem(
            404, "Nothing to export", str(exc), "scope_not_found", "body.scope"
        ) from None
    except QueueFullError as exc:
        raise _problem(
            429,
            "Too many exports",
            str(exc),
            "export_queue_full",
            "body",
            retry_after=QUEUE_RETRY_AFTER,
            limit=exc.limit,
        ) from None
    except ExportError as exc:
        raise _problem(422, "Invalid export", str(exc), "invalid_scope", "body.scope") from None
    location = f"/v1/exports/{job.job_id}"
    if prefers_minimal(request):  # RFC 7240: no body; the job is at Location
        headers = {"Location": location, "Preference-Applied": MINIMAL}
        return Response(status_code=202, headers=headers)
    return JSONResponse(view(job), status_code=202, headers={"Location": location})


def _not_found(exc: JobNotFoundError) -> ProblemError:
    return _problem(404, "No such export", str(exc), "export_not_found", "path.job_id")


@router.get(
    "/{job_id}",
    summary="An export job: its state, progress, digest and expiry",
    responses=ok(JobAnswer, "The job", EXPORT_JOB)
    | problems(400, 401, 403, 404, 421, 503, s400=BAD_ID, **WHY),
)
async def export_status(request: Request, client: Exporter, job_id: JobId) -> dict[str, Any]:
    jobs = await _exports(request)
    try:
        job = await run_in_threadpool(jobs.get, job_id, client.client_id, admin=_is_admin(client))
    except JobNotFoundError as exc:
        raise _not_found(exc) from None
    return view(job)


@router.get(
    "/{job_id}/bundle",
    summary="Download an export's bundle (a zip; Range requests served)",
    response_class=BundleResponse,
    responses=BUNDLE_ANSWERS,
)
async def export_bundle(request: Request, client: Exporter, job_id: JobId) -> BundleResponse:
    jobs = await _exports(request)
    try:
        job, path = await run_in_threadpool(
            jobs.bundle, job_id, client.client_id, admin=_is_admin(client)
        )
    except JobNotFoundError as exc:
        raise _not_found(exc) from None
    except BundleNotReadyError as exc:
        if exc.state == JobState.EXPIRED:
            raise _problem(
                410, "Bundle expired", str(exc), "bundle_expired", "path.job_id"
            ) from None
        if exc.state == JobState.FAILED:
            raise _problem(409, "Export failed", str(exc), "export_failed", "path.job_id") from None
        raise _problem(
            409,
            "Bundle not ready",
            str(exc),
            "bundle_not_ready",
            "path.job_id",
            retry_after=NOT_READY_RETRY_AFTER,
        ) from None
    return BundleResponse(
        path,
        media_type="application/zip",
        filename=f"consent-ledger-export-{job.job_id}.zip",
        headers={"ETag": f'"{job.manifest_sha256}"', "Cache-Control": "private, no-store"},
    )
