"""The example data set (``examples/events.jsonl``): where it is, and its facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "events.jsonl"


def example_lines() -> list[dict[str, Any]]:
    """Every fact of the example data set, in file order."""
    lines = [line for line in EXAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.loads(line) for line in lines]
