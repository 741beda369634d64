"""Property-based fuzzing from the service's own OpenAPI document (schemathesis): whatever the
generated request, no 5xx answer, and a request answered 4xx recorded no event."""

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from ledger import Ledger
from ledger.http.roles import Role
from tests.http.server import Server, events_in
from tests.support import command

# Per operation: ~13 operations, both backends, well under the suite's time budget.
EXAMPLES_PER_OPERATION = 25


def test_generated_requests_never_fail_the_server_nor_record_on_4xx(server: Server) -> None:
    with server.client(Role.ADMIN) as admin:
        setup = [
            command("list_asset", "z1", asset="USDT", collateral_rank=1),
            command("list_asset", "z2", asset="ABC", collateral_rank=8),
        ]
        assert admin.post("/v1/commands:batch", json=setup).status_code == 200
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {server.keys[Role.ADMIN]}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    with Ledger(server.url) as ledger:
        for operation in operations:
            _fuzz(operation, headers, lambda: events_in(ledger))


def _fuzz(
    operation: schemathesis.APIOperation, headers: dict[str, str], events: Callable[[], int]
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: schemathesis.Case) -> None:
        before = events()
        response = case.call(base_url=operation.base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=[not_a_server_error])
        assert response.status_code < 500, (case.method, case.path, response.text)
        if 400 <= response.status_code < 500:
            assert events() == before, (case.method, case.formatted_path, response.text)

    try:
        check()
    except Exception as error:
        pytest.fail(f"{operation}: {error}")
