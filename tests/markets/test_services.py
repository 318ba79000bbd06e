"""Reference-table services store Kalshi objects exactly and idempotently."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from markets.models import Event, Market, Series, Settlement
from markets.services import (
    event_upsert,
    market_upsert,
    market_upsert_from_lifecycle,
    markets_upsert,
    parse_time,
    series_upsert,
    settlement_record,
)

pytestmark = pytest.mark.django_db

REST_MARKET = {
    "ticker": "KXHIGHNY-26NOV24-T60",
    "event_ticker": "KXHIGHNY-26NOV24",
    "market_type": "binary",
    "status": "active",
    "title": "High above 60?",
    "yes_sub_title": "60° or above",
    "no_sub_title": "below 60°",
    "open_time": "2026-11-23T15:00:00Z",
    "close_time": "2026-11-25T04:59:00Z",
    "latest_expiration_time": "2026-12-02T15:00:00Z",
    "floor_strike": 60.25,
    "price_level_structure": "linear_cent",
    "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
    "result": "",
    "can_close_early": True,
    "some_future_field": {"kept": True},
}


def test_market_upsert_stores_exact_values_and_the_raw_object():
    market = market_upsert(data=REST_MARKET)
    market.refresh_from_db()
    assert market.floor_strike == Decimal("60.25")
    assert market.close_time == datetime(2026, 11, 25, 4, 59, tzinfo=timezone.utc)
    assert market.expiration_time == datetime(2026, 12, 2, 15, tzinfo=timezone.utc)
    assert market.metadata["some_future_field"] == {"kept": True}
    assert market.status == "active"


def test_upserts_are_idempotent():
    series = {"ticker": "KXHIGHNY", "title": "NY high", "frequency": "daily", "category": "Climate",
              "tags": ["weather"], "settlement_sources": [{"name": "NWS", "url": "https://x"}],
              "contract_url": "u", "fee_type": "quadratic", "fee_multiplier": 1}
    for _ in range(2):
        series_upsert(data=series)
        event_upsert(data={"event_ticker": "KXHIGHNY-26NOV24", "series_ticker": "KXHIGHNY",
                           "title": "NY high Nov 24", "sub_title": "Nov 24", "mutually_exclusive": True})
        market_upsert(data=REST_MARKET)
    assert Series.objects.count() == Event.objects.count() == Market.objects.count() == 1
    assert Series.objects.get().fee_multiplier == Decimal(1)


def test_market_learns_its_series_from_its_event_in_either_order():
    market_upsert(data=REST_MARKET)
    assert Market.objects.get().series_ticker == ""
    event_upsert(data={"event_ticker": "KXHIGHNY-26NOV24", "series_ticker": "KXHIGHNY"})
    assert Market.objects.get().series_ticker == "KXHIGHNY"
    market_upsert(data={**REST_MARKET, "ticker": "KXHIGHNY-26NOV24-T70"})
    assert Market.objects.get(ticker="KXHIGHNY-26NOV24-T70").series_ticker == "KXHIGHNY"


def test_markets_upsert_stores_many_as_market_upsert_stores_one():
    event_upsert(data={"event_ticker": "KXHIGHNY-26NOV24", "series_ticker": "KXHIGHNY"})
    other = {**REST_MARKET, "ticker": "KXHIGHNY-26NOV24-T70", "event_ticker": "UNKNOWN-EV"}
    market_upsert(data={**REST_MARKET, "title": "old title", "status": "initialized"})
    first = Market.objects.get(ticker=REST_MARKET["ticker"])

    assert markets_upsert(markets=[REST_MARKET, other, REST_MARKET]) == 2

    one = Market.objects.get(ticker=REST_MARKET["ticker"])
    assert (one.title, one.status, one.series_ticker) == ("High above 60?", "active", "KXHIGHNY")
    assert one.discovered_at == first.discovered_at and one.updated_at > first.updated_at
    assert one.floor_strike == Decimal("60.25") and one.metadata["some_future_field"] == {"kept": True}
    assert Market.objects.get(ticker=other["ticker"]).series_ticker == ""  # its event is unknown yet
    # Each column as the one-at-a-time service stores it.
    market_upsert(data=REST_MARKET)
    again = Market.objects.get(ticker=REST_MARKET["ticker"])
    fields = [f.name for f in Market._meta.concrete_fields if f.name not in ("updated_at",)]
    assert [getattr(again, f) for f in fields] == [getattr(one, f) for f in fields]
    assert markets_upsert(markets=[]) == 0


def test_event_lifecycle_payload_does_not_replace_the_rest_object():
    event_upsert(data={"event_ticker": "E-1", "series_ticker": "S", "title": "REST", "sub_title": "rest sub"})
    event_upsert(data={"event_ticker": "E-1", "series_ticker": "S", "title": "WS", "subtitle": "ws sub",
                       "collateral_return_type": "MECNET", "exchange_index": 0, "strike_date": 1764000000})
    event = Event.objects.get()
    assert (event.title, event.sub_title, event.collateral_return_type) == ("WS", "ws sub", "MECNET")
    assert event.metadata["title"] == "REST"
    assert event.metadata["event_lifecycle"]["title"] == "WS"
    assert event.strike_date == datetime.fromtimestamp(1764000000, tz=timezone.utc)


def test_lifecycle_created_then_partial_updates_touch_only_their_fields():
    market_upsert_from_lifecycle(payload={
        "market_ticker": "X-1", "event_type": "created", "open_ts": 1694635200, "close_ts": 1694721600,
        "price_level_structure": "linear_cent", "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
        "additional_metadata": {"title": "T", "yes_sub_title": "Y", "no_sub_title": "N", "rules_primary": "R",
                                "rules_secondary": "", "can_close_early": True, "event_ticker": "E-1",
                                "expected_expiration_ts": 1694721600, "floor_strike": 4487},
    })
    market_upsert_from_lifecycle(payload={"market_ticker": "X-1", "event_type": "close_date_updated",
                                          "close_ts": 1694700000})
    market_upsert_from_lifecycle(payload={"market_ticker": "X-1", "event_type": "deactivated",
                                          "is_deactivated": True})
    market = Market.objects.get()
    assert market.title == "T" and market.event_ticker == "E-1"
    assert market.floor_strike == Decimal(4487)
    assert market.close_time == datetime.fromtimestamp(1694700000, tz=timezone.utc)
    assert market.status == "inactive"


def test_settlement_record_merges_determination_and_settlement_in_any_order():
    settled = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
    determined = datetime(2026, 11, 24, 11, tzinfo=timezone.utc)
    market_upsert(data=REST_MARKET)
    settlement_record(market_ticker=REST_MARKET["ticker"], result="", settled_at=settled, source="lifecycle")
    settlement_record(market_ticker=REST_MARKET["ticker"], result="yes", settlement_value="1.0000",
                      determined_at=determined, source="lifecycle", metadata={"rest_confirmed": True})
    settlement_record(market_ticker=REST_MARKET["ticker"], result="yes", settlement_value="1.0000",
                      determined_at=determined, source="lifecycle")
    row = Settlement.objects.get()
    assert (row.result, row.settlement_value, row.determined_at, row.settled_at) == (
        "yes", Decimal("1.0000"), determined, settled)
    assert row.event_ticker == REST_MARKET["event_ticker"]
    assert row.metadata == {"rest_confirmed": True}
    market = Market.objects.get()
    assert (market.result, market.settlement_value, market.status) == ("yes", Decimal("1.0000"), "finalized")


def test_parse_time_accepts_rfc3339_and_unix_seconds():
    assert parse_time("2026-11-24T00:00:00Z") == datetime(2026, 11, 24, tzinfo=timezone.utc)
    assert parse_time("2026-11-24T00:00:00.123456+00:00").microsecond == 123456
    assert parse_time(0) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert parse_time("1700000000") == datetime.fromtimestamp(1700000000, tz=timezone.utc)
    assert parse_time("") is None and parse_time(None) is None
