"""``consent-ledger demo``: load the demo data set (``demo/dataset.py``, ``docs/demo.md``).

The facts are appended in batches of the ledger's maximum size, then the read models catch up,
and the summary printed is read back from them: the violations the disclosure history found,
the overdue requests, the incident's clock. Rerunning is safe: the demo's event ids are stable,
so facts recorded before get their original receipts and nothing is stored twice; on a later
day the demo is regenerated with the anchor it was first loaded with (read from its first
fact), so its content is the same.

The demo's withdrawals and its rectification owe notices to the recipients that got the
members' data (docs/notices.md); the command records them (``recipient.notice_due``, once:
rerunning records none again). ``--serve`` also runs the demo's two recipients on loopback
(``demo/recipients.py``): MailForge acknowledges every notice in its signed answer, AdBridge
takes them and never acknowledges, so its notices go overdue.
"""

from __future__ import annotations

import secrets
import sys
from collections import Counter
from datetime import date, datetime

import click

from api.bootstrap import Configuration, Wiring, open_client_store
from api.cli.server import serve as serve_command
from api.token_store import Scope
from demo import recipients as demo_recipients
from demo.dataset import (
    DEFAULT_SEED,
    DEFAULT_USERS,
    FIRST_EVENT_ID,
    MAX_USERS,
    DemoDataSet,
    anchor_of,
    default_anchor,
    generate,
)
from ledger.application import LedgerApplication
from ledger.errors import IdempotencyConflictError, ValidationError
from projections.operations import ReadModelOperations
from projections.queries import LogQueries, Queries


@click.command("demo")
@click.option(
    "--users",
    default=DEFAULT_USERS,
    show_default=True,
    type=click.IntRange(20, MAX_USERS),
    help="Members who sign up over the demo's year.",
)
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Seed of the generator.")
@click.option(
    "--anchor",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The day (UTC) the demo's year ends; default: the day this ledger's demo was first "
    "loaded, else today.",
)
@click.option("--serve", is_flag=True, help="Then serve the HTTP API, as `serve` does.")
@click.pass_context
def demo(ctx: click.Context, users: int, seed: int, anchor: datetime | None, serve: bool) -> None:
    """Load a year of a consumer app's consent, disclosures, an incident and requests.

    Made up, but modelled on a real privacy policy: purposes, policy versions with a material
    change, processors and third parties, members' consents and withdrawals, disclosures with
    a handful of planted violations, one incident, requests (one overdue). Needs an empty
    ledger, or one that holds this demo already (then nothing is stored twice).
    """
    config: Configuration = ctx.find_root().obj
    settings = config.ledger
    wiring = config.open()
    app, queries = wiring.application, wiring.queries()
    try:
        chosen = _anchor(queries, None if anchor is None else anchor.date())
        data = generate(users, seed, chosen)
        new, again = _append(app, data, settings.limits.max_batch)
        _catch_up(wiring.read_model_operations())
        _owe_notices(wiring)
        _summary(queries, data, new, again)
        verifier_keys = wiring.operations().verifier_keys() if serve else []
    finally:
        wiring.close()
    if serve:
        _console_token(config)
        with demo_recipients.running(settings.data_dir, verifier_keys) as running:
            click.echo(
                f"demo recipients: {demo_recipients.ACKNOWLEDGING} acknowledges at "
                f"{running.urls[demo_recipients.ACKNOWLEDGING]}, {demo_recipients.SILENT} "
                f"never does at {running.urls[demo_recipients.SILENT]} "
                f"({demo_recipients.ENDPOINTS_FILE} in the data directory names them)"
            )
            ctx.invoke(serve_command)


def _owe_notices(wiring: Wiring) -> None:
    """Record the notices the demo's withdrawals and rectification owe (the follower that
    ``serve`` runs does the same, and delivers them; deriving twice records nothing twice)."""
    assert wiring.read_models is not None
    notices = wiring.read_models.notices
    notices.follow()
    notices.record_due()


def _console_token(config: Configuration) -> None:
    """Print the console's address and a token to sign in with: a new client of its own
    (admin and incidents:identify, so every page opens), named for the demo; revoke it with
    ``consent-ledger clients revoke NAME`` when done."""
    store = open_client_store(config.ledger)
    try:
        client, token = store.add(
            f"demo-console-{secrets.token_hex(3)}", [Scope.ADMIN, Scope.IDENTIFY_SUBJECTS]
        )
    finally:
        store.close()
    server = config.server
    click.echo(
        f"console: http://{server.host}:{server.port}/console  sign in with the token of "
        f"client {client.name} (admin, incidents:identify; shown only now):"
    )
    click.echo(token)


def _anchor(log: LogQueries, asked: date | None) -> date:
    """The anchor of the demo this ledger holds, else the one asked for, else today."""
    first = log.claimed(FIRST_EVENT_ID)
    if first is None:
        head = log.head()
        if head:
            raise click.ClickException(
                f"the demo needs an empty ledger, and this one holds {head} events of its own; "
                "give another --data-dir (or PostgreSQL schema) for the demo"
            )
        today = default_anchor()
        if asked is not None and asked > today:
            raise click.BadParameter(
                f"{asked} is in the future; the demo's facts must lie in the past",
                param_hint="--anchor",
            )
        return asked or today
    loaded = anchor_of({"occurred_at": log.event(first).occurred_at})
    if asked is not None and asked != loaded:
        raise click.BadParameter(
            f"this ledger holds the demo anchored at {loaded}; rerun without --anchor, or "
            "use another --data-dir",
            param_hint="--anchor",
        )
    return loaded


def _append(app: LedgerApplication, data: DemoDataSet, batch: int) -> tuple[int, int]:
    new = again = 0
    with click.progressbar(
        length=len(data.facts), label="appending the demo", file=sys.stderr
    ) as bar:
        for first in range(0, len(data.facts), batch):
            facts = data.facts[first : first + batch]
            try:
                receipts = app.append(facts)
            except IdempotencyConflictError as exc:
                raise click.ClickException(
                    f"{exc}: this ledger holds a demo generated with other options "
                    "(--users, --seed); rerun with those, or use another --data-dir"
                ) from None
            except ValidationError as exc:
                problems = "; ".join(
                    f"{facts[p.index]['event_id'] if p.index is not None else '(batch)'}: "
                    f"{p.field or '(event)'}: {p.message} (rule: {p.rule})"
                    for p in exc.problems
                )
                raise click.ClickException(f"the ledger refused the demo: {problems}") from None
            new += sum(not r.duplicate for r in receipts)
            again += sum(r.duplicate for r in receipts)
            bar.update(len(facts))
    return new, again


def _catch_up(operations: ReadModelOperations) -> None:
    with click.progressbar(
        length=operations.behind(), label="catching up the read models", file=sys.stderr
    ) as bar:
        operations.catch_up(progress=bar.update)


def _summary(queries: Queries, data: DemoDataSet, new: int, again: int) -> None:
    head = queries.head()
    found = Counter(row.verdict for row in queries.all_disclosures(violations_only=True))
    overdue = queries.requests(overdue_only=True)
    incident = queries.incident(data.incident_id)
    click.echo(
        f"demo loaded: {len(data.facts)} facts ({new} new, {again} recorded before) about "
        f"{data.users} members, the year to {data.anchor}; the log's head is {head}"
    )
    kinds = ", ".join(f"{found[v]} {v}" for v in sorted(found)) or "none"
    planted = (
        "as planted"
        if dict(found) == {k: v for k, v in data.violations.items() if v}
        else (f"planted: {data.violations}")
    )
    click.echo(f"disclosure violations found: {kinds} ({planted})")
    click.echo(
        "overdue requests: "
        + (", ".join(f"{r.request_id} (due {r.due_at:%Y-%m-%d})" for r in overdue) or "none")
    )
    if incident is not None:
        click.echo(
            f"incident {incident.incident_id}: {incident.status}, risk {incident.risk}, "
            f"authority deadline {incident.authority_deadline:%Y-%m-%d %H:%M} UTC, notified "
            + ("late" if incident.authority_notified_late else "in time")
        )
    click.echo(
        f"material policy change v2.0: {len(data.renewed)} members renewed their consent, "
        f"{len(data.renewal_required)} have consent awaiting renewal"
    )
    owed = Counter(row.recipient_id for row in queries.notices())
    told = ", ".join(f"{recipient} {n}" for recipient, n in sorted(owed.items()))
    click.echo(
        f"notices owed to recipients (GDPR 19): {sum(owed.values())} ({told or 'none'}); "
        f"under --serve {demo_recipients.ACKNOWLEDGING} acknowledges its notices and "
        f"{demo_recipients.SILENT} never does"
    )
    examples = [
        ("consent-ledger disclosures --violations", ""),
        ("consent-ledger requests --overdue", ""),
        (f"consent-ledger incidents {data.incident_id}", ""),
    ]
    if data.renewal_required:
        examples.append(
            (f"consent-ledger consent state {data.renewal_required[0]}", "renewal required")
        )
    if data.minors:
        examples.append((f"consent-ledger consent state {data.minors[0]}", "a minor"))
    examples.append(("consent-ledger serve", "then http://127.0.0.1:8000/docs"))
    click.echo("look (with the same --data-dir / --database-url):")
    for command, note in examples:
        click.echo(f"  {command:<48} {note}".rstrip())
    click.echo(
        "  over HTTP: /docs, /v1/disclosures?violations=true, /v1/requests?overdue=true, "
        f"/v1/incidents/{data.incident_id}, /v1/notices?overdue=true, /console/notices"
    )
    click.echo("  (the API wants a token: consent-ledger clients add demo --scope admin)")


COMMANDS = (demo,)
