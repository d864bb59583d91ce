"""``consent-ledger export`` and ``consent-ledger verify``: bundles for a regulator."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from api.bootstrap import Configuration
from api.cli.params import MOMENT
from ledger.operations import export_scope
from ledger.verifier.__main__ import trusted_keys
from ledger.verifier.bundle import BundleError, default_jobs, verify_bundle
from ledger.verifier.note import NoteError

TIME = MOMENT


def _moment(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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
    config: Configuration = ctx.find_root().obj
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
    wiring = config.open(read_models=False)
    try:
        operations = wiring.operations()
        scope = export_scope(
            subject_pseudonym=None if subject is None else operations.subject_pseudonym(subject),
            recipient=recipient,
            incident=incident,
            period=None if start is None or end is None else (_moment(start), _moment(end)),
        )
        bars: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in bars:
                for bar in bars.values():
                    bar.render_finish()
                bars[phase] = click.progressbar(length=total, label=f"{phase:>8}", file=sys.stderr)
            bars[phase].update(done)

        result, verifier_keys = operations.export(
            scope, target, config.report_settings(), progress=progress
        )
        for bar in bars.values():
            bar.render_finish()
    finally:
        wiring.close()
    click.echo(
        f"exported {result.entries} events of {scope_text(result.scope)} with {result.size} "
        f"leaves to {result.path}"
    )
    click.echo(f"verify it: python -m ledger.verifier {result.path} --key '{verifier_keys[-1]}'")


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
    click.echo(f"VERIFIED {bundle}: {report.entries} events of scope {scope_text(report.scope)}")


def scope_text(scope: Mapping[str, Any]) -> str:
    """A bundle's scope as a person reads it (``recipient rcpt-adnet``, ``period
    2026-06-01T00:00:00Z..2026-07-01T00:00:00Z``, ``the whole log``), not a Python dict."""
    kind = str(scope.get("kind", ""))
    if kind == "all":
        return "the whole log"
    if kind == "period":
        return f"period {scope.get('from')}..{scope.get('to')}"
    named = {"subject": "subject", "recipient": "recipient_id", "incident": "incident_id"}
    if kind in named and scope.get(named[kind]) is not None:
        return f"{kind} {scope[named[kind]]}"
    return " ".join(f"{k}={v}" for k, v in sorted(scope.items())) or "an empty scope"


COMMANDS = (export, verify)
