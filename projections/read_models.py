"""The read models of one ledger, wired together: database, runner and query views.

Their settings (:data:`READ_MODEL_SETTINGS`, in docs/configuration.md) are query-time
parameters, so changing one needs no rebuild, except the minimum age (a ledger setting), which
disclosure verdicts are computed with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from ledger.application import LedgerApplication
from ledger.config import Setting, SettingGroup, Settings, SettingsError
from projections.consent_book import ConsentFacts
from projections.consent_state import ConsentState, ConsentStateView
from projections.database import ProjectionDatabase
from projections.disclosures import DisclosureHistory, DisclosureHistoryView
from projections.incidents import IncidentRegister, IncidentRegisterView
from projections.notices import NoticeService, file_endpoints
from projections.requests import RequestRegister, RequestRegisterView
from projections.retention import Retention, RetentionView
from projections.retention_rules import DEFAULT_LEGAL_HOLD_DAYS
from projections.runner import ProjectionRunner


def _by_jurisdiction(raw: str | None) -> dict[str, int]:
    by_jurisdiction: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in (raw or "").split(","))):
        match = re.fullmatch(r"([A-Z]{2})=(\d{1,3})", part)
        if match is None:
            raise SettingsError(
                "CONSENT_LEDGER_REQUEST_DUE_DAYS_BY_JURISDICTION takes CODE=DAYS pairs "
                f"separated by commas, like EU=30,CN=15; {part!r} is not one"
            )
        by_jurisdiction[match[1]] = int(match[2])
    return by_jurisdiction


READ_MODEL_SETTINGS = SettingGroup(
    "The read models (`serve`, `projections`, the query commands)",
    (
        Setting(
            "AUTHORITY_DEADLINE_HOURS",
            "authority_deadline_hours",
            "whole",
            72,
            "incident register: hours from detection to notify the authority",
            low=1,
            high=24 * 365,
        ),
        Setting(
            "REQUEST_DUE_DAYS",
            "request_due_days",
            "whole",
            15,
            "request register: days to answer a data-subject request",
            low=1,
            high=365,
        ),
        Setting(
            "REQUEST_DUE_DAYS_BY_JURISDICTION",
            "request_due_days_by_jurisdiction",
            "text",
            None,
            "per jurisdiction, e.g. `EU=30,CN=15`",
            check=_by_jurisdiction,
        ),
        Setting(
            "LEGAL_HOLD_DAYS",
            "legal_hold_days",
            "whole",
            DEFAULT_LEGAL_HOLD_DAYS,
            "retention: days a refused request holds the subject's data after the refusal "
            "([retention.md](retention.md))",
            low=1,
            high=36_500,
        ),
        Setting(
            "NOTICE_RETRY_SECONDS",
            "notice_retry_seconds",
            "whole",
            10,
            "notices to recipients: seconds before a failed delivery is tried again, doubled "
            "after each failure up to an hour ([notices.md](notices.md))",
            low=1,
            high=3600,
        ),
        Setting(
            "NOTICE_OVERDUE_HOURS",
            "notice_overdue_hours",
            "whole",
            168,
            "notices to recipients: hours after which a notice not acknowledged is overdue",
            low=1,
            high=24 * 365,
        ),
    ),
)


@dataclass(frozen=True)
class ReadModelSettings:
    authority_deadline_hours: int = 72
    request_due_days: int = 15
    request_due_days_by_jurisdiction: Mapping[str, int] = field(default_factory=dict)
    legal_hold_days: int = DEFAULT_LEGAL_HOLD_DAYS
    notice_retry_seconds: int = 10
    notice_overdue_hours: int = 168

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReadModelSettings:
        """The ``CONSENT_LEDGER_*`` read model settings; a bad one raises SettingsError."""
        return cls(**READ_MODEL_SETTINGS.read(environ))


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
                ConsentFacts(),  # read by the next three: the four are a group
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
        # Notices to recipients (docs/notices.md): derived and delivered where the read models
        # are followed (ReadModelOperations.follow); their register is read anywhere.
        self.notices = NoticeService(
            app,
            self.db,
            file_endpoints(settings.data_dir),
            retry_first=timedelta(seconds=read_settings.notice_retry_seconds),
            overdue_after=timedelta(hours=read_settings.notice_overdue_hours),
        )

    def close(self) -> None:
        self.db.close()
