"""The retention job: ask the read model who is due, erase them through the ledger, say why.

:func:`run_retention` runs once: the ``consent-ledger retention run`` command calls it, and
:func:`retention_loop` calls it on a schedule in a thread of every process that runs the read
models (``serve``, ``projections run``). Who is due, and what holds a subject, is decided by
:mod:`projections.retention_rules` over the facts :mod:`projections.retention` keeps; this
module only acts on the answer. The behaviour: ``docs/retention.md``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger.application import LedgerApplication
from ledger.errors import LedgerError, ValidationError
from ledger.vocabulary import ErasureGround
from projections.read_models import ReadModels
from projections.retention import Retention
from projections.retention_rules import SubjectRetention


@dataclass(frozen=True)
class Erased:
    subject: str
    seq: int
    """The ``subject.erased`` event."""
    due_at: str | None


@dataclass
class RetentionOutcome:
    """What a retention run found and did."""

    moment: str
    dry_run: bool
    due: list[SubjectRetention] = field(default_factory=list)
    """Due and not held: erased by a real run (see ``erased``), listed by a dry run."""
    held: list[SubjectRetention] = field(default_factory=list)
    erased: list[Erased] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(pseudonym, why): erased meanwhile, or no longer due when looked at again."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(pseudonym, error): the erasure was refused for another reason."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.moment,
            "dry_run": self.dry_run,
            "due": [s.as_dict() for s in self.due],
            "held": [s.as_dict() for s in self.held],
            "erased": [
                {"subject": e.subject, "seq": e.seq, "due_at": e.due_at} for e in self.erased
            ],
            "skipped": [{"subject": s, "why": why} for s, why in self.skipped],
            "failed": [{"subject": s, "error": error} for s, error in self.failed],
        }


def run_retention(
    app: LedgerApplication, models: ReadModels, now: datetime, dry_run: bool
) -> RetentionOutcome:
    """Find the subjects due at ``now`` and, unless ``dry_run``, erase the ones not held.

    The retention read model is caught up first (when it is stopped at a poison event, that
    raises: retention never decides on a stale view). Each subject is looked at again, caught
    up, just before its erasure, so a fact recorded meanwhile (a new consent, a request) still
    keeps it; that last look is at the ledger's present, so a real run never erases ahead of
    its time, and a ``now`` later than the ledger's clock is refused unless ``dry_run``.
    """
    if not dry_run and now > app.clock():
        raise LedgerError("a retention run that erases uses the present, not a later moment")
    runner = models.runner
    view = models.retention
    runner.catch_up([Retention.name])
    review = view.review(now)
    outcome = RetentionOutcome(review.moment, dry_run, list(review.due), list(review.held))
    if dry_run:
        return outcome
    for candidate in review.due:
        # Looked at again, caught up, at the ledger's present: the last word before the erasure.
        runner.catch_up([Retention.name])
        current = view.subject(candidate.subject, app.clock())
        if current is None or not current.erasable:
            why = "erased meanwhile" if current is None else "no longer due"
            if current is not None and current.held:
                why = "held meanwhile: " + "; ".join(h.describe() for h in current.holds)
            outcome.skipped.append((candidate.subject, why))
            continue
        try:
            receipt = app.erase(
                pseudonym=current.subject,
                ground=ErasureGround.RETENTION_ENDED,
                details=current.details(),
            )
        except ValidationError as exc:
            if any(p.rule == "subject_erased" for p in exc.problems):
                outcome.skipped.append((current.subject, "erased already (by another run)"))
                continue
            outcome.failed.append((current.subject, str(exc)))
            continue
        except Exception as exc:  # one subject's failure must not stop the others' erasure
            outcome.failed.append((current.subject, f"{type(exc).__name__}: {exc}"))
            continue
        outcome.erased.append(Erased(current.subject, receipt.seq, current.due_at))
    return outcome


RETENTION_FIRST_RUN = 600.0
"""Seconds after a process starts before its first scheduled retention run."""

logger = logging.getLogger("consent_ledger.retention")


def retention_loop(
    app: LedgerApplication, models: ReadModels, stop: threading.Event, every: float
) -> None:
    """Erase what retention makes due: first a while after start (so a restart loop does not
    run it each time), then every ``every`` seconds, until ``stop`` is set."""
    wait = min(every, RETENTION_FIRST_RUN)
    while not stop.wait(wait):
        wait = every
        try:
            outcome = run_retention(app, models, datetime.now(UTC), dry_run=False)
        except Exception:
            logger.exception("retention run failed")
            continue
        logger.info(
            "retention run: %d erased, %d held, %d skipped, %d failed",
            len(outcome.erased),
            len(outcome.held),
            len(outcome.skipped),
            len(outcome.failed),
        )
        for subject, error in outcome.failed:
            logger.error("retention: erasing %s failed: %s", subject, error)
