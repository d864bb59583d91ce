"""The consent-ledger command, as an operator runs it, on both backends."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ledger.config import Settings
from tests import facts
from tests.cli_runner import run_cli as run
from tests.conftest import RawDatabase
from tests.support.waiting import wait_until


def write_jsonl(path: Path, items: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items))
    return path


@pytest.fixture
def events_file(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    pol = facts.policy()
    items = [pol] + [
        facts.consent(facts.ref("user"), pol["version"], contact="a@example.org") for _ in range(5)
    ]
    return write_jsonl(tmp_path / "events.jsonl", items), items


def test_import_then_verify_then_show(
    settings: Settings, events_file: tuple[Path, list[dict[str, object]]]
) -> None:
    path, items = events_file
    result = run(settings, "import", str(path), "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "imported 6 new events, 0 already recorded; head is now 11" in result.output
    again = run(settings, "import", str(path))
    assert "imported 0 new events, 6 already recorded; head is now 11" in again.output
    verified = run(settings, "verify-log")
    assert verified.exit_code == 0 and "ok: 11 events" in verified.output
    shown = orjson.loads(run(settings, "show", "3").output)
    assert shown["event_id"] == items[1]["event_id"] and shown["data"]["contact"] == "a@example.org"
    # Opening event 3's personal data was recorded first, as event 12.
    tail = [orjson.loads(line) for line in run(settings, "tail", "-n", "3").output.splitlines()]
    assert [event["seq"] for event in tail] == [10, 11, 12]
    read = tail[-1]
    assert read["type"] == "personal_data.accessed"
    assert read["data"]["action"] == "operator_show" and read["data"]["scope"] == "operator"
    assert read["data"]["client"].startswith("cli:") and read["data"]["details"] == {"seq": 3}
    assert read["data"]["opened_subjects"] == [shown["data"]["subject"]]
    # tail printed events 10 and 11 with personal data opened: that page is recorded too.
    last = orjson.loads(run(settings, "show", "13").output)
    assert last["type"] == "personal_data.accessed"
    assert last["data"]["action"] == "operator_tail"
    assert last["data"]["details"] == {"from_seq": 10, "to_seq": 12}


def test_import_stops_at_a_bad_line_and_says_what_is_stored(
    settings: Settings, tmp_path: Path
) -> None:
    pol = facts.policy()
    items = [
        pol,
        facts.consent("u1", pol["version"]),
        facts.consent("u2", pol["version"], purposes=["telepathy"]),
    ]
    result = run(
        settings, "import", str(write_jsonl(tmp_path / "bad.jsonl", items)), "--batch-size", "2"
    )
    assert result.exit_code == 1
    assert "line 3: purposes[0]:" in result.output and "purpose_unknown" in result.output
    assert "lines 1-2 are stored" in result.output
    not_json = tmp_path / "broken.jsonl"
    not_json.write_text('{"type": \n')
    assert "line 1: not JSON" in run(settings, "import", str(not_json)).output


def test_verify_log_names_the_tampered_event(
    settings: Settings, events_file: tuple[Path, list[dict[str, object]]], raw_db: RawDatabase
) -> None:
    run(settings, "import", str(events_file[0]))
    raw_db.drop_append_only_guards()
    [(body,)] = raw_db.execute("SELECT body FROM ledger_events WHERE seq = 5")
    raw_db.execute(
        "UPDATE ledger_events SET body = ? WHERE seq = 5",
        (bytes(body).replace(b"web_form", b"web_fork"),),
    )
    result = run(settings, "verify-log")
    assert result.exit_code == 1
    assert "event 5: the body is not the one its signed entry commits to" in result.output
    assert "problem(s) in 11 stored events" in result.output


def test_show_of_a_missing_event_is_a_clear_error(settings: Settings) -> None:
    result = run(settings, "show", "99")
    assert result.exit_code == 1
    assert "Error: no event has sequence number 99" in result.output


def test_keygen_rotate_adds_a_key(settings: Settings) -> None:
    assert "keys exist already" in run(settings, "keygen").output
    assert "signing key" in run(settings, "keygen", "--rotate").output
    assert len(list(settings.keys_dir.glob("*.pub"))) == 2


def test_read_models_from_the_command_line(settings: Settings, tmp_path: Path) -> None:
    pol = facts.policy(effective_at="2026-01-01T00:00:00Z")
    rcpt = facts.recipient(role="third_party", occurred_at="2026-01-01T00:00:00Z")
    given = facts.consent("user-cli-1", pol["version"], occurred_at="2026-02-01T00:00:00Z")
    shared = facts.disclosure(
        rcpt["recipient_id"], ["user-cli-1"], pol["version"], occurred_at="2026-03-01T00:00:00Z"
    )
    withdrawn = facts.consent(
        "user-cli-1", pol["version"], kind="withdrawn", occurred_at="2026-04-01T00:00:00Z"
    )
    late = facts.disclosure(
        rcpt["recipient_id"], ["user-cli-1"], pol["version"], occurred_at="2026-05-01T00:00:00Z"
    )
    items = [
        pol,
        rcpt,
        given,
        shared,
        withdrawn,
        late,
        facts.incident(),
        facts.request("user-cli-1"),
    ]
    assert run(settings, "import", str(write_jsonl(tmp_path / "e.jsonl", items))).exit_code == 0

    state = orjson.loads(run(settings, "consent", "state", "user-cli-1").output)
    assert [p["status"] for p in state["purposes"]] == ["withdrawn"]
    then = run(settings, "consent", "check", "user-cli-1", "marketing_email", "--at", "2026-03-01")
    assert then.exit_code == 0 and orjson.loads(then.output)["allowed"] is True
    now = run(settings, "consent", "check", "user-cli-1", "marketing_email")
    assert now.exit_code == 3 and orjson.loads(now.output)["status"] == "withdrawn"

    rows = orjson.loads(run(settings, "disclosures", "--subject", "user-cli-1").output)
    assert [r["verdict"] for r in rows] == ["consent_valid", "consent_missing"]
    csv_out = run(settings, "disclosures", "--violations", "--csv").output.splitlines()
    assert csv_out[0].startswith("seq,subject,") and len(csv_out) == 2
    assert "user-cli-1" not in "".join(csv_out)  # pseudonyms only

    assert len(orjson.loads(run(settings, "incidents").output)) == 1
    [request] = orjson.loads(run(settings, "requests").output)
    assert request["status"] == "received" and not request["overdue"]

    status = orjson.loads(run(settings, "projections", "status", "--json").output)
    assert {s["name"] for s in status} == {
        "consent_facts",
        "consent_state",
        "disclosures",
        "incidents",
        "requests",
        "retention",
    }
    assert all(s["lag_events"] == 0 and s["error"] is None for s in status)
    rebuilt = run(settings, "projections", "rebuild", "disclosures")
    assert rebuilt.exit_code == 0 and "rebuilt disclosures" in rebuilt.output
    unknown = run(settings, "projections", "rebuild", "nonsense")
    assert unknown.exit_code != 0 and "no projection 'nonsense'" in unknown.output


def test_projections_run_follows_the_log_and_stops_on_sigterm(settings: Settings) -> None:
    import signal
    import subprocess
    import sys

    from tests.support.processes import ROOT, settings_env

    follower = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "projections", "run"],
        env=settings_env(settings),
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        assert follower.stderr is not None
        assert b"following the log" in follower.stderr.readline()
        assert (
            run(settings, "import", "-", stdin=orjson.dumps(facts.policy()).decode()).exit_code == 0
        )
        statuses: list[dict[str, object]] = []

        def caught_up() -> bool:
            statuses[:] = orjson.loads(run(settings, "projections", "status", "--json").output)
            return all(s["position"] == 1 for s in statuses)

        wait_until(caught_up, lambda: str(statuses), 20, 0.1)
    finally:
        follower.send_signal(signal.SIGTERM)
        assert follower.wait(timeout=20) == 0
        assert follower.stderr is not None
        follower.stderr.close()


def test_clients_list_says_who_signs_and_with_which_key(settings: Settings) -> None:
    import base64

    from nacl.signing import SigningKey

    from ledger.verifier.entry import key_id_for

    def listed() -> dict[str, list[str]]:
        out = run(settings, "clients", "list").output.strip().splitlines()
        return {line.split("\t")[0]: line.split("\t")[1:] for line in out}

    assert run(settings, "clients", "add", "svc", "--scope", "events:write").exit_code == 0
    assert listed()["svc"] == ["events:write", "active", "unsigned"]
    key = bytes(SigningKey.generate().verify_key)
    public = base64.b64encode(key).decode()
    assert run(settings, "clients", "set-key", "svc", public).exit_code == 0
    assert listed()["svc"][2] == f"signs with key {key_id_for(key)}"
    assert run(settings, "clients", "revoke", "svc").exit_code == 0
    assert listed()["svc"][1].startswith("revoked ")


def test_global_options_may_follow_the_subcommand(settings: Settings) -> None:
    from click.testing import CliRunner

    from api.cli import cli

    assert run(settings, "import", "-", stdin=orjson.dumps(facts.policy()).decode()).exit_code == 0
    storage = [f"--data-dir={settings.data_dir}"]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    env = {"CONSENT_LEDGER_DATABASE_SCHEMA": settings.database_schema}
    after = CliRunner().invoke(cli, ["show", "1", *storage], env=env)
    assert after.exit_code == 0, after.output
    assert orjson.loads(after.output)["seq"] == 1
    nested = CliRunner().invoke(cli, ["projections", "status", "--json", *storage], env=env)
    assert nested.exit_code == 0, nested.output
