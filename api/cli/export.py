"""``consent-ledger export`` and ``consent-ledger verify``: bundles for a regulator."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from api.bootstrap import build
from ledger.config import Settings, load_keyring
from ledger.export import export_bundle
from ledger.mapper import format_time
from ledger.verifier.__main__ import trusted_keys
from ledger.verifier.bundle import BundleError, default_jobs, verify_bundle
from ledger.verifier.note import NoteError, format_verifier_key
from projections.queries import LogQueries
from projections.read_models import ReadModelSettings

TIME = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"])


def _moment(value: datetime) -> str:
    return format_time(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


@click.command("export")
@click.option("--subject", help="A subject's history (their reference, as services send it).")
@click.option("--recipient", help="Every disclosure to a recipient, and its registration.")
@click.option("--incident", help="An incident, and the disclosures its assessment selects.")
@click.option("--from", "start", type=TIME, help="A period's start (UTC unless an offset).")
@click.option("--to", "end", type=TIME, help="A period's end, excluded.")
@click.option("--all", "everything", is_flag=True, help="The whole log.")
@click.option(
    "--out",
    "target",
    required=True,
    type=click.Path(path_type=Path),
    help="A new directory, or a file ending .zip.",
)
@click.pass_context
def export(
    ctx: click.Context,
    subject: str | None,
    recipient: str | None,
    incident: str | None,
    start: datetime | None,
    end: datetime | None,
    everything: bool,
    target: Path,
) -> None:
    """Export a verifiable bundle of one scope: events, leaves, checkpoint, report."""
    settings: Settings = ctx.obj
    chosen = [
        name
        for name, given in (
            ("--subject", subject),
            ("--recipient", recipient),
            ("--incident", incident),
            ("--from/--to", start or end),
            ("--all", everything),
        )
        if given
    ]
    if len(chosen) != 1:
        raise click.UsageError(
            "choose one scope: --subject, --recipient, --incident, --from with --to, or --all"
        )
    if (start is None) != (end is None):
        raise click.UsageError("a period needs both --from and --to")
    keyring = load_keyring(settings)
    report_settings = _report_settings(settings)
    app = build(settings, read_models=False).application
    try:
        scope: dict[str, Any]
        if subject is not None:
            scope = {"kind": "subject", "subject": LogQueries(app).pseudonym(subject)}
        elif recipient is not None:
            scope = {"kind": "recipient", "recipient_id": recipient}
        elif incident is not None:
            scope = {"kind": "incident", "incident_id": incident}
        elif start is not None and end is not None:
            scope = {"kind": "period", "from": _moment(start), "to": _moment(end)}
        else:
            scope = {"kind": "all"}
        assert app.checkpointer is not None
        origin = app.checkpointer.origin
        verifier_keys = [format_verifier_key(origin, k) for k in keyring.public_keys.values()]
        bars: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in bars:
                for bar in bars.values():
                    bar.render_finish()
                bars[phase] = click.progressbar(length=total, label=f"{phase:>8}", file=sys.stderr)
            bars[phase].update(done)

        result = export_bundle(
            app,
            scope,
            target,
            verifier_keys=verifier_keys,
            report_settings=report_settings,
            progress=progress,
        )
        for bar in bars.values():
            bar.render_finish()
    finally:
        app.close()
    click.echo(
        f"exported {result.entries} events of {result.scope} with {result.size} leaves "
        f"to {result.path}"
    )
    click.echo(f"verify it: python -m ledger.verifier {result.path} --key '{verifier_keys[-1]}'")


def _report_settings(settings: Settings) -> dict[str, Any]:
    read_models = ReadModelSettings.from_env()
    return {
        "default_minimum_age": settings.limits.minimum_age,
        "authority_deadline_hours": read_models.authority_deadline_hours,
        "request_due_days": read_models.request_due_days,
        "request_due_days_by_jurisdiction": dict(read_models.request_due_days_by_jurisdiction),
    }


@click.command("verify")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--key", "keys", multiple=True, required=True, help="A trusted verifier key or file.")
@click.option(
    "--previous",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint you hold already: the bundle's log must extend it.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=default_jobs,
    show_default="one per CPU",
    help="Processes checking the leaves and events.",
)
def verify(bundle: Path, keys: tuple[str, ...], previous: Path | None, jobs: int) -> None:
    """Verify a bundle offline (the same check as ``python -m ledger.verifier``)."""
    try:
        trusted = trusted_keys(list(keys))
    except (NoteError, OSError) as exc:
        raise click.UsageError(f"--key: {exc}") from None
    held = previous.read_text(encoding="utf-8") if previous is not None else None
    try:
        report = verify_bundle(bundle, trusted, held, jobs=jobs)
    except BundleError as exc:
        raise click.ClickException(f"FAILED {exc}") from None
    for line in report.checked:
        click.echo(f"ok  {line}")
    click.echo(f"VERIFIED {bundle}: {report.entries} events of scope {report.scope}")


COMMANDS = (export, verify)
