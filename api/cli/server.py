"""``consent-ledger serve``, ``healthcheck`` and ``clients add|list|set-key|revoke``."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from api import logs
from api.bootstrap import Configuration, open_client_store
from api.http.app import ensure_admin_client, read_admin_token
from api.settings import COMMITTERS, ROLES
from api.token_store import Scope, TokenStore
from ledger.operations import CommitterProcess, generate_keys, start_committer
from ledger.verifier.entry import key_id_for

SCOPES = click.Choice([s.value for s in Scope])


@click.command("serve")
@click.option(
    "--host", default=None, help="Address to listen on [env CONSENT_LEDGER_HOST; 127.0.0.1]."
)
@click.option(
    "--port",
    default=None,
    type=click.IntRange(1, 65535),
    help="Port [env CONSENT_LEDGER_PORT; 8000].",
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 64),
    help="Worker processes, PostgreSQL only; SQLite serves from one "
    "[env CONSENT_LEDGER_WORKERS; 1].",
)
@click.option(
    "--role",
    default=None,
    type=click.Choice(ROLES),
    help="all: the whole API; reads: the read routes only, beside a writer on the same storage, "
    "no read models followed, no checkpoints signed, writes answered 421 "
    "[env CONSENT_LEDGER_ROLE; all].",
)
@click.option(
    "--committer",
    default=None,
    type=click.Choice(COMMITTERS),
    help="process: one process signs and commits the appends of every worker; thread: each "
    "worker commits its own [env CONSENT_LEDGER_COMMITTER; process].",
)
@click.option(
    "--projections/--no-projections",
    default=None,
    help="Keep the read models up to date in this process [env CONSENT_LEDGER_PROJECTIONS; on]. "
    "Turn off when 'consent-ledger projections run' runs as a process of its own.",
)
@click.option(
    "--signer/--no-signer",
    default=None,
    help="Sign checkpoints (every CONSENT_LEDGER_CHECKPOINT_INTERVAL_MS) in this process "
    "[env CONSENT_LEDGER_SIGNER; on]. Turn off when 'consent-ledger checkpoint --every 0.5' "
    "runs as a process of its own.",
)
@click.option(
    "--admin-token-file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="A file whose token the API accepts with the admin scope "
    "[env CONSENT_LEDGER_ADMIN_TOKEN_FILE; none].",
)
@click.option(
    "--log-format",
    default=None,
    type=click.Choice(logs.FORMATS),
    help="JSON lines or text; auto: text on a terminal [env CONSENT_LEDGER_LOG_FORMAT; auto].",
)
@click.option(
    "--log-level",
    default=None,
    type=click.Choice(logs.LEVELS),
    help="info adds a line per request [env CONSENT_LEDGER_LOG_LEVEL; warning].",
)
@click.option(
    "--shutdown-timeout",
    default=None,
    type=click.IntRange(1, 3600),
    metavar="SECONDS",
    help="On SIGTERM, how long requests in flight may still take "
    "[env CONSENT_LEDGER_SHUTDOWN_TIMEOUT; 20].",
)
@click.pass_context
def serve(ctx: click.Context, /, **flags: Any) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs).

    With --role reads, serve the read routes only, beside a writer on the same storage, so that
    a decision never waits behind an append (docs/operations.md, Reads in processes of their
    own); a read that opens a person's data is still recorded before it is answered.

    SIGTERM or Ctrl-C stops it gracefully: no new connections, the requests in flight get their
    answers, every append handed to the log is committed, and the exit status is 0.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from api.http.listening import TcpConfig

    config: Configuration = ctx.find_root().obj  # every setting, checked before anything starts
    settings = config.ledger
    server = replace(config.server, **{k: v for k, v in flags.items() if v is not None})
    if server.role == "reads":
        # A reads process follows no read model and signs nothing: the writer or processes of
        # their own do. Asked for on its command line, that is a mistake, said so.
        for name in ("projections", "signer"):
            if flags[name]:
                raise click.UsageError(f"--{name} runs in the writer, not with --role reads")
        server = replace(server, projections=False, signer=False)
    if settings.database_url is None:
        if server.workers > 1:
            raise click.UsageError(
                "--workers needs PostgreSQL (--database-url); SQLite has one writer"
            )
        generate_keys(settings)  # the embedded default needs no setup
    if server.admin_token_file is not None:
        token = read_admin_token(server.admin_token_file)
        store = _store(ctx)
        try:
            ensure_admin_client(store, token)
        finally:
            store.close()
    own_committer = server.committer == "process" and server.role == "all"
    # The workers read the same settings from the environment.
    os.environ["CONSENT_LEDGER_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url is not None:
        os.environ["CONSENT_LEDGER_DATABASE_URL"] = settings.database_url
    os.environ.update(server.environment())
    # uvicorn, having shut down gracefully, raises SIGTERM (or SIGINT) again to die by it; this
    # handler makes that a normal exit (status 0), which is what the drain achieved.
    previous = {sig: signal.signal(sig, _exit_normally) for sig in (signal.SIGTERM, signal.SIGINT)}
    options: dict[str, Any] = {
        "factory": True,
        "host": server.host,
        "port": server.port,
        "workers": server.workers,
        "access_log": False,  # request lines may carry subject references: api/logs.py logs
        # Nothing reads the client's address (logs name the client by its token), so uvicorn's
        # X-Forwarded-For middleware would cost every request (6% of the loop's time) for nothing.
        "proxy_headers": False,
        "log_config": logs.dict_config(server.log_format, server.log_level),
        "log_level": server.log_level,
        "timeout_graceful_shutdown": server.shutdown_timeout,
        # Connection cap, header and body timeouts (api/http/limits.py; each worker reads its limits
        # from the environment set above), and how long an idle kept-alive connection stays.
        "http": "api.http.limits:LimitedHttpProtocol",
        "timeout_keep_alive": server.keep_alive_timeout,
    }
    _raise_open_files_limit(server.max_connections)
    click.echo(
        f"serving on http://{server.host}:{server.port} (docs at /docs)"
        f"{', reads only (writes answered 421)' if server.role == 'reads' else ''}, "
        f"{settings.describe_storage()}; read models "
        f"{'in this process' if server.projections else 'run elsewhere'}, checkpoints "
        f"{'signed in this process' if server.signer else 'signed elsewhere'}"
        f"{'; appends committed by a process of their own' if own_committer else ''}"
    )
    committer: CommitterProcess | None = None
    try:
        if own_committer:
            # Started with the workers (their first appends wait for it) and stopped after
            # them: a worker draining its appends on SIGTERM still has its committer.
            committer = start_committer(settings, wait=False)
            os.environ.update(committer.environment())
        if server.workers == 1:
            uvicorn.run("api.http.asgi:create", **options)
        else:  # as uvicorn.run does, but on a TCP socket (api/http/listening.py says why)
            tcp = TcpConfig("api.http.asgi:create", **options)
            with contextlib.suppress(KeyboardInterrupt):
                Multiprocess(tcp, sockets=[tcp.bind_socket()]).run()
    finally:
        if committer is not None:
            committer.stop()
            for name in committer.environment():
                os.environ.pop(name, None)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_normally(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _raise_open_files_limit(connections: int) -> None:
    """Let the process hold ``connections`` sockets plus its files: raise the soft limit on open
    files towards the hard one, and say so when even that is too low (the connection cap is
    then the operating system's, and accept() fails instead of a 503)."""
    import resource

    # Twice the cap (connections past it are kept a second to be answered 503; past twice it,
    # closed at once), plus database connections, SQLite files, logs and the listener.
    wanted = 2 * connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        click.echo(
            f"warning: at most {soft} open files (ulimit -n); CONSENT_LEDGER_MAX_CONNECTIONS="
            f"{connections} needs about {wanted}",
            err=True,
        )


@click.command("healthcheck")
@click.option("--url", default=None, help="The API's address [default: from the settings].")
@click.option("--ready", is_flag=True, help="Ask /readyz (storage and read models) instead.")
@click.option("--timeout", default=3.0, show_default=True, type=click.FloatRange(0.1, 60))
@click.pass_context
def healthcheck(ctx: click.Context, url: str | None, ready: bool, timeout: float) -> None:
    """Exit 0 when the API answers /healthz (or /readyz) with 200: for container health checks."""
    import httpx

    if url is None:
        config: Configuration = ctx.find_root().obj
        server = config.server
        host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "[::]") else server.host  # noqa: S104
        url = f"http://{host}:{server.port}"
    path = "/readyz" if ready else "/healthz"
    try:
        status = httpx.get(url.rstrip("/") + path, timeout=timeout).status_code
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{url}{path}: {exc.__class__.__name__}") from None
    if status != 200:
        raise click.ClickException(f"{url}{path} answered {status}")
    click.echo(f"{path}: ok")


@click.group("clients")
def clients_group() -> None:
    """API clients: bearer tokens with scopes."""


def _store(ctx: click.Context) -> TokenStore:
    config: Configuration = ctx.find_root().obj
    settings = config.ledger
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return open_client_store(settings)


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
        store.close()
    click.echo(f"client {client.name} ({client.client_id}) with scopes {' '.join(sorted(scopes))}")
    click.echo("the token is shown only now; store it safely:")
    click.echo(token)


@clients_group.command("list")
@click.pass_context
def clients_list(ctx: click.Context) -> None:
    """Every client: name, scopes, active or revoked, and whether it signs its appends (the
    key id of its registered Ed25519 key, as its events' entries name it), tab-separated.
    Tokens are never shown."""
    store = _store(ctx)
    try:
        for client in store.list():
            state = f"revoked {client.revoked_at}" if client.revoked_at else "active"
            signs = (
                "unsigned"
                if client.public_key is None
                else f"signs with key {key_id_for(client.public_key)}"
            )
            click.echo(f"{client.name}\t{' '.join(sorted(client.scopes))}\t{state}\t{signs}")
    finally:
        store.close()


@clients_group.command("set-key")
@click.argument("name")
@click.argument("public_key")
@click.pass_context
def clients_set_key(ctx: click.Context, name: str, public_key: str) -> None:
    """Register NAME's Ed25519 PUBLIC_KEY (base64): its appends must be signed from now on."""
    store = _store(ctx)
    try:
        client = store.set_key(name, public_key)
    finally:
        store.close()
    click.echo(f"{client.name} signs its appends from now on (Content-Signature: ed25519=...)")


@clients_group.command("revoke")
@click.argument("name")
@click.pass_context
def clients_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a client's token at once."""
    store = _store(ctx)
    try:
        client = store.revoke(name)
    finally:
        store.close()
    click.echo(f"revoked {client.name} at {client.revoked_at}")


COMMANDS = (serve, healthcheck, clients_group)
