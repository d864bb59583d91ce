"""Click parameter types the commands share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from pydantic_core import PydanticCustomError

from ledger.events import check_query_time


class Moment(click.ParamType[datetime]):
    """A moment as the ledger writes them and people type them: an RFC 3339 / ISO 8601 time
    (``2026-04-01T22:45:19.000000Z``, ``2026-04-01T22:45:19+02:00``, fractions of a second
    allowed) or a date (``2026-04-01``, its midnight); UTC unless it has an offset. Checked
    as the HTTP API checks a time parameter (:func:`ledger.events.check_query_time`)."""

    name = "moment"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not a time: give an RFC 3339 time such as 2026-04-01T22:45:19Z "
                "(an offset such as +02:00 instead of Z, fractions of a second allowed) or a "
                "date such as 2026-04-01",
                param,
                ctx,
            )
        try:
            return check_query_time(moment)
        except PydanticCustomError as exc:
            self.fail(f"{text!r}: {exc.message()}", param, ctx)


MOMENT = Moment()
