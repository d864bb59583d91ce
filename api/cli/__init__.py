"""The ``consent-ledger`` command: keys, import, verification and reading the log.

Settings come from ``CONSENT_LEDGER_*`` environment variables, read once for the whole command
(:class:`api.bootstrap.Configuration`, the object every command gets as ``ctx.obj``);
``--data-dir`` and ``--database-url`` override them. Commands call the service layer only:
the application (appends), the query layer (questions) and the operations
(:mod:`ledger.operations`, :mod:`projections.operations`).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson

from api import logs
from api.bootstrap import Configuration, Wiring
from api.cli.demo import COMMANDS as DEMO_COMMANDS
from api.cli.export import COMMANDS as EXPORT_COMMANDS
from api.cli.read_models import COMMANDS
from api.cli.retention import COMMANDS as RETENTION_COMMANDS
from api.cli.server import COMMANDS as SERVER_COMMANDS
from api.cli.subjects import COMMANDS as SUBJECT_COMMANDS
from api.schedule import run_every
from ledger.application import AccessAction
from ledger.errors import IdempotencyConflictError, LedgerError, ValidationError
from ledger.operations import generate_keys


def configuration(ctx: click.Context) -> Configuration:
    """The settings the command group read once (``--data-dir``/``--database-url`` applied)."""
    config: Configuration = ctx.find_root().obj
    return config


def _open(ctx: click.Context) -> Wiring:
    """The ledger alone (no read models): close it with ``.close()``."""
    return configuration(ctx).open(read_models=False)


GLOBAL_OPTIONS = ("--data-dir", "--database-url")
"""The group's options, which may also be given after the subcommand (``consent-ledger show 9
--data-dir d``), as people type them."""


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with every global option (and its value) moved in front, in the order given;
    nothing after a ``--`` is touched."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS and "=" in arg:
            front.append(arg)
        elif name in GLOBAL_OPTIONS and index + 1 < len(args):
            front.extend(args[index : index + 2])
            index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


class LedgerGroup(click.Group):
    """Takes the global options anywhere on the line, and turns the ledger's own errors into a
    one-line message and exit status 1."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LedgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keys, master key and SQLite file [env CONSENT_LEDGER_DATA_DIR].",
)
@click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="postgresql://... to use PostgreSQL [env CONSENT_LEDGER_DATABASE_URL].",
)
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, database_url: str | None) -> None:
    """Consent Ledger: a signed, append-only audit and consent ledger."""
    try:
        config = Configuration.from_env()
    except LedgerError as exc:  # a setting the ledger cannot use; the message names it
        raise click.ClickException(str(exc)) from None
    ctx.obj = config.with_storage(data_dir, database_url)


@cli.command()
@click.option("--rotate", is_flag=True, help="Add a new signing key and make it active.")
@click.pass_context
def keygen(ctx: click.Context, rotate: bool) -> None:
    """Create the signing key and master key (files with mode 0600)."""
    created = generate_keys(configuration(ctx).ledger, rotate=rotate)
    for line in created or ["keys exist already; nothing created (use --rotate for a new one)"]:
        click.echo(line)


@cli.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.pass_context
def import_(ctx: click.Context, file: Any, batch_size: int) -> None:
    """Append the events of a JSON Lines FILE ('-' for stdin), in batches.

    Each batch is all or nothing. Event ids make a rerun safe: events recorded before are
    answered with their original receipts, never stored twice.
    """
    wiring = _open(ctx)
    app = wiring.application
    new = duplicates = 0
    committed_lines = 0
    try:
        name = getattr(file, "name", "-")
        size = Path(name).stat().st_size if name != "-" and Path(name).is_file() else None
        with click.progressbar(
            length=size or 0, label="importing", file=sys.stderr, show_pos=size is None
        ) as bar:
            for first_line, lines, facts, nbytes in _batches(file, batch_size):
                try:
                    receipts = app.append(facts)
                except ValidationError as exc:
                    raise click.ClickException(
                        _batch_failure(first_line, lines, exc, committed_lines)
                    ) from None
                except IdempotencyConflictError as exc:
                    line = lines[exc.index] if exc.index is not None else first_line
                    raise click.ClickException(
                        f"line {line}: {exc}\n{_committed(committed_lines)}"
                    ) from None
                committed_lines = lines[-1]
                new += sum(not r.duplicate for r in receipts)
                duplicates += sum(r.duplicate for r in receipts)
                bar.update(nbytes if size else len(facts))
    finally:
        wiring.close()
    click.echo(
        f"imported {new} new events, {duplicates} already recorded; head is now {_head(ctx)}"
    )


def _head(ctx: click.Context) -> int:
    wiring = _open(ctx)
    try:
        return wiring.log_queries().head()
    finally:
        wiring.close()


def _committed(line: int) -> str:
    if line == 0:
        return "nothing from this file was stored"
    return f"lines 1-{line} are stored; rerun after fixing, recorded events are skipped"


def _batch_failure(first: int, lines: list[int], exc: ValidationError, committed: int) -> str:
    messages = []
    for problem in exc.problems:
        line = lines[problem.index] if problem.index is not None else first
        messages.append(
            f"line {line}: {problem.field or '(event)'}: {problem.message} (rule: {problem.rule})"
        )
    return "\n".join([*messages, _committed(committed)])


def _batches(file: Any, size: int) -> Iterator[tuple[int, list[int], list[dict[str, Any]], int]]:
    facts: list[dict[str, Any]] = []
    lines: list[int] = []
    nbytes = 0
    first = 1
    for number, raw in enumerate(file, start=1):
        nbytes += len(raw)
        if not raw.strip():
            continue
        try:
            fact = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise click.ClickException(
                f"line {number}: not JSON ({exc}); lines before the batch starting at "
                f"line {first} are stored"
            ) from None
        if not facts:
            first = number
        facts.append(fact)
        lines.append(number)
        if len(facts) == size:
            yield first, lines, facts, nbytes
            facts, lines, nbytes = [], [], 0
    if facts:
        yield first, lines, facts, nbytes


@cli.command("verify-log")
@click.pass_context
def verify_log(ctx: click.Context) -> None:
    """Check every stored event: bytes, signature, order. Names each bad event."""
    wiring = _open(ctx)
    operations = wiring.operations()
    try:
        total = wiring.log_queries().head()
        with click.progressbar(length=total, label="verifying", file=sys.stderr) as bar:
            report = operations.verify_log(progress=bar.update)
    finally:
        wiring.close()
    for problem in report.problems:
        click.echo(problem.describe())
    if not report.ok:
        raise click.ClickException(
            f"{len(report.problems)} problem(s) in {report.checked} stored events"
        )
    if report.checked == 0:
        click.echo(f"ok: the log is empty ({operations.storage})")
        return
    click.echo(
        f"ok: {report.checked} events, 1..{report.head}, every signature verifies "
        f"({operations.storage})"
    )


@cli.command()
@click.option(
    "--every",
    type=click.FloatRange(min=0.1),
    default=None,
    metavar="SECONDS",
    help="Keep signing, every SECONDS while events arrive, until Ctrl-C / SIGTERM.",
)
@click.pass_context
def checkpoint(ctx: click.Context, every: float | None) -> None:
    """Sign a checkpoint of the log (C2SP signed note) and print it."""
    wiring = _open(ctx)
    app = wiring.application
    try:
        signed = app.sign_checkpoint()
        click.echo(signed.note, nl=False)
        if every is None:
            return
        serving = configuration(ctx).server
        logs.configure(serving.log_format, serving.log_level)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        last = [signed]

        def sign() -> None:
            latest = app.sign_checkpoint()
            if latest.size != last[0].size:
                last[0] = latest
                click.echo(latest.note, nl=False)

        run_every(every, stop, sign)
    finally:
        wiring.close()


@cli.command()
@click.pass_context
def keys(ctx: click.Context) -> None:
    """The verifier keys of the log's checkpoints, one a line (C2SP form)."""
    wiring = _open(ctx)
    try:
        keys = wiring.operations().verifier_keys()
    finally:
        wiring.close()
    for key in keys:
        click.echo(key)


@cli.command()
@click.argument("seq", type=click.IntRange(min=1, max=2**63 - 1))
@click.pass_context
def show(ctx: click.Context, seq: int) -> None:
    """Print event SEQ as JSON, personal data opened (or "[erased]")."""
    wiring = _open(ctx)
    try:
        event = wiring.log_queries().event(seq)
        # Opening someone's data is on the record, before it is shown (invariant 11).
        wiring.operations().record_operator_read(AccessAction.OPERATOR_SHOW, [event], {"seq": seq})
    finally:
        wiring.close()
    click.echo(orjson.dumps(event.as_dict(), option=orjson.OPT_INDENT_2).decode())


@cli.command()
@click.option(
    "-n",
    "count",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many of the latest events to print first.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they arrive.")
@click.option("--interval", default=0.5, show_default=True, help="Seconds between polls.")
@click.pass_context
def tail(ctx: click.Context, count: int, follow: bool, interval: float) -> None:
    """Print the latest events, one JSON object a line."""
    wiring = _open(ctx)
    try:
        log = wiring.log_queries()
        operations = wiring.operations()
        start = max(1, log.head() - count + 1)
        while True:
            page = log.events_from(start, 1000)
            if page:  # on the record before it is shown (invariant 11)
                details = {"from_seq": page[0][0], "to_seq": page[-1][0]}
                operations.record_operator_read(
                    AccessAction.OPERATOR_TAIL, [e for _, e in page], details
                )
            for seq, event in page:
                click.echo(orjson.dumps(event.as_dict()).decode())
                start = seq + 1
            if not follow:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return
    finally:
        wiring.close()


for _command in (
    *COMMANDS,
    *SERVER_COMMANDS,
    *DEMO_COMMANDS,
    *EXPORT_COMMANDS,
    *SUBJECT_COMMANDS,
    *RETENTION_COMMANDS,
):
    cli.add_command(_command)


def main() -> None:
    cli()
