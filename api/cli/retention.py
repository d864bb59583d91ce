"""``consent-ledger retention run``: erase the subjects whose retention periods have all passed.

The read models are caught up first, so the run sees every event recorded before it started.
``--dry-run`` lists what a run would do and changes nothing; ``--at`` asks about another moment
(a later one only with ``--dry-run``: a real run never erases ahead of its time). The rule and
the legal holds: ``docs/retention.md``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
import orjson

from api.cli.read_models import TIME, read_models
from projections.operations import RetentionOutcome, SubjectRetention


@click.group("retention")
def retention_group() -> None:
    """Retention: erase what has outlived its purposes' periods."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="List what would be erased and held; erase nothing.")
@click.option(
    "--at",
    "at",
    type=TIME,
    default=None,
    help="Judge at this moment (UTC unless it has an offset); later than now needs --dry-run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def retention_run(ctx: click.Context, dry_run: bool, at: datetime | None, as_json: bool) -> None:
    """Erase every subject due for erasure and not under a legal hold; list the held ones.

    Exit status 0, also when a subject was erased meanwhile by another run (it is reported as
    skipped); 1 when an erasure failed for another reason.
    """
    now = datetime.now(UTC)
    moment = now if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))
    if moment > now and not dry_run:
        raise click.UsageError("--at later than now needs --dry-run: nothing is erased early")
    with read_models(ctx) as operations:
        outcome = operations.retention(moment, dry_run=dry_run)
    if as_json:
        click.echo(orjson.dumps(outcome.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        _print(outcome)
    if outcome.failed:
        raise click.ClickException(f"{len(outcome.failed)} erasure(s) failed")


def _print(outcome: RetentionOutcome) -> None:
    dry = " (dry run: nothing is erased)" if outcome.dry_run else ""
    click.echo(f"retention at {outcome.moment}{dry}")
    erased = {e.subject: e.seq for e in outcome.erased}
    for subject in outcome.due:
        if outcome.dry_run:
            _subject("would erase", subject)
        elif subject.subject in erased:
            _subject("erased", subject, f"event {erased[subject.subject]}")
    for subject in outcome.held:
        _subject("held", subject, *(h.describe() for h in subject.holds))
    for pseudonym, why in outcome.skipped:
        click.echo(f"skipped {pseudonym}: {why}")
    for pseudonym, error in outcome.failed:
        click.echo(f"failed {pseudonym}: {error}", err=True)
    verb = "would erase" if outcome.dry_run else "erased"
    count = len(outcome.due) if outcome.dry_run else len(outcome.erased)
    summary = f"{verb} {count} subject(s); {len(outcome.held)} held"
    if outcome.skipped:
        summary += f"; {len(outcome.skipped)} skipped"
    click.echo(summary)


def _subject(verb: str, subject: SubjectRetention, *notes: str) -> None:
    """One subject: what, when due, then why, a line each (pseudonyms, purposes and times)."""
    click.echo(f"{verb} {subject.subject} (due since {subject.due_at})")
    for line in [*notes, *subject.reasons()]:
        click.echo(f"    {line}")


COMMANDS = (retention_group,)
