"""The example data set and the catalogue documentation stay true to the catalogue.

``examples/events.jsonl`` must cover every fact type and import into a fresh ledger;
``docs/events.md`` must document every type and quote only examples that are in that file.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ledger.config import Settings, open_ledger
from ledger.events import FACT_TYPES, parse_fact
from ledger.receipts import Receipt
from tests.support.examples import example_lines

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE_DOC = ROOT / "docs" / "events.md"
JSON_BLOCK = re.compile(r"^```json[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def test_every_example_line_is_a_valid_fact() -> None:
    for number, raw in enumerate(example_lines(), start=1):
        fact = parse_fact(raw)
        assert raw["type"] == fact.TYPE, f"line {number}"


def test_the_examples_cover_every_fact_type() -> None:
    present = {raw["type"] for raw in example_lines()}
    assert sorted(set(FACT_TYPES) - present) == []


def test_example_event_ids_are_unique() -> None:
    ids = [raw["event_id"] for raw in example_lines()]
    assert len(ids) == len(set(ids))


def test_every_json_block_in_the_catalogue_doc_is_a_line_of_the_examples() -> None:
    blocks = JSON_BLOCK.findall(CATALOGUE_DOC.read_text(encoding="utf-8"))
    assert blocks, "docs/events.md quotes no ```json example"
    lines = example_lines()
    for block in blocks:
        quoted = json.loads(block)
        assert quoted in lines, f"not a line of examples/events.jsonl: {block[:120]}"


def test_the_catalogue_doc_has_a_heading_for_every_fact_type() -> None:
    headings = [
        line
        for line in CATALOGUE_DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith(("## ", "### "))
    ]
    missing = [name for name in FACT_TYPES if not any(name in h for h in headings)]
    assert missing == []


def test_each_example_in_the_catalogue_doc_sits_under_the_heading_of_its_type() -> None:
    text = CATALOGUE_DOC.read_text(encoding="utf-8")
    for match in JSON_BLOCK.finditer(text):
        headings = [
            line for line in text[: match.start()].splitlines() if line.startswith(("## ", "### "))
        ]
        quoted_type = json.loads(match.group(1))["type"]
        assert headings, f"{quoted_type} example comes before any heading"
        assert f"`{quoted_type}`" in headings[-1], f"{quoted_type} example under {headings[-1]}"


def assert_one_receipt_per_line(receipts: list[Receipt], lines: list[dict[str, Any]]) -> None:
    assert [r.event_id for r in receipts] == [raw["event_id"] for raw in lines]
    assert not any(r.duplicate for r in receipts)
    seqs = [r.seq for r in receipts]
    assert all(a < b for a, b in itertools.pairwise(seqs)), seqs


def test_the_examples_import_into_a_fresh_ledger_in_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONSENT_LEDGER_MASTER_KEY", raising=False)
    lines = example_lines()
    app = open_ledger(Settings(data_dir=tmp_path))
    try:
        receipts = app.append(lines)
    finally:
        app.close()
    assert_one_receipt_per_line(receipts, lines)
