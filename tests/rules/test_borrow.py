"""Borrow decisions (DOMAIN.md §4-5): the refusal order, the minimum, the cooling-off period and
each mode's initial risk ratio, decided strictly above the minimum, first hour's interest included.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ledger.params import (
    MARGIN_THRESHOLDS_DEFAULT,
    BorrowTerms,
    CollateralBracket,
    MaintenanceBracket,
)
from ledger.rules.borrow import BorrowVerdict, decide_borrow, position_after_borrow
from ledger.rules.valuation import LevelKind, Market, Position

AT = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
TINY = Decimal("0.00000001")

# USDT at full value; ETH at 2000 with a ladder: 0-1000 USDT at 100%, above at 50%, so 1 ETH
# is worth 2000 without haircut (ML) and 1500 with it (CML). Pro maintenance: 2.5% flat.
MARKET = Market(
    prices_usdt={"USDT": Decimal(1), "ETH": Decimal(2000)},
    ladders={
        "USDT": (CollateralBracket(up_to_usdt=None, ratio=Decimal(1)),),
        "ETH": (
            CollateralBracket(up_to_usdt=Decimal(1000), ratio=Decimal(1)),
            CollateralBracket(up_to_usdt=None, ratio=Decimal("0.5")),
        ),
    },
    maintenance_brackets={
        "USDT": (MaintenanceBracket(up_to_usdt=None, rate=Decimal("0.025")),),
        "ETH": (MaintenanceBracket(up_to_usdt=None, rate=Decimal("0.025")),),
    },
)
TERMS = BorrowTerms(
    hourly_interest_rate=Decimal("0.0001"), min_borrow_usdt=Decimal(10), borrowable=True
)
USDT_1000 = Position(holdings={"USDT": Decimal(1000)}, liabilities={}, interest={})
ONE_ETH = Position(holdings={"ETH": Decimal(1)}, liabilities={}, interest={})
# CML already 1000 / 900 < 1.5: any borrow fails the level.
DEEP_IN_DEBT = Position(
    holdings={"USDT": Decimal(1000)}, liabilities={"USDT": Decimal(900)}, interest={}
)


def decide(**overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "asset": "USDT",
        "quantity_requested": Decimal(100),
        "position": USDT_1000,
        "market": MARKET,
        "borrow_terms": TERMS,
        "is_borrowing_enabled": True,
        "cooling_off_until": None,
        "at": AT,
        "level_kind": LevelKind.COLLATERAL_MARGIN_LEVEL,
        "level_min": Decimal("1.5"),
        "first_hour_interest": Decimal(0),
    }
    return decide_borrow(**(arguments | overrides))


def test_default_thresholds_are_the_rule_books() -> None:
    borrow_minimums = {m: t.borrow_level_min for m, t in MARGIN_THRESHOLDS_DEFAULT.items()}
    assert borrow_minimums == {
        "classic_3x": Decimal("1.5"),
        "classic_5x": Decimal("1.25"),
        "pro": Decimal(2),
        "isolated": Decimal("1.5"),
    }
    assert {t.transfer_out_level_min for t in MARGIN_THRESHOLDS_DEFAULT.values()} == {Decimal(2)}


# (mode, level kind, position, X at which the level after borrowing X USDT is exactly the min)
# classic 3x: (1000 + X) / X = 1.5 at X = 2000; classic 5x: 1.25 at X = 4000;
# Pro: 1000 / (2.5% X) = 2 at X = 20000; isolated ML with 1 ETH: (2000 + X) / X = 1.5 at 4000;
# the same ETH under CML (Classic 3x, portfolio): (1500 + X) / X = 1.5 at X = 3000.
THRESHOLD_CASES = [
    ("classic_3x", LevelKind.COLLATERAL_MARGIN_LEVEL, USDT_1000, "2000"),
    ("classic_5x", LevelKind.COLLATERAL_MARGIN_LEVEL, USDT_1000, "4000"),
    ("pro", LevelKind.PRO_MARGIN_LEVEL, USDT_1000, "20000"),
    ("isolated", LevelKind.MARGIN_LEVEL, ONE_ETH, "4000"),
    ("classic_3x", LevelKind.COLLATERAL_MARGIN_LEVEL, ONE_ETH, "3000"),
]
THRESHOLD_IDS = ["classic-3x-cml", "classic-5x-cml", "pro-ml", "isolated-ml", "classic-3x-eth-cml"]


@pytest.mark.parametrize(("mode", "kind", "position", "exact"), THRESHOLD_CASES, ids=THRESHOLD_IDS)
@pytest.mark.parametrize(
    ("offset", "verdict"),
    [
        (-TINY, BorrowVerdict.ACCEPTED),
        (Decimal(0), BorrowVerdict.MARGIN_LEVEL),
        (TINY, BorrowVerdict.MARGIN_LEVEL),
    ],
    ids=["level-just-above", "level-exactly-at", "level-just-below"],
)
def test_the_level_after_the_borrow_must_be_strictly_above_the_mode_minimum(
    mode: str,
    kind: LevelKind,
    position: Position,
    exact: str,
    offset: Decimal,
    verdict: BorrowVerdict,
) -> None:
    decision = decide(
        quantity_requested=Decimal(exact) + offset,
        position=position,
        level_kind=kind,
        level_min=MARGIN_THRESHOLDS_DEFAULT[mode].borrow_level_min,
    )
    assert decision.verdict is verdict


def test_ml_accepts_what_cml_refuses_when_the_collateral_has_a_haircut() -> None:
    """1 ETH: ML after borrowing 3500 = 5500 / 3500 = 1.571; CML = 5000 / 3500 = 1.428."""
    common = {"quantity_requested": Decimal(3500), "position": ONE_ETH}
    by_ml = decide(level_kind=LevelKind.MARGIN_LEVEL, **common)
    by_cml = decide(level_kind=LevelKind.COLLATERAL_MARGIN_LEVEL, **common)
    assert by_ml.verdict is BorrowVerdict.ACCEPTED
    assert by_cml.verdict is BorrowVerdict.MARGIN_LEVEL
    assert by_cml.valuation_after.collateral_value_usdt == Decimal(5000)
    assert by_ml.valuation_after.total_value_usdt == Decimal(5500)


@pytest.mark.parametrize(
    ("interest", "verdict"),
    [
        ("9.99999999", BorrowVerdict.ACCEPTED),
        ("10", BorrowVerdict.MARGIN_LEVEL),
    ],
    ids=["interest-keeps-it-above", "interest-takes-it-to-exactly-1.5"],
)
def test_the_first_hours_interest_counts_in_the_level_after(
    interest: str, verdict: BorrowVerdict
) -> None:
    """Borrowing 1970 against 1000: CML = 2970 / (1970 + interest); with 10 it is exactly 1.5."""
    decision = decide(quantity_requested=Decimal(1970), first_hour_interest=Decimal(interest))
    assert decision.verdict is verdict
    assert decision.valuation_after.debt_usdt == Decimal(1970) + Decimal(interest)


COOLING_UNTIL = AT + timedelta(days=1)


@pytest.mark.parametrize(
    ("overrides", "verdict"),
    [
        pytest.param(
            {
                "borrow_terms": None,
                "is_borrowing_enabled": False,
                "cooling_off_until": COOLING_UNTIL,
                "quantity_requested": Decimal(5),
                "position": DEEP_IN_DEBT,
            },
            BorrowVerdict.ASSET_NOT_BORROWABLE,
            id="no-terms-beats-everything",
        ),
        pytest.param(
            {
                "borrow_terms": TERMS.model_copy(update={"borrowable": False}),
                "is_borrowing_enabled": False,
                "cooling_off_until": COOLING_UNTIL,
            },
            BorrowVerdict.ASSET_NOT_BORROWABLE,
            id="not-borrowable-beats-disabled",
        ),
        pytest.param(
            {
                "is_borrowing_enabled": False,
                "cooling_off_until": COOLING_UNTIL,
                "quantity_requested": Decimal(5),
                "position": DEEP_IN_DEBT,
            },
            BorrowVerdict.BORROW_DISABLED,
            id="disabled-beats-cooling-off",
        ),
        pytest.param(
            {
                "cooling_off_until": COOLING_UNTIL,
                "quantity_requested": Decimal(5),
                "position": DEEP_IN_DEBT,
            },
            BorrowVerdict.COOLING_OFF,
            id="cooling-off-beats-minimum",
        ),
        pytest.param(
            {"quantity_requested": Decimal(5), "position": DEEP_IN_DEBT},
            BorrowVerdict.BELOW_MIN_BORROW,
            id="minimum-beats-level",
        ),
        pytest.param(
            {"quantity_requested": Decimal(50), "position": DEEP_IN_DEBT},
            BorrowVerdict.MARGIN_LEVEL,
            id="level-alone",
        ),
        pytest.param({}, BorrowVerdict.ACCEPTED, id="nothing-wrong"),
    ],
)
def test_refusals_come_in_the_documented_order(
    overrides: dict[str, Any], verdict: BorrowVerdict
) -> None:
    decision = decide(**overrides)
    assert decision.verdict is verdict
    assert decision.is_accepted is (verdict is BorrowVerdict.ACCEPTED)


@pytest.mark.parametrize(
    ("until", "verdict"),
    [
        (None, BorrowVerdict.ACCEPTED),
        (AT - timedelta(hours=1), BorrowVerdict.ACCEPTED),
        (AT, BorrowVerdict.ACCEPTED),
        (AT + timedelta(microseconds=1), BorrowVerdict.COOLING_OFF),
        (AT + timedelta(weeks=1), BorrowVerdict.COOLING_OFF),
    ],
    ids=["never", "ended-an-hour-ago", "ends-at-this-moment", "ends-in-a-microsecond", "a-week"],
)
def test_cooling_off_refuses_until_its_end(until: datetime | None, verdict: BorrowVerdict) -> None:
    assert decide(cooling_off_until=until).verdict is verdict


@pytest.mark.parametrize(
    ("asset", "quantity", "value_usdt", "verdict"),
    [
        ("USDT", "10", "10", BorrowVerdict.ACCEPTED),
        ("USDT", "9.99999999", "9.99999999", BorrowVerdict.BELOW_MIN_BORROW),
        ("ETH", "0.005", "10", BorrowVerdict.ACCEPTED),  # 0.005 * 2000
        ("ETH", "0.00499999", "9.99998", BorrowVerdict.BELOW_MIN_BORROW),
    ],
    ids=["usdt-at-min", "usdt-just-below", "eth-worth-min", "eth-just-below"],
)
def test_the_minimum_borrow_is_compared_in_usdt(
    asset: str, quantity: str, value_usdt: str, verdict: BorrowVerdict
) -> None:
    decision = decide(asset=asset, quantity_requested=Decimal(quantity))
    assert decision.value_usdt == Decimal(value_usdt)
    assert decision.verdict is verdict


def test_the_decision_context_carries_every_figure() -> None:
    decision = decide(
        quantity_requested=Decimal(500),
        first_hour_interest=Decimal("0.05"),
        cooling_off_until=AT - timedelta(days=1),
    )
    context = decision.context()
    assert context == {
        "asset": "USDT",
        "requested": "500",
        "value_usdt": "500",
        "min_borrow_usdt": "10",
        "first_hour_interest": "0.05",
        "cooling_off_until": "2026-03-01T09:15:00Z",
        "level_kind": "collateral_margin_level",
        "level_min": "1.5",
        "total_value_usdt_before": "1000",
        "collateral_value_usdt_before": "1000",
        "debt_usdt_before": "0",
        "maintenance_margin_usdt_before": "0",
        "collateral_margin_level_before": None,  # no debt: infinite
        "total_value_usdt_after": "1500",
        "collateral_value_usdt_after": "1500",
        "debt_usdt_after": "500.05",
        "maintenance_margin_usdt_after": "12.50125",
        "collateral_margin_level_after": "2.999700029997000299970003",
    }


def test_an_asset_without_terms_has_no_minimum_in_the_context() -> None:
    context = decide(borrow_terms=None).context()
    assert context["min_borrow_usdt"] is None


def test_the_borrowed_quantity_lands_as_holding_and_liability() -> None:
    before = Position(
        holdings={"USDT": Decimal(1000), "ETH": Decimal(1)},
        liabilities={"ETH": Decimal("0.5")},
        interest={"ETH": Decimal("0.001")},
    )
    after = position_after_borrow(
        before, asset="ETH", quantity=Decimal("0.25"), interest=Decimal("0.0002")
    )
    assert after.holdings == {"USDT": Decimal(1000), "ETH": Decimal("1.25")}
    assert after.liabilities == {"ETH": Decimal("0.75")}
    assert after.interest == {"ETH": Decimal("0.0012")}
    assert before.holdings["ETH"] == Decimal(1)  # the input is not changed
