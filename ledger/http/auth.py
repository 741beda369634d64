"""Authentication by API key (`Authorization: Bearer <key>`) and the role checks of each route.

No key, or one that is unknown or revoked: 401. A key whose role may not do it: 403. Both are
answered before any command is decided, so nothing is recorded for them.
"""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.http.problems import ProblemError
from ledger.http.roles import Access, Role, may
from ledger.http.service import LedgerService

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `ledger keys create --role service|admin|auditor`.",
)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ledger"'}


def service_of(request: Request) -> LedgerService:
    service = request.app.state.service
    assert isinstance(service, LedgerService), service
    return service


async def authenticated_role(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Role:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(401, "send an API key: Authorization: Bearer <key>", headers=CHALLENGE)
    service = service_of(request)
    role = await run_in_threadpool(lambda: service.keys().role_of(credentials.credentials))
    if role is None:
        raise ProblemError(401, "the API key is unknown or revoked", headers=CHALLENGE)
    return role


async def reader_role(role: Annotated[Role, Depends(authenticated_role)]) -> Role:
    require(role, Access.READ)
    return role


def require(role: Role, access: Access) -> None:
    if not may(role, access):
        raise ProblemError(403, f"the {role.value} role may not {_doing(access)}")


def _doing(access: Access) -> str:
    return {
        Access.READ: "read",
        Access.USER_COMMAND: "submit commands",
        Access.ADMIN_COMMAND: "submit parameter or administrator commands",
    }[access]
