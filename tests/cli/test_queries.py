"""`ledger account ID` and `ledger assets` (COMMANDS.md "Queries"): JSON with quantities as
strings under --json, tables for people without it, exit 2 for an account id that is not one."""

from typing import Any

import pytest

from tests.cli.cli_support import (
    EXIT_CANNOT_RUN,
    EXIT_OK,
    UNREACHABLE_POSTGRES_FAST_URL,
    cmd,
    event_count,
    invoke,
    json_lines,
    query,
    set_up_market,
    submit,
    transfer_in,
)

ACCOUNT_KEYS = ("account", "kind", "status", "mode", "holdings", "liabilities", "interest")
ASSET_KEYS = (
    "asset",
    "collateral_rank",
    "capped",
    "total",
    "isolated_total",
    "upper_limit",
    "ratio",
    "band",
)


def pick(document: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    missing = set(keys) - set(document)
    assert not missing, missing
    return {k: document[k] for k in keys}


def test_account_json_of_an_open_cross_account(database_url: str) -> None:
    set_up_market(database_url)
    assert submit(
        database_url,
        [
            transfer_in("t-1", "u1", "8000.50", minute=10),
            transfer_in("t-2", "u1", "100", asset="USDT", minute=11),
        ],
    ).statuses == ["accepted", "accepted"]

    view = query("account", "u1:cross", "--db", database_url)

    assert pick(view, ACCOUNT_KEYS) == {
        "account": "u1:cross",
        "kind": "cross",
        "status": "open",
        "mode": "classic_3x",  # DOMAIN.md §6 Interpretation: a cross account opens in Classic 3x
        "holdings": {"QQQ": "8000.5", "USDT": "100"},
        "liabilities": {},
        "interest": {},
    }
    # 8000.5 QQQ at 2.5 + 100 USDT, full value (no haircut ladder); no debt: infinite levels.
    assert pick(
        view,
        ("total_value_usdt", "collateral_value_usdt", "margin_level", "collateral_margin_level"),
    ) == {
        "total_value_usdt": "20101.25",
        "collateral_value_usdt": "20101.25",
        "margin_level": None,
        "collateral_margin_level": None,
    }


def test_account_json_values_collateral_through_the_haircut_ladder(database_url: str) -> None:
    set_up_market(database_url)
    ladder = [{"up_to_usdt": "1000", "ratio": "1"}, {"up_to_usdt": None, "ratio": "0.5"}]
    assert (
        submit(
            database_url,
            [
                cmd(
                    "list_asset",
                    "list-hcut",
                    1,
                    asset="HCUT",
                    collateral_rank=4,
                    collateral_ladder=ladder,
                ),
                cmd("mark_prices", "prices-hcut", 2, prices={"HCUT": "10"}),
                transfer_in("t-h", "u2", "300", asset="HCUT", account="portfolio"),
            ],
        ).statuses
        == ["accepted"] * 3
    )

    view = query("account", "u2:portfolio", "--db", database_url)

    assert pick(view, ACCOUNT_KEYS) == {
        "account": "u2:portfolio",
        "kind": "portfolio",
        "status": "open",
        "mode": None,
        "holdings": {"HCUT": "300"},
        "liabilities": {},
        "interest": {},
    }
    # 3000 USDT of notional: 1000 at ratio 1, 2000 at 0.5.
    assert (view["total_value_usdt"], view["collateral_value_usdt"]) == ("3000", "2000")


def test_account_json_of_an_isolated_account(database_url: str) -> None:
    set_up_market(database_url)
    assert submit(
        database_url,
        [
            transfer_in("t-iso", "u3", "12.5", account="isolated:QQQUSDT"),
        ],
    ).statuses == ["accepted"]

    view = query("account", "u3:isolated:QQQUSDT", "--db", database_url)

    assert pick(view, ACCOUNT_KEYS) == {
        "account": "u3:isolated:QQQUSDT",
        "kind": "isolated",
        "status": "open",
        "mode": None,
        "holdings": {"QQQ": "12.5"},
        "liabilities": {},
        "interest": {},
    }


def test_account_json_while_the_first_transfer_awaits_verification(database_url: str) -> None:
    set_up_market(database_url)
    assert submit(
        database_url,
        [
            transfer_in("t-flag", "u4", "500", asset="USDT", channel="client", risk_flagged=True),
        ],
    ).statuses == ["pending"]

    view = query("account", "u4:cross", "--db", database_url)

    assert pick(view, ("account", "status", "holdings")) == {
        "account": "u4:cross",
        "status": "pending_verification",
        "holdings": {},
    }


def test_account_json_of_an_account_never_seen_is_not_open(database_url: str) -> None:
    view = query("account", "nobody:portfolio", "--db", database_url)

    assert pick(view, ACCOUNT_KEYS) == {
        "account": "nobody:portfolio",
        "kind": "portfolio",
        "status": "not_open",
        "mode": None,
        "holdings": {},
        "liabilities": {},
        "interest": {},
    }


@pytest.mark.parametrize(
    "account_id",
    ["u1:margin", "u1", "u1:", ":cross", "u 1:cross", "u1:isolated:qqqusdt", "u1:Cross"],
)
def test_account_id_that_is_not_one_exits_2(database_url: str, account_id: str) -> None:
    result = invoke("account", account_id, "--db", database_url, "--json")

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {account_id!r} is not an account id like u1:cross, u1:portfolio or "
        "u1:isolated:BTCUSDT"
    ]


def test_account_id_that_looks_like_markup_exits_2(sqlite_url: str) -> None:
    result = invoke("account", "u1:[/x]", "--db", sqlite_url)

    assert result.exit_code == EXIT_CANNOT_RUN


def test_assets_json_lists_every_asset_with_its_totals_and_band(database_url: str) -> None:
    set_up_market(database_url)
    assert (
        submit(
            database_url,
            [
                transfer_in("t-1", "u1", "30000", minute=10),
                transfer_in(
                    "t-2", "u2", "10000", account="portfolio", minute=11
                ),  # T = 80%: band B
                transfer_in("t-3", "u3", "5000", account="isolated:QQQUSDT", minute=12),
                transfer_in(
                    "t-4", "u3", "250.75", asset="USDT", account="isolated:QQQUSDT", minute=13
                ),
                transfer_in("t-5", "u1", "2", asset="ETH", minute=14),
            ],
        ).statuses
        == ["accepted"] * 5
    )

    assets = query("assets", "--db", database_url)

    assert [pick(row, ASSET_KEYS) for row in assets] == [
        {
            "asset": "DEC2",
            "collateral_rank": 3,
            "capped": False,
            "total": "0",
            "isolated_total": "0",
            "upper_limit": None,
            "ratio": None,
            "band": None,
        },
        {
            "asset": "ETH",
            "collateral_rank": 2,
            "capped": False,
            "total": "2",
            "isolated_total": "0",
            "upper_limit": None,
            "ratio": None,
            "band": None,
        },
        {
            "asset": "QQQ",
            "collateral_rank": 9,
            "capped": True,
            "total": "40000",
            "isolated_total": "5000",
            "upper_limit": "50000",
            "ratio": "0.8",
            "band": "B",
        },
        {
            "asset": "USDT",
            "collateral_rank": 1,
            "capped": False,
            "total": "0",
            "isolated_total": "250.75",
            "upper_limit": None,
            "ratio": None,
            "band": None,
        },
    ]


def test_assets_json_of_an_empty_store_is_an_empty_list(database_url: str) -> None:
    assert query("assets", "--db", database_url) == []


def test_assets_table_for_people(database_url: str) -> None:
    set_up_market(database_url)
    assert submit(database_url, [transfer_in("t-1", "u1", "45000")]).statuses == ["rejected"]
    assert submit(database_url, [transfer_in("t-2", "u1", "36000")]).statuses == ["accepted"]

    result = invoke("assets", "--db", database_url)

    assert result.exit_code == EXIT_OK
    assert result.stderr == ""
    assert result.stdout.splitlines()[0].strip() == "Assets"
    [qqq_row] = [line for line in result.stdout.splitlines() if " QQQ " in line]
    cells = [cell.strip() for cell in qqq_row.strip("│ \n").split("│")]
    assert cells == ["QQQ", "9", "yes", "36000", "0", "0", "50000", "72%", "A", "2.5"]


def test_account_table_for_people(database_url: str) -> None:
    set_up_market(database_url)
    assert submit(database_url, [transfer_in("t-1", "u1", "8000.50")]).statuses == ["accepted"]

    result = invoke("account", "u1:cross", "--db", database_url)

    assert result.exit_code == EXIT_OK
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "Account u1:cross"
    assert any("status" in line and "open" in line for line in lines)
    assert any("QQQ" in line and "8000.5" in line for line in lines)
    with pytest.raises(ValueError):
        json_lines(result.stdout)  # a table, not JSON


@pytest.mark.parametrize("args", [["assets"], ["account", "u1:cross"]], ids=["assets", "account"])
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_queries_on_an_unreachable_database_exit_2(args: list[str], as_json: bool) -> None:
    result = invoke(*args, "--db", UNREACHABLE_POSTGRES_FAST_URL, *(["--json"] if as_json else []))

    assert result.exit_code == EXIT_CANNOT_RUN
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot open the database: ")


def test_queries_write_nothing_to_the_event_store(database_url: str) -> None:
    set_up_market(database_url)
    before = event_count(database_url)

    query("assets", "--db", database_url)
    query("account", "u1:cross", "--db", database_url)

    assert event_count(database_url) == before
