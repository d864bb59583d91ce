"""A bundle names what it covers; a name the log holds nothing of is an error, not a bundle that
verifies and says "0 events" (which reads as a clean record of the wrong name)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.export import ScopeNotFoundError
from ledger.verifier.bundle import verify_bundle
from tests import facts
from tests.cli_runner import run_cli
from tests.support import bundles


def recorded(ledger: LedgerApplication) -> tuple[str, str, str]:
    """A subject with consent, a recipient with a disclosure, an opened incident."""
    pol = facts.policy()
    subject, recipient, incident = facts.ref("user"), facts.ref("rcpt"), facts.ref("inc")
    ledger.append(
        [
            pol,
            facts.recipient(recipient),
            facts.consent(subject, pol["version"]),
            facts.incident(incident),
        ]
    )
    return subject, recipient, incident


def test_unknown_names_are_refused_and_known_ones_export(
    ledger: LedgerApplication, settings: Settings, tmp_path: Path
) -> None:
    subject, recipient, incident = recorded(ledger)
    keys = ledger.subject_keys
    unknown = [
        ({"kind": "recipient", "recipient_id": recipient + "-typo"}, "no recipient"),
        ({"kind": "incident", "incident_id": incident + "-typo"}, "no incident"),
        ({"kind": "subject", "subject": keys.pseudonym(subject + "-typo")}, "no subject"),
    ]
    for n, (scope, message) in enumerate(unknown):
        target = tmp_path / f"unknown-{n}"
        with pytest.raises(ScopeNotFoundError, match=message):
            bundles.export(ledger, settings, scope, target)
        assert not target.exists()
    known = [
        {"kind": "recipient", "recipient_id": recipient},
        {"kind": "incident", "incident_id": incident},
        {"kind": "subject", "subject": keys.pseudonym(subject)},
    ]
    for n, scope in enumerate(known):
        result = bundles.export(ledger, settings, scope, tmp_path / f"known-{n}")
        report = verify_bundle(result.path, bundles.trusted(ledger, settings))
        assert report.entries >= 1


def test_an_erased_subject_reads_as_unknown(
    ledger: LedgerApplication, settings: Settings, tmp_path: Path
) -> None:
    subject, _, _ = recorded(ledger)
    ledger.erase(subject_ref=subject)
    scope = {"kind": "subject", "subject": ledger.subject_keys.pseudonym(subject)}
    with pytest.raises(ScopeNotFoundError, match="none was recorded, or it was erased"):
        bundles.export(ledger, settings, scope, tmp_path / "erased")


def test_an_empty_period_is_a_truthful_bundle(
    ledger: LedgerApplication, settings: Settings, tmp_path: Path
) -> None:
    recorded(ledger)
    scope = {"kind": "period", "from": "1999-01-01T00:00:00Z", "to": "1999-01-02T00:00:00Z"}
    result = bundles.export(ledger, settings, scope, tmp_path / "period")
    # Nothing happened that day: the bundle holds only what its report needs to say so (the
    # policy versions in effect), and verifies.
    report = verify_bundle(result.path, bundles.trusted(ledger, settings))
    assert report.scope["kind"] == "period" and report.entries <= 1


def test_the_cli_exits_non_zero_with_the_reason(settings: Settings, tmp_path: Path) -> None:
    assert (
        run_cli(settings, "import", "-", stdin=orjson.dumps(facts.policy()).decode()).exit_code == 0
    )
    for option, name in (("--incident", "inc-nope"), ("--recipient", "rcpt-nope")):
        target = tmp_path / name
        result = run_cli(settings, "export", option, name, "--out", str(target))
        assert result.exit_code == 1, result.output
        assert f"nothing to export: no {option[2:]} '{name}'" in result.output
        assert not target.exists()
    result = run_cli(settings, "export", "--subject", "user-nope", "--out", str(tmp_path / "s"))
    assert result.exit_code == 1 and "no subject has that reference" in result.output
