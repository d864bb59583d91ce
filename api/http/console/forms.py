"""What the console's forms share: the facts they build from form fields, and their append
through :meth:`~ledger.application.LedgerApplication.append`, the API's own validation, with
the ledger's problems returned by form field."""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.http.console.access import HEADERS, PageError, Visitor
from ledger.application import LedgerApplication
from ledger.errors import LedgerError, OverloadedError, ValidationError
from projections.queries import (
    NoSuchEventYetError,
    NotCaughtUpError,
    Queries,
    ReadModelStoppedError,
)

EVENT_ID = re.compile(r"console-[0-9a-f]{32}(-[a-z_]{1,24})?")
"""The event ids the console draws with its forms."""


async def append_fact(
    request: Request, fact: dict[str, Any], read_model: str
) -> dict[str, list[str]]:
    """Append ``fact`` as the API's incident route does; the problems by form field (empty
    when it was recorded, now or by an earlier send of the same form: its event id was drawn
    with the form). Waits (a little) for ``read_model`` to hold it."""
    ledger: LedgerApplication = request.app.state.ledger
    queries: Queries = request.app.state.queries

    def append() -> dict[str, list[str]]:
        if queries.claimed(fact["event_id"]) is not None:
            return {}  # this form was sent before (a reload, a double click): recorded once
        try:
            (receipt,) = ledger.append([fact])
        except ValidationError as exc:
            found: dict[str, list[str]] = defaultdict(list)
            for problem in exc.problems:
                name = problem.field.split(".")[0] if problem.field else ""
                if problem.field.startswith("affected_rule."):
                    name = ".".join(problem.field.split(".")[:2])
                found[name].append(f"{problem.message} (rule: {problem.rule})")
            return dict(found)
        except OverloadedError as exc:
            raise PageError(
                503, "Busy", f"The ledger is busy; send the form again in {exc.retry_after} s."
            ) from None
        except LedgerError as exc:
            return {"": [str(exc)]}
        # The page then shows the register as it stands, if it did not catch up in time.
        with contextlib.suppress(NotCaughtUpError, ReadModelStoppedError, NoSuchEventYetError):
            queries.wait_for(receipt.seq, 5.0, read_model)
        return {}

    return await run_in_threadpool(append)


def refuse_signing_client(who: Visitor) -> None:
    """A client that registered a key signs every append it sends (invariant 2): a browser
    form cannot, so the console appends nothing for it."""
    if who.client.public_key is not None:
        raise PageError(
            403,
            "Signed appends only",
            f"The client {who.client.name} has registered a signing key, so each of its "
            "appends must be signed; send this fact through the API.",
        )


def new_event_id() -> str:
    return f"console-{uuid4().hex}"


def event_id_of(form: dict[str, str]) -> str:
    """The form's event id (made when the form was drawn, so sending it twice records the
    fact once), or a new one when it is not one the console makes."""
    given = form.get("event_id", "")
    return given if EVENT_ID.fullmatch(given) else new_event_id()


def moment(text: str, *, blank_is_now: bool = True) -> str:
    """A form's time, read as UTC when it has no offset (``datetime-local`` sends none); now
    when blank; as sent (for the ledger to name the problem) when it is not a time."""
    text = text.strip()
    if not text:
        return datetime.now(UTC).isoformat().replace("+00:00", "Z") if blank_is_now else ""
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if found.tzinfo is None:
        found = found.replace(tzinfo=UTC)
    return found.astimezone(UTC).isoformat().replace("+00:00", "Z")


def words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text) if w]


def number(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 12 else text


def redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers=HEADERS)
