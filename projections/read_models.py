"""The read models of one ledger, wired together: database, runner and query views.

Settings (environment variables; query-time parameters, so changing one needs no rebuild,
except the minimum age, which disclosure verdicts are computed with):

==============================================  =======  ====================================
CONSENT_LEDGER_AUTHORITY_DEADLINE_HOURS          72       hours from detection to the authority
CONSENT_LEDGER_REQUEST_DUE_DAYS                  15       days to answer a data-subject request
CONSENT_LEDGER_REQUEST_DUE_DAYS_BY_JURISDICTION  (none)   per jurisdiction, e.g. ``EU=30,CN=15``
CONSENT_LEDGER_LEGAL_HOLD_DAYS                   365      days a refused request holds its
                                                          subject from retention erasure
==============================================  =======  ====================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ledger.application import LedgerApplication
from ledger.config import Settings, SettingsError
from projections.consent_state import ConsentState, ConsentStateView
from projections.database import ProjectionDatabase
from projections.disclosures import DisclosureHistory, DisclosureHistoryView
from projections.incidents import IncidentRegister, IncidentRegisterView
from projections.requests import RequestRegister, RequestRegisterView
from projections.retention import Retention, RetentionView
from projections.retention_rules import DEFAULT_LEGAL_HOLD_DAYS
from projections.runner import ProjectionRunner


@dataclass(frozen=True)
class ReadModelSettings:
    authority_deadline_hours: int = 72
    request_due_days: int = 15
    request_due_days_by_jurisdiction: Mapping[str, int] = field(default_factory=dict)
    legal_hold_days: int = DEFAULT_LEGAL_HOLD_DAYS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReadModelSettings:
        env = os.environ if environ is None else environ

        def number(name: str, default: int, high: int) -> int:
            raw = env.get(f"CONSENT_LEDGER_{name}") or str(default)
            if not raw.isdigit() or not 1 <= int(raw) <= high:
                raise SettingsError(
                    f"CONSENT_LEDGER_{name}={raw!r} must be a whole number 1..{high}"
                )
            return int(raw)

        by_jurisdiction: dict[str, int] = {}
        raw = env.get("CONSENT_LEDGER_REQUEST_DUE_DAYS_BY_JURISDICTION", "")
        for part in filter(None, (p.strip() for p in raw.split(","))):
            match = re.fullmatch(r"([A-Z]{2})=(\d{1,3})", part)
            if match is None:
                raise SettingsError(
                    "CONSENT_LEDGER_REQUEST_DUE_DAYS_BY_JURISDICTION takes CODE=DAYS pairs "
                    f"separated by commas, like EU=30,CN=15; {part!r} is not one"
                )
            by_jurisdiction[match[1]] = int(match[2])
        return cls(
            authority_deadline_hours=number("AUTHORITY_DEADLINE_HOURS", 72, 24 * 365),
            request_due_days=number("REQUEST_DUE_DAYS", 15, 365),
            request_due_days_by_jurisdiction=by_jurisdiction,
            legal_hold_days=number("LEGAL_HOLD_DAYS", DEFAULT_LEGAL_HOLD_DAYS, 36_500),
        )


def open_projection_database(settings: Settings) -> ProjectionDatabase:
    if settings.database_url is None:
        from projections.sqlite import SQLiteProjectionDatabase

        return SQLiteProjectionDatabase(settings.data_dir / "projections.sqlite3")
    from projections.postgres import PostgresProjectionDatabase

    return PostgresProjectionDatabase(settings.database_url, settings.database_schema)


class ReadModels:
    def __init__(
        self,
        app: LedgerApplication,
        settings: Settings,
        read_settings: ReadModelSettings | None = None,
    ) -> None:
        read_settings = read_settings or ReadModelSettings()
        minimum_age = settings.limits.minimum_age
        self.db = open_projection_database(settings)
        self.runner = ProjectionRunner(
            app,
            self.db,
            [
                ConsentState(),
                DisclosureHistory(minimum_age),
                IncidentRegister(),
                RequestRegister(),
                Retention(),
            ],
        )
        self.consent = ConsentStateView(self.db, minimum_age)
        self.disclosures = DisclosureHistoryView(self.db)
        self.incidents = IncidentRegisterView(self.db, read_settings.authority_deadline_hours)
        self.requests = RequestRegisterView(
            self.db,
            read_settings.request_due_days,
            read_settings.request_due_days_by_jurisdiction,
        )
        self.retention = RetentionView(self.db, minimum_age, read_settings.legal_hold_days)

    def close(self) -> None:
        self.db.close()
