"""``consent-ledger projections ...`` and the commands that query the read models.

Query commands first bring the read models up to the head of the log, so what they print
includes every event recorded before they ran (read your writes), whether or not a
``projections run`` worker is running. A read model stopped at an event fails only the
commands that read it (naming it, the event and the error); the others warn and answer.
"""

from __future__ import annotations

import csv
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click
import orjson

from api import logs
from api.bootstrap import Configuration, Wiring
from api.cli.params import MOMENT
from ledger.verifier.spreadsheet import csv_row
from projections.operations import PoisonEventError, ReadModelOperations
from projections.queries import DISCLOSURE_COLUMNS, Queries, UnknownPurposeError

RECOVERY = (
    "fix the cause (upgrade), then `consent-ledger projections rebuild {name}` "
    "(docs/operations.md, When a read model fails)"
)


def configuration(ctx: click.Context) -> Configuration:
    """The settings the command group read once."""
    config: Configuration = ctx.find_root().obj
    return config


@contextmanager
def _opened(
    ctx: click.Context, *, catch_up: bool = True, needs: Sequence[str] | None = None
) -> Iterator[Wiring]:
    """The ledger and its read models, caught up. ``needs``: the read models the command reads
    (default: all); one of them stopped at an event fails the command, another is only warned
    of."""
    wiring = configuration(ctx).open()
    try:
        if catch_up:
            for exc in wiring.read_model_operations().catch_up_each():
                if needs is None or exc.projection in needs:
                    raise click.ClickException(f"{exc}; {RECOVERY.format(name=exc.projection)}")
                click.echo(f"warning: {exc} (not used here)", err=True)
        yield wiring
    finally:
        wiring.close()


@contextmanager
def read_models(
    ctx: click.Context, *, catch_up: bool = True, needs: Sequence[str] | None = None
) -> Iterator[ReadModelOperations]:
    """An operator's commands on the read models, caught up (see :func:`_opened`)."""
    with _opened(ctx, catch_up=catch_up, needs=needs) as wiring:
        yield wiring.read_model_operations()


@contextmanager
def queries(ctx: click.Context, *, needs: Sequence[str]) -> Iterator[Queries]:
    """The query layer over the ledger and its read models, caught up (see :func:`_opened`):
    what the query commands ask."""
    with _opened(ctx, needs=needs) as wiring:
        yield wiring.queries()


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


TIME = MOMENT


# -- projections ------------------------------------------------------------------------------


@click.group("projections")
def projections_group() -> None:
    """Run, inspect and rebuild the read models."""


@projections_group.command("run")
@click.option("--once", is_flag=True, help="Catch up to the head of the log, then stop.")
@click.pass_context
def projections_run(ctx: click.Context, once: bool) -> None:
    """Catch every read model up, then follow the log until SIGTERM or Ctrl-C."""
    serving = configuration(ctx).server
    logs.configure(serving.log_format, serving.log_level)
    with read_models(ctx, catch_up=False) as operations:
        if once:
            read = operations.catch_up()
            click.echo(f"caught up: {read} events read")
            return
        stop = threading.Event()

        def stop_following(*_: object) -> None:
            stop.set()
            operations.wake()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop_following)

        def report(exc: PoisonEventError) -> None:
            click.echo(f"error: {exc}", err=True)

        hours = serving.retention_interval_hours
        click.echo("following the log (Ctrl-C to stop)", err=True)
        operations.follow(stop, on_error=report, retention_every=hours * 3600.0 if hours else None)


STOPPED_EXIT = 4
"""``projections status``'s exit status when a read model is stopped at an event."""


@projections_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def projections_status(ctx: click.Context, as_json: bool) -> None:
    """Each read model's position, lag (events and seconds) and error, if any.

    A read model stopped at an event is shown FAILED, with the event (seq and type), the
    error, since when and how many tries, and how to recover; the exit status is then 4 (for
    scripts and health checks), else 0."""
    with read_models(ctx, catch_up=False) as operations:
        statuses = operations.status()
    failed = any(s.failure is not None or s.error for s in statuses)
    if as_json:
        _echo_json([s.as_dict() for s in statuses])
        ctx.exit(STOPPED_EXIT if failed else 0)
    for s in statuses:
        line = (
            f"{s.name:<14} version {s.version:<22} position {s.position:>9} of {s.head:<9} "
            f"lag {s.lag_events} events, {s.lag_seconds:.1f} s"
        )
        if s.failure is not None:
            f = s.failure
            line += (
                f"  FAILED at event {f.seq} ({f.event_type}): {f.error_class}: {f.message}"
                f"\n{'':<14} since {f.first_failed_at}, {f.attempts} tries, the last at "
                f"{f.last_failed_at}; {RECOVERY.format(name=s.name)}"
            )
        elif s.error:
            line += f"  FAILED: {s.error}"
        click.echo(line)
    ctx.exit(STOPPED_EXIT if failed else 0)


@projections_group.command("rebuild")
@click.argument("names", nargs=-1)
@click.pass_context
def projections_rebuild(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Drop NAMES (default: all) and rebuild them from the first event.

    A read model of a group is rebuilt with its whole group: consent_facts, consent_state,
    disclosures and retention share one book of consent facts, so rebuilding any of them drops
    and rebuilds the four (and says so). The way back for a read model stopped at an event,
    once the cause is fixed: the read models of other groups are left as they are. If the
    cause is still there, it stops at the same event again."""
    with read_models(ctx, catch_up=False) as operations:
        total = operations.head()
        asked = list(names) or operations.names
        chosen = operations.with_groups(asked)  # unknown names fail before anything is dropped
        also = [name for name in chosen if name not in asked]
        if also:
            click.echo(f"with their group: {', '.join(also)} rebuilt too", err=True)
        # Together: the read models share each page's reading and decoding.
        with click.progressbar(
            length=total * len(chosen), label=f"rebuilding {', '.join(chosen)}", file=sys.stderr
        ) as bar:
            try:
                operations.rebuild(chosen, progress=bar.update)
            except PoisonEventError as exc:
                raise click.ClickException(
                    f"{exc}; the cause is still there: {RECOVERY.format(name=exc.projection)}"
                ) from None
        group = f", with their group: {', '.join(also)}," if also else ""
        click.echo(f"rebuilt {', '.join(asked)}{group} from {total} events")


# -- queries ----------------------------------------------------------------------------------


@click.group("consent")
def consent_group() -> None:
    """Consent state of a subject (by the emitter's reference)."""


@consent_group.command("state")
@click.argument("subject")
@click.option("--at", "moment", type=TIME, help="As of this time (default: now, UTC).")
@click.pass_context
def consent_state(ctx: click.Context, subject: str, moment: datetime | None) -> None:
    """Every purpose SUBJECT decided on, with its status at the moment."""
    with queries(ctx, needs=["consent_state"]) as ask:
        found = ask.consent_state(subject, moment)
    _echo_json({"subject": found.subject, "purposes": [s.as_dict() for s in found.purposes]})


EXIT_NO, EXIT_NOT_REQUIRED, EXIT_UNKNOWN_PURPOSE = 3, 4, 5
"""``consent check`` exit statuses besides 0 (yes): 1 and 2 stay click's own (an error, a
usage error), so a script tells "no" from "the question could not be asked"."""


@consent_group.command("check")
@click.argument("subject")
@click.argument("purpose")
@click.option("--at", "moment", type=TIME, help="At this time (default: now, UTC).")
@click.pass_context
def consent_check(ctx: click.Context, subject: str, purpose: str, moment: datetime | None) -> None:
    """May PURPOSE be used for SUBJECT? Prints the decision (its `answer`: yes, no or
    not_required). Exit status 0 yes, 3 no, 4 not_required (the purpose rests on another
    legal basis, named in `legal_basis`), 5 an unknown purpose (no published policy version
    declares it); 1 an error, 2 a usage error."""
    with queries(ctx, needs=["consent_state"]) as ask:
        try:
            decision = ask.decision(subject, purpose, moment)
        except UnknownPurposeError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_UNKNOWN_PURPOSE)
    _echo_json(decision.as_dict())
    outcome = decision.verdict.outcome
    if outcome == "no":
        ctx.exit(EXIT_NO)
    if outcome == "not_required":
        ctx.exit(EXIT_NOT_REQUIRED)


@click.command("disclosures")
@click.option("--subject", help="The emitter's reference of a subject.")
@click.option("--recipient", help="A recipient id.")
@click.option("--from", "start", type=TIME, help="Occurred at or after.")
@click.option("--to", "end", type=TIME, help="Occurred before.")
@click.option("--violations", is_flag=True, help="Only disclosures flagged as violations.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV for a spreadsheet instead of JSON.")
@click.pass_context
def disclosures(
    ctx: click.Context,
    subject: str | None,
    recipient: str | None,
    start: datetime | None,
    end: datetime | None,
    violations: bool,
    as_csv: bool,
) -> None:
    """Disclosure history, one row per subject per disclosure, with its verdict."""
    with queries(ctx, needs=["disclosures"]) as ask:
        rows = [
            row.as_dict()
            for row in ask.all_disclosures(
                subject_ref=subject,
                recipient_id=recipient,
                start=start,
                end=end,
                violations_only=violations,
            )
        ]
    if not as_csv:
        _echo_json(rows)
        return
    # As the API's CSV and the bundles' CSV files: one header line even when no row matches,
    # "\n" line ends, true/false, lists joined with ";" (ledger/verifier/spreadsheet.py).
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(DISCLOSURE_COLUMNS)
    for row in rows:
        writer.writerow(csv_row(row[c] for c in DISCLOSURE_COLUMNS))


@click.command("incidents")
@click.argument("incident_id", required=False)
@click.pass_context
def incidents(ctx: click.Context, incident_id: str | None) -> None:
    """The incident register with deadlines (or one incident), each with the subjects its
    assessment's rule selects (subjects_by_rule) when it has one."""
    with queries(ctx, needs=["incidents", "disclosures"]) as ask:
        if incident_id is None:
            _echo_json([ask.incident_answer(record) for record in ask.incidents()])
            return
        record = ask.incident(incident_id)
        answer = None if record is None else ask.incident_answer(record)
    if answer is None:
        raise click.ClickException(f"no incident {incident_id} was opened")
    _echo_json(answer)


@click.command("requests")
@click.option("--overdue", is_flag=True, help="Only open requests past their due date.")
@click.option("--subject", help="The emitter's reference of a subject.")
@click.pass_context
def requests(ctx: click.Context, overdue: bool, subject: str | None) -> None:
    """The data-subject request register with due dates."""
    with queries(ctx, needs=["requests"]) as ask:
        records = ask.requests(overdue_only=overdue, subject_ref=subject)
    _echo_json([record.as_dict() for record in records])


COMMANDS = (projections_group, consent_group, disclosures, incidents, requests)
