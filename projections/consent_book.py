"""The facts consent validity depends on, kept by a projection in tables of its own.

Both the consent-state and the disclosure-history projections need them, and a projection
never reads another's tables, so each keeps a book under its own table prefix.
"""

from __future__ import annotations

from typing import Any

from ledger.verifier.consent_rules import Age, Decision, Policy, Verdict, verdict_at
from projections.base import LoggedEvent, utc
from projections.database import Sql

CONSENT_TYPES = frozenset({"consent.given", "consent.refused", "consent.withdrawn"})
BOOK_TYPES = CONSENT_TYPES | {"policy.version_published", "subject.age_attested"}


class ConsentBook:
    """The tables under one prefix. A projection's own book may cache the policy versions for
    a batch (:meth:`begin`); a reader's book reads them every time."""

    def __init__(self, prefix: str) -> None:
        self._policies: dict[str, Policy] | None = None
        self.decisions_table = f"{prefix}decisions"
        self.policies_table = f"{prefix}policies"
        self.ages_table = f"{prefix}ages"
        self.tables = {
            self.decisions_table: (
                "subject TEXT NOT NULL, purpose TEXT NOT NULL, seq BIGINT NOT NULL, "
                "occurred_at TEXT NOT NULL, decision TEXT NOT NULL, policy_version TEXT NOT NULL, "
                "expires_at TEXT, guardian INTEGER NOT NULL, PRIMARY KEY (subject, purpose, seq)"
            ),
            self.policies_table: (
                "version TEXT PRIMARY KEY, effective_at TEXT NOT NULL, material INTEGER NOT NULL, "
                "minimum_age INTEGER, seq BIGINT NOT NULL"
            ),
            self.ages_table: (
                "subject TEXT NOT NULL, seq BIGINT NOT NULL, age INTEGER NOT NULL, "
                "attested_at TEXT NOT NULL, PRIMARY KEY (subject, seq)"
            ),
        }

    def begin(self, sql: Sql) -> None:
        self._policies = None
        self._policies = self.policies(sql)

    # -- writing -------------------------------------------------------------------------------

    def record(self, sql: Sql, event: LoggedEvent) -> None:
        data = event.data
        if event.type in CONSENT_TYPES:
            decision = event.type.removeprefix("consent.")
            expires = data.get("expires_at")
            sql.executemany(
                f"INSERT INTO {self.decisions_table} (subject, purpose, seq, occurred_at, "
                "decision, policy_version, expires_at, guardian) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        data["subject"],
                        purpose,
                        event.seq,
                        event.occurred_at,
                        decision,
                        data["policy_version"],
                        None if expires is None else utc(expires),
                        int("guardian" in data),
                    )
                    for purpose in dict.fromkeys(data["purposes"])
                ],
            )
        elif event.type == "policy.version_published":
            policy = Policy(
                data["version"],
                utc(data["effective_at"]),
                bool(data["material"]),
                data.get("minimum_age"),
                event.seq,
            )
            sql.execute(
                f"INSERT INTO {self.policies_table} (version, effective_at, material, "
                "minimum_age, seq) VALUES (?, ?, ?, ?, ?)",
                (
                    policy.version,
                    policy.effective_at,
                    int(policy.material),
                    policy.minimum_age,
                    policy.seq,
                ),
            )
            if self._policies is not None:
                self._policies[policy.version] = policy
        elif event.type == "subject.age_attested":
            sql.execute(
                f"INSERT INTO {self.ages_table} (subject, seq, age, attested_at) "
                "VALUES (?, ?, ?, ?)",
                (data["subject"], event.seq, data["age"], event.occurred_at),
            )

    def retract(self, sql: Sql, event: LoggedEvent) -> None:
        """Remove what ``event`` recorded (before recording its corrected form)."""
        if event.type in CONSENT_TYPES:
            sql.execute(f"DELETE FROM {self.decisions_table} WHERE seq = ?", (event.seq,))
        elif event.type == "policy.version_published":
            sql.execute(f"DELETE FROM {self.policies_table} WHERE seq = ?", (event.seq,))
            if self._policies is not None:
                self._policies.pop(event.data["version"], None)
        elif event.type == "subject.age_attested":
            sql.execute(f"DELETE FROM {self.ages_table} WHERE seq = ?", (event.seq,))

    # -- reading -------------------------------------------------------------------------------

    def decisions(self, sql: Sql, subject: str, purpose: str) -> list[Decision]:
        rows = sql.execute(
            f"SELECT seq, occurred_at, decision, policy_version, expires_at, guardian "
            f"FROM {self.decisions_table} WHERE subject = ? AND purpose = ?",
            (subject, purpose),
        )
        return [Decision(int(r[0]), r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def purposes_of(self, sql: Sql, subject: str) -> list[str]:
        rows = sql.execute(
            f"SELECT DISTINCT purpose FROM {self.decisions_table} WHERE subject = ? "
            "ORDER BY purpose",
            (subject,),
        )
        return [str(r[0]) for r in rows]

    def policies(self, sql: Sql) -> dict[str, Policy]:
        if self._policies is not None:
            return self._policies
        rows = sql.execute(
            f"SELECT version, effective_at, material, minimum_age, seq FROM {self.policies_table}"
        )
        return {r[0]: Policy(r[0], r[1], bool(r[2]), r[3], int(r[4])) for r in rows}

    def age(self, sql: Sql, subject: str) -> Age | None:
        rows = sql.execute(
            f"SELECT age, attested_at, seq FROM {self.ages_table} WHERE subject = ? "
            "ORDER BY attested_at DESC, seq DESC LIMIT 1",
            (subject,),
        )
        return Age(int(rows[0][0]), rows[0][1], int(rows[0][2])) if rows else None

    def verdict(
        self, sql: Sql, subject: str, purpose: str, moment: str, default_minimum_age: int
    ) -> Verdict:
        return verdict_at(
            moment,
            self.decisions(sql, subject, purpose),
            self.policies(sql),
            self.age(sql, subject),
            default_minimum_age,
        )


def subjects_and_purposes(event: LoggedEvent) -> list[tuple[str, str]]:
    data: dict[str, Any] = event.data
    return [(data["subject"], p) for p in dict.fromkeys(data["purposes"])]
