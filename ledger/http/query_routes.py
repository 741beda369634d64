"""The read routes: the same JSON as the CLI's `--json` queries (ledger/views.py), for any
key's role (auditors included)."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ledger.audit.explain import Explanation, RecordNotFound, explain
from ledger.audit.reconcile import ReconcileReport, reconcile
from ledger.audit.verify import head_digest
from ledger.http.auth import reader_role, service_of
from ledger.http.models import DigestView, Health
from ledger.http.openapi import problem_responses
from ledger.http.problems import ProblemError
from ledger.queries import AccountIdInvalid, AccountView
from ledger.times import NotATime, parse_time
from ledger.views import digest_json, json_line, model_json, models_json
from projections.band_timeline import BandChange
from projections.journal import TrialBalanceLine
from projections.queries import AssetView, PointInTime

router = APIRouter(tags=["queries"], dependencies=[Depends(reader_role)])
health_router = APIRouter(tags=["service"])
READ_PROBLEMS = problem_responses(401, 403, 422, 503)

AsOf = Annotated[
    str | None,
    Query(
        description="A past business time (RFC 3339, e.g. 2026-03-01T12:00:00Z): the state then.",
        max_length=64,
    ),
]
AtPosition = Annotated[
    int | None,
    Query(ge=0, le=2**62, description="A log position: the state right after that event."),
]


@router.get(
    "/v1/accounts/{account_id}",
    summary="One account (ledger account ID --json)",
    response_model=AccountView,
    responses=READ_PROBLEMS,
)
async def get_account(
    request: Request,
    account_id: Annotated[str, Path(max_length=200, description="e.g. u1:cross")],
    as_of: AsOf = None,
    at_position: AtPosition = None,
) -> Response:
    when = _point_in_time(as_of, at_position)

    def read() -> Any:
        with service_of(request).reader() as reader:
            try:
                return model_json(reader.account(account_id, when))
            except AccountIdInvalid as error:
                raise _invalid("account_id", str(error)) from None

    return _json(await run_in_threadpool(read))


@router.get(
    "/v1/accounts",
    summary="Every account, or one user's (ledger accounts --json)",
    response_model=list[AccountView],
    responses=READ_PROBLEMS,
)
async def get_accounts(
    request: Request, user: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    def read() -> Any:
        with service_of(request).reader() as reader:
            return models_json(reader.accounts(user=user))

    return _json(await run_in_threadpool(read))


@router.get(
    "/v1/assets",
    summary="Every asset: totals, upper limit, ratio, band (ledger assets --json)",
    response_model=list[AssetView],
    responses=READ_PROBLEMS,
)
async def get_assets(
    request: Request, as_of: AsOf = None, at_position: AtPosition = None
) -> Response:
    when = _point_in_time(as_of, at_position)

    def read() -> Any:
        with service_of(request).reader() as reader:
            return models_json(reader.assets(when))

    return _json(await run_in_threadpool(read))


@router.get(
    "/v1/bands",
    summary="The band timeline (ledger bands [ASSET] --json)",
    response_model=list[BandChange],
    responses=READ_PROBLEMS,
)
async def get_bands(
    request: Request,
    asset: Annotated[str | None, Query(max_length=20)] = None,
    since: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=64)] = None,
) -> Response:
    start, end = _time("from", since), _time("to", until)

    def read() -> Any:
        with service_of(request).reader() as reader:
            return models_json(reader.bands(asset=asset, since=start, until=end))

    return _json(await run_in_threadpool(read))


@router.get(
    "/v1/trial-balance",
    summary="The journal's debits and credits per asset (ledger trial-balance --json)",
    response_model=list[TrialBalanceLine],
    responses=READ_PROBLEMS,
)
async def get_trial_balance(request: Request) -> Response:
    def read() -> Any:
        with service_of(request).reader() as reader:
            return models_json(reader.trial_balance())

    return _json(await run_in_threadpool(read))


@router.get(
    "/v1/explain/{key}",
    summary="One decision told in full (ledger explain KEY --json)",
    response_model=Explanation,
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def get_explanation(
    request: Request,
    key: Annotated[str, Path(max_length=200, description="A request id, or <uuid>:<version>.")],
) -> Response:
    def read() -> Any:
        try:
            return model_json(explain(service_of(request).ledger(), key))
        except RecordNotFound as error:
            raise ProblemError(404, str(error)) from None

    return _json(await run_in_threadpool(read))


@router.get(
    "/v1/digest",
    summary="The hash chain's head, null for an empty log (ledger digest --json)",
    response_model=DigestView | None,
    responses=READ_PROBLEMS,
)
async def get_digest(request: Request) -> Response:
    head = await run_in_threadpool(lambda: head_digest(service_of(request).ledger()))
    return _json(digest_json(head))


@router.get(
    "/v1/reconcile",
    summary="The back office's checks (ledger reconcile --json)",
    response_model=ReconcileReport,
    responses=READ_PROBLEMS,
)
async def get_reconcile(
    request: Request,
    since_checkpoint: Annotated[
        bool,
        Query(description="Check only the accounts changed since the last clean run."),
    ] = False,
) -> Response:
    """Runs every check now (a full replay into a scratch store unless `since_checkpoint`);
    `is_clean` says the result, the HTTP status is 200 either way. A clean run records its log
    position as the next checkpoint, as the CLI's does."""
    service = service_of(request)

    def read() -> Any:
        ledger = service.ledger()
        with service.read_lock:  # its own read models catch up the same tables
            return model_json(reconcile(ledger, since_checkpoint=since_checkpoint))

    return _json(await run_in_threadpool(read))


@health_router.get(
    "/v1/health",
    summary="Whether the database answers (no key needed)",
    response_model=Health,
    responses=problem_responses(503),
)
async def get_health(request: Request) -> Response:
    position = await run_in_threadpool(
        lambda: service_of(request).ledger().recorder.max_notification_id() or 0
    )
    return _json(Health(status="ok", position=position).model_dump(mode="json"))


def _json(data: Any) -> Response:
    return Response(json_line(data), media_type="application/json")


def _point_in_time(as_of: str | None, at_position: int | None) -> PointInTime:
    if as_of is not None and at_position is not None:
        raise _invalid("as_of", "give as_of or at_position, not both")
    return PointInTime(at=_time("as_of", as_of), position=at_position)


def _time(field: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except NotATime as error:
        raise _invalid(field, str(error)) from None


def _invalid(field: str, problem: str) -> ProblemError:
    return ProblemError(422, f"{field}: {problem}", errors=[{"field": field, "problem": problem}])
