"""The console's pages (``/console``): sign-in, overview, incidents, the people of an incident,
subject lookup, requests. Each page asks :mod:`projections.queries` what the matching API
route asks, under the same scope, and appends what the API's incident route appends, through
the same :meth:`~ledger.application.LedgerApplication.append` validation.

Reads that open a person's data (an incident's people, a subject lookup) ask for a purpose and
append ``personal_data.accessed`` before the page is rendered (invariant 11): no record, no
page. The console is HTML for people, not API: none of it is in the OpenAPI document.
"""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.http.console import evidence, exports, notices, views
from api.http.console import requests as request_pages
from api.http.console.access import (
    COOKIE,
    HEADERS,
    HERE,
    LOGIN_COOKIE,
    PREFIX,
    PageError,
    SignInNeededError,
    authorise_token,
    cookie_args,
    error_page,
    posted,
    read_form,
    render,
    safe_next,
    sessions,
    signing_out,
    visitor,
)
from api.http.console.forms import (
    append_fact,
    event_id_of,
    moment,
    new_event_id,
    number,
    redirect,
    refuse_signing_client,
    words,
)
from api.http.console.sessions import Sessions
from api.http.problems import ProblemError
from api.token_store import Scope
from ledger.application import AccessAction, AccessRecord, LedgerApplication
from ledger.errors import OverloadedError, ValidationError
from ledger.events import check_query_time
from ledger.vocabulary import NotificationChannel, RiskLevel
from projections.queries import (
    Queries,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

LOOKUP_ACTION = AccessAction.CONSOLE_SUBJECT_LOOKUP
PEOPLE_ACTION = AccessAction.CONSOLE_INCIDENT_PEOPLE
STEPS = ("assessed", "contained", "authority_notified", "subjects_notified", "closed")
"""The incident facts the incident page appends, in the order they usually come."""
STATIC = {
    "console.css": ("text/css; charset=utf-8", (HERE / "static" / "console.css").read_bytes()),
    "countdown.js": (
        "text/javascript; charset=utf-8",
        (HERE / "static" / "countdown.js").read_bytes(),
    ),
}


def install(app: FastAPI) -> None:
    """Serve the console from ``app``: its routes, its error pages, its sessions."""
    app.state.console_sessions = Sessions()
    app.state.console_activity = views.ConsentActivity()
    app.add_exception_handler(PageError, error_page)
    app.add_exception_handler(SignInNeededError, error_page)
    app.include_router(router)
    app.include_router(evidence.router)
    app.include_router(request_pages.router)
    app.include_router(exports.router)
    app.include_router(notices.router)


def _ledger(request: Request) -> LedgerApplication:
    found: LedgerApplication = request.app.state.ledger
    return found


def _queries(request: Request) -> Queries:
    found: Queries = request.app.state.queries
    return found


def _now() -> datetime:
    return datetime.now(UTC)


# -- files ----------------------------------------------------------------------------------------


@router.get("/static/{name}")
async def static(name: str) -> Response:
    found = STATIC.get(name)
    if found is None:
        raise PageError(404, "Not found", "No such file.")
    kind, body = found
    return Response(body, media_type=kind, headers={"Cache-Control": "max-age=3600"})


# -- signing in and out ---------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    response = render("login.html", {"csrf": token, "next": safe_next(next), "error": None})
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, **cookie_args(request))
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    sent = form.get("csrf", "")
    if not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise PageError(403, "Refused", "The sign-in form is out of date. Reload it and try again.")
    token = form.get("token", "").strip()
    target = safe_next(form.get("next"))
    error = None
    if not token or len(token) > 512:
        error = "Paste an API token (consent-ledger clients add prints one)."
    else:
        try:
            await authorise_token(request, token, Scope.READ_STATE)
        except ProblemError as exc:
            if exc.status == 401:
                error = "This token is not valid (unknown or revoked)."
    if error is not None:
        fresh = secrets.token_urlsafe(32)
        refused = render("login.html", {"csrf": fresh, "next": target, "error": error}, status=401)
        refused.set_cookie(LOGIN_COOKIE, fresh, max_age=3600, **cookie_args(request))
        return refused
    sessions(request).close(request.cookies.get(COOKIE))  # a session signed in over ends
    session_id, _ = sessions(request).open(token)
    response = RedirectResponse(target, status_code=303, headers=HEADERS)
    response.set_cookie(COOKIE, session_id, **cookie_args(request))
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    sessions(request).close(await signing_out(request))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# -- overview -------------------------------------------------------------------------------------


@router.get("")
async def overview(request: Request) -> Response:
    who = await visitor(request, Scope.READ_HISTORY)
    queries = _queries(request)
    activity: views.ConsentActivity = request.app.state.console_activity
    may_incidents = who.allows(Scope.MANAGE_INCIDENTS)

    def answer() -> dict[str, Any]:
        now = _now()
        checkpoint = queries.latest_checkpoint()
        signed = None if checkpoint is None else views.parse_moment(checkpoint.signed_at)
        requests = queries.requests()
        violations = list(
            queries.all_disclosures(start=now - timedelta(days=30), violations_only=True)
        )
        activity.catch_up(queries)
        months = views.last_months(now)
        purposes = activity.purposes()
        series = {p: activity.series(p, months) for p in purposes}
        scale = max((max(g, w) for s in series.values() for _, g, w in s), default=0)
        charts = [
            {
                "purpose": p,
                "given": sum(g for _, g, _ in series[p]),
                "withdrawn": sum(w for _, _, w in series[p]),
                "svg": views.activity_svg(
                    series[p], scale, f"{p}: consents given and withdrawn per month"
                ),
            }
            for p in purposes
        ]
        return {
            "now": now,
            "thirty_days": timedelta(days=30),
            "head": queries.head(),
            "checkpoint": checkpoint,
            "checkpoint_age": views.since(signed, now),
            "statuses": queries.status(),
            "incidents": [
                _incident_row(r, now) for r in queries.incidents() if r.status != "closed"
            ]
            if may_incidents
            else None,
            "overdue": [r for r in requests if r.overdue],
            "due_soon": [
                r
                for r in requests
                if r.is_open and not r.overdue and views.within(r.due_at, now, 7)
            ],
            "violations": violations,
            "notices": _notice_totals(queries),
            "charts": charts,
            "months": months,
        }

    context = await run_in_threadpool(answer)
    return render("overview.html", context, visitor=who)


def _notice_totals(queries: Queries) -> dict[str, int]:
    """The notices to recipients, summed over recipients and reasons, for the overview."""
    totals = {"owed": 0, "undelivered": 0, "unacknowledged": 0, "overdue": 0}
    for count in queries.notice_counts():
        for key in totals:
            totals[key] += getattr(count, key)
    return totals


def _incident_row(record: Any, now: datetime) -> dict[str, Any]:
    clock = views.clock_of(
        record.authority_deadline,
        notified_at=record.authority_notified_at,
        notified_late=record.authority_notified_late,
        overdue=record.authority_overdue,
        risk=record.risk,
        closed=record.status == "closed",
        now=now,
    )
    return {"record": record, "clock": clock}


# -- incidents ------------------------------------------------------------------------------------


@router.get("/incidents")
async def incidents(request: Request) -> Response:
    who = await visitor(request, Scope.MANAGE_INCIDENTS)
    queries = _queries(request)

    def answer() -> dict[str, Any]:
        now = _now()
        return {"rows": [_incident_row(r, now) for r in queries.incidents()]}

    context = await run_in_threadpool(answer)
    context.update(_open_form({}, {}))
    return render("incidents.html", context, visitor=who)


def _open_form(values: dict[str, str], errors: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "values": values,
        "errors": errors,
        "event_id": values.get("event_id") or new_event_id(),
        "general": errors.get("", []),
    }


@router.post("/incidents")
async def open_incident(request: Request) -> Response:
    who, form = await posted(request, Scope.MANAGE_INCIDENTS)
    refuse_signing_client(who)
    fact: dict[str, Any] = {
        "type": "incident.opened",
        "event_id": event_id_of(form),
        "occurred_at": moment(form.get("occurred_at", "")),
        "incident_id": form.get("incident_id", "").strip(),
        "detected_at": moment(form.get("detected_at", "")),
        "summary": form.get("summary", "").strip(),
        "data_categories": words(form.get("data_categories", "")),
    }
    if form.get("recipient_id", "").strip():
        fact["recipient_id"] = form["recipient_id"].strip()
    errors = await append_fact(request, fact, "incidents")
    if errors:
        queries = _queries(request)
        now = _now()
        rows = await run_in_threadpool(lambda: [_incident_row(r, now) for r in queries.incidents()])
        context = {"rows": rows, **_open_form(form, errors)}
        return render("incidents.html", context, status=422, visitor=who)
    return redirect(f"{PREFIX}/incidents/{fact['incident_id']}")


def _known_id(incident_id: str) -> str:
    """An incident id as the catalogue allows one (one printable line, at most 128
    characters); anything else names no incident (404), and never reaches a query."""
    if not incident_id or len(incident_id) > 128 or not incident_id.isprintable():
        raise PageError(404, "No such incident", "No incident has that id.")
    return incident_id


def _incident_context(request: Request, incident_id: str) -> dict[str, Any]:
    queries = _queries(request)
    record = queries.incident(_known_id(incident_id))
    if record is None:
        raise PageError(404, "No such incident", f"No incident {incident_id} was opened.")
    by_rule = queries.subjects_by_rule(record)
    now = _now()
    full = record.with_rule_selected(by_rule or [])
    timeline = [
        (step, at, seq)
        for step, at, seq in (
            ("detected", record.detected_at, record.opened_seq),
            ("contained", record.contained_at, record.contained_seq),
            ("assessed", record.assessed_at, record.assessed_seq),
            ("authority notified", record.authority_notified_at, record.authority_notified_seq),
            ("subjects notified", record.subjects_notified_at, record.subjects_notified_seq),
            ("closed", record.closed_at, record.closed_seq),
        )
        if at is not None
    ]
    timeline.sort(key=lambda item: (item[1], item[2] or 0))
    return {
        "record": full,
        "clock": _incident_row(record, now)["clock"],
        "named": len(record.affected_subjects),
        "by_rule": None if by_rule is None else len(by_rule),
        "affected": record.affected_count(by_rule or []),
        "missing": list(full.article_33_3.get("missing", [])),
        "timeline": timeline,
        "steps": STEPS,
        "risks": [r.value for r in RiskLevel],
        "channels": [c.value for c in NotificationChannel],
    }


@router.get("/incidents/{incident_id}")
async def incident(request: Request, incident_id: str) -> Response:
    who = await visitor(request, Scope.MANAGE_INCIDENTS)
    context = await run_in_threadpool(_incident_context, request, incident_id)
    context.update(
        step=None,
        values={},
        errors={},
        general=[],
        event_id=new_event_id(),
        may_identify=who.allows(Scope.IDENTIFY_SUBJECTS),
    )
    return render("incident.html", context, visitor=who)


@router.post("/incidents/{incident_id}/steps")
async def incident_step(request: Request, incident_id: str) -> Response:
    who, form = await posted(request, Scope.MANAGE_INCIDENTS)
    refuse_signing_client(who)
    _known_id(incident_id)
    step = form.get("step", "")
    if step not in STEPS:
        raise PageError(400, "Bad form", f"No incident step {step[:40]!r}.")
    fact = _step_fact(step, incident_id, form)
    errors = await append_fact(request, fact, "incidents")
    if errors:
        context = await run_in_threadpool(_incident_context, request, incident_id)
        context.update(
            step=step,
            values=form,
            errors=errors,
            general=errors.get("", []),
            event_id=new_event_id(),
            may_identify=who.allows(Scope.IDENTIFY_SUBJECTS),
        )
        return render("incident.html", context, status=422, visitor=who)
    return redirect(f"{PREFIX}/incidents/{incident_id}")


def _step_fact(step: str, incident_id: str, form: dict[str, str]) -> dict[str, Any]:
    fact: dict[str, Any] = {
        "type": f"incident.{step}",
        "event_id": event_id_of(form),
        "occurred_at": moment(form.get("occurred_at", "")),
        "incident_id": incident_id,
    }

    def text(name: str, *, optional: bool = False, key: str | None = None) -> None:
        value = form.get(name, "").strip()
        if value or not optional:
            fact[key or name] = value

    if step == "assessed":
        fact["risk"] = form.get("risk", "")
        fact["data_categories"] = words(form.get("data_categories", ""))
        text("likely_consequences")
        if form.get("approximate_subject_count", "").strip():
            fact["approximate_subject_count"] = number(form["approximate_subject_count"])
        subjects = form.get("affected_subjects", "").split()
        if subjects:
            fact["affected_subjects"] = subjects
        rule = {
            name: form.get(f"affected_rule.{name}", "").strip()
            for name in ("recipient_id", "disclosed_from", "disclosed_to")
        }
        if any(rule.values()):
            fact["affected_rule"] = {
                "recipient_id": rule["recipient_id"],
                "disclosed_from": moment(rule["disclosed_from"], blank_is_now=False),
                "disclosed_to": moment(rule["disclosed_to"], blank_is_now=False),
            }
    elif step == "contained":
        text("measures")
    elif step == "authority_notified":
        text("authority")
        text("reference", optional=True)
        text("dpo_contact")
        text("delay_reason", optional=True)
    elif step == "subjects_notified":
        fact["channel"] = form.get("channel", "")
        fact["subject_count"] = number(form.get("subject_count", ""))
        text("message_digest", optional=True)
    else:
        text("resolution")
    return fact


# -- the people of an incident ----------------------------------------------------------------


@router.get("/incidents/{incident_id}/people")
async def people_form(request: Request, incident_id: str) -> Response:
    who = await visitor(request, Scope.IDENTIFY_SUBJECTS)
    record = await run_in_threadpool(_queries(request).incident, _known_id(incident_id))
    if record is None:
        raise PageError(404, "No such incident", f"No incident {incident_id} was opened.")
    context: dict[str, Any] = {"incident_id": incident_id, "page": None, "errors": []}
    context["purpose"] = ""
    return render("people.html", context, visitor=who)


@router.post("/incidents/{incident_id}/people")
async def people(request: Request, incident_id: str) -> Response:
    who, form = await posted(request, Scope.IDENTIFY_SUBJECTS)
    _known_id(incident_id)
    purpose = form.get("purpose", "").strip()
    after = form.get("after") or None
    if after is not None and not re.fullmatch(r"[0-9a-f-]{36}", after):
        raise PageError(400, "Bad form", "The page to continue from is not one the console gave.")
    context: dict[str, Any] = {"incident_id": incident_id, "page": None, "purpose": purpose}
    if not purpose:
        context["errors"] = ["Say why you open these people (the purpose is recorded)."]
        return render("people.html", context, status=422, visitor=who)
    ledger, queries = _ledger(request), _queries(request)

    def answer() -> tuple[Any, int] | None:
        page = queries.affected_people(incident_id, after, 100)
        if page is None:
            return None
        receipt = ledger.record_access(
            AccessRecord(
                client=who.client.name,
                action=PEOPLE_ACTION,
                scope=Scope.IDENTIFY_SUBJECTS.value,
                purpose=purpose,
                subjects=page.opened,
                details={"incident_id": incident_id, **({"after": after} if after else {})},
            )
        )
        return page, receipt.seq

    try:
        found = await run_in_threadpool(answer)
    except ValidationError as exc:
        context["errors"] = [p.describe() for p in exc.problems]
        return render("people.html", context, status=422, visitor=who)
    except OverloadedError as exc:
        raise PageError(
            503, "Busy", f"The ledger cannot record the read now; try again in {exc.retry_after} s."
        ) from None
    if found is None:
        raise PageError(404, "No such incident", f"No incident {incident_id} was opened.")
    page, access_seq = found
    context.update(page=page, access_seq=access_seq, errors=[])
    return render("people.html", context, visitor=who)


# -- subject lookup -------------------------------------------------------------------------------


@router.get("/subjects")
async def lookup_form(request: Request) -> Response:
    who = await visitor(request, Scope.READ_HISTORY)
    context: dict[str, Any] = {
        "subject": "",
        "purpose": "",
        "at": "",
        "errors": [],
        "found": None,
    }
    return render("subject.html", context, visitor=who)


@router.post("/subjects")
async def lookup(request: Request) -> Response:
    who, form = await posted(request, Scope.READ_HISTORY)
    subject = form.get("subject", "").strip()
    purpose = form.get("purpose", "").strip()
    at_text = form.get("at", "").strip()
    context: dict[str, Any] = {
        "subject": subject,
        "purpose": purpose,
        "at": at_text[:64],
        "found": None,
    }
    errors = []
    at: datetime | None = None
    if at_text:  # the consent as it stood then (datetime-local sends no offset: UTC)
        try:
            if len(at_text) > 64:  # no time is this long; and the page does not echo it back
                raise ValueError("it is longer than any time")
            given = datetime.fromisoformat(at_text.replace("Z", "+00:00"))
            # datetime-local sends no offset: UTC; one sent is checked as given (+-14 h).
            at = check_query_time(given if given.tzinfo else given.replace(tzinfo=UTC))
        except ValueError as exc:
            shown = at_text[:64]
            errors.append(f"The moment {shown} is not a time the ledger can answer for: {exc}")
    if not subject or len(subject) > 256 or not subject.isprintable():
        errors.append("Give the subject's reference (as the emitting service knows them).")
    if not purpose:
        errors.append("Say why you look this person up (the purpose is recorded).")
    if errors:
        context["errors"] = errors
        return render("subject.html", context, status=422, visitor=who)
    ledger, queries = _ledger(request), _queries(request)

    def answer() -> dict[str, Any]:
        _, events = queries.history_events(subject)
        record = AccessRecord.of_events(
            events,
            client=who.client.name,
            action=LOOKUP_ACTION,
            scope=Scope.READ_HISTORY.value,
            purpose=purpose,
        )
        if record is None:  # nothing of theirs in the log (or erased): nothing opened
            return {"events": [], "access_seq": None}
        access_seq = ledger.record_access(record).seq
        return _subject_view(queries, subject, events, access_seq, at)

    try:
        context["found"] = await run_in_threadpool(answer)
    except ValidationError as exc:
        context["errors"] = [p.describe() for p in exc.problems]
        return render("subject.html", context, status=422, visitor=who)
    except OverloadedError as exc:
        raise PageError(
            503, "Busy", f"The ledger cannot record the read now; try again in {exc.retry_after} s."
        ) from None
    context["errors"] = []
    return render("subject.html", context, visitor=who)


def _subject_view(
    queries: Queries, subject: str, events: list[Any], access_seq: int, at: datetime | None
) -> dict[str, Any]:
    """What a lookup shows, once its read is on the record."""
    timelines: dict[str, list[Any]] = defaultdict(list)
    incident_ids: list[str] = []
    for event in events:
        if event.type.startswith("consent."):
            for purpose in event.data.get("purposes") or ():
                timelines[str(purpose)].append(event)
        incident_id = event.data.get("incident_id")
        if event.type.startswith("incident.") and incident_id not in incident_ids:
            incident_ids.append(str(incident_id))
    state = queries.consent_state(subject)
    now = datetime.now(UTC)
    lapsed = {
        p.purpose: (str(p.verdict.status), p.verdict.since)
        for p in state.purposes
        if not p.verdict.valid and p.verdict.status not in (None, *views.STRIP_COLOURS)
    }
    strips = {
        purpose: views.consent_strip(
            [(e.type.partition(".")[2], e.occurred_at, e.data.get("expires_at")) for e in found],
            now,
            f"{purpose}: consent over time",
            lapsed.get(purpose),
        )
        for purpose, found in timelines.items()
    }
    return {
        "strips": strips,
        "events": events,
        "access_seq": access_seq,
        "state": state,
        "at": None if at is None else queries.consent_state(subject, at),
        "at_moment": None if at is None else at.isoformat(timespec="minutes"),
        "timelines": dict(sorted(timelines.items())),
        "disclosures": queries.disclosures(subject_ref=subject, limit=1000),
        "requests": queries.requests(subject_ref=subject),
        "incidents": incident_ids,
    }
