"""Decimal quantities and prices: exact parsing, plain formatting, and the only rounding we do."""

import re
from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation

from ledger import limits

_PLAIN_DECIMAL = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")  # ASCII digits only


class NotADecimal(ValueError):
    """The text is not a plain, finite decimal number."""


def parse_decimal(value: object) -> Decimal:
    """A finite Decimal from a decimal string, an int or a Decimal; never from a float or a bool.

    Strings must be plain decimal notation ("12.5"): exponents, NaN and infinities are refused,
    because COMMANDS.md carries amounts as decimal strings and a ledger must not guess.
    """
    if isinstance(value, bool):
        raise NotADecimal("must be a decimal string, not a boolean")
    if isinstance(value, float):
        raise NotADecimal("must be a decimal string, not a binary float")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise NotADecimal("must be a finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lower().lstrip("+-") in {"nan", "snan", "inf", "infinity"}:
            raise NotADecimal("must be a finite number")
        if not _PLAIN_DECIMAL.match(text):
            raise NotADecimal(f'must be a decimal string like "0.1", got {value!r}')
        try:
            return Decimal(text)
        except InvalidOperation as error:  # pragma: no cover - the regex admits only valid text
            raise NotADecimal(f"must be a decimal string, got {value!r}") from error
    raise NotADecimal(f"must be a decimal string, got {type(value).__name__}")


def decimal_places(value: Decimal) -> int:
    """How many significant decimal places the value carries (trailing zeros do not count)."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int), value
    return max(0, -exponent)


def integer_digits(value: Decimal) -> int:
    """Digits before the decimal point, from the exponent: "1E+20" has 21, whatever its text."""
    if value.is_zero() or abs(value) < 1:
        return 0
    return value.adjusted() + 1


def check_quantity_shape(value: Decimal) -> None:
    """Raise NotADecimal when a quantity has more digits than the ledger keeps exactly."""
    if decimal_places(value) > limits.QUANTITY_DECIMALS_MAX:
        raise NotADecimal(f"has more than {limits.QUANTITY_DECIMALS_MAX} decimal places")
    if integer_digits(value) > limits.QUANTITY_INTEGER_DIGITS_MAX:
        raise NotADecimal(f"has more than {limits.QUANTITY_INTEGER_DIGITS_MAX} integer digits")


def quantize_down(value: Decimal, decimals: int) -> Decimal:
    """Round towards zero to `decimals` places: a limit rounded so it is never exceeded."""
    assert decimals >= 0, decimals
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def quantize_up(value: Decimal, decimals: int) -> Decimal:
    """Round away from zero to `decimals` places: a charge never rounds to less than is due."""
    assert decimals >= 0, decimals
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_UP)


def format_plain(value: Decimal) -> str:
    """The contract's number format: no exponent, no trailing zeros, "-0" written as "0"."""
    assert value.is_finite(), value
    if value.is_zero():
        return "0"
    text = str(value)
    if "E" not in text:  # the common case, several times faster than normalize + format
        return text.rstrip("0").rstrip(".") if "." in text else text
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
