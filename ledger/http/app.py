"""The FastAPI application: the ledger over HTTP with the contract of `ledger submit`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ledger.http import command_routes, openapi, page, problems, query_routes
from ledger.http.service import LedgerService

DESCRIPTION = """\
The collateral ledger as a network service: the command contract of `ledger submit`
(COMMANDS.md) and the JSON of the CLI's `--json` queries.

Every route but `/v1/health` needs an API key (`Authorization: Bearer <key>`, created with
`ledger keys create --role service|admin|auditor`): `service` submits user commands, `admin` also
parameter and administrator commands, `auditor` reads only. Errors are `application/problem+json`.
"""


def create_app(url: str | None = None, *, with_page: bool = True) -> FastAPI:
    """The service over the store at `url` (or LEDGER_DATABASE_URL); the store is opened on the
    first request that needs it, so a database that is down at start is answered 503 until it
    answers."""
    service = LedgerService(url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="collateral-ledger",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = service
    problems.install(app)
    app.include_router(command_routes.router)
    app.include_router(query_routes.router)
    app.include_router(query_routes.health_router)
    if with_page:
        app.include_router(page.router)
    openapi.install(app)
    return app
