"""Platform-wide max collateral rule (DOMAIN.md §3): the band, q_max, the message, the context."""

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.params import CapParams
from ledger.rules.cap_band import (
    Band,
    CapDecision,
    band_of,
    cap_rejection_message,
    decide_cap_band,
)

ASSET = "ABC"
SMALLEST_UNIT = Decimal("0.00000001")  # one unit at the default 8 quantity decimals

# The contract's number format: digits, an optional fraction not ending in 0, no exponent.
PLAIN_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")
NUMBER_KEYS = (
    "total",
    "upper_limit",
    "ratio",
    "q_max",
    "fixed_quota",
    "fixed_quota_usdt",
    "price_usdt",
    "requested",
    "band_b_ratio_min",
    "band_c_ratio_min",
)


def cap_params(
    *,
    upper_limit: str,
    fixed_quota_usdt: str = "50000",
    band_b_ratio_min: str = "0.8",
    band_c_ratio_min: str = "0.9",
) -> CapParams:
    return CapParams(
        upper_limit=Decimal(upper_limit),
        fixed_quota_usdt=Decimal(fixed_quota_usdt),
        band_b_ratio_min=Decimal(band_b_ratio_min),
        band_c_ratio_min=Decimal(band_c_ratio_min),
    )


def decide(
    *,
    upper_limit: str,
    platform_total: str,
    quantity_requested: str = "1",
    price_usdt: str = "1",
    quantity_decimals: int = 8,
    fixed_quota_usdt: str = "50000",
    band_b_ratio_min: str = "0.8",
    band_c_ratio_min: str = "0.9",
    fixed_quota_usdt_override: str | None = None,
) -> CapDecision:
    """decide_cap_band for ABC with DOMAIN.md's defaults unless told otherwise; numbers as text."""
    return decide_cap_band(
        asset=ASSET,
        quantity_requested=Decimal(quantity_requested),
        platform_total=Decimal(platform_total),
        price_usdt=Decimal(price_usdt),
        params=cap_params(
            upper_limit=upper_limit,
            fixed_quota_usdt=fixed_quota_usdt,
            band_b_ratio_min=band_b_ratio_min,
            band_c_ratio_min=band_c_ratio_min,
        ),
        quantity_decimals=quantity_decimals,
        fixed_quota_usdt_override=(
            None if fixed_quota_usdt_override is None else Decimal(fixed_quota_usdt_override)
        ),
    )


# --- DOMAIN.md §3 worked examples -------------------------------------------------------------


@pytest.mark.parametrize(
    ("upper_limit", "platform_total", "quantity_requested", "band", "quantity_max", "is_accepted"),
    [
        ("1000000", "500000", "300000", Band.A, "300000", True),
        ("1000000", "800000", "50000", Band.B, "50000", True),
        ("2000000", "1700000", "50000", Band.B, "50000", True),
        ("3000000", "2990000", "50000", Band.C, "10000", False),
    ],
    ids=[
        "ex1-half-full-may-fill-up-to-80pct",
        "ex1-then-at-80pct-fixed-quota",
        "ex2-at-85pct-fixed-quota",
        "ex3-at-99.7pct-request-above-q-max-rejected",
    ],
)
def test_domain_worked_examples_hold(
    upper_limit: str,
    platform_total: str,
    quantity_requested: str,
    band: Band,
    quantity_max: str,
    is_accepted: bool,
) -> None:
    decision = decide(
        upper_limit=upper_limit,
        platform_total=platform_total,
        quantity_requested=quantity_requested,
    )
    assert decision.band is band
    assert decision.quantity_max == Decimal(quantity_max)
    assert decision.is_accepted is is_accepted


def test_example_1_a_q_max_transfer_limits_the_next_user_to_the_fixed_quota() -> None:
    """Goal: worked example 1 as a sequence.

    Method: accept q_max at 50%, then decide again at T + q_max.
    """
    first = decide(upper_limit="1000000", platform_total="500000", quantity_requested="300000")
    assert first.is_accepted
    platform_total_after = first.platform_total + first.quantity_requested
    assert platform_total_after == Decimal("800000")

    second = decide(upper_limit="1000000", platform_total=str(platform_total_after))
    assert second.utilisation_ratio == Decimal("0.8")
    assert second.band is Band.B
    assert second.quantity_max == Decimal("50000")


def test_example_3_rejection_message_is_exact() -> None:
    decision = decide(upper_limit="3000000", platform_total="2990000", quantity_requested="50000")
    assert not decision.is_accepted
    assert cap_rejection_message(asset=decision.asset, quantity_max=decision.quantity_max) == (
        "ABC has reached platform max pledged collateral amount. "
        "The max transfer-in quantity is 10000. "
        "Please reduce the quantity or try with other tokens"
    )


@pytest.mark.parametrize(
    ("asset", "quantity_max", "expected_number"),
    [
        ("ABC", "10000.00000000", "10000"),
        ("XYZ", "16666.66666666", "16666.66666666"),
        ("ABC", "0.00000001", "0.00000001"),
        ("ABC", "0E-8", "0"),
        ("ABC", "1E+5", "100000"),
    ],
    ids=["trailing-zeros-dropped", "other-asset-fraction", "smallest-unit", "zero", "exponent"],
)
def test_rejection_message_names_the_asset_and_a_plain_q_max(
    asset: str, quantity_max: str, expected_number: str
) -> None:
    assert cap_rejection_message(asset=asset, quantity_max=Decimal(quantity_max)) == (
        f"{asset} has reached platform max pledged collateral amount. "
        f"The max transfer-in quantity is {expected_number}. "
        "Please reduce the quantity or try with other tokens"
    )


# --- band edges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform_total", "band", "quantity_max"),
    [
        ("0", Band.A, "800000"),
        ("799999.99999999", Band.A, "0.00000001"),
        ("800000", Band.B, "50000"),
        ("899999.99999999", Band.B, "50000"),
        ("900000", Band.C, "50000"),
        ("980000", Band.C, "20000"),
        ("999999.99999999", Band.C, "0.00000001"),
        ("1000000", Band.D, "0"),
        ("1000000.00000001", Band.D, "0"),
        ("1500000", Band.D, "0"),
    ],
    ids=[
        "empty-pool",
        "just-below-80pct",
        "exactly-80pct",
        "just-below-90pct",
        "exactly-90pct",
        "98pct-quota-stops-at-U",
        "just-below-100pct",
        "exactly-100pct",
        "just-above-100pct",
        "150pct",
    ],
)
def test_band_edges_belong_to_the_higher_band(
    platform_total: str, band: Band, quantity_max: str
) -> None:
    decision = decide(upper_limit="1000000", platform_total=platform_total)
    assert decision.band is band
    assert decision.quantity_max == Decimal(quantity_max)
    if band is not Band.D:
        assert decision.platform_total + decision.quantity_max <= decision.upper_limit


@pytest.mark.parametrize(
    ("utilisation_ratio", "band"),
    [
        ("0", Band.A),
        ("0.79999999", Band.A),
        ("0.8", Band.B),
        ("0.89999999", Band.B),
        ("0.9", Band.C),
        ("0.99999999", Band.C),
        ("1", Band.D),
        ("1.5", Band.D),
    ],
    ids=[
        "zero",
        "just-below-80pct",
        "exactly-80pct",
        "just-below-90pct",
        "exactly-90pct",
        "just-below-100pct",
        "exactly-100pct",
        "above-100pct",
    ],
)
def test_band_of_default_thresholds(utilisation_ratio: str, band: Band) -> None:
    params = cap_params(upper_limit="1000000")
    assert (
        band_of(platform_total=Decimal(utilisation_ratio) * params.upper_limit, params=params)
        is band
    )


@pytest.mark.parametrize(
    ("utilisation_ratio", "band"),
    [
        ("0.49999999", Band.A),
        ("0.5", Band.B),
        ("0.69999999", Band.B),
        ("0.7", Band.C),
        ("0.8", Band.C),
        ("0.9", Band.C),
        ("1", Band.D),
    ],
    ids=[
        "just-below-50pct",
        "exactly-50pct",
        "just-below-70pct",
        "exactly-70pct",
        "old-b-edge-is-c",
        "old-c-edge-is-c",
        "exactly-100pct",
    ],
)
def test_band_of_custom_thresholds_move_the_edges(utilisation_ratio: str, band: Band) -> None:
    params = cap_params(upper_limit="1000000", band_b_ratio_min="0.5", band_c_ratio_min="0.7")
    assert (
        band_of(platform_total=Decimal(utilisation_ratio) * params.upper_limit, params=params)
        is band
    )


@pytest.mark.parametrize(
    ("platform_total", "band", "quantity_max"),
    [
        ("400000", Band.A, "100000"),
        ("499999.99999999", Band.A, "0.00000001"),
        ("500000", Band.B, "50000"),
        ("699999.99999999", Band.B, "50000"),
        ("700000", Band.C, "50000"),
        ("800000", Band.C, "50000"),
        ("999999.99999999", Band.C, "0.00000001"),
        ("1000000", Band.D, "0"),
    ],
    ids=[
        "40pct-up-to-50pct",
        "just-below-50pct",
        "exactly-50pct",
        "just-below-70pct",
        "exactly-70pct",
        "80pct-is-c",
        "just-below-100pct",
        "exactly-100pct",
    ],
)
def test_custom_thresholds_move_the_edges_of_the_decision(
    platform_total: str, band: Band, quantity_max: str
) -> None:
    decision = decide(
        upper_limit="1000000",
        platform_total=platform_total,
        band_b_ratio_min="0.5",
        band_c_ratio_min="0.7",
    )
    assert decision.band is band
    assert decision.quantity_max == Decimal(quantity_max)
    assert decision.band_b_ratio_min == Decimal("0.5")
    assert decision.band_c_ratio_min == Decimal("0.7")


# --- request against q_max: no partial fill -----------------------------------------------------


@pytest.mark.parametrize(
    ("upper_limit", "platform_total", "quantity_max"),
    [
        ("1000000", "500000", "300000"),
        ("1000000", "850000", "50000"),
        ("3000000", "2990000", "10000"),
        ("1000000", "999999.99999999", "0.00000001"),
    ],
    ids=["band-A", "band-B", "band-C-limited-by-U", "band-C-one-unit-left"],
)
def test_request_equal_to_q_max_is_accepted_and_one_unit_more_is_rejected_whole(
    upper_limit: str, platform_total: str, quantity_max: str
) -> None:
    at_max = decide(
        upper_limit=upper_limit, platform_total=platform_total, quantity_requested=quantity_max
    )
    assert at_max.quantity_max == Decimal(quantity_max)
    assert at_max.is_accepted

    above_max = decide(
        upper_limit=upper_limit,
        platform_total=platform_total,
        quantity_requested=str(Decimal(quantity_max) + SMALLEST_UNIT),
    )
    assert above_max.quantity_max == Decimal(quantity_max)
    assert not above_max.is_accepted


@pytest.mark.parametrize(
    ("platform_total", "quantity_requested"),
    [
        ("1000000", "0.00000001"),
        ("1000000.00000001", "0.00000001"),
        ("1200000", "1"),
        ("1200000", "50000"),
    ],
    ids=["exactly-U-smallest-unit", "just-above-U-smallest-unit", "above-U-one", "above-U-quota"],
)
def test_band_d_blocks_every_transfer_in(platform_total: str, quantity_requested: str) -> None:
    decision = decide(
        upper_limit="1000000",
        platform_total=platform_total,
        quantity_requested=quantity_requested,
    )
    assert decision.band is Band.D
    assert decision.quantity_max == 0
    assert not decision.is_accepted
    assert decision.context()["q_max"] == "0"


# --- the fixed quota F in tokens ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("upper_limit", "platform_total", "price_usdt", "quantity_decimals", "fixed_quota", "q_max"),
    [
        ("1000000", "850000", "4", 8, "12500", "12500"),
        ("1000000", "850000", "3", 8, "16666.66666666", "16666.66666666"),
        ("1000000", "850000", "3", 2, "16666.66", "16666.66"),
        ("1000000", "850000", "3", 0, "16666", "16666"),
        ("1000000", "850000", "7", 8, "7142.85714285", "7142.85714285"),
        ("1000000", "850000", "0.5", 8, "100000", "100000"),
        ("1000000", "850000", "0.25", 8, "200000", "150000"),
        ("200000", "170000", "1", 8, "50000", "30000"),
        ("1000000", "990000", "4", 8, "12500", "10000"),
        ("1000000", "950000", "4", 8, "12500", "12500"),
    ],
    ids=[
        "B-price-4",
        "B-price-3-rounded-down-8-decimals",
        "B-price-3-rounded-down-2-decimals",
        "B-price-3-rounded-down-0-decimals",
        "B-price-7-rounded-down",
        "B-price-half",
        "B-cheap-asset-quota-stops-at-U",
        "B-small-U-quota-stops-at-U",
        "C-quota-stops-at-U",
        "C-price-4",
    ],
)
def test_fixed_quota_is_the_usdt_quota_in_tokens_rounded_down_and_never_past_u(
    upper_limit: str,
    platform_total: str,
    price_usdt: str,
    quantity_decimals: int,
    fixed_quota: str,
    q_max: str,
) -> None:
    decision = decide(
        upper_limit=upper_limit,
        platform_total=platform_total,
        price_usdt=price_usdt,
        quantity_decimals=quantity_decimals,
    )
    assert decision.band in (Band.B, Band.C)
    assert decision.fixed_quota == Decimal(fixed_quota)
    assert decision.quantity_max == Decimal(q_max)
    assert decision.platform_total + decision.quantity_max <= decision.upper_limit


def test_fixed_quota_rounded_to_two_decimals_accepts_it_and_refuses_one_cent_more() -> None:
    common = {"upper_limit": "1000000", "platform_total": "850000", "price_usdt": "3"}
    assert decide(**common, quantity_decimals=2, quantity_requested="16666.66").is_accepted
    assert not decide(**common, quantity_decimals=2, quantity_requested="16666.67").is_accepted


@pytest.mark.parametrize(
    ("price_usdt", "fixed_quota"),
    [("1", "50000"), ("4", "12500"), ("0.01", "5000000")],
    ids=["price-1", "price-4", "price-cent"],
)
def test_band_a_q_max_is_80pct_of_u_less_t_whatever_the_price(
    price_usdt: str, fixed_quota: str
) -> None:
    decision = decide(upper_limit="1000000", platform_total="500000", price_usdt=price_usdt)
    assert decision.band is Band.A
    assert decision.quantity_max == Decimal("300000")
    assert decision.fixed_quota == Decimal(fixed_quota)


@pytest.mark.parametrize(
    ("quantity_decimals", "quantity_max"),
    [(8, "799999.87654321"), (2, "799999.87"), (0, "799999")],
    ids=["8-decimals", "2-decimals", "0-decimals"],
)
def test_band_a_q_max_is_rounded_down_to_the_asset_decimals(
    quantity_decimals: int, quantity_max: str
) -> None:
    decision = decide(
        upper_limit="1000000",
        platform_total="0.123456789",
        quantity_decimals=quantity_decimals,
    )
    assert decision.quantity_max == Decimal(quantity_max)


# --- the per-account override of F --------------------------------------------------------------


@pytest.mark.parametrize(
    (
        "platform_total",
        "price_usdt",
        "fixed_quota_usdt",
        "override",
        "fixed_quota",
        "quantity_max",
        "source",
    ),
    [
        ("850000", "1", "50000", None, "50000", "50000", "asset"),
        ("850000", "1", "30000", None, "30000", "30000", "asset"),
        ("850000", "1", "50000", "20000", "20000", "20000", "account"),
        ("850000", "4", "50000", "20000", "5000", "5000", "account"),
        ("850000", "1", "50000", "500000", "500000", "150000", "account"),
        ("950000", "1", "50000", "20000", "20000", "20000", "account"),
        ("500000", "1", "50000", "20000", "20000", "300000", "account"),
    ],
    ids=[
        "no-override-asset-default",
        "no-override-asset-own-quota",
        "B-override-smaller",
        "B-override-at-price-4",
        "B-override-larger-stops-at-U",
        "C-override-smaller",
        "A-override-recorded-but-q-max-is-80pct",
    ],
)
def test_account_override_replaces_the_asset_fixed_quota(
    platform_total: str,
    price_usdt: str,
    fixed_quota_usdt: str,
    override: str | None,
    fixed_quota: str,
    quantity_max: str,
    source: str,
) -> None:
    decision = decide(
        upper_limit="1000000",
        platform_total=platform_total,
        price_usdt=price_usdt,
        fixed_quota_usdt=fixed_quota_usdt,
        fixed_quota_usdt_override=override,
    )
    assert decision.fixed_quota_usdt == Decimal(override or fixed_quota_usdt)
    assert decision.fixed_quota == Decimal(fixed_quota)
    assert decision.quantity_max == Decimal(quantity_max)
    assert decision.fixed_quota_source == source
    assert decision.context()["fixed_quota_source"] == source


# --- the decision's context ---------------------------------------------------------------------


def test_context_uses_the_contract_keys_with_plain_decimal_strings() -> None:
    """Goal: COMMANDS.md's example context, exactly. Method: feed example 3 with exponents and
    trailing zeros in the inputs; the context must still print plain numbers."""
    decision = decide_cap_band(
        asset="ABC",
        quantity_requested=Decimal("50000.0"),
        platform_total=Decimal("2990000.00000000"),
        price_usdt=Decimal("1.00"),
        params=CapParams(
            upper_limit=Decimal("3E+6"),
            fixed_quota_usdt=Decimal("50000"),
            band_b_ratio_min=Decimal("0.80"),
            band_c_ratio_min=Decimal("0.9"),
        ),
        quantity_decimals=8,
    )
    assert decision.context() == {
        "asset": "ABC",
        "band": "C",
        "total": "2990000",
        "upper_limit": "3000000",
        "ratio": "0.9966666666666666666666666667",
        "q_max": "10000",
        "fixed_quota": "50000",
        "fixed_quota_usdt": "50000",
        "fixed_quota_source": "asset",
        "price_usdt": "1",
        "requested": "50000",
        "band_b_ratio_min": "0.8",
        "band_c_ratio_min": "0.9",
    }


@pytest.mark.parametrize(
    ("platform_total", "price_usdt", "expected"),
    [
        (
            "799999.99999999",
            "3",
            {
                "band": "A",
                "ratio": "0.79999999999999",
                "q_max": "0.00000001",
                "fixed_quota": "16666.66666666",
                "price_usdt": "3",
            },
        ),
        (
            "0",
            "0.00000100",
            {
                "band": "A",
                "ratio": "0",
                "q_max": "800000",
                "total": "0",
                "fixed_quota": "50000000000",
                "price_usdt": "0.000001",
            },
        ),
        (
            "1200000",
            "1",
            {"band": "D", "ratio": "1.2", "q_max": "0"},
        ),
    ],
    ids=["fractions", "zero-total-tiny-price", "band-D"],
)
def test_context_numbers_have_no_exponent_and_no_trailing_zeros(
    platform_total: str, price_usdt: str, expected: dict[str, str]
) -> None:
    decision = decide(upper_limit="1000000", platform_total=platform_total, price_usdt=price_usdt)
    context = decision.context()
    assert {key: context[key] for key in expected} == expected
    for key in NUMBER_KEYS:
        assert PLAIN_NUMBER.fullmatch(context[key]), (key, context[key])


# --- preconditions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"quantity_requested": "0"},
        {"quantity_requested": "-1"},
        {"platform_total": "-0.00000001"},
        {"price_usdt": "0"},
        {"band_b_ratio_min": "0.9", "band_c_ratio_min": "0.9"},
        {"band_b_ratio_min": "0.95", "band_c_ratio_min": "0.9"},
        {"band_c_ratio_min": "1"},
        {"band_b_ratio_min": "0"},
        {"upper_limit": "0"},
        {"fixed_quota_usdt_override": "0"},
        {"quantity_decimals": -1},
    ],
    ids=[
        "zero-request",
        "negative-request",
        "negative-total",
        "zero-price",
        "b-equals-c",
        "b-above-c",
        "c-at-100pct",
        "b-at-zero",
        "zero-upper-limit",
        "zero-override",
        "negative-decimals",
    ],
)
def test_broken_preconditions_stop_the_rule(overrides: dict[str, object]) -> None:
    arguments: dict[str, object] = {"upper_limit": "1000000", "platform_total": "500000"}
    arguments.update(overrides)
    with pytest.raises(AssertionError):
        decide(**arguments)  # type: ignore[arg-type]


# --- found bugs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform_total", "band"),
    [
        ("79999999999999.999999999999999999", Band.A),
        ("99999999999999.999999999999999999", Band.C),
    ],
    ids=["one-unit-below-80pct", "one-unit-below-100pct"],
)
def test_band_follows_the_exact_ratio_at_18_decimals(platform_total: str, band: Band) -> None:
    decision = decide(
        upper_limit="100000000000000",
        platform_total=platform_total,
        quantity_requested="50000",
        quantity_decimals=18,
    )
    assert decision.band is band
    assert decision.quantity_max == Decimal("0.000000000000000001")
    assert not decision.is_accepted


def test_band_a_q_max_of_a_large_cap_at_18_decimals() -> None:
    decision = decide(upper_limit="20000000000", platform_total="0", quantity_decimals=18)
    assert decision.band is Band.A
    assert decision.quantity_max == Decimal("16000000000")


# --- properties ---------------------------------------------------------------------------------


@st.composite
def cap_cases(draw: st.DrawFn) -> dict[str, object]:
    """U, T (often exactly on an edge), price, request, decimals and thresholds, all in range."""
    upper_limit = draw(
        st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1000000000000"), places=8)
    )
    band_b_ratio_min = draw(
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.97"), places=2)
    )
    band_c_ratio_min = draw(
        st.decimals(
            min_value=band_b_ratio_min + Decimal("0.01"), max_value=Decimal("0.99"), places=2
        )
    )
    platform_total = draw(
        st.one_of(
            st.decimals(min_value=Decimal(0), max_value=upper_limit * 2, places=8),
            st.sampled_from(
                [band_b_ratio_min * upper_limit, band_c_ratio_min * upper_limit, upper_limit]
            ),
        )
    )
    return {
        "platform_total": platform_total,
        "quantity_requested": draw(
            st.decimals(
                min_value=Decimal("0.00000001"), max_value=Decimal("1000000000000"), places=8
            )
        ),
        "price_usdt": draw(
            st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("100000000"), places=8)
        ),
        "quantity_decimals": draw(st.integers(min_value=0, max_value=8)),
        "fixed_quota_usdt_override": draw(
            st.none() | st.decimals(min_value=Decimal("1"), max_value=Decimal("1000000"), places=2)
        ),
        "params": CapParams(
            upper_limit=upper_limit,
            fixed_quota_usdt=Decimal("50000"),
            band_b_ratio_min=band_b_ratio_min,
            band_c_ratio_min=band_c_ratio_min,
        ),
    }


@settings(max_examples=300, deadline=None, database=None)
@given(case=cap_cases())
def test_q_max_never_takes_t_past_the_rule_and_acceptance_is_request_within_q_max(
    case: dict[str, object],
) -> None:
    decision = decide_cap_band(asset=ASSET, **case)  # type: ignore[arg-type]
    params = case["params"]
    assert isinstance(params, CapParams)
    platform_total, upper_limit = decision.platform_total, params.upper_limit

    assert decision.quantity_max >= 0
    if decision.band is not Band.D:
        assert platform_total + decision.quantity_max <= upper_limit
    if decision.band is Band.A:
        assert platform_total + decision.quantity_max <= params.band_b_ratio_min * upper_limit
    if decision.band is Band.D:
        assert decision.quantity_max == 0
    assert decision.is_accepted == (decision.quantity_requested <= decision.quantity_max)
    assert (decision.band is Band.A) == (platform_total < params.band_b_ratio_min * upper_limit)
    assert (decision.band is Band.D) == (platform_total >= upper_limit)
    assert decision.band is band_of(platform_total=platform_total, params=params)
    assert -decision.quantity_max.as_tuple().exponent <= case["quantity_decimals"]  # type: ignore[operator]
