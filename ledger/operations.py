"""What an operator asks of the ledger beyond appends and reads: keys, checking the stored log,
exporting a bundle, re-wrapping subject keys under a new master key.

The service layer of the ledger has three doors, and the entrypoints (``api/http/routes``,
``api/cli``) use only these: :class:`ledger.application.LedgerApplication` for appends and
erasures, :mod:`projections.queries` for questions, and this module (with
:mod:`projections.operations` for the read models) for an operator's commands. Each method
takes plain values and returns plain results; none knows HTTP or the command line.
"""

from __future__ import annotations

import base64
import getpass
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ledger.access_records import AccessRecord
from ledger.application import LedgerApplication
from ledger.committer import CommitterAddress, CommitterProcess
from ledger.config import Settings, generate_keys, load_keyring
from ledger.errors import LedgerError
from ledger.export import ExportError, ExportResult, Progress, ScopeNotFoundError, export_bundle
from ledger.export_jobs import (
    BundleNotReadyError,
    ExportJob,
    ExportJobError,
    ExportJobs,
    ExportPolicy,
    JobNotFoundError,
    JobState,
    QueueFullError,
    open_job_table,
)
from ledger.integrity import LogReport, check_log
from ledger.mapper import format_time
from ledger.receipts import DecodedEvent, Receipt
from ledger.signing import write_private_file
from ledger.subject_keys import KEY_BYTES, MASTER_KEY_ENV, new_master_key_text
from ledger.verifier.note import format_verifier_key

__all__ = [
    "MASTER_KEY_ENV",
    "BundleNotReadyError",
    "CommitterProcess",
    "ExportError",
    "ExportJob",
    "ExportJobError",
    "ExportJobs",
    "ExportPolicy",
    "ExportResult",
    "JobNotFoundError",
    "JobState",
    "LedgerOperations",
    "LogReport",
    "QueueFullError",
    "RotationError",
    "ScopeNotFoundError",
    "export_scope",
    "generate_keys",
    "rotate_master_key",
    "start_committer",
]


class RotationError(LedgerError):
    """A master-key rotation that cannot start; the message says what to do. ``misused``:
    the command was given the wrong options (rather than finding a rotation interrupted)."""

    def __init__(self, message: str, *, misused: bool = False) -> None:
        super().__init__(message)
        self.misused = misused


def start_committer(settings: Settings, *, wait: bool = True) -> CommitterProcess:
    """Start the process that commits the appends of every worker of ``serve``
    (:mod:`ledger.committer`); ``stop()`` it after the workers. Its address is in
    :meth:`CommitterProcess.environment`, for the workers to find. Without ``wait``, return
    before it listens (the workers' first appends wait for it)."""
    process = CommitterProcess(settings.storage(), CommitterAddress.new())
    process.start(wait=wait)
    return process


def export_scope(
    *,
    subject_pseudonym: str | None = None,
    recipient: str | None = None,
    incident: str | None = None,
    period: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """The scope of a bundle (as :class:`ledger.verifier.scopes.Closure` takes it) from the
    one choice given; the whole log when none is."""
    if subject_pseudonym is not None:
        return {"kind": "subject", "subject": subject_pseudonym}
    if recipient is not None:
        return {"kind": "recipient", "recipient_id": recipient}
    if incident is not None:
        return {"kind": "incident", "incident_id": incident}
    if period is not None:
        start, end = period
        return {"kind": "period", "from": format_time(start), "to": format_time(end)}
    return {"kind": "all"}


class LedgerOperations:
    """An operator's commands on one opened ledger."""

    def __init__(self, app: LedgerApplication, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    @property
    def storage(self) -> str:
        """Where the log is, for messages (``SQLite <path>`` or ``PostgreSQL (schema s)``)."""
        return self.settings.describe_storage()

    def verifier_keys(self) -> list[str]:
        """The verifier keys of the log's checkpoints (C2SP form), the active one last."""
        keyring = load_keyring(self.settings)
        assert self.app.checkpointer is not None
        origin = self.app.checkpointer.origin
        return [format_verifier_key(origin, key) for key in keyring.public_keys.values()]

    def verify_log(self, progress: Callable[[int], None] | None = None) -> LogReport:
        """Check every stored event, claim and checkpoint (see :func:`check_log`)."""
        keyring = load_keyring(self.settings)
        checkpointer = self.app.checkpointer
        return check_log(
            self.app.ledger,
            keyring,
            progress=progress,
            origin=checkpointer.origin if checkpointer else None,
            mentions=self.app.mentions_opened,
        )

    def export(
        self,
        scope: Mapping[str, Any],
        target: Path,
        report_settings: Mapping[str, Any],
        progress: Progress | None = None,
    ) -> tuple[ExportResult, list[str]]:
        """Write the bundle of ``scope`` to ``target``; the result and the verifier keys it
        names (the active one last)."""
        keys = self.verifier_keys()
        result = export_bundle(
            self.app,
            scope,
            target,
            verifier_keys=keys,
            report_settings=report_settings,
            progress=progress,
        )
        return result, keys

    def export_jobs(
        self,
        directory: Path,
        report_settings: Mapping[str, Any],
        policy: ExportPolicy | None = None,
    ) -> ExportJobs:
        """The export jobs of this ledger (``POST /v1/exports``): their table beside the log,
        their bundles in ``directory``; ``close()`` it."""
        table = open_job_table(
            self.settings.database_url, self.settings.database_schema, self.settings.data_dir
        )
        return ExportJobs(
            self.app,
            table,
            directory,
            verifier_keys=self.verifier_keys(),
            report_settings=report_settings,
            policy=policy,
        )

    def record_operator_read(
        self, action: str, events: Sequence[DecodedEvent], details: Mapping[str, str | int]
    ) -> Receipt | None:
        """Record that an operator opened ``events``' personal data on the command line
        (``personal_data.accessed``, client ``cli:<user>``), before they are shown; None when
        they show nobody's."""
        record = AccessRecord.of_events(
            events, client=f"cli:{_user()}", action=action, scope="operator", details=details
        )
        return None if record is None else self.app.record_access(record)

    def subject_pseudonym(self, subject_ref: str) -> str:
        """The pseudonym of a reference's current lifecycle (a stand-in for an unknown or
        erased one, which names nothing)."""
        return self.app.subject_keys.pseudonym(subject_ref)


def rotate_master_key(
    settings: Settings,
    open_app: Callable[[], LedgerApplication],
    new_key_file: Path | None,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, Path]:
    """Re-wrap every subject key under a new master key; the count and the key file.

    The new key is written (mode 0600) beside the target as ``<name>.new`` before anything is
    wrapped under it, and moved into place only after the one re-wrapping transaction
    committed; a failed re-wrap removes it again (the store still opens with the old key).
    """
    env = os.environ if environ is None else environ
    if MASTER_KEY_ENV in env and new_key_file is None:
        raise RotationError(
            f"the master key comes from ${MASTER_KEY_ENV}: give --new-key-file, then set "
            "the variable to that file's content",
            misused=True,
        )
    target = new_key_file or settings.master_key_file
    staged = target.with_name(target.name + ".new")
    if staged.exists():
        raise RotationError(
            f"{staged} exists: a rotation was interrupted; it holds the key the store may be "
            "wrapped under now. Move it to the key file's place if opening with the old key "
            "fails, else delete it, then run again."
        )
    text = new_master_key_text()
    new_key = base64.b64decode(text.strip())
    assert len(new_key) == KEY_BYTES
    write_private_file(staged, text)
    try:
        app = open_app()
        try:
            count = app.subject_keys.rotate_master_key(new_key)
        finally:
            app.close()
    except BaseException:
        staged.unlink()
        raise
    staged.replace(target)
    return count, target


def _user() -> str:
    """The operating-system user running the command (for the record of a read)."""
    try:
        return getpass.getuser()[:100] or "unknown"
    except (OSError, KeyError):
        return "unknown"
