"""Disclosure history: one row per subject per disclosure, with a compliance verdict.

GDPR 15(1)(c) asks for the specific recipients, so a row names the recipient; the query side
joins its registered name, role and country. The verdict (``recipient_unregistered``,
``recipient_terminated``, ``legal_basis_not_permitted``, ``consent_missing``,
``not_de_identified``, ``lawful_exception`` or ``consent_valid``) is computed from the log by
:func:`ledger.verifier.verdicts.disclosure_verdict`, the function the offline verifier's report
uses too; a violation is still recorded (the ledger records facts, it does not hide them).

A later fact that changes the answer (a back-dated withdrawal, a material policy change, an age
attestation, a recipient's registration) recomputes the affected rows, so the rows are always
the function of the whole log, whatever order the facts were recorded in. A recipient's row is
the fold of its facts in log order (:func:`ledger.verifier.verdicts.recipient_after`), kept in
``proj_dc_recipient_facts`` so that a correction of any of them folds them again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import orjson

from ledger.verifier.consent_rules import declared_basis, moment_text, verdict_at
from ledger.verifier.verdicts import (
    NOTICE_DUE,
    NOTICE_FACTS,
    RECIPIENT_TYPES,
    VIOLATIONS,
    Recipient,
    disclosure_verdict,
    recipient_after,
    stop_notice_of,
)
from projections.base import LoggedEvent, dumps, utc
from projections.consent_book import (
    BOOK_TYPES,
    CONSENT_TYPES,
    KEPT_SUBJECTS,
    ConsentFactsReader,
    retired_books,
    subjects_and_purposes,
)
from projections.database import ProjectionDatabase, Row, Sql, chunks, marks

RECIPIENTS = "proj_dc_recipients"
RECIPIENT_FACTS = "proj_dc_recipient_facts"
STOP_NOTICES = "proj_dc_stop_notices"
TOLD = "proj_dc_told"
ROWS = "proj_disclosures"
ROW_COLUMNS = (
    "seq",
    "subject",
    "disclosure_id",
    "occurred_at",
    "recipient_id",
    "kind",
    "data_categories",
    "purpose",
    "legal_basis",
    "de_identified",
    "destination_country",
    "policy_version",
    "verdict",
    "violation",
    "consent_seq",
)
RECIPIENT_COLUMNS = (
    "recipient_id, name, role, country, agreement_ref, registered_at, terminated_at, seq"
)


class DisclosureHistory(ConsentFactsReader):
    name = "disclosures"
    version = 5
    topics = BOOK_TYPES | RECIPIENT_TYPES | NOTICE_FACTS | {"disclosure.recorded"}
    retired_tables = retired_books("proj_dc_")
    tables: ClassVar[Mapping[str, str]] = {
        RECIPIENTS: (
            "recipient_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, "
            "country TEXT NOT NULL, agreement_ref TEXT, registered_at TEXT NOT NULL, "
            "terminated_at TEXT, seq BIGINT NOT NULL"
        ),
        RECIPIENT_FACTS: (
            "seq BIGINT PRIMARY KEY, recipient_id TEXT NOT NULL, type TEXT NOT NULL, "
            "occurred_at TEXT NOT NULL, data TEXT NOT NULL"
        ),
        STOP_NOTICES: (
            "notice_id TEXT PRIMARY KEY, subject TEXT NOT NULL, recipient_id TEXT NOT NULL, "
            "purposes TEXT NOT NULL"
        ),
        TOLD: (
            "subject TEXT NOT NULL, recipient_id TEXT NOT NULL, purpose TEXT NOT NULL, "
            "told_at TEXT NOT NULL, PRIMARY KEY (subject, recipient_id, purpose)"
        ),
        ROWS: (
            "seq BIGINT NOT NULL, subject TEXT NOT NULL, disclosure_id TEXT NOT NULL, "
            "occurred_at TEXT NOT NULL, recipient_id TEXT NOT NULL, kind TEXT NOT NULL, "
            "data_categories TEXT NOT NULL, purpose TEXT NOT NULL, legal_basis TEXT NOT NULL, "
            "de_identified INTEGER NOT NULL, destination_country TEXT NOT NULL, "
            "policy_version TEXT NOT NULL, verdict TEXT NOT NULL, violation INTEGER NOT NULL, "
            "consent_seq BIGINT, PRIMARY KEY (seq, subject)"
        ),
    }
    indexes = (
        f"CREATE INDEX IF NOT EXISTS proj_disclosures_subject ON {ROWS} (subject, occurred_at)",
        f"CREATE INDEX IF NOT EXISTS proj_disclosures_recipient ON {ROWS} "
        "(recipient_id, occurred_at)",
        f"CREATE INDEX IF NOT EXISTS proj_disclosures_time ON {ROWS} (occurred_at)",
        f"CREATE INDEX IF NOT EXISTS proj_dc_recipient_facts_recipient ON {RECIPIENT_FACTS} "
        "(recipient_id, seq)",
    )

    def __init__(self, default_minimum_age: int = 18) -> None:
        self.default_minimum_age = default_minimum_age
        self._complete = False
        """``_latest`` knows every subject with rows (kept since position 0)."""
        self._recipients: dict[str, Recipient] = {}
        """The recipients as their rows hold them, kept from page to page like the book's
        facts (read again after a :meth:`reset`)."""
        self._recipients_read = False
        self._latest: dict[str, str] = {}
        """Kept from page to page like the book's facts: the latest ``occurred_at`` of the rows
        this projection wrote for a subject (a later fact of the subject changes none of its
        rows when it is later than that). Complete while ``_complete`` is."""
        self._page = _Page()

    def reset(self, empty: bool) -> None:
        self._recipients_read = False
        self._latest = {}
        self._complete = empty

    def begin(self, sql: Sql, events: Sequence[LoggedEvent] = ()) -> None:
        if len(self._latest) > KEPT_SUBJECTS:
            self.reset(empty=False)
        if not self._recipients_read:
            self._recipients_read = True
            self._recipients = {
                r[0]: _recipient(r)
                for r in sql.execute(f"SELECT {RECIPIENT_COLUMNS} FROM {RECIPIENTS}")
            }
        self._page = _Page()

    def version_tag(self) -> str:
        # Verdicts depend on the minimum age: another setting means other rows.
        return f"{self.version}-minimum-age-{self.default_minimum_age}"

    def process(self, sql: Sql, event: LoggedEvent) -> None:
        # A consent fact is the book's (recorded before this page's events come here): only
        # the verdicts it changes are noted.
        if event.type in RECIPIENT_TYPES:
            self._record_recipient(sql, event)
        elif event.type in NOTICE_FACTS:
            self._record_notice(sql, event)
            return
        elif event.type == "disclosure.recorded":
            self._record_disclosure(event)  # its verdicts at the end of the page
            return
        self._recompute_after(event)

    def correct(self, sql: Sql, original: LoggedEvent, corrected: LoggedEvent) -> None:
        self.flush(sql)  # what came before the correction, in the tables it changes
        # A consent fact's correction is the book's (applied before this page's events come
        # here): only the verdicts it changes are noted.
        if original.type == "disclosure.recorded":
            sql.execute(f"DELETE FROM {ROWS} WHERE seq = ?", (original.seq,))
            self._record_disclosure(corrected)
        elif original.type in RECIPIENT_TYPES:
            self._correct_recipient(sql, original, corrected)
        if original.type == "policy.version_published":
            # Rows citing it (the purposes' declared bases) and rows under consent may change.
            self._page.policies.update({original.data["version"], corrected.data["version"]})
        self._recompute_after(original)
        self._recompute_after(corrected)

    def flush(self, sql: Sql) -> None:
        """The page's rows and the verdicts its facts change, computed from the facts as the page
        leaves them (a verdict is a function of them: see :meth:`_recompute_after`)."""
        page, self._page = self._page, _Page()
        stored = self._rows_to_recompute(sql, page)
        asking = [row for row in page.rows if row[8] == "consent"]
        asking += [row for row in stored.values() if row[5] == "consent"]
        subjects = [row[1] for row in asking]
        decisions = self.book.decisions_of(sql, subjects) if subjects else {}
        told = self._told_of(sql, subjects)
        ages = self.book.ages_of(sql, subjects) if subjects else {}
        policies = self.book.policies(sql)

        def verdict(
            subject: str,
            occurred_at: str,
            recipient_id: str,
            purpose: str,
            legal_basis: str,
            kind: str,
            de_identified: bool,
            policy_version: str,
        ) -> tuple[str, int | None]:
            return disclosure_verdict(
                occurred_at,
                legal_basis,
                self._recipients.get(recipient_id),
                lambda: verdict_at(
                    occurred_at,
                    decisions[subject].get(purpose, []),
                    policies,
                    ages.get(subject),
                    self.default_minimum_age,
                ),
                declared_basis=declared_basis(policies, policy_version, purpose),
                kind=kind,
                de_identified=de_identified,
                told_at=told.get((subject, recipient_id, purpose)),
            )

        if page.rows:
            new = []
            for row in page.rows:
                outcome, consent_seq = verdict(
                    row[1], row[3], row[4], row[7], row[8], row[5], bool(row[9]), row[11]
                )
                new.append((*row, outcome, int(outcome in VIOLATIONS), consent_seq))
            sql.insert(ROWS, ROW_COLUMNS, new)
            for row in new:
                if row[3] > self._latest.get(row[1], ""):
                    self._latest[row[1]] = row[3]
        changed = []
        for (seq, subject), row in stored.items():
            outcome, consent_seq = verdict(
                subject, row[2], row[3], row[4], row[5], row[9], bool(row[10]), row[11]
            )
            now = (outcome, int(outcome in VIOLATIONS), consent_seq)
            if now != (row[6], int(row[7]), None if row[8] is None else int(row[8])):
                changed.append((*now, seq, subject))
        if changed:
            sql.executemany(
                f"UPDATE {ROWS} SET verdict = ?, violation = ?, consent_seq = ? "
                "WHERE seq = ? AND subject = ?",
                changed,
            )

    # -- recording -----------------------------------------------------------------------------

    def _record_notice(self, sql: Sql, event: LoggedEvent) -> None:
        """A withdrawal's notice (kept until it is delivered), or its delivery: from then on the
        recipient was told, and the subject's rows under consent to those purposes at or after
        that moment are judged again (``disclosed_after_notice``)."""
        if event.type == NOTICE_DUE:
            found = stop_notice_of(event.data)
            if found is not None:
                notice_id, notice = found
                sql.execute(
                    f"INSERT INTO {STOP_NOTICES} (notice_id, subject, recipient_id, purposes) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (notice_id, notice.subject, notice.recipient_id, dumps(notice.purposes)),
                )
            return
        rows = sql.execute(
            f"SELECT subject, recipient_id, purposes FROM {STOP_NOTICES} WHERE notice_id = ?",
            (event.data.get("notice_id"),),
        )
        for subject, recipient_id, purposes in rows:
            for purpose in orjson.loads(purposes):
                sql.execute(
                    f"INSERT INTO {TOLD} (subject, recipient_id, purpose, told_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (subject, recipient_id, purpose) DO UPDATE "
                    f"SET told_at = CASE WHEN excluded.told_at < {TOLD}.told_at "
                    f"THEN excluded.told_at ELSE {TOLD}.told_at END",
                    (subject, recipient_id, purpose, event.occurred_at),
                )
                key = (str(subject), str(purpose))
                since = self._page.since.get(key)
                if since is None or event.occurred_at < since:
                    self._page.since[key] = event.occurred_at

    def _told_of(self, sql: Sql, subjects: Sequence[str]) -> dict[tuple[str, str, str], str]:
        """(subject, recipient, purpose) -> when the recipient was told of the withdrawal."""
        told: dict[tuple[str, str, str], str] = {}
        for chunk in chunks(sorted(set(subjects))):
            for subject, recipient_id, purpose, told_at in sql.execute(
                f"SELECT subject, recipient_id, purpose, told_at FROM {TOLD} "
                f"WHERE subject IN ({marks(len(chunk))})",
                chunk,
            ):
                told[(str(subject), str(recipient_id), str(purpose))] = str(told_at)
        return told

    def _record_recipient(self, sql: Sql, event: LoggedEvent) -> None:
        sql.execute(
            f"INSERT INTO {RECIPIENT_FACTS} (seq, recipient_id, type, occurred_at, data) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                event.seq,
                event.data["recipient_id"],
                event.type,
                event.occurred_at,
                dumps(event.data),
            ),
        )
        self._fold_recipient(sql, event.data["recipient_id"])

    def _correct_recipient(self, sql: Sql, original: LoggedEvent, corrected: LoggedEvent) -> None:
        sql.execute(
            f"UPDATE {RECIPIENT_FACTS} SET occurred_at = ?, data = ? WHERE seq = ?",
            (corrected.occurred_at, dumps(corrected.data), original.seq),
        )
        self._fold_recipient(sql, original.data["recipient_id"])

    def _fold_recipient(self, sql: Sql, recipient_id: str) -> None:
        """The recipient's row: its facts folded again, in log order."""
        recipient: Recipient | None = None
        for seq, type_name, occurred_at, data in sql.execute(
            f"SELECT seq, type, occurred_at, data FROM {RECIPIENT_FACTS} WHERE recipient_id = ? "
            "ORDER BY seq",
            (recipient_id,),
        ):
            recipient = recipient_after(
                recipient, type_name, int(seq), occurred_at, orjson.loads(data)
            )
        sql.execute(f"DELETE FROM {RECIPIENTS} WHERE recipient_id = ?", (recipient_id,))
        if recipient is None:
            self._recipients.pop(recipient_id, None)
            return
        sql.execute(
            f"INSERT INTO {RECIPIENTS} ({RECIPIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                recipient.recipient_id,
                recipient.name,
                recipient.role,
                recipient.country,
                recipient.agreement_ref,
                recipient.registered_at,
                recipient.terminated_at,
                recipient.seq,
            ),
        )
        self._recipients[recipient_id] = recipient

    def _record_disclosure(self, event: LoggedEvent) -> None:
        """Its rows, without their verdicts yet (see :meth:`flush`)."""
        data = event.data
        for subject in dict.fromkeys(item["subject"] for item in data["subjects"]):
            self._page.rows.append(
                (
                    event.seq,
                    subject,
                    data["disclosure_id"],
                    event.occurred_at,
                    data["recipient_id"],
                    data["kind"],
                    dumps(data["data_categories"]),
                    data["purpose"],
                    data["legal_basis"],
                    int(data["de_identified"]),
                    data["destination_country"],
                    data["policy_version"],
                )
            )

    # -- verdicts ------------------------------------------------------------------------------

    def _recompute_after(self, event: LoggedEvent) -> None:
        """Note the stored verdicts ``event`` can change, and only those: the page's end
        computes them again (the page's own new rows are computed there anyway)."""
        data = event.data
        page = self._page
        if event.type == "disclosure.recorded":
            page.seqs.add(event.seq)
        elif event.type in CONSENT_TYPES:
            # A verdict depends on decisions at or before its own moment: earlier rows stand.
            for key in subjects_and_purposes(event):
                since = page.since.get(key)
                if since is None or event.occurred_at < since:
                    page.since[key] = event.occurred_at
        elif event.type == "subject.age_attested":
            page.subjects.add(data["subject"])
        elif event.type == "policy.version_published":
            if data["material"]:
                effective_at = utc(data["effective_at"])
                if page.policy_since is None or effective_at < page.policy_since:
                    page.policy_since = effective_at
        elif event.type in RECIPIENT_TYPES:
            page.recipients.add(data["recipient_id"])

    def _rows_to_recompute(self, sql: Sql, page: _Page) -> dict[tuple[int, str], Row]:
        """The stored rows the page's facts can change: (seq, subject, occurred_at,
        recipient_id, purpose, legal_basis, verdict, violation, consent_seq, kind,
        de_identified, policy_version) by key."""
        columns = (
            "seq, subject, occurred_at, recipient_id, purpose, legal_basis, verdict, violation, "
            "consent_seq, kind, de_identified, policy_version"
        )
        found: dict[tuple[int, str], Row] = {}

        def select(where: str, params: Sequence[Any], keep: Callable[[Row], bool]) -> None:
            for row in sql.execute(f"SELECT {columns} FROM {ROWS} WHERE {where}", params):
                if keep(row):
                    found[(int(row[0]), row[1])] = row

        def changed_by_subject(row: Row) -> bool:
            if row[1] in page.subjects:
                return True
            since = page.since.get((row[1], row[4]))
            return since is not None and row[2] >= since

        def may_have_rows(subject: str, since: str = "") -> bool:
            latest = self._latest.get(subject)
            return latest >= since if latest is not None else not self._complete

        # An age attestation changes all of its subject's rows, a decision those at or after it.
        aged = sorted(s for s in page.subjects if may_have_rows(s))
        for chunk in chunks(aged):
            select(f"subject IN ({marks(len(chunk))})", chunk, lambda row: True)
        decided = sorted(
            {s for (s, _), since in page.since.items() if may_have_rows(s, since)} - page.subjects
        )
        for chunk in chunks(decided):
            members = set(chunk)
            first = min(since for (subject, _), since in page.since.items() if subject in members)
            select(
                f"subject IN ({marks(len(chunk))}) AND occurred_at >= ?",
                [*chunk, first],
                changed_by_subject,
            )
        for seqs in chunks(sorted(page.seqs)):
            select(f"seq IN ({marks(len(seqs))})", seqs, lambda row: True)
        if page.policy_since is not None:
            select(
                "legal_basis = 'consent' AND occurred_at >= ?",
                [page.policy_since],
                lambda row: True,
            )
        for versions in chunks(sorted(page.policies)):
            select(f"policy_version IN ({marks(len(versions))})", versions, lambda row: True)
        if page.policies:
            # A corrected version can change the consent it was given under (its minimum age,
            # whether it accepts a guardian's consent): every row under consent is asked again.
            select("legal_basis = 'consent'", [], lambda row: True)
        for ids in chunks(sorted(page.recipients)):
            select(f"recipient_id IN ({marks(len(ids))})", ids, lambda row: True)
        return found


@dataclass
class _Page:
    """What a page of the disclosure history holds until its end."""

    rows: list[Row] = field(default_factory=list)
    """New rows (without their verdicts), in log order."""
    seqs: set[int] = field(default_factory=set)
    """Disclosures whose stored rows are computed again (a corrected one's)."""
    since: dict[tuple[str, str], str] = field(default_factory=dict)
    """(subject, purpose): rows at or after this moment are computed again."""
    subjects: set[str] = field(default_factory=set)
    """Subjects whose rows are all computed again (an age attestation)."""
    policy_since: str | None = None
    """Rows under consent at or after this moment (a material policy version)."""
    policies: set[str] = field(default_factory=set)
    """Corrected policy versions: the rows citing them, and every row under consent."""
    recipients: set[str] = field(default_factory=set)


def _recipient(r: Row) -> Recipient:
    return Recipient(r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7]))


@dataclass(frozen=True)
class DisclosureRow:
    seq: int
    subject: str
    disclosure_id: str
    occurred_at: str
    recipient_id: str
    recipient_name: str | None
    recipient_role: str | None
    recipient_country: str | None
    kind: str
    data_categories: list[str]
    purpose: str
    legal_basis: str
    de_identified: bool
    destination_country: str
    policy_version: str
    verdict: str
    violation: bool
    consent_seq: int | None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class DisclosureHistoryView:
    """Disclosures by subject, by recipient and by period (occurred_at, end exclusive)."""

    COLUMNS = (
        "d.seq, d.subject, d.disclosure_id, d.occurred_at, d.recipient_id, r.name, r.role, "
        "r.country, d.kind, d.data_categories, d.purpose, d.legal_basis, d.de_identified, "
        "d.destination_country, d.policy_version, d.verdict, d.violation, d.consent_seq"
    )

    def __init__(self, db: ProjectionDatabase) -> None:
        self.db = db

    def find(
        self,
        *,
        subject: str | None = None,
        recipient_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        violations_only: bool = False,
        after: tuple[str, int, str] | None = None,
        limit: int = 1000,
    ) -> list[DisclosureRow]:
        """Rows in (occurred_at, seq, subject) order; ``after``: the page before's last row."""
        where: list[str] = []
        params: list[Any] = []
        for condition, value in (
            ("d.subject = ?", subject),
            ("d.recipient_id = ?", recipient_id),
            ("d.occurred_at >= ?", None if start is None else moment_text(start)),
            ("d.occurred_at < ?", None if end is None else moment_text(end)),
        ):
            if value is not None:
                where.append(condition)
                params.append(value)
        if violations_only:
            where.append("d.violation = 1")
        if after is not None:
            where.append(
                "(d.occurred_at > ? OR (d.occurred_at = ? AND (d.seq > ? OR "
                "(d.seq = ? AND d.subject > ?))))"
            )
            params += [after[0], after[0], after[1], after[1], after[2]]
        query = f"SELECT {self.COLUMNS} FROM {ROWS} d LEFT JOIN {RECIPIENTS} r "
        query += "ON r.recipient_id = d.recipient_id"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY d.occurred_at, d.seq, d.subject LIMIT ?"
        params.append(limit)
        return [_row(r) for r in self.db.query(query, params)]

    def find_all(
        self,
        *,
        subject: str | None = None,
        recipient_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        violations_only: bool = False,
        page: int = 2000,
    ) -> Iterator[DisclosureRow]:
        """Every row :meth:`find` would give for these filters, read a page at a time."""
        after: tuple[str, int, str] | None = None
        while True:
            rows = self.find(
                subject=subject,
                recipient_id=recipient_id,
                start=start,
                end=end,
                violations_only=violations_only,
                after=after,
                limit=page,
            )
            yield from rows
            if len(rows) < page:
                return
            after = (rows[-1].occurred_at, rows[-1].seq, rows[-1].subject)

    def subjects_disclosed_to(self, recipient_id: str, start: str, end: str) -> list[str]:
        """Pseudonyms whose data went to the recipient in [start, end): for incidents."""
        rows = self.db.query(
            f"SELECT DISTINCT subject FROM {ROWS} WHERE recipient_id = ? AND occurred_at >= ? "
            "AND occurred_at < ? ORDER BY subject",
            (recipient_id, utc(start), utc(end)),
        )
        return [str(r[0]) for r in rows]


def _row(r: Sequence[Any]) -> DisclosureRow:
    return DisclosureRow(
        seq=int(r[0]),
        subject=r[1],
        disclosure_id=r[2],
        occurred_at=r[3],
        recipient_id=r[4],
        recipient_name=r[5],
        recipient_role=r[6],
        recipient_country=r[7],
        kind=r[8],
        data_categories=orjson.loads(r[9]),
        purpose=r[10],
        legal_basis=r[11],
        de_identified=bool(r[12]),
        destination_country=r[13],
        policy_version=r[14],
        verdict=r[15],
        violation=bool(r[16]),
        consent_seq=None if r[17] is None else int(r[17]),
    )
