"""`POST /v1/commands` and `POST /v1/commands:batch`: the contract of `ledger submit` over HTTP.

The same parser, the same write path (`Ledger.execute_batch`) and the same outcome bytes as the
CLI. HTTP statuses: 200 for every decided outcome (accepted, rejected, pending) and for a retry
answered with its first outcome; 422 for input that cannot be a command (nothing recorded); 409
for a request_id reused with another payload; 401/403 before anything is parsed or decided.

A batch is understood whole before anything is decided: one line that is not a command answers
422 for the batch and records nothing. Once understood, it runs as `ledger submit` runs a file:
a command that only the ledger's state makes invalid (an unknown asset, a reused request_id)
gets its `invalid` outcome in its place and the others are decided (200).
"""

import json
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ledger import limits
from ledger.application import Ledger
from ledger.commands import CommandBase, CommandInvalid, parse_command, parse_line
from ledger.errors import RequestIdReused
from ledger.http.auth import authenticated_role, require, service_of
from ledger.http.openapi import COMMAND_SCHEMA, problem_responses
from ledger.http.problems import ProblemError, field_errors
from ledger.http.roles import Access, Role, command_access, may_claim_actor
from ledger.outcomes import Outcome
from ledger.views import json_line

# One command is one line of `ledger submit`: the same bound.
COMMAND_BODY_BYTES_MAX = limits.SUBMIT_LINE_BYTES_MAX
# A batch is decided in one transaction holding the log's write lock: bounded so one request
# cannot hold it (and the server's memory) for long; bigger inputs are several requests.
BATCH_COMMANDS_MAX = 1000
BATCH_BODY_BYTES_MAX = 8 * 1024 * 1024
JSON_LINES_MEDIA_TYPE = "application/x-ndjson"

router = APIRouter(tags=["commands"])


@router.post(
    "/v1/commands",
    summary="Decide and record one command",
    response_model=Outcome,
    responses=problem_responses(401, 403, 409, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": COMMAND_SCHEMA}},
        }
    },
)
async def submit_command(
    request: Request, role: Annotated[Role, Depends(authenticated_role)]
) -> Response:
    """One command (COMMANDS.md) in, its outcome out: exactly the line `ledger submit` prints
    for it. A retry of a recorded request_id with the same payload answers its first outcome
    with `"duplicate": true` and records nothing."""
    require(role, Access.USER_COMMAND)
    body = await _body(request, COMMAND_BODY_BYTES_MAX)
    try:
        command = parse_line(body)
    except CommandInvalid as invalid:
        _check_declared_type(role, _declared_type(_decoded(body)))
        raise ProblemError.invalid(invalid) from None
    _check_command(role, command)
    outcome = await run_in_threadpool(
        service_of(request).write, lambda ledger: _decide(ledger, command)
    )
    return Response(json_line(outcome.to_json_dict()), media_type="application/json")


@router.post(
    "/v1/commands:batch",
    summary="Decide and record a batch of commands, in order",
    response_model=list[Outcome],
    responses=problem_responses(401, 403, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A JSON array of commands, or JSON lines (one command per line, "
            f"`Content-Type: {JSON_LINES_MEDIA_TYPE}`); at most {BATCH_COMMANDS_MAX} commands.",
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": COMMAND_SCHEMA},
                }
            },
        }
    },
)
async def submit_batch(
    request: Request, role: Annotated[Role, Depends(authenticated_role)]
) -> Response:
    """The outcomes in order, decided in one transaction as `ledger submit` decides a file: a
    JSON array answers a JSON array; JSON lines answer exactly the lines `ledger submit` prints
    for the same input."""
    require(role, Access.USER_COMMAND)
    body = await _body(request, BATCH_BODY_BYTES_MAX)
    is_array = body.lstrip().startswith(b"[")
    commands = await run_in_threadpool(_understood, role, body, is_array)
    decided = await run_in_threadpool(
        service_of(request).write, lambda ledger: ledger.execute_batch([c for _, c in commands])
    )
    outcomes = [
        Outcome.of_invalid(number, result) if isinstance(result, CommandInvalid) else result
        for (number, _), result in zip(commands, decided, strict=True)
    ]
    if is_array:
        body_out = json_line([o.to_json_dict() for o in outcomes])
        return Response(body_out, media_type="application/json")
    lines = "".join(json_line(o.to_json_dict()) for o in outcomes)
    return Response(lines, media_type=JSON_LINES_MEDIA_TYPE)


def _understood(role: Role, body: bytes, is_array: bool) -> list[tuple[int, CommandBase]]:
    """Every command of a batch with its line (its 1-based place in an array), or the problem
    that refuses the whole batch: too many (413), a command the role may not send (403), a
    line that is not a command (422, every such line named)."""
    numbered = _array_items(body) if is_array else _lines(body)
    if len(numbered) > BATCH_COMMANDS_MAX:
        raise ProblemError(413, f"more than {BATCH_COMMANDS_MAX} commands: split the batch")
    parsed = [(number, _parse(role, item)) for number, item in numbered]
    errors = [
        error
        for number, result in parsed
        if isinstance(result, CommandInvalid)
        for error in field_errors(result.errors, line=number)
    ]
    if errors:
        detail = f"{len({e['line'] for e in errors})} of {len(parsed)} commands are invalid"
        raise ProblemError(422, f"{detail}; nothing was recorded", errors=errors)
    return [(number, result) for number, result in parsed if isinstance(result, CommandBase)]


def _decide(ledger: Ledger, command: CommandBase) -> Outcome:
    try:
        return ledger.execute(command)
    except RequestIdReused as reused:
        raise ProblemError.invalid(reused, status=409) from None
    except CommandInvalid as invalid:
        raise ProblemError.invalid(invalid) from None


def _parse(role: Role, item: bytes | Any) -> CommandBase | CommandInvalid:
    """One command of a batch (a JSON line, or an array's decoded item); 403 for a command the
    role may not send, valid or not."""
    try:
        command = parse_line(item) if isinstance(item, bytes) else parse_command(item)
    except CommandInvalid as invalid:
        data = _decoded(item) if isinstance(item, bytes) else item
        _check_declared_type(role, _declared_type(data))
        return invalid
    _check_command(role, command)
    return command


def _check_command(role: Role, command: CommandBase) -> None:
    _check_declared_type(role, command.command_type)
    if not may_claim_actor(role, command.actor):
        raise ProblemError(403, f"the {role.value} role may not send commands as {command.actor}")


def _check_declared_type(role: Role, command_type: str | None) -> None:
    """403 for a command type the role may not send, before its fields are judged: a key learns
    nothing about commands it may not use. Unknown types are left to the parser (422)."""
    access = None if command_type is None else command_access(command_type)
    if access is not None:
        require(role, access)


def _declared_type(data: Any) -> str | None:
    value = data.get("type") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=lambda name: name)
    except ValueError:  # not JSON, not UTF-8: the parser says which
        return None


def _lines(body: bytes) -> list[tuple[int, bytes]]:
    """JSON lines numbered as `ledger submit` numbers them (blank lines count, and are skipped)."""
    return [
        (number, text) for number, text in enumerate(body.split(b"\n"), start=1) if text.strip()
    ]


def _array_items(body: bytes) -> list[tuple[int, Any]]:
    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=lambda name: name)
    except ValueError as error:
        raise _body_invalid(f"malformed JSON: {error}") from None
    if not isinstance(data, list):
        raise _body_invalid("must be a JSON array, or JSON lines")
    return list(enumerate(data, start=1))


def _body_invalid(problem: str) -> ProblemError:
    return ProblemError(422, f"body: {problem}", errors=[{"field": "body", "problem": problem}])


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProblemError(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
