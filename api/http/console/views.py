"""What the console's pages compute beyond the questions they ask: clocks, and the consent
activity chart (an inline SVG drawn here, so the page needs no chart library and no script).

The chart folds the log's own records (the type, ``occurred_at`` and ``purposes`` of each
consent fact are stored in clear; nobody's personal data is opened, so nothing is recorded),
keeping the counts and the position reached in memory: a page costs the events appended since
the one before, not the whole log.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from ledger.verifier.entry import parse_body
from projections.queries import Queries

COUNTED = {"consent.given": "given", "consent.withdrawn": "withdrawn"}
"""The consent facts the chart counts, and what it calls them."""
MONTHS = 12
PAGE = 1000


@dataclass(frozen=True)
class Clock:
    """The authority-notification clock of one incident (GDPR 33(1)), as it stands now."""

    deadline: datetime
    hours_left: float
    state: str
    """``running``, ``overdue``, ``notified`` (in time), ``notified_late``, ``not_required``
    (assessed ``unlikely``: no notification due), or ``closed``."""

    @property
    def text(self) -> str:
        if self.state == "notified":
            return "authority notified in time"
        if self.state == "notified_late":
            return "authority notified late"
        if self.state == "not_required":
            return "no notification due (risk unlikely)"
        if self.state == "closed":
            return "closed without notification"
        return hours_text(self.hours_left)


def hours_text(hours: float) -> str:
    """``41 h 20 min left`` or ``overdue by 3 h 05 min``."""
    minutes = int(abs(hours) * 60)
    shown = f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{shown} left" if hours >= 0 else f"overdue by {shown}"


def clock_of(
    deadline: datetime,
    *,
    notified_at: datetime | None,
    notified_late: bool,
    overdue: bool,
    risk: str | None,
    closed: bool,
    now: datetime,
) -> Clock:
    """The clock from an incident's register fields (the register decides what is overdue)."""
    left = (deadline - now).total_seconds() / 3600
    if notified_at is not None:
        state = "notified_late" if notified_late else "notified"
    elif overdue:
        state = "overdue"
    elif risk == "unlikely":
        state = "not_required"
    elif closed:
        state = "closed"
    else:
        state = "running"
    return Clock(deadline, left, state)


def month_of(occurred_at: str) -> str:
    return occurred_at[:7]


def last_months(now: datetime, count: int = MONTHS) -> list[str]:
    """The ``count`` months up to ``now``'s, oldest first, as ``YYYY-MM``."""
    year, month = now.year, now.month
    found = []
    for _ in range(count):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return found[::-1]


class ConsentActivity:
    """Consents given and withdrawn per purpose and month, folded from the log (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._position = 0
        self.counts: Counter[tuple[str, str, str]] = Counter()
        """(purpose, ``YYYY-MM`` of ``occurred_at``, ``given``/``withdrawn``) -> facts."""

    def catch_up(self, queries: Queries) -> int:
        """Fold the records appended since the last call; the position reached."""
        with self._lock:
            head = queries.head()
            while self._position < head:
                records = queries.records(self._position + 1, PAGE)
                if not records:
                    break
                for record in records:
                    self._fold(record.body)
                    self._position = record.seq
            return self._position

    def _fold(self, body: bytes) -> None:
        event = parse_body(body)
        kind = COUNTED.get(str(event.get("type")))
        if kind is None:
            return
        data = event.get("data") or {}
        month = month_of(str(event.get("occurred_at", "")))
        for purpose in data.get("purposes") or ():
            self.counts[(str(purpose), month, kind)] += 1

    def purposes(self) -> list[str]:
        return sorted({purpose for purpose, _, _ in self.counts})

    def series(self, purpose: str, months: list[str]) -> list[tuple[str, int, int]]:
        """(month, given, withdrawn) for each of ``months``."""
        return [
            (m, self.counts[(purpose, m, "given")], self.counts[(purpose, m, "withdrawn")])
            for m in months
        ]


def activity_svg(series: list[tuple[str, int, int]], scale: int, label: str) -> str:
    """A small bar chart: given above the axis (green), withdrawn below (red), one pair of bars
    a month; every bar has a ``<title>`` with its numbers, and the chart a text alternative."""
    width, half, bar = 12 * 22, 34, 9
    scale = max(scale, 1)
    parts = [
        f'<svg class="spark" viewBox="0 0 {width} {2 * half + 2}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="0" y1="{half + 1}" x2="{width}" y2="{half + 1}" stroke="#8a8f98" />',
    ]
    for index, (month, given, withdrawn) in enumerate(series):
        x = index * 22 + 3
        up = round(half * given / scale)
        down = round(half * withdrawn / scale)
        text = escape(f"{month}: {given} given, {withdrawn} withdrawn")
        parts.append(
            f"<g><title>{text}</title>"
            f'<rect x="{x}" y="{half + 1 - up}" width="{bar}" height="{up}" fill="#1b7f3b" />'
            f'<rect x="{x + bar}" y="{half + 1}" width="{bar}" height="{down}" fill="#b3261e" />'
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def since(moment: datetime | None, now: datetime) -> str:
    """``12 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``; ``never`` for None."""
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def parse_moment(text: str | None) -> datetime | None:
    """An RFC 3339 time as stored (``...Z``), aware; None for None or text that is not one."""
    if not text:
        return None
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def within(moment: datetime, now: datetime, days: int) -> bool:
    return now <= moment <= now + timedelta(days=days)


STRIP_COLOURS = {
    "given": "#1b7f3b",
    "refused": "#b3261e",
    "withdrawn": "#b3261e",
    "expired": "#8a8f98",
}
"""The state a consent is in after each kind of fact (renewal requests are marks, not states)."""
LAPSED = "#c77c00"
"""A consent given that lapsed for a reason outside the subject's events (renewal required)."""


def consent_strip(
    events: list[tuple[str, str, str | None]],
    now: datetime,
    label: str,
    lapsed: tuple[str, str | None] | None = None,
) -> str:
    """One purpose's consent over time as a horizontal strip: a segment per state (given green,
    refused or withdrawn red, expired grey) from the first decision to ``now``, a tick for each
    renewal request. ``events``: (type's last part, occurred_at, expires_at) in log order.
    ``lapsed``: (status, since) when the consent given last is no longer valid for a reason
    outside the subject's own events (a material policy change asking for renewal, an age
    rule): its last segment is then that status (amber) from ``since``."""
    moments = [(parse_moment(at), kind, parse_moment(until)) for kind, at, until in events]
    dated = [(at, kind, until) for at, kind, until in moments if at is not None]
    width, height = 600, 22
    if not dated:
        return ""
    first = min(at for at, _, _ in dated)
    span = max((now - first).total_seconds(), 1.0)

    def x(moment: datetime) -> float:
        return round(width * min(max((moment - first).total_seconds() / span, 0.0), 1.0), 1)

    parts = [
        f'<svg class="strip" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="0" y="4" width="{width}" height="{height - 8}" fill="#eef0f3" />',
    ]
    states = [(at, kind, until) for at, kind, until in dated if kind in STRIP_COLOURS]
    since = None if lapsed is None else parse_moment(lapsed[1])
    if lapsed is not None and since is not None and states and states[-1][1] == "given":
        states.append((max(since, states[-1][0]), lapsed[0], None))
    for index, (at, kind, until) in enumerate(states):
        end = states[index + 1][0] if index + 1 < len(states) else now
        pieces = [(at, end, kind)]
        if kind == "given" and until is not None and until < end:
            pieces = [(at, until, "given"), (until, end, "expired")]
        for start, stop, state in pieces:
            title = escape(f"{state} from {start:%Y-%m-%d}")
            parts.append(
                f'<g><title>{title}</title><rect x="{x(start)}" y="4" '
                f'width="{max(x(stop) - x(start), 1.0)}" height="{height - 8}" '
                f'fill="{STRIP_COLOURS.get(state, LAPSED)}" /></g>'
            )
    for at, kind, _ in dated:
        if kind == "renewal_requested":
            parts.append(
                f"<g><title>{escape(f'renewal requested {at:%Y-%m-%d}')}</title>"
                f'<rect x="{x(at)}" y="0" width="3" height="{height}" fill="#8a5300" /></g>'
            )
    parts.append("</svg>")
    return "".join(parts)
