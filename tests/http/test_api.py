"""The HTTP service end to end: a real `ledger serve`, driven with httpx, on both backends.

Every status of the contract (200 for accepted, rejected, pending and retries; 401, 403, 409,
413, 422), every role, idempotent retries, and nothing recorded for a request answered 4xx.
"""

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ledger import Ledger
from ledger.http.keys import KeyStore
from ledger.http.roles import Role
from tests.http.server import Server, events_in
from tests.support import at, command

ASSET = "HTC"  # rank 8, U = 100,000 at price 1: band A up to 80,000
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def events(server: Server) -> Iterator[Callable[[], int]]:
    """How many events the server's store holds now."""
    with Ledger(server.url) as ledger:
        yield lambda: events_in(ledger)


@pytest.fixture(scope="module", autouse=True)
def market(server: Server) -> None:
    setup = [
        command("list_asset", "m1", asset="USDT", collateral_rank=1),
        command("list_asset", "m2", asset=ASSET, collateral_rank=8),
        command("set_collateral_cap", "m3", asset=ASSET, upper_limit="100000"),
        command("mark_prices", "m4", prices={ASSET: "1"}),
    ]
    with server.client(Role.ADMIN) as admin:
        answer = admin.post("/v1/commands:batch", json=setup)
    assert answer.status_code == 200, answer.text
    assert [o["status"] for o in answer.json()] == ["accepted"] * 4


def transfer(request_id: str, user: str, quantity: str, **fields: Any) -> dict[str, Any]:
    return command(
        "transfer_in",
        request_id,
        user=user,
        account="cross",
        asset=ASSET,
        quantity=quantity,
        **({"effective_at": at(10)} | fields),
    )


def post(client: httpx.Client, data: Any, path: str = "/v1/commands") -> httpx.Response:
    return client.post(path, content=json.dumps(data))


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = answer.json()
    assert problem["status"] == status
    assert problem["type"].startswith("/problems/") and problem["title"] and problem["detail"]
    assert "Traceback" not in answer.text
    return problem


# --- 200: decided outcomes and retries ------------------------------------------------------------


def test_accepted_rejected_and_pending_are_200_with_the_contracts_outcome(server: Server) -> None:
    with server.client(Role.SERVICE) as service:
        accepted = post(service, transfer("a-1", "alice", "1000"))
        rejected = post(service, transfer("a-2", "bob", "90000"))  # past q_max = 79,000
        pending = post(service, transfer("a-3", "carol", "10", channel="client", risk_flagged=True))
    for answer in (accepted, rejected, pending):
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
    assert accepted.json()["status"] == "accepted"
    assert accepted.json()["account"] == "alice:cross"
    body = rejected.json()
    assert (body["status"], body["reason"]) == ("rejected", "collateral_cap")
    assert body["context"]["q_max"] == "79000" and body["context"]["band"] == "A"
    assert body["message"].startswith(f"{ASSET} has reached platform max pledged collateral")
    assert pending.json()["status"] == "pending"


def test_a_retry_answers_the_first_outcome_as_a_duplicate_and_records_nothing(
    server: Server, events: Callable[[], int]
) -> None:
    with server.client(Role.SERVICE) as service:
        first = post(service, transfer("r-1", "dave", "500"))
        before = events()
        again = post(service, transfer("r-1", "dave", "500"))
        in_a_batch = post(service, [transfer("r-1", "dave", "500")], "/v1/commands:batch")
    assert again.status_code == 200
    assert again.json() == first.json() | {"duplicate": True}
    assert in_a_batch.json() == [again.json()]
    assert events() == before


def test_a_reused_request_id_with_another_payload_is_409_and_records_nothing(
    server: Server, events: Callable[[], int]
) -> None:
    with server.client(Role.SERVICE) as service:
        assert post(service, transfer("x-1", "erin", "100")).status_code == 200
        before = events()
        answer = post(service, transfer("x-1", "erin", "200"))
    problem = assert_problem(answer, 409)
    assert problem["request_id"] == "x-1"
    assert problem["errors"] == [
        {
            "field": "request_id",
            "problem": "was already used for a different request (idempotency key)",
        }
    ]
    assert events() == before


# --- 422: invalid input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        pytest.param(
            transfer("i-1", "frank", "0"), "quantity", "must be greater than 0", id="zero"
        ),
        pytest.param(
            transfer("i-2", "frank", "1") | {"colour": "red"},
            "colour",
            "is not a field of this command",
            id="extra-field",
        ),
        pytest.param({"request_id": "i-3"}, "type", "is required", id="no-type"),
        pytest.param(
            transfer("i-4", "frank", "1") | {"asset": "NOPE"},
            "asset",
            "is not a listed asset",
            id="unknown-asset",
        ),
    ],
)
def test_invalid_input_is_422_naming_the_field_and_records_nothing(
    server: Server, events: Callable[[], int], body: dict[str, Any], field: str, problem: str
) -> None:
    before = events()
    with server.client(Role.SERVICE) as service:
        answer = post(service, body)
    found = assert_problem(answer, 422)
    assert [e["field"] for e in found["errors"]] == [field], found
    assert problem in found["errors"][0]["problem"]
    assert events() == before


def test_malformed_json_is_422(server: Server) -> None:
    with server.client(Role.SERVICE) as service:
        answer = service.post("/v1/commands", content=b'{"type": "transfer_in",')
    found = assert_problem(answer, 422)
    assert found["errors"][0]["field"] == "line"
    assert found["errors"][0]["problem"].startswith("malformed JSON")


def test_a_batch_with_one_invalid_command_is_422_with_its_line_and_records_nothing(
    server: Server, events: Callable[[], int]
) -> None:
    lines = [transfer("b-1", "gina", "10"), transfer("b-2", "gina", "-5")]
    before = events()
    with server.client(Role.SERVICE) as service:
        answer = service.post(
            "/v1/commands:batch", content="\n".join(json.dumps(line) for line in lines)
        )
    found = assert_problem(answer, 422)
    assert found["errors"] == [
        {"line": 2, "field": "quantity", "problem": "must be greater than 0"}
    ]
    assert events() == before


# --- batches --------------------------------------------------------------------------------------


def test_a_batch_answers_in_order_as_an_array_or_as_json_lines(server: Server) -> None:
    array = [transfer("c-1", "hank", "10"), transfer("c-2", "hank", "20")]
    lines = [transfer("c-3", "hank", "30"), transfer("c-4", "hank", "999999")]
    with server.client(Role.SERVICE) as service:
        as_array = post(service, array, "/v1/commands:batch")
        as_lines = service.post(
            "/v1/commands:batch",
            content="".join(json.dumps(line) + "\n\n" for line in lines),
            headers={"content-type": "application/x-ndjson"},
        )
    assert as_array.status_code == 200 and as_lines.status_code == 200
    assert [o["request_id"] for o in as_array.json()] == ["c-1", "c-2"]
    assert as_lines.headers["content-type"] == "application/x-ndjson"
    decided = [json.loads(line) for line in as_lines.text.splitlines()]
    assert [(o["request_id"], o["status"]) for o in decided] == [
        ("c-3", "accepted"),
        ("c-4", "rejected"),
    ]


def test_a_command_only_the_ledgers_state_refuses_gets_its_invalid_outcome_in_a_batch(
    server: Server,
) -> None:
    batch = [transfer("d-1", "ivan", "10"), transfer("d-2", "ivan", "10") | {"asset": "NOPE"}]
    with server.client(Role.SERVICE) as service:
        answer = post(service, batch, "/v1/commands:batch")
    assert answer.status_code == 200
    first, second = answer.json()
    assert first["status"] == "accepted"
    assert second == {
        "request_id": "d-2",
        "status": "invalid",
        "line": 2,
        "errors": [{"field": "asset", "problem": second["errors"][0]["problem"]}],
    }


# --- 413: limits ----------------------------------------------------------------------------------


def test_a_body_or_a_batch_past_the_limits_is_413_and_records_nothing(
    server: Server, events: Callable[[], int]
) -> None:
    from ledger.http.command_routes import BATCH_COMMANDS_MAX, COMMAND_BODY_BYTES_MAX

    before = events()
    too_long = [transfer(f"l-{n}", "judy", "1") for n in range(BATCH_COMMANDS_MAX + 1)]
    with server.client(Role.SERVICE) as service:
        big = post(service, transfer("l-x", "judy", "1") | {"note": "x" * COMMAND_BODY_BYTES_MAX})
        many = post(service, too_long, "/v1/commands:batch")
    assert_problem(big, 413)
    assert "more than 1000 commands" in assert_problem(many, 413)["detail"]
    assert events() == before


# --- 401 / 403: keys and roles --------------------------------------------------------------------


def test_no_key_an_unknown_key_or_a_revoked_key_is_401_and_records_nothing(
    server: Server, events: Callable[[], int]
) -> None:
    with Ledger(server.url) as ledger:
        store = KeyStore(ledger)
        revoked = store.create(Role.ADMIN, "leaver")
        store.revoke(revoked.listed.key_id)
    forged = revoked.key[:-4] + "AAAA"
    before = events()
    for key in (None, "not-a-key", forged, revoked.key):
        with server.client(key=key) as client:
            for answer in (
                post(client, transfer("k-1", "kim", "1")),
                client.get("/v1/assets"),
            ):
                assert_problem(answer, 401)
                assert answer.headers["www-authenticate"].startswith("Bearer")
    assert events() == before


@pytest.mark.parametrize(
    ("role", "body"),
    [
        pytest.param(Role.AUDITOR, transfer("f-1", "leo", "1"), id="auditor-user-command"),
        pytest.param(
            Role.SERVICE,
            command("mark_prices", "f-2", prices={ASSET: "2"}),
            id="service-parameter",
        ),
        pytest.param(
            Role.SERVICE,
            command("admin_force_classic", "f-3", user="leo", to="classic_5x", note="x"),
            id="service-admin-command",
        ),
        pytest.param(
            Role.SERVICE,
            command("accrue_interest", "f-4", until=at(60)),
            id="service-job",
        ),
        pytest.param(
            Role.SERVICE,
            command("set_collateral_cap", "f-5", asset=ASSET, upper_limit="-1"),
            id="service-invalid-parameter",
        ),
        pytest.param(
            Role.SERVICE, transfer("f-6", "leo", "1", actor="admin:mallory"), id="service-as-admin"
        ),
    ],
)
def test_a_role_that_may_not_is_403_and_records_nothing(
    server: Server, events: Callable[[], int], role: Role, body: dict[str, Any]
) -> None:
    before = events()
    with server.client(role) as client:
        single = post(client, body)
        batch = post(client, [transfer("f-ok", "leo", "1"), body], "/v1/commands:batch")
    assert_problem(single, 403)
    assert_problem(batch, 403)
    assert events() == before


def test_an_admin_may_send_parameters_and_user_commands(server: Server) -> None:
    with server.client(Role.ADMIN) as admin:
        price = post(admin, command("mark_prices", "g-1", prices={ASSET: "1"}, effective_at=at(20)))
        user = post(admin, transfer("g-2", "mia", "1", actor="admin:ops", effective_at=at(30)))
    assert price.json()["status"] == "accepted"
    assert user.json()["status"] == "accepted"


def submit_the_first_requests(server: Server) -> None:
    """What the module's first test submits (a-1 accepted, a-2 refused), for a test that reads
    it: retries answered with the first outcomes when that test ran, so any order works."""
    with server.client(Role.SERVICE) as service:
        for answer in (
            post(service, transfer("a-1", "alice", "1000")),
            post(service, transfer("a-2", "bob", "90000")),
        ):
            assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.SERVICE, Role.ADMIN])
def test_every_role_reads(server: Server, role: Role) -> None:
    submit_the_first_requests(server)
    with server.client(role) as client:
        for path in (
            "/v1/assets",
            "/v1/accounts/alice:cross",
            "/v1/accounts",
            "/v1/bands",
            "/v1/digest",
            "/v1/trial-balance",
            "/v1/explain/a-1",
        ):
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text)


# --- queries --------------------------------------------------------------------------------------


def test_queries_answer_with_their_figures_and_refuse_bad_parameters(server: Server) -> None:
    submit_the_first_requests(server)
    with server.client(Role.AUDITOR) as auditor:
        (asset,) = [a for a in auditor.get("/v1/assets").json() if a["asset"] == ASSET]
        before = auditor.get("/v1/assets", params={"as_of": at(1)}).json()
        account = auditor.get("/v1/accounts/alice:cross").json()
        then = auditor.get("/v1/accounts/alice:cross", params={"at_position": 1}).json()
        explained = auditor.get("/v1/explain/a-2").json()
        missing = auditor.get("/v1/explain/no-such-request")
        bad_time = auditor.get("/v1/assets", params={"as_of": "yesterday"})
        bad_account = auditor.get("/v1/accounts/alice:savings")
        both = auditor.get("/v1/accounts/alice:cross", params={"as_of": at(1), "at_position": 3})
        head = auditor.get("/v1/digest").json()["position"]
        at_head = auditor.get("/v1/assets", params={"at_position": head}).json()
        now = auditor.get("/v1/assets").json()
        at_start = auditor.get("/v1/assets", params={"at_position": 0}).json()
        both_assets = auditor.get("/v1/assets", params={"as_of": at(1), "at_position": 3})
    assert asset["capped"] and asset["band"] in {"A", "B"} and asset["upper_limit"] == "100000"
    assert [a["total"] for a in before if a["asset"] == ASSET] == ["0"]
    assert account["holdings"] == {ASSET: "1000"} and account["status"] == "open"
    assert then["status"] == "not_open"
    assert (explained["request_id"], explained["reason"]) == ("a-2", "collateral_cap")
    assert_problem(missing, 404)
    assert assert_problem(bad_time, 422)["errors"][0]["field"] == "as_of"
    assert assert_problem(bad_account, 422)["errors"][0]["field"] == "account_id"
    assert_problem(both, 422)
    assert at_head == now and at_start == []  # right after the last event; before the first
    assert_problem(both_assets, 422)


def test_reconcile_reports_a_clean_store(server: Server) -> None:
    with server.client(Role.AUDITOR) as auditor:
        answer = auditor.get("/v1/reconcile")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["is_clean"] is True
    assert {c["name"] for c in report["checks"]} >= {"read_models", "asset_totals", "journal"}


def test_openapi_documents_every_route_with_the_command_models(server: Server) -> None:
    document = httpx.get(f"{server.base_url}/openapi.json").json()
    assert set(document["paths"]) >= {
        "/v1/commands",
        "/v1/commands:batch",
        "/v1/accounts/{account_id}",
        "/v1/assets",
        "/v1/bands",
        "/v1/explain/{key}",
        "/v1/digest",
        "/v1/reconcile",
    }
    schemas = document["components"]["schemas"]
    assert {"Command", "TransferIn", "ListAsset", "Outcome", "Problem", "AssetView"} <= set(schemas)
    body = document["paths"]["/v1/commands"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Command"}
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
