"""Errors as `application/problem+json` (RFC 9457): one model, one exception, their handlers."""

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.commands import CommandInvalid, FieldError
from ledger.errors import DATABASE_ERRORS

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("ledger.http")

# Each problem's `type` (a URI reference, resolved against the service) and `title`.
TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "No valid API key"),
    403: ("forbidden", "The key's role may not do this"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("request-id-reused", "The request_id was already used for another request"),
    413: ("too-large", "Request too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    500: ("internal-error", "Internal error"),
    503: ("database-unavailable", "The database is unreachable"),
}


class Problem(BaseModel):
    """An error answer. `errors` names each field and its problem (422, 409), as the `invalid`
    outcome of `ledger submit` does; batches add the `line` (1-based) of each."""

    model_config = ConfigDict(frozen=True)

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemError(Exception):
    """Raised anywhere in a request: answered as its problem, nothing recorded."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        request_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers
        self.request_id, self.errors = request_id, errors

    @classmethod
    def invalid(cls, invalid: CommandInvalid, status: int = 422) -> "ProblemError":
        return cls(
            status,
            "; ".join(f"{e.field}: {e.problem}" for e in invalid.errors),
            request_id=invalid.request_id,
            errors=field_errors(invalid.errors),
        )


def field_errors(errors: list[FieldError], line: int | None = None) -> list[dict[str, Any]]:
    where = {} if line is None else {"line": line}
    return [where | e.model_dump() for e in errors]


def problem_response(error: ProblemError) -> Response:
    slug, title = TITLES.get(error.status, ("error", "Error"))
    problem = Problem(
        type=f"/problems/{slug}",
        title=title,
        status=error.status,
        detail=error.detail,
        request_id=error.request_id,
        errors=error.errors,
    )
    body = problem.model_dump(mode="json", exclude_none=True)
    return Response(
        json.dumps(body, ensure_ascii=True) + "\n",
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=error.headers,
    )


def install(app: FastAPI) -> None:
    """Every error the service answers is a problem: ours, the framework's, the database's."""

    @app.exception_handler(ProblemError)
    async def _problem(_request: Request, error: ProblemError) -> Response:
        return problem_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> Response:
        return problem_response(ProblemError(error.status_code, str(error.detail)))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> Response:
        # Query and path parameters: named like the CLI's field errors.
        errors = [
            {
                "field": ".".join(str(p) for p in item["loc"][1:]) or "request",
                "problem": item["msg"],
            }
            for item in error.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['problem']}" for e in errors)
        return problem_response(ProblemError(422, detail, errors=errors))

    for database_error in DATABASE_ERRORS:
        app.add_exception_handler(database_error, _database)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, error: Exception) -> Response:
        # Logged with its trace by the server (Starlette re-raises it); the client gets no trace.
        return problem_response(ProblemError(500, "an internal error; it was logged"))


def _field(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location[1:]) or "request"  # without "query"/"path"


async def _database(_request: Request, error: Exception) -> Response:
    log.warning("database error: %s", error)
    return problem_response(
        ProblemError(503, f"database error: {type(error).__name__}", headers={"Retry-After": "1"})
    )
