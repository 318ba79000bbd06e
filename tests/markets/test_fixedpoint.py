"""Exact parsing and printing of Kalshi's prices and counts."""

from decimal import Decimal as D

import pytest

from markets.fixedpoint import (
    FixedPointError,
    format_count,
    format_price,
    parse_count,
    parse_price,
    price_from_cents,
)


@pytest.mark.parametrize("raw", ["0.5600", "0.56", 0.56, "0.560", D("0.56")])
def test_prices_parse_exactly_from_any_spelling(raw):
    assert parse_price(raw) == D("0.5600")


def test_sub_cent_prices_and_fractional_counts():
    assert parse_price("0.0001") == D("0.0001")
    assert parse_count("74.77") == D("74.77")
    assert parse_count(-54) == D("-54.00")


def test_legacy_cents():
    assert price_from_cents(96) == D("0.9600")


@pytest.mark.parametrize("raw", ["abc", None, True, "NaN", "Infinity", "0.00001"])
def test_bad_prices_are_refused(raw):
    with pytest.raises(FixedPointError):
        parse_price(raw)


def test_kalshi_style_output():
    assert format_price(D("0.56")) == "0.5600"
    assert format_count(D("136")) == "136.00"
    assert format_price(None) is None
