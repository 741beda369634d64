"""`ledger serve` and `ledger keys`: the ledger as an HTTP service with roles by API key.

FastAPI and uvicorn are imported inside `serve` only: no other command pays their import time.
"""

from contextlib import suppress
from typing import Annotated

import typer

from ledger.cli.main import EXIT_CANNOT_RUN, DbOption, JsonOption, app, open_ledger
from ledger.cli.output import error, note, print_json, stdout, table
from ledger.http.roles import Role
from ledger.persistence import DatabaseUrlError, database_url, env_for_url

keys_app = typer.Typer(
    help="API keys of `ledger serve`: create (the key is shown once), list, revoke.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8080,
    page: Annotated[
        bool,
        typer.Option(
            "--page/--no-page",
            help="Serve the risk officers' band page at / (per-asset aggregates, no key needed).",
        ),
    ] = True,
    log_level: Annotated[
        str, typer.Option(help="uvicorn's log level: critical, error, warning, info, debug.")
    ] = "info",
) -> None:
    """Serve the ledger over HTTP: POST /v1/commands and /v1/commands:batch (the contract of
    `ledger submit`), the queries under /v1/, the band page at /, OpenAPI at /openapi.json.
    Requests need an API key from `ledger keys create`. A database that is down answers 503
    until it is back. Stops on Ctrl-C or SIGTERM; exit code 2 when it could not start.

    Example: ledger serve --db sqlite:///ledger.sqlite3 --port 8080
    """
    import uvicorn

    from ledger.http.app import create_app

    if log_level not in ("critical", "error", "warning", "info", "debug"):
        error(f"--log-level: unknown level {log_level!r}")
        raise typer.Exit(EXIT_CANNOT_RUN)
    try:
        env_for_url(database_url(db))
    except DatabaseUrlError as exc:
        error(str(exc))
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    config = uvicorn.Config(
        create_app(db, with_page=page),
        host=host,
        port=port,
        log_level=log_level,
        server_header=False,
    )
    server = uvicorn.Server(config)
    with suppress(SystemExit):  # uvicorn exits when it cannot bind: said below
        server.run()
    if not server.started:
        error(f"could not listen on {host}:{port} (see the log above)")
        raise typer.Exit(EXIT_CANNOT_RUN)


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="service, admin or auditor.", case_sensitive=False)],
    name: Annotated[
        str, typer.Option(help="Who holds it (1-64 of A-Z a-z 0-9 . _ : @ -).")
    ] = "unnamed",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key and print it ONCE (only its SHA-256 is stored): `service` submits user
    commands, `admin` also parameter and administrator commands, `auditor` reads only.

    Example: ledger keys create --role service --name transfer-service
    """
    from ledger.http.keys import NAME_PATTERN, KeyStore

    if not NAME_PATTERN.match(name):
        error(f"--name: {name!r} must be 1-64 characters of A-Z a-z 0-9 . _ : @ -")
        raise typer.Exit(EXIT_CANNOT_RUN)
    with open_ledger(db) as ledger:
        created = KeyStore(ledger).create(role, name)
    if as_json:
        print_json({"key": created.key} | created.listed.model_dump(mode="json"))
        return
    stdout.print(created.key, markup=False, highlight=False, soft_wrap=True)
    note(
        f"key id {created.listed.key_id} ({created.listed.role.value}, {name}): the key is "
        "shown this once; send it as 'Authorization: Bearer <key>'"
    )


@keys_app.command("list")
def keys_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the API keys: id, name, role, created, revoked (never the key).

    Example: ledger keys list --json
    """
    from ledger.http.keys import KeyStore

    with open_ledger(db) as ledger:
        keys = KeyStore(ledger).all_keys()
    if as_json:
        print_json([k.model_dump(mode="json") for k in keys])
        return
    stdout.print(
        table(
            "API keys",
            ["key id", "name", "role", "created at", "revoked at"],
            [(k.key_id, k.name, k.role.value, k.created_at, k.revoked_at) for k in keys],
        )
    )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id, as `ledger keys list` shows it.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an API key: refused (401) from the next request on. Exit code 2 for an unknown id.

    Example: ledger keys revoke 3f2a9c01b7de
    """
    from ledger.http.keys import KeyNotFound, KeyStore

    with open_ledger(db) as ledger:
        try:
            revoked = KeyStore(ledger).revoke(key_id)
        except KeyNotFound as exc:
            error(str(exc))
            raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        print_json(revoked.model_dump(mode="json"))
        return
    note(f"revoked {revoked.key_id} ({revoked.role.value}, {revoked.name}) at {revoked.revoked_at}")
