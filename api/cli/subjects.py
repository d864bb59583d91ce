"""``consent-ledger subjects erase`` and ``consent-ledger master-key rotate``."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import click

from api.bootstrap import build
from ledger.config import Settings
from ledger.signing import write_private_file
from ledger.subject_keys import KEY_BYTES, MASTER_KEY_ENV, new_master_key_text
from ledger.vocabulary import ErasureGround


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
    settings: Settings = ctx.obj
    if not yes:
        click.confirm(
            "Erasing destroys the subject's key: their personal data can never be read again. "
            "Go on?",
            abort=True,
        )
    app = build(settings, read_models=False).application
    try:
        receipt = app.erase(subject_ref=subject, pseudonym=pseudonym, ground=ErasureGround(ground))
    finally:
        app.close()
    click.echo(
        f"erased: the subject's key is destroyed; the erasure is event {receipt.seq} "
        f"(ground {ground}). Every signature and proof still verifies."
    )


@subjects_group.command("reapply-erasures")
@click.pass_context
def reapply_erasures(ctx: click.Context) -> None:
    """After restoring a key store: destroy again the keys of every subject erased in the log."""
    settings: Settings = ctx.obj
    app = build(settings, read_models=False).application
    try:
        revived = app.reapply_erasures()
    finally:
        app.close()
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
    settings: Settings = ctx.obj
    if MASTER_KEY_ENV in os.environ and new_key_file is None:
        raise click.UsageError(
            f"the master key comes from ${MASTER_KEY_ENV}: give --new-key-file, then set "
            "the variable to that file's content"
        )
    target = new_key_file or settings.master_key_file
    staged = target.with_name(target.name + ".new")
    if staged.exists():
        raise click.ClickException(
            f"{staged} exists: a rotation was interrupted; it holds the key the store may be "
            "wrapped under now. Move it to the key file's place if opening with the old key "
            "fails, else delete it, then run again."
        )
    text = new_master_key_text()
    new_key = base64.b64decode(text.strip())
    assert len(new_key) == KEY_BYTES
    # The new key is on disk (0600) before anything is wrapped under it.
    write_private_file(staged, text)
    try:
        app = build(settings, read_models=False).application
        try:
            count = app.subject_keys.rotate_master_key(new_key)
        finally:
            app.close()
    except BaseException:
        # Re-wrapping is one transaction: it failed whole, the store still opens with the
        # old key, and the new one must not be left behind looking like it matters.
        staged.unlink()
        raise
    staged.replace(target)
    click.echo(
        f"re-wrapped {count} subject keys under the new master key in {target}. Backups of "
        "the key store made before now still need the old key: keep it as long as them."
    )


COMMANDS = (subjects_group, master_key_group)
