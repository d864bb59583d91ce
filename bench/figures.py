"""The suite's figures and its table: each row a figure, its baseline from the same run, a ratio.

A ratio is only worth printing when the figure was taken under the load its label names. A row
that could not reach that load keeps its figure but ``refuse``s the ratio, with the reason: the
table then prints ``refused`` in the ratio column and the reason under the table, and the row is
judged neither PASS nor FAIL (the performance issue's decision row once printed a ratio measured
at 37% of the load it claimed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness import markdown_table


@dataclass
class Figure:
    """One row of the table: ``value`` against ``baselines[0]`` (the baseline the target names;
    any further baselines are context, printed as extra lines with their own ratios)."""

    row: str
    what: str
    value: float | None
    unit: str
    target: str
    passed: bool | None
    baselines: list[tuple[str, float | None]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    refused: str = ""
    """Why no ratio is reported (the load reached fell short of the load named): empty if one is."""

    def ratio(self, index: int = 0) -> float | None:
        """``value / baselines[index]``, or None when refused, missing or divided by zero."""
        if self.refused or index >= len(self.baselines):
            return None
        return ratio(self.value, self.baselines[index][1])

    def verdict(self) -> str:
        if self.refused or self.passed is None:
            return "-"
        return "PASS" if self.passed else "FAIL"

    def record(self) -> dict[str, Any]:
        """The JSON form: every field, and the main ratio as printed."""
        return dict(asdict(self), ratio=self.ratio())


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ms", "s"):
        return f"{value:.2f} {unit}"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.0f} {unit}"


def format_table(figures: list[Figure]) -> str:
    """The markdown table, then one line per refused ratio or note, numbered as the rows are."""
    headers = ["#", "figure", "value", "baseline", "ratio", "target", "result"]
    lines: list[list[str]] = []
    notes: list[str] = []
    for n, f in enumerate(figures, 1):
        bases = f.baselines or [("", None)]
        for i, (what, base) in enumerate(bases):
            r = f.ratio(i)
            shown = "refused" if f.refused else "-" if r is None else f"{r:.2f}"
            lines.append(
                [
                    str(n) if i == 0 else "",
                    f.what if i == 0 else "  (same figure)",
                    number(f.value, f.unit),
                    f"{number(base, f.unit)} ({what})" if what else "-",
                    shown,
                    f.target if i == 0 else "",
                    f.verdict() if i == 0 else "",
                ]
            )
        if f.refused:
            notes.append(f"{n}. no ratio: {f.refused}")
        if f.note:
            notes.append(f"{n}. {f.note}")
    table = markdown_table(headers, lines, left=2)
    return table + ("\n\n" + "\n".join(notes) if notes else "")


def reached_enough(reached: float, target: float, share: float = 0.9) -> str:
    """Empty when ``reached`` is at least ``share`` of ``target``; else why a ratio is refused."""
    if target > 0 and reached >= share * target:
        return ""
    return (
        f"the load reached ({reached:,.0f} ev/s) is {reached / target:.0%} of the target load "
        f"({target:,.0f} ev/s), below {share:.0%}: the figure was not taken at the load it names"
        if target > 0
        else "no target load (the maximum ingest rate was not measured)"
    )
