"""Exporting and verifying bundles in tests: the report settings, the verifier keys a
regulator would be given, and one call that exports a scope."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ledger.application import LedgerApplication
from ledger.config import Settings, load_keyring
from ledger.export import ExportResult, export_bundle
from ledger.verifier.note import Verifier, format_verifier_key, parse_verifier_key

REPORT_SETTINGS: dict[str, Any] = {
    "default_minimum_age": 18,
    "authority_deadline_hours": 72,
    "request_due_days": 15,
    "request_due_days_by_jurisdiction": {},
}
"""The read models' defaults, as the report is rendered with them."""


def verifier_keys(app: LedgerApplication, settings: Settings) -> list[str]:
    """The ledger's verifier keys in C2SP form (what ``consent-ledger keys`` prints)."""
    assert app.checkpointer is not None
    origin = app.checkpointer.origin
    return [format_verifier_key(origin, k) for k in load_keyring(settings).public_keys.values()]


def trusted(app: LedgerApplication, settings: Settings) -> list[Verifier]:
    """The keys a regulator verifies with, parsed."""
    return [parse_verifier_key(key) for key in verifier_keys(app, settings)]


def export(
    app: LedgerApplication,
    settings: Settings,
    scope: Mapping[str, Any],
    target: Path,
    report_settings: Mapping[str, Any] = REPORT_SETTINGS,
) -> ExportResult:
    """Export ``scope`` to ``target`` (a new directory, or a .zip)."""
    return export_bundle(
        app,
        scope,
        target,
        verifier_keys=verifier_keys(app, settings),
        report_settings=report_settings,
    )
