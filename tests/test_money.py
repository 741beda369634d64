"""money.py: exact parsing, the contract's plain number format, and rounding towards zero."""

from decimal import Decimal

import pytest

from ledger import limits
from ledger.money import (
    NotADecimal,
    check_quantity_shape,
    decimal_places,
    format_plain,
    parse_decimal,
    quantize_down,
)

# A quantity at the shape limits: 15 integer digits and 18 decimals, 33 significant digits,
# more than the default Decimal context's 28.
QUANTITY_AT_SHAPE_LIMITS = "123456789012345.123456789012345678"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.1", Decimal("0.1")),
        ("10", Decimal("10")),
        ("-2.50", Decimal("-2.50")),
        ("+3", Decimal("3")),
        (".5", Decimal("0.5")),
        ("0.00000001", Decimal("0.00000001")),
        (10, Decimal("10")),
        (0, Decimal("0")),
        (Decimal("1.25"), Decimal("1.25")),
        (Decimal("1E+5"), Decimal("100000")),
    ],
    ids=[
        "string-fraction",
        "string-integer",
        "string-negative-trailing-zero",
        "string-plus-sign",
        "string-leading-dot",
        "string-smallest-unit",
        "int",
        "int-zero",
        "decimal",
        "finite-decimal-with-exponent",
    ],
)
def test_parse_decimal_accepts_plain_strings_ints_and_finite_decimals(
    value: object, expected: Decimal
) -> None:
    parsed = parse_decimal(value)
    assert isinstance(parsed, Decimal)
    assert parsed == expected


def test_parse_decimal_keeps_the_digits_of_the_text() -> None:
    assert parse_decimal("2.50").as_tuple() == Decimal("2.50").as_tuple()


@pytest.mark.parametrize(
    "value",
    [
        0.1,
        1.0,
        True,
        False,
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "inf",
        "-inf",
        "+Infinity",
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        "1e5",
        "1E+5",
        "abc",
        "",
        " ",
        "1,000",
        "1_000",
        "0x10",
        "1.2.3",
        "--1",
        None,
        [1],
    ],
    ids=[
        "float",
        "float-integral",
        "bool-true",
        "bool-false",
        "string-NaN",
        "string-nan",
        "string-sNaN",
        "string-Infinity",
        "string-inf",
        "string-minus-inf",
        "string-plus-Infinity",
        "decimal-NaN",
        "decimal-Infinity",
        "decimal-minus-Infinity",
        "string-exponent-lower",
        "string-exponent-upper",
        "string-word",
        "string-empty",
        "string-blank",
        "string-thousands-comma",
        "string-underscore",
        "string-hex",
        "string-two-dots",
        "string-double-sign",
        "none",
        "list",
    ],
)
def test_parse_decimal_refuses_anything_but_a_plain_finite_decimal(value: object) -> None:
    with pytest.raises(NotADecimal):
        parse_decimal(value)


@pytest.mark.parametrize("value", ["١٢", "１２"], ids=["arabic-indic", "full-width"])
def test_parse_decimal_refuses_non_ascii_digits(value: str) -> None:
    with pytest.raises(NotADecimal):
        parse_decimal(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1E+5", "100000"),
        ("1.2300", "1.23"),
        ("-0", "0"),
        ("0", "0"),
        ("0.000", "0"),
        ("-0.00", "0"),
        ("0.00000001", "0.00000001"),
        ("1E-8", "0.00000001"),
        ("100", "100"),
        ("100.0", "100"),
        ("-1.50", "-1.5"),
        ("10000.00000000", "10000"),
        ("0.9966666666666666666666666667", "0.9966666666666666666666666667"),
    ],
    ids=[
        "positive-exponent",
        "trailing-zeros",
        "negative-zero",
        "zero",
        "zero-with-places",
        "negative-zero-with-places",
        "smallest-unit-no-exponent",
        "negative-exponent",
        "integer-keeps-its-zeros",
        "integer-with-zero-place",
        "negative-trailing-zero",
        "quantized-q-max",
        "twenty-eight-digit-ratio",
    ],
)
def test_format_plain_writes_no_exponent_and_no_trailing_zeros(value: str, expected: str) -> None:
    assert format_plain(Decimal(value)) == expected


def test_format_plain_writes_every_digit_of_a_quantity_at_the_shape_limits() -> None:
    assert format_plain(Decimal(QUANTITY_AT_SHAPE_LIMITS)) == QUANTITY_AT_SHAPE_LIMITS


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        ("1.239", 2, "1.23"),
        ("1.999", 0, "1"),
        ("-1.239", 2, "-1.23"),
        ("-1.999", 0, "-1"),
        ("16666.666666666666", 8, "16666.66666666"),
        ("16666.666666666666", 2, "16666.66"),
        ("0.000000009", 8, "0.00000000"),
        ("5", 2, "5.00"),
        ("1.23", 2, "1.23"),
    ],
    ids=[
        "positive-down",
        "positive-to-integer",
        "negative-towards-zero",
        "negative-to-integer-towards-zero",
        "fixed-quota-at-price-3-eight-decimals",
        "fixed-quota-at-price-3-two-decimals",
        "below-smallest-unit-is-zero",
        "pads-to-the-places",
        "already-at-the-places",
    ],
)
def test_quantize_down_rounds_towards_zero(value: str, decimals: int, expected: str) -> None:
    quantized = quantize_down(Decimal(value), decimals)
    assert quantized == Decimal(expected)
    assert quantized.as_tuple().exponent == -decimals


def test_quantize_down_keeps_a_quantity_at_the_shape_limits() -> None:
    value = Decimal("123456789012345.1")
    assert quantize_down(value, limits.QUANTITY_DECIMALS_MAX) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("10", 0),
        ("100", 0),
        ("1E+5", 0),
        ("1.10", 1),
        ("1.2300", 2),
        ("0.00000001", 8),
        ("0.100000000000000000", 1),
        ("-2.50", 1),
    ],
    ids=[
        "zero",
        "integer",
        "integer-ending-in-zeros",
        "positive-exponent",
        "one-place-and-a-trailing-zero",
        "two-places-and-trailing-zeros",
        "smallest-unit",
        "many-trailing-zeros",
        "negative",
    ],
)
def test_decimal_places_ignores_trailing_zeros(value: str, expected: int) -> None:
    assert decimal_places(Decimal(value)) == expected


def test_decimal_places_counts_every_place_of_a_long_quantity() -> None:
    value = Decimal("123456789012345.1234567890123456789")
    assert decimal_places(value) == 19
    with pytest.raises(NotADecimal):
        check_quantity_shape(value)


@pytest.mark.parametrize(
    "value",
    ["1", "0.000000000000000001", "999999999999999", "-1.5"],
    ids=["one", "eighteen-places", "fifteen-integer-digits", "negative"],
)
def test_check_quantity_shape_accepts_quantities_within_the_limits(value: str) -> None:
    check_quantity_shape(Decimal(value))


@pytest.mark.parametrize(
    "value",
    ["0.0000000000000000001", "1000000000000000", "-1000000000000000"],
    ids=["nineteen-places", "sixteen-integer-digits", "negative-sixteen-integer-digits"],
)
def test_check_quantity_shape_refuses_quantities_beyond_the_limits(value: str) -> None:
    with pytest.raises(NotADecimal):
        check_quantity_shape(Decimal(value))
