"""``consent-ledger serve`` and ``consent-ledger clients add|list|revoke``."""

from __future__ import annotations

import os

import click

from api.app import open_client_database
from api.clients import ClientStore, Scope
from ledger.config import Settings, generate_keys

SCOPES = click.Choice([s.value for s in Scope])


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (PostgreSQL only; SQLite serves from one).",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    settings: Settings = ctx.obj
    if settings.database_url is None:
        if workers > 1:
            raise click.UsageError(
                "--workers needs PostgreSQL (--database-url); SQLite has one writer"
            )
        generate_keys(settings)  # the embedded default needs no setup
    # The workers read the same settings from the environment.
    os.environ["CONSENT_LEDGER_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url is not None:
        os.environ["CONSENT_LEDGER_DATABASE_URL"] = settings.database_url
    click.echo(f"serving on http://{host}:{port} (docs at /docs), {settings.describe_storage()}")
    uvicorn.run(
        "api.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # request lines may carry subject references: never logged
        log_level="warning",
    )


@click.group("clients")
def clients_group() -> None:
    """API clients: bearer tokens with scopes."""


def _store(ctx: click.Context) -> ClientStore:
    settings: Settings = ctx.obj
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ClientStore(open_client_database(settings))


@clients_group.command("add")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=SCOPES,
    help="Repeat for several scopes.",
)
@click.pass_context
def clients_add(ctx: click.Context, name: str, scopes: tuple[str, ...]) -> None:
    """Add a client; its token is printed once, alone on the last line."""
    store = _store(ctx)
    try:
        client, token = store.add(name, [Scope(s) for s in scopes])
    finally:
        store.db.close()
    click.echo(f"client {client.name} ({client.client_id}) with scopes {' '.join(sorted(scopes))}")
    click.echo("the token is shown only now; store it safely:")
    click.echo(token)


@clients_group.command("list")
@click.pass_context
def clients_list(ctx: click.Context) -> None:
    """Every client, its scopes, and whether it was revoked (tokens are never shown)."""
    store = _store(ctx)
    try:
        for client in store.list():
            state = f"revoked {client.revoked_at}" if client.revoked_at else "active"
            click.echo(f"{client.name}\t{' '.join(sorted(client.scopes))}\t{state}")
    finally:
        store.db.close()


@clients_group.command("set-key")
@click.argument("name")
@click.argument("public_key")
@click.pass_context
def clients_set_key(ctx: click.Context, name: str, public_key: str) -> None:
    """Register NAME's Ed25519 PUBLIC_KEY (base64): its requests must be signed from now on."""
    store = _store(ctx)
    try:
        client = store.set_key(name, public_key)
    finally:
        store.db.close()
    click.echo(f"{client.name} signs its requests from now on (Content-Signature: ed25519=...)")


@clients_group.command("revoke")
@click.argument("name")
@click.pass_context
def clients_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a client's token at once."""
    store = _store(ctx)
    try:
        client = store.revoke(name)
    finally:
        store.db.close()
    click.echo(f"revoked {client.name} at {client.revoked_at}")


COMMANDS = (serve, clients_group)
