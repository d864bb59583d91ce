"""What an operator asks of the read models: catch them up, follow the log, their status,
rebuild them, run retention.

Beside :mod:`projections.queries` (questions) and :mod:`ledger.operations` (the log's own
commands), this is the service layer's door to the read models for the entrypoints
(``api/cli``, the HTTP app's workers): they call these methods instead of reaching into the
projection runner or the ledger it reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from ledger.application import LedgerApplication
from projections.base import PoisonEventError
from projections.read_models import ReadModels
from projections.retention_job import RetentionOutcome, retention_loop, run_retention
from projections.retention_rules import SubjectRetention
from projections.runner import ProjectionStatus

__all__ = [
    "PoisonEventError",
    "ProjectionStatus",
    "ReadModelOperations",
    "RetentionOutcome",
    "SubjectRetention",
]


class ReadModelOperations:
    """An operator's commands on one ledger's read models."""

    def __init__(self, app: LedgerApplication, models: ReadModels) -> None:
        self.app = app
        self.models = models

    @property
    def names(self) -> list[str]:
        """Every read model, in the order they are run."""
        return list(self.models.runner.projections)

    def head(self) -> int:
        return self.app.head()

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Bring every read model to the head of the log; the events read (one read model
        reading one event counts one, as ``progress`` is told)."""
        return self.models.runner.catch_up(progress=progress)

    def behind(self) -> int:
        """What :meth:`catch_up` has to read: the events each read model has still to
        process, summed."""
        runner = self.models.runner
        head = self.app.head()
        return sum(max(0, head - runner.position(name)) for name in runner.projections)

    def catch_up_each(self) -> list[PoisonEventError]:
        """Bring each read model to the head of the log; the ones stopped at an event say so
        (the others are caught up all the same)."""
        return self.models.runner.catch_up_each()

    def follow(
        self,
        stop: threading.Event,
        on_error: Callable[[PoisonEventError], None],
        retention_every: float | None = None,
    ) -> None:
        """Follow the log until ``stop``; with ``retention_every`` (seconds), run retention
        that often in a thread of its own (retention runs where the read models run). The
        notices to recipients are derived and delivered in a thread of their own too."""
        notices = threading.Thread(
            target=self.models.notices.run, args=(stop,), name="notices", daemon=True
        )
        notices.start()
        if retention_every:
            threading.Thread(
                target=retention_loop,
                args=(self.app, self.models, stop, retention_every),
                name="retention",
                daemon=True,
            ).start()
        try:
            self.models.runner.follow(stop, on_error=on_error)
        finally:  # its round ends before the caller closes the database
            self.models.notices.wake.set()
            notices.join(timeout=30)

    def wake(self) -> None:
        """Have :meth:`follow` look at the log now (after ``stop`` is set, so it sees it)."""
        self.models.runner.wake()
        self.models.notices.wake.set()

    def status(self) -> list[ProjectionStatus]:
        return self.models.runner.status()

    def rebuild(self, names: Sequence[str], progress: Callable[[int], None] | None = None) -> int:
        """Drop ``names`` and rebuild them from the first event, together (they share each
        page's reading and decoding), each with its group (:meth:`with_groups`); an unknown
        name fails before anything is dropped. The
        events read, one read model reading one event counting one (as ``progress`` is told).
        A read model stopped at an event raises its :class:`PoisonEventError` once the others
        are rebuilt."""
        self.check_names(names)
        return self.models.runner.rebuild(list(names), progress=progress)

    def with_groups(self, names: Sequence[str]) -> list[str]:
        """``names`` and the read models of their groups, which a rebuild of any of them
        rebuilds too (docs/projections.md, "Groups"), in the order pages are applied to them;
        an unknown name raises as :meth:`check_names` does."""
        self.check_names(names)
        runner = self.models.runner
        wanted = {member for name in names for member in runner.group(name)}
        return [name for name in runner.projections if name in wanted]

    def check_names(self, names: Sequence[str]) -> None:
        """Raise ``ProjectionError`` (a ledger error) naming the first unknown read model of
        ``names`` and the known ones."""
        for name in names:
            self.models.runner.projection(name)

    def retention(self, moment: datetime, dry_run: bool) -> RetentionOutcome:
        """Find the subjects due at ``moment`` and, unless ``dry_run``, erase those not held."""
        return run_retention(self.app, self.models, moment, dry_run=dry_run)
