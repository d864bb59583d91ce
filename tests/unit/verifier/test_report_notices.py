"""The report's "Recipients told" from hand-made notice events (hypothesis): a section per
recipient in the order of their ids, whatever order the notices were owed in, each headed by
counts that match its notices; every notice listed under its own recipient; how it was
acknowledged in ``notices.csv``; recipient ids escaped in the HTML."""

from __future__ import annotations

import csv
import html
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.verifier.report import ReportEvent, write_report

CHECKPOINT = (
    "example.org/log\n7\nq6uGKu/qOY7WVYpDGJfV1g3ZzMm4SU71aDNm43GSQWM=\n\n— example.org/log abc\n"
)
SUBJECT = "aaaaaaaa-0000-0000-0000-000000000001"
RECIPIENTS = ("b-mail", "a<&>\"'r", "=cmd", "analytics")
ACKS = (None, ("api", "client-1"), ("webhook_reply", None), ("", None))
"""Not acknowledged; through the API by a client; in a signed answer; before ``via`` was."""

Notice = tuple[str, bool, tuple[str, str | None] | None]
"""Its recipient, whether it was told, and how it was acknowledged (None: not)."""

_SECTION = re.compile(
    r"<h3>Recipient ([^<]*)</h3>\n<p>Owed: (\d+); told: (\d+); acknowledged: (\d+); "
    r"not yet told: (\d+); told but not acknowledged: (\d+)\.</p>\n"
    r"<table>\n.*?<tbody>\n(.*?)</tbody>",
    re.S,
)


def _event(seq: int, type_name: str, data: dict[str, Any]) -> ReportEvent:
    at = f"2026-01-01T00:00:{seq % 60:02d}.000000Z"
    return ReportEvent(
        seq=seq,
        type=type_name,
        occurred_at=at,
        recorded_at=at,
        event_id=f"evt-{seq}",
        backdated=False,
        data=data,
        shown=data,
    )


def _events(notices: list[Notice]) -> list[ReportEvent]:
    out: list[ReportEvent] = []
    for i, (recipient, told, ack) in enumerate(notices):
        base = {"notice_id": f"n-{i}", "recipient_id": recipient, "told_subjects": [SUBJECT]}
        steps: list[tuple[str, dict[str, Any]]] = [
            ("recipient.notice_due", {"reason": "erasure", "cause_seqs": [1]})
        ]
        if told:
            steps.append(("recipient.notified", {"transport": "webhook", "attempts": 1}))
        if ack is not None:
            via, client = ack
            how = {k: v for k, v in (("via", via), ("client", client)) if v}
            steps.append(("recipient.acknowledged", how))
        for kind, extra in steps:
            out.append(_event(len(out) + 1, kind, {**base, **extra}))
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(RECIPIENTS), st.booleans(), st.sampled_from(ACKS)),
        max_size=12,
    )
)
def test_each_recipient_has_a_section_with_counts_matching_its_notices(
    notices: list[Notice],
) -> None:
    events = _events(notices)

    def log() -> Iterator[ReportEvent]:
        return iter(events)

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_report({"kind": "all"}, CHECKPOINT, log, directory, default_minimum_age=18)
        report = (directory / "report.html").read_text(encoding="utf-8")
        with (directory / "notices.csv").open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))

    told = report[report.index("<h2>Recipients told</h2>") : report.index("</body>")]
    sections = _SECTION.findall(told)
    expected = sorted({r for r, _, _ in notices})
    assert [html.unescape(s[0]) for s in sections] == expected
    assert "<h3>Recipient a<&>" not in report, "the id is escaped"
    for name, *counts, body in sections:
        mine = [(t, a) for r, t, a in notices if r == html.unescape(name)]
        assert body.count("</tr>") == len(mine), "its notices, under it"
        assert body.count('<tr class="violation">') == sum(a is None for _, a in mine)
        assert [int(c) for c in counts] == [
            len(mine),
            sum(t for t, _ in mine),
            sum(a is not None for _, a in mine),
            sum(not t for t, _ in mine),
            sum(t and a is None for t, a in mine),
        ]
    if not notices:
        assert "No notices recorded." in told

    assert [r["notice_id"] for r in rows] == [f"n-{i}" for i in range(len(notices))]
    for row, (recipient, _, ack) in zip(rows, notices, strict=True):
        assert row["recipient_id"] == ("'" + recipient if recipient[0] == "=" else recipient)
        via, by = ack if ack is not None else ("", None)
        assert (row["acknowledged_via"], row["acknowledged_by"]) == (via, by or "")
        assert bool(row["acknowledged_seq"]) == (ack is not None)
