"""Pro valuation (DOMAIN.md §4): tiered maintenance margin, the Pro margin level, ML vs CML.

All figures are computed by hand in the comments; the rules must reproduce them exactly.
"""

from decimal import Decimal, localcontext

import pytest

from ledger import limits
from ledger.params import CollateralBracket, MaintenanceBracket
from ledger.rules.valuation import (
    LevelKind,
    Market,
    Position,
    maintenance_margin_usdt,
    value_position,
)


def maintenance(up_to_usdt: str | None, rate: str) -> MaintenanceBracket:
    return MaintenanceBracket(
        up_to_usdt=None if up_to_usdt is None else Decimal(up_to_usdt), rate=Decimal(rate)
    )


def haircut(up_to_usdt: str | None, ratio: str) -> CollateralBracket:
    return CollateralBracket(
        up_to_usdt=None if up_to_usdt is None else Decimal(up_to_usdt), ratio=Decimal(ratio)
    )


# 0-10k at 2%, 10k-50k at 5%, 50k-200k at 10%, above 200k at 20%.
FOUR_BRACKETS = (
    maintenance("10000", "0.02"),
    maintenance("50000", "0.05"),
    maintenance("200000", "0.1"),
    maintenance(None, "0.2"),
)


@pytest.mark.parametrize(
    ("liability_value_usdt", "margin_usdt"),
    [
        ("0", "0"),
        ("5000", "100"),  # 5000 * 2%
        ("10000", "200"),  # the whole first bracket
        ("10000.01", "200.0005"),  # one cent at 5%
        ("30000", "1200"),  # 200 + 20000 * 5%
        ("50000", "2200"),  # 200 + 2000
        ("120000", "9200"),  # 2200 + 70000 * 10%
        ("200000", "17200"),  # 2200 + 15000
        ("300000", "37200"),  # 17200 + 100000 * 20%
    ],
    ids=[
        "no-liability",
        "inside-first",
        "on-first-edge",
        "one-cent-into-second",
        "spans-two",
        "on-second-edge",
        "spans-three",
        "on-last-finite-edge",
        "spans-all-four",
    ],
)
def test_maintenance_margin_is_charged_bracket_by_bracket(
    liability_value_usdt: str, margin_usdt: str
) -> None:
    margin = maintenance_margin_usdt(
        liability_value_usdt=Decimal(liability_value_usdt), brackets=FOUR_BRACKETS
    )
    assert margin == Decimal(margin_usdt)


def test_a_single_bracket_charges_its_rate_on_the_whole_liability() -> None:
    margin = maintenance_margin_usdt(
        liability_value_usdt=Decimal("12345.6789"), brackets=(maintenance(None, "0.025"),)
    )
    assert margin == Decimal("308.6419725")


# A worked Pro account (prices in USDT):
# - holds 1 BTC at 40000 on a ladder 0-20k at 100%, above at 50%: value 20000 + 20000 * 0.5
#   = 30000 (40000 without haircut); holds 5000 USDT at full value.
# - owes 8000 USDT + 0.5 interest = 8000.5 USDT, maintenance 0-5k at 2%, above at 5%:
#   100 + 3000.5 * 5% = 250.025;
# - owes 2 ETH + 0.01 interest at 2000 = 4020 USDT, maintenance 0-1k at 10%, above at 20%:
#   100 + 3020 * 20% = 704.
# Net collateral = 35000 - 12020.5 = 22979.5; minus 500 open order loss = 22479.5.
# Maintenance margin = 250.025 + 704 = 954.025.  ML_pro = 22479.5 / 954.025.
PRO_MARKET = Market(
    prices_usdt={"BTC": Decimal(40000), "USDT": Decimal(1), "ETH": Decimal(2000)},
    ladders={
        "BTC": (haircut("20000", "1"), haircut(None, "0.5")),
        "USDT": (haircut(None, "1"),),
        "ETH": (haircut(None, "1"),),
    },
    maintenance_brackets={
        "BTC": (maintenance(None, "0.05"),),
        "USDT": (maintenance("5000", "0.02"), maintenance(None, "0.05")),
        "ETH": (maintenance("1000", "0.1"), maintenance(None, "0.2")),
    },
)
PRO_POSITION = Position(
    holdings={"BTC": Decimal(1), "USDT": Decimal(5000)},
    liabilities={"USDT": Decimal(8000), "ETH": Decimal(2)},
    interest={"USDT": Decimal("0.5"), "ETH": Decimal("0.01")},
)


def test_pro_margin_level_of_a_worked_account() -> None:
    valuation = value_position(
        position=PRO_POSITION, market=PRO_MARKET, open_order_loss_usdt=Decimal(500)
    )
    assert valuation.total_value_usdt == Decimal(45000)
    assert valuation.collateral_value_usdt == Decimal(35000)
    assert valuation.debt_usdt == Decimal("12020.5")
    assert valuation.maintenance_margin_usdt == Decimal("954.025")
    assert valuation.level_terms(LevelKind.PRO_MARGIN_LEVEL) == (
        Decimal("22479.5"),
        Decimal("954.025"),
    )
    with localcontext() as context:
        context.prec = limits.RATIO_DIGITS
        expected = Decimal("22479.5") / Decimal("954.025")
    assert valuation.level(LevelKind.PRO_MARGIN_LEVEL) == expected
    assert str(expected).startswith("23.5627997169885")


def test_open_order_loss_lowers_only_the_pro_margin_level() -> None:
    without = value_position(position=PRO_POSITION, market=PRO_MARKET)
    loss = value_position(
        position=PRO_POSITION, market=PRO_MARKET, open_order_loss_usdt=Decimal(500)
    )
    for kind in (LevelKind.MARGIN_LEVEL, LevelKind.COLLATERAL_MARGIN_LEVEL):
        assert without.level(kind) == loss.level(kind)
    assert without.level_terms(LevelKind.PRO_MARGIN_LEVEL)[0] == Decimal("22979.5")
    assert loss.level_terms(LevelKind.PRO_MARGIN_LEVEL)[0] == Decimal("22479.5")


def test_ml_uses_no_haircut_and_cml_uses_the_ladder() -> None:
    """Same account, three levels: ML = 45000 / 12020.5, CML = 35000 / 12020.5."""
    valuation = value_position(position=PRO_POSITION, market=PRO_MARKET)
    assert valuation.level_terms(LevelKind.MARGIN_LEVEL) == (Decimal(45000), Decimal("12020.5"))
    assert valuation.level_terms(LevelKind.COLLATERAL_MARGIN_LEVEL) == (
        Decimal(35000),
        Decimal("12020.5"),
    )
    ml = valuation.level(LevelKind.MARGIN_LEVEL)
    cml = valuation.level(LevelKind.COLLATERAL_MARGIN_LEVEL)
    assert ml is not None and cml is not None and ml > cml


@pytest.mark.parametrize(
    ("btc", "ml", "cml"),
    [
        # 0.25 BTC = 10000 notional, all inside the 100% bracket: ML = CML = 10000 / 4000.
        ("0.25", "2.5", "2.5"),
        # 0.5 BTC = 20000, exactly the edge: still no haircut.
        ("0.5", "5", "5"),
        # 0.75 BTC = 30000: 20000 + 10000 * 0.5 = 25000 -> CML 6.25, ML 7.5.
        ("0.75", "7.5", "6.25"),
        # 2 BTC = 80000: 20000 + 60000 * 0.5 = 50000 -> CML 12.5, ML 20.
        ("2", "20", "12.5"),
    ],
    ids=["inside-full-bracket", "on-the-edge", "half-haircut-above", "deep-in-haircut"],
)
def test_the_haircut_ladder_separates_cml_from_ml(btc: str, ml: str, cml: str) -> None:
    position = Position(
        holdings={"BTC": Decimal(btc)}, liabilities={"USDT": Decimal(4000)}, interest={}
    )
    valuation = value_position(position=position, market=PRO_MARKET)
    assert valuation.level(LevelKind.MARGIN_LEVEL) == Decimal(ml)
    assert valuation.level(LevelKind.COLLATERAL_MARGIN_LEVEL) == Decimal(cml)


# Pro threshold, hand-made: 1000 USDT held, X USDT owed (held too), maintenance 10% flat.
# ML_pro = ((1000 + X) - X - loss) / (0.1 X) = 10 (1000 - loss) / X; at X = 5000 it is exactly 2.
PRO_THRESHOLD_MARKET = Market(
    prices_usdt={"USDT": Decimal(1)},
    ladders={"USDT": (haircut(None, "1"),)},
    maintenance_brackets={"USDT": (maintenance(None, "0.1"),)},
)


@pytest.mark.parametrize(
    ("owed", "loss", "is_above_2"),
    [
        ("4999.99999999", "0", True),
        ("5000", "0", False),
        ("5000.00000001", "0", False),
        ("4499.99999999", "100", True),
        ("4500", "100", False),  # 10 * 900 / 4500 = 2 exactly
        ("4500.00000001", "100", False),
    ],
    ids=[
        "just-above",
        "exactly-at",
        "just-below",
        "loss-just-above",
        "loss-exactly-at",
        "loss-just-below",
    ],
)
def test_pro_margin_level_must_be_strictly_above_its_minimum(
    owed: str, loss: str, is_above_2: bool
) -> None:
    position = Position(
        holdings={"USDT": Decimal(1000) + Decimal(owed)},
        liabilities={"USDT": Decimal(owed)},
        interest={},
    )
    valuation = value_position(
        position=position, market=PRO_THRESHOLD_MARKET, open_order_loss_usdt=Decimal(loss)
    )
    assert valuation.is_above(LevelKind.PRO_MARGIN_LEVEL, Decimal(2)) is is_above_2
    assert valuation.is_at_or_below(LevelKind.PRO_MARGIN_LEVEL, Decimal(2)) is not is_above_2


def test_net_collateral_can_be_negative_and_then_the_pro_level_is_negative() -> None:
    position = Position(
        holdings={"USDT": Decimal(100)}, liabilities={"USDT": Decimal(150)}, interest={}
    )
    valuation = value_position(position=position, market=PRO_THRESHOLD_MARKET)
    # (100 - 150) / (150 * 10%) = -50 / 15
    assert valuation.level_terms(LevelKind.PRO_MARGIN_LEVEL) == (Decimal(-50), Decimal(15))
    assert not valuation.is_above(LevelKind.PRO_MARGIN_LEVEL, Decimal(0))


def test_without_debt_every_level_is_infinite() -> None:
    position = Position(holdings={"BTC": Decimal(1)}, liabilities={}, interest={})
    valuation = value_position(position=position, market=PRO_MARKET)
    for kind in LevelKind:
        assert valuation.level(kind) is None
        assert valuation.is_above(kind, Decimal(1000))
