"""Notices to recipients through a served ledger (both backends): a withdrawal reaches the one
recipient that got data for the purpose, through a webhook receiver on loopback that fails
twice, across a SIGKILL of the server that runs the dispatcher; the recipient acknowledges
with its own token, once; the register shows it; the trail is in the log."""

from __future__ import annotations

import json
import signal
from typing import Any

import httpx

from ledger.config import Settings, open_ledger
from ledger.notices import notice_id
from tests import facts
from tests.support.processes import add_client, free_port
from tests.support.serve import serve
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import webhook_receiver

FAST_RETRY = {"CONSENT_LEDGER_NOTICE_RETRY_SECONDS": "1"}


def _post(url: str, token: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.post(
        f"{url}{path}",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )


def _get(url: str, token: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{url}{path}", params=params, headers={"authorization": f"Bearer {token}"}, timeout=30
    )


def _trail(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    ledger = open_ledger(settings)
    try:
        return [
            (event.type, event.data)
            for event in (ledger.decode(r) for r in ledger.iter_records())
            if event.type.startswith(("recipient.notice", "recipient.notified", "recipient.ack"))
        ]
    finally:
        ledger.close()


def test_a_withdrawal_is_delivered_once_across_a_killed_dispatcher_and_acknowledged_once(
    settings: Settings,
) -> None:
    version, subject = facts.ref("policy"), facts.ref("user")
    email, analytics = facts.ref("rcp-email"), facts.ref("rcp-analytics")
    writer = add_client(settings, "writer", "events:write", "history:read")
    email_token = add_client(settings, email, "notices:ack")
    analytics_token = add_client(settings, analytics, "notices:ack")
    port = free_port()
    with webhook_receiver(fail_first=2) as receiver:
        settings.data_dir.joinpath("notice-endpoints.json").write_text(
            json.dumps({email: receiver.url, analytics: receiver.url})
        )
        with serve(settings, port, FAST_RETRY) as server:
            assert (
                _post(
                    server.url,
                    writer,
                    "/v1/events",
                    [
                        facts.policy(version),
                        facts.recipient(email),
                        facts.recipient(analytics),
                        facts.consent(subject, version),
                        facts.disclosure(email, [subject], version),
                        facts.disclosure(analytics, [subject], version, purpose="usage_analytics"),
                    ],
                ).status_code
                == 201
            )
            answer = _post(
                server.url,
                writer,
                "/v1/events",
                [facts.consent(subject, version, "withdrawn")],
            )
            assert answer.status_code == 201, answer.text
            withdrawn = answer.json()["receipts"][0]["seq"]
            wait_until(lambda: len(receiver.received) >= 1, "the first attempt", seconds=90)
            server.process.send_signal(signal.SIGKILL)  # between a failed attempt and the next
            server.process.wait(timeout=30)
        with serve(settings, port, FAST_RETRY) as server:
            wait_until(
                lambda: any(t == "recipient.notified" for t, _ in _trail(settings)),
                "the delivery recorded after the restart",
                seconds=90,
                interval=0.5,
            )
            expected = notice_id(withdrawn, email)
            assert set(receiver.ids()) == {expected}, "only the email recipient, one id"
            assert len(receiver.received) >= 3, "two failures, then the delivery"

            path = f"/v1/notices/{expected}/ack"
            other = _post(server.url, analytics_token, path)
            assert other.status_code == 404, "another recipient's notice does not exist for it"
            assert other.json()["rule"] == "notice_unknown"
            assert _post(server.url, writer, path).status_code == 403, "needs notices:ack"
            first = _post(server.url, email_token, path)
            assert first.status_code == 201, first.text
            again = _post(server.url, email_token, path)
            assert again.status_code == 409
            assert again.json()["rule"] == "notice_acknowledged"
            bad = _post(server.url, email_token, "/v1/notices/not-a-notice/ack")
            assert bad.status_code == 400

            def acknowledged_in_register() -> bool:
                rows = _get(server.url, writer, "/v1/notices").json()["notices"]
                return len(rows) == 1 and rows[0]["acknowledged_seq"] is not None

            wait_until(
                acknowledged_in_register, "the register shows the acknowledgement", seconds=90
            )
            (row,) = _get(server.url, writer, "/v1/notices").json()["notices"]
            assert row["notice_id"] == expected
            assert row["recipient_id"] == email
            assert row["attempts"] >= 3
            overdue = _get(server.url, writer, "/v1/notices", overdue="true")
            assert overdue.json()["notices"] == []
            assert _get(server.url, writer, "/v1/notices", overdue="maybe").status_code == 400

    trail = _trail(settings)
    assert [t for t, _ in trail] == [
        "recipient.notice_due",
        "recipient.notified",
        "recipient.acknowledged",
    ]
    assert all(data["notice_id"] == expected for _, data in trail)
    assert trail[1][1]["attempts"] >= 3
    assert trail[2][1]["client"] == email
