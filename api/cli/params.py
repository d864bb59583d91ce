"""Click parameter types the commands share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from ledger.events import EARLIEST, HORIZON, MAX_OFFSET


class Moment(click.ParamType[datetime]):
    """A moment as the ledger writes them and people type them: an RFC 3339 / ISO 8601 time
    (``2026-04-01T22:45:19.000000Z``, ``2026-04-01T22:45:19+02:00``, fractions of a second
    allowed) or a date (``2026-04-01``, its midnight); UTC unless it has an offset. Within
    the ledger's bounds (1970 to 2200, offsets within 14 hours), as facts are."""

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
        offset = moment.utcoffset()
        if offset is not None and abs(offset) > MAX_OFFSET:
            self.fail(f"{text!r}: an offset is within 14 hours of UTC", param, ctx)
        aware = moment if offset is not None else moment.replace(tzinfo=UTC)
        if not EARLIEST <= aware < HORIZON:
            self.fail(f"{text!r} is outside 1970-01-01 to 2200-01-01 (UTC)", param, ctx)
        return aware


MOMENT = Moment()
