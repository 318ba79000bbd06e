"""Kalshi's fixed-point numbers: parse exactly, print in Kalshi's current style.

Since 2026-03-12 Kalshi sends prices as dollar strings with up to 4 decimals
("0.5600") and counts with 2 ("136.00"). They have also arrived as JSON
numbers, and old archives carry integer cents and integer counts. Everything
becomes a Decimal here; nothing ever passes through float arithmetic.
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation

from .models.fields import COUNT_PLACES, PRICE_PLACES

PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_PLACES)  # 0.0001
COUNT_QUANTUM = Decimal(1).scaleb(-COUNT_PLACES)  # 0.01
ONE_DOLLAR = Decimal(1)
CENTS_PER_DOLLAR = Decimal(100)


class FixedPointError(ValueError):
    """A value that is not an exact price or count."""


def to_decimal(value) -> Decimal:
    """A Decimal from a string, an int, or a JSON number (via its repr, not float math)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool) or value is None:
        raise FixedPointError(f"not a number: {value!r}")
    elif isinstance(value, (int, str)):
        try:
            result = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise FixedPointError(f"not a number: {value!r}") from None
    elif isinstance(value, float):
        # json gives floats for numbers with a dot; repr is the shortest
        # string that round-trips, i.e. what the sender wrote.
        result = Decimal(repr(value))
    else:
        raise FixedPointError(f"not a number: {value!r}")
    if not result.is_finite():
        raise FixedPointError(f"not a finite number: {value!r}")
    return result


def parse_price(value) -> Decimal:
    """A dollar price, exact to 1/10000; more precision than that is an error."""
    price = to_decimal(value)
    if price != price.quantize(PRICE_QUANTUM):
        raise FixedPointError(f"price finer than {PRICE_QUANTUM}: {value!r}")
    return price.quantize(PRICE_QUANTUM)


def parse_count(value) -> Decimal:
    """A contract count (or signed change), exact to 1/100."""
    count = to_decimal(value)
    if count != count.quantize(COUNT_QUANTUM):
        raise FixedPointError(f"count finer than {COUNT_QUANTUM}: {value!r}")
    return count.quantize(COUNT_QUANTUM)


def price_from_cents(value) -> Decimal:
    """A legacy integer-cents price (e.g. 56) as dollars (0.5600)."""
    return parse_price(to_decimal(value) / CENTS_PER_DOLLAR)


@functools.lru_cache(maxsize=65_536)
def format_price(value: Decimal | None) -> str | None:
    """Kalshi's style for prices: dollars with 4 decimals, e.g. "0.5600".

    Cached: a market has a few hundred price levels and a replay formats one
    per frame (bench/replay_bench.py). Equal prices format alike, so a cached
    answer is the answer."""
    if value is None:
        return None
    return str(Decimal(value).quantize(PRICE_QUANTUM))


def format_count(value: Decimal | None) -> str | None:
    """Kalshi's style for counts: 2 decimals, e.g. "136.00"."""
    if value is None:
        return None
    return str(Decimal(value).quantize(COUNT_QUANTUM))
