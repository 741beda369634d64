"""`ledger schema`, every command's --help (with an example, as sqlite-utils' test_docs.py), and
`ledger demo`."""

import re
from decimal import Decimal

import pytest

from ledger.cli.main import app
from tests.cli.cli_support import (
    CAP_MESSAGE,
    EXIT_CANNOT_RUN,
    EXIT_OK,
    OPENING_RISK_MESSAGE,
    event_count,
    invoke,
    json_lines,
)

COMMAND_TYPES = {
    "list_asset",
    "set_collateral_cap",
    "set_account_quota",
    "mark_prices",
    "transfer_in",
    "complete_verification",
    "transfer_out",
}
CLI_COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)  # type: ignore[union-attr]


# --- schema ---------------------------------------------------------------------------------


def test_schema_prints_one_json_document_of_commands_events_and_outcome() -> None:
    result = invoke("schema")

    assert result.exit_code == EXIT_OK
    assert result.stderr == ""
    [document] = json_lines(result.stdout)
    assert set(document) == {"commands", "events", "outcome", "queries"}
    assert set(document["commands"]) >= COMMAND_TYPES
    assert document["events"]
    assert all(schema["type"] == "object" for schema in document["events"].values())
    # Every aggregate's events, the account's lending, trading and risk events included.
    assert {
        "MarginAccount.TransferredIn",
        "MarginAccount.Borrowed",
        "MarginAccount.TradeSettled",
        "MarginAccount.Liquidated",
        "AssetPool.TotalIncreased",
        "InsuranceFund.DeficitCovered",
        "RiskParameters.ThresholdsSet",
        "UserProfile.CoolingOffStarted",
        "Request.Recorded",
    } <= set(document["events"])
    assert set(document["queries"]) == {
        "account",
        "asset",
        "band_change",
        "trial_balance_line",
        "projection_status",
    }
    assert {"account", "holdings", "margin_level"} <= set(
        document["queries"]["account"]["properties"]
    )


def test_schema_of_each_command_names_its_type_and_common_fields() -> None:
    [document] = json_lines(invoke("schema").stdout)

    for command_type in COMMAND_TYPES:
        schema = document["commands"][command_type]
        assert schema["properties"]["type"]["const"] == command_type, command_type
        assert {"type", "request_id", "effective_at", "actor"} <= set(schema["properties"])
        assert {"type", "request_id"} <= set(schema["required"])
        assert schema["additionalProperties"] is False  # unknown fields are invalid


def test_schema_of_transfer_in_lists_its_fields() -> None:
    [document] = json_lines(invoke("schema").stdout)
    transfer_in = document["commands"]["transfer_in"]

    assert set(transfer_in["properties"]) == {
        "type",
        "request_id",
        "effective_at",
        "actor",
        "user",
        "account",
        "asset",
        "quantity",
        "channel",
        "risk_flagged",
    }
    assert set(transfer_in["required"]) == {
        "type",
        "request_id",
        "user",
        "account",
        "asset",
        "quantity",
    }


def test_schema_of_the_outcome_has_the_contract_fields_and_statuses() -> None:
    [document] = json_lines(invoke("schema").stdout)
    outcome = document["outcome"]

    assert {
        "request_id",
        "status",
        "reason",
        "message",
        "account",
        "events",
        "context",
        "duplicate",
        "line",
        "errors",
    } <= set(outcome["properties"])
    definitions = outcome["$defs"]
    assert set(definitions["Status"]["enum"]) == {"accepted", "rejected", "pending", "invalid"}
    assert {
        "collateral_cap",
        "opening_risk_check",
        "insufficient_balance",
        "margin_level",
        "account_not_open",
    } <= set(definitions["RejectionReason"]["enum"])


# --- help -----------------------------------------------------------------------------------


def test_every_contract_command_is_registered() -> None:
    assert {"submit", "schema", "demo", "account", "assets"} <= set(CLI_COMMANDS)


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = invoke(command, "--help")

    assert result.exit_code == EXIT_OK
    assert f"Usage: ledger {command}" in result.stdout
    example = re.search(r"Example: (.*)", result.stdout)
    assert example, result.stdout
    assert re.search(rf"\bledger {command}\b", result.stdout.split("Example:", 1)[1])


def test_main_help_documents_the_exit_codes() -> None:
    result = invoke("--help")

    assert result.exit_code == EXIT_OK
    text = " ".join(result.stdout.split())
    assert "Exit codes: 0 every line was processed" in text
    assert "1 some input was invalid" in text
    assert "2 the command could not run" in text


def test_submit_help_documents_the_exit_codes() -> None:
    text = " ".join(invoke("submit", "--help").stdout.split())

    assert "Exit code 0 when every line was processed" in text
    assert "1 when at least one line was invalid" in text
    assert "2 when the command could not run" in text


# --- demo -----------------------------------------------------------------------------------


def test_demo_json_prints_only_outcome_lines(database_url: str) -> None:
    result = invoke("demo", "--json", "--db", database_url)

    assert result.exit_code == EXIT_OK
    assert result.stderr == ""
    outcomes = json_lines(result.stdout)
    assert outcomes
    assert {o["status"] for o in outcomes} <= {"accepted", "rejected", "pending"}
    assert all(isinstance(o["request_id"], str) and o["duplicate"] is False for o in outcomes)
    reasons = [o.get("reason") for o in outcomes if o["status"] == "rejected"]
    assert "collateral_cap" in reasons
    assert "opening_risk_check" in reasons
    assert event_count(database_url) > 0


def test_demo_rejections_carry_the_exact_messages(database_url: str) -> None:
    outcomes = json_lines(invoke("demo", "--json", "--db", database_url).stdout)

    for outcome in outcomes:
        if outcome.get("reason") == "collateral_cap":
            context = outcome["context"]
            assert outcome["message"] == CAP_MESSAGE.format(
                asset=context["asset"], q_max=context["q_max"]
            )
            assert Decimal(context["requested"]) > Decimal(context["q_max"])
        elif outcome.get("reason") == "opening_risk_check":
            assert outcome["message"] == OPENING_RISK_MESSAGE


def test_demo_refuses_a_store_that_already_holds_events(database_url: str) -> None:
    assert invoke("demo", "--json", "--db", database_url).exit_code == EXIT_OK
    before = event_count(database_url)

    result = invoke("demo", "--json", "--db", database_url)

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {database_url} already holds events; the demo needs an empty store"
    ]
    assert event_count(database_url) == before


def test_demo_without_db_prints_tables_for_people() -> None:
    result = invoke("demo")

    assert result.exit_code == EXIT_OK
    assert result.stderr == ""
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "Outcomes" in lines
    assert "Assets" in lines
