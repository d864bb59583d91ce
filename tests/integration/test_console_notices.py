"""Notices to recipients where an operator looks (issue 19, part 4), on both backends, through
the HTTP layer with a served app's own dispatcher and real loopback receivers: one recipient
acknowledges in its signed answer, the other never does; ``/metrics`` counts them by recipient
and reason, and says so when the silent one's notice becomes overdue; the console's notices
page lists them (filters: recipient, overdue), each notice's trail says how it was delivered
and acknowledged, under ``history:read``; no page names the person, and no input answers 500."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from nacl.signing import SigningKey

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.notices import reply_body, webhook_headers
from projections.notices import ENDPOINTS_FILE, NoticeService
from tests import facts
from tests.support.in_process import InProcess
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Received, Receiver, webhook_receiver


@dataclass
class Served:
    http: InProcess
    ledger: LedgerApplication
    notices: NoticeService
    tokens: dict[str, str]
    acks: str
    silent: str
    subject: str
    receivers: tuple[Receiver, Receiver]


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    cli = SqlTokenStore(open_client_database(settings))
    tokens = {
        "auditor": cli.add("auditor", [Scope.READ_HISTORY])[1],
        "admin": cli.add("admin", [Scope.ADMIN])[1],
        "writer": cli.add("writer", [Scope.WRITE_EVENTS])[1],
    }
    key = SigningKey.generate()
    acks, silent = facts.ref("rcp-acks"), facts.ref("rcp-silent")

    def signed(request: Received) -> tuple[dict[str, str], bytes]:
        notice = request.headers["webhook-id"]
        body = reply_body(notice, acks)
        sign = lambda m: key.sign(m).signature  # noqa: E731
        return webhook_headers(notice, int(time.time()), body, sign), body

    with webhook_receiver(reply=signed) as acking, webhook_receiver() as ignoring:
        settings.data_dir.joinpath(ENDPOINTS_FILE).write_text(
            json.dumps(
                {
                    acks: {
                        "url": acking.url,
                        "ack_public_key": base64.b64encode(bytes(key.verify_key)).decode(),
                    },
                    silent: ignoring.url,
                }
            )
        )
        app = create_app(settings, server=ServerSettings(projections=True, signer=False))
        http = InProcess(app)
        try:
            version, subject = facts.ref("policy"), facts.ref("user")
            app.state.ledger.append(
                [
                    facts.policy(version),
                    facts.recipient(acks),
                    facts.recipient(silent),
                    facts.consent(subject, version),
                    facts.disclosure(acks, [subject], version),
                    facts.disclosure(silent, [subject], version),
                    facts.consent(subject, version, "withdrawn"),
                ]
            )
            yield Served(
                http,
                app.state.ledger,
                app.state.notices,
                tokens,
                acks,
                silent,
                subject,
                (acking, ignoring),
            )
        finally:
            http.close()
            cli.db.close()


def _sign_in(http: InProcess, token: str) -> None:
    http.client.cookies.clear()
    page = http.get("/console/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    assert http.post("/console/login", data={"csrf": found.group(1), "token": token}).is_redirect


def _metric(text: str, name: str, recipient: str) -> float:
    found = re.search(
        rf'^{name}{{reason="consent_withdrawn",recipient_id="{re.escape(recipient)}"}} (\S+)$',
        text,
        re.MULTILINE,
    )
    assert found is not None, f"{name} for {recipient} not in /metrics"
    return float(found.group(1))


def _settled(served: Served) -> None:
    def done() -> bool:
        rows = {r.recipient_id: r for r in served.notices.register()}
        return (
            served.acks in rows
            and rows[served.acks].acknowledged_seq is not None
            and served.silent in rows
            and rows[served.silent].notified_seq is not None
        )

    wait_until(done, "one notice acknowledged by its answer, the other delivered", seconds=60)


def test_metrics_count_the_notices_and_say_when_one_becomes_overdue(served: Served) -> None:
    _settled(served)
    admin = {"authorization": f"Bearer {served.tokens['admin']}"}
    text = served.http.get("/metrics", headers=admin).text
    for name, acks, silent in (
        ("ledger_notices_owed", 1, 1),
        ("ledger_notices_undelivered", 0, 0),
        ("ledger_notices_unacknowledged", 0, 1),
        ("ledger_notices_overdue", 0, 0),
    ):
        assert _metric(text, name, served.acks) == acks, name
        assert _metric(text, name, served.silent) == silent, name
    assert served.subject not in text

    # A week and a day on (the default: 168 hours), the silent recipient's notice is overdue.
    served.notices.clock = lambda: datetime.now(UTC) + timedelta(days=8)
    later = served.http.get("/metrics", headers=admin).text
    assert _metric(later, "ledger_notices_overdue", served.silent) == 1
    assert _metric(later, "ledger_notices_overdue", served.acks) == 0
    assert _metric(later, "ledger_notices_unacknowledged", served.silent) == 1


def test_the_console_lists_the_notices_and_each_ones_trail(served: Served) -> None:
    _settled(served)
    http = served.http
    _sign_in(http, served.tokens["writer"])
    assert http.get("/console/notices").status_code == 403, "history:read is needed"
    _sign_in(http, served.tokens["auditor"])

    overview = http.get("/console")
    assert 'href="/console/notices"' in overview.text
    assert re.search(r'id="notices-unacknowledged">1<', overview.text)

    page = http.get("/console/notices")
    assert page.status_code == 200
    assert 'aria-current="page">Notices<' in page.text
    rows = dict(re.findall(r'<tr data-notice="([^"]+)">(.*?)</tr>', page.text, re.DOTALL))
    assert len(rows) == 2
    by_recipient = {r.recipient_id: r for r in served.notices.register()}
    acked, waiting = by_recipient[served.acks], by_recipient[served.silent]
    assert "signed reply" in rows[acked.notice_id] and ">acknowledged<" in rows[acked.notice_id]
    assert "awaiting acknowledgement" in rows[waiting.notice_id]
    assert served.subject not in page.text, "no person on the page"

    mine = http.get("/console/notices", params={"recipient": served.silent})
    assert re.findall(r'<tr data-notice="([^"]+)">', mine.text) == [waiting.notice_id]
    assert re.search(r'id="row-count">0<', http.get("/console/notices?overdue=1").text)

    trail = http.get(f"/console/notices/{acked.notice_id}").text
    steps = re.findall(r'<li data-step="([a-z]+)">', trail)
    assert steps == ["due", "attempts", "delivered", "acknowledged"]
    assert "in its signed answer to the webhook" in trail
    assert f"/console/evidence/entries/{acked.acknowledged_seq}" in trail
    assert served.subject not in trail

    served.notices.clock = lambda: datetime.now(UTC) + timedelta(days=8)
    overdue = http.get("/console/notices?overdue=1")
    assert re.findall(r'<tr data-notice="([^"]+)">', overdue.text) == [waiting.notice_id]
    assert ">overdue<" in overdue.text
    late = http.get(f"/console/notices/{waiting.notice_id}").text
    assert re.findall(r'<li data-step="([a-z]+)">', late) == [
        "due",
        "attempts",
        "delivered",
        "overdue",
    ]
    assert 'id="notice-state">overdue<' in late


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/console/notices?recipient=a%00b", 400),
        ("/console/notices?recipient=" + "r" * 129, 400),
        ("/console/notices?overdue=maybe", 400),
        ("/console/notices?recipient=%F0%9F%98%80", 200),
        ("/console/notices/not-a-notice", 404),
        ("/console/notices/00000000-0000-0000-0000-000000000000", 404),
        ("/console/notices/..%2F..%2Fmetrics", 404),
    ],
)
def test_no_filter_or_id_answers_500(served: Served, path: str, status: int) -> None:
    _sign_in(served.http, served.tokens["auditor"])
    answer = served.http.get(path)
    assert answer.status_code == status, answer.text[:300]
