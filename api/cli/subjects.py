"""``consent-ledger subjects erase`` and ``consent-ledger master-key rotate``."""

from __future__ import annotations

from pathlib import Path

import click

from api.bootstrap import Configuration
from ledger.operations import RotationError, rotate_master_key
from ledger.vocabulary import ErasureGround


def _configuration(ctx: click.Context) -> Configuration:
    config: Configuration = ctx.find_root().obj
    return config


@click.group("subjects")
def subjects_group() -> None:
    """Subjects: erasure (crypto-shredding)."""


@subjects_group.command("erase")
@click.argument("subject", required=False)
@click.option("--pseudonym", help="Name the subject by its pseudonym instead of its reference.")
@click.option(
    "--ground",
    type=click.Choice([g.value for g in ErasureGround]),
    default=ErasureGround.OPERATOR.value,
    show_default=True,
    help="Why: recorded in the erasure event.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def erase(
    ctx: click.Context, subject: str | None, pseudonym: str | None, ground: str, yes: bool
) -> None:
    """Erase SUBJECT: destroy its key and record the erasure. This cannot be undone."""
    if (subject is None) == (pseudonym is None):
        raise click.UsageError("give the subject's reference or --pseudonym, not both")
    config = _configuration(ctx)
    if not yes:
        click.confirm(
            "Erasing destroys the subject's key: their personal data can never be read again. "
            "Go on?",
            abort=True,
        )
    wiring = config.open(read_models=False)
    try:
        receipt = wiring.application.erase(
            subject_ref=subject, pseudonym=pseudonym, ground=ErasureGround(ground)
        )
    finally:
        wiring.close()
    click.echo(
        f"erased: the subject's key is destroyed; the erasure is event {receipt.seq} "
        f"(ground {ground}). Every signature and proof still verifies."
    )


@subjects_group.command("reapply-erasures")
@click.pass_context
def reapply_erasures(ctx: click.Context) -> None:
    """After restoring a key store: destroy again the keys of every subject erased in the log."""
    wiring = _configuration(ctx).open(read_models=False)
    try:
        revived = wiring.application.reapply_erasures()
    finally:
        wiring.close()
    click.echo(
        f"destroyed again the keys of {len(revived)} erased subjects that the restored key "
        "store had brought back"
        if revived
        else "every erased subject's key is destroyed: nothing to do"
    )


@click.group("master-key")
def master_key_group() -> None:
    """The master key that wraps every subject key."""


@master_key_group.command("rotate")
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the new key (default: replace the configured key file).",
)
@click.pass_context
def rotate(ctx: click.Context, new_key_file: Path | None) -> None:
    """Re-wrap every subject key under a new master key; the log is not touched."""
    config = _configuration(ctx)
    try:
        count, target = rotate_master_key(
            config.ledger, lambda: config.open(read_models=False).application, new_key_file
        )
    except RotationError as exc:
        if exc.misused:
            raise click.UsageError(str(exc)) from None
        raise
    click.echo(
        f"re-wrapped {count} subject keys under the new master key in {target}. Backups of "
        "the key store made before now still need the old key: keep it as long as them."
    )


COMMANDS = (subjects_group, master_key_group)
