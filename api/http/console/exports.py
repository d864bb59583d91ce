"""The console's export page: a verifiable bundle of one scope (a recipient, an incident, a
period, one subject, or the whole log) made by the API's export jobs, its progress, and its
download. The scope is ``exports:create``, as for ``POST /v1/exports``; the job is the same job
(same queue and quota per client, same record of the read when the bundle is made, same
expiry), and another client's job is as unknown here as there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from api.http.console.access import PREFIX, PageError, posted, render, visitor
from api.http.console.forms import redirect
from api.token_store import Scope
from ledger.events import Identifier, check_query_time
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

router = APIRouter(prefix=PREFIX, include_in_schema=False)

KINDS = ("recipient", "incident", "period", "subject", "all")
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


def _jobs(request: Request) -> ExportJobs:
    jobs: ExportJobs | None = getattr(request.app.state, "exports", None)
    if jobs is None:
        raise PageError(503, "Exports unavailable", "This server runs no export jobs.")
    return jobs


def _page(values: dict[str, str], errors: dict[str, list[str]]) -> dict[str, Any]:
    return {"kinds": KINDS, "values": values, "errors": errors, "general": errors.get("", [])}


@router.get("/exports")
async def export_form(request: Request) -> Response:
    who = await visitor(request, Scope.CREATE_EXPORTS)
    _jobs(request)
    return render("exports.html", _page({"kind": "incident"}, {}), visitor=who)


@router.post("/exports")
async def start(request: Request) -> Response:
    who, form = await posted(request, Scope.CREATE_EXPORTS)
    jobs = _jobs(request)
    errors: dict[str, list[str]] = {}
    kind = form.get("kind", "")
    purpose = form.get("purpose", "").strip()
    if not purpose or len(purpose) > 500 or not purpose.isprintable():
        errors["purpose"] = ["Say why, in one line (it is recorded with the read)."]
    choice = _choice(kind, form, errors)
    if errors:
        return render("exports.html", _page(form, errors), status=422, visitor=who)

    def begin() -> ExportJob:
        scope = dict(choice)
        if kind == "subject":
            scope = export_scope(subject_pseudonym=jobs.pseudonym(choice["subject"]))
        return jobs.start(who.client.client_id, who.client.name, scope, purpose)

    try:
        job = await run_in_threadpool(begin)
    except ScopeNotFoundError as exc:
        errors[kind if kind != "period" else "from"] = [str(exc)]
    except QueueFullError as exc:
        errors[""] = [f"{exc}: wait for one of your exports to finish."]
    except ExportError as exc:
        errors[""] = [str(exc)]
    if errors:
        return render("exports.html", _page(form, errors), status=422, visitor=who)
    return redirect(f"{PREFIX}/exports/{job.job_id}")


def _choice(kind: str, form: dict[str, str], errors: dict[str, list[str]]) -> dict[str, Any]:
    """The scope chosen (a subject by reference, for now), or problems in ``errors``."""
    if kind == "recipient" or kind == "incident":
        name = f"{kind}_id"
        try:
            value = _IDENTIFIER.validate_python(form.get(name, "").strip())
        except ValidationError:
            errors[kind] = ["Give an id as the ledger records it (letters, digits, .-_:)."]
            return {}
        if kind == "recipient":
            return export_scope(recipient=value)
        return export_scope(incident=value)
    if kind == "subject":
        ref = form.get("subject", "").strip()
        if not ref or len(ref) > 256 or not ref.isprintable():
            errors["subject"] = ["Give the subject's reference."]
        return {"subject": ref}
    if kind == "period":
        start, end = _time(form, "from", errors), _time(form, "to", errors)
        if start is not None and end is not None and end <= start:
            errors["to"] = ["The period ends after it starts."]
        return {} if errors else export_scope(period=(start, end))
    if kind == "all":
        return export_scope()
    errors["kind"] = ["Choose what the bundle covers."]
    return {}


def _time(form: dict[str, str], name: str, errors: dict[str, list[str]]) -> datetime | None:
    try:
        text = form.get(name, "").strip().replace("Z", "+00:00")
        return check_query_time(datetime.fromisoformat(text))
    except ValueError:
        errors[name] = ["A date such as 2026-06-01 (UTC), from 1970 to 2200."]
        return None


def _job_id(job_id: str) -> str:
    if len(job_id) != 36 or not all(c in "0123456789abcdef-" for c in job_id):
        raise PageError(404, "No such export", "No export has that id.")
    return job_id


@router.get("/exports/{job_id}")
async def job(request: Request, job_id: str) -> Response:
    who = await visitor(request, Scope.CREATE_EXPORTS)
    jobs = _jobs(request)
    admin = Scope.ADMIN in who.client.scopes
    try:
        found = await run_in_threadpool(
            jobs.get, _job_id(job_id), who.client.client_id, admin=admin
        )
    except JobNotFoundError:
        raise PageError(404, "No such export", "No export of yours has that id.") from None
    waiting = found.state in (JobState.QUEUED, JobState.RUNNING)
    return render("export.html", {"job": found, "waiting": waiting}, visitor=who)


@router.get("/exports/{job_id}/bundle")
async def bundle(request: Request, job_id: str) -> Response:
    who = await visitor(request, Scope.CREATE_EXPORTS)
    jobs = _jobs(request)
    admin = Scope.ADMIN in who.client.scopes
    try:
        found, path = await run_in_threadpool(
            jobs.bundle, _job_id(job_id), who.client.client_id, admin=admin
        )
    except JobNotFoundError:
        raise PageError(404, "No such export", "No export of yours has that id.") from None
    except BundleNotReadyError as exc:
        raise PageError(409, "Not ready", str(exc)) from None
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"consent-ledger-export-{found.job_id}.zip",
        headers={"ETag": f'"{found.manifest_sha256}"', "Cache-Control": "private, no-store"},
    )
