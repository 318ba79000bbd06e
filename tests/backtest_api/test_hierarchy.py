"""Markets (with coverage), events, series and settlements: filters, pages, 404s."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from markets import ingest
from markets.models import Event, Market, SequenceGap, Series, Settlement

from .conftest import data_of, error_of

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)


def page(client, url):
    response = client.get(url)
    return (
        data_of(response),
        response.json()["next_cursor"],
        response.json()["has_more"],
    )


def all_pages(client, url, limit=2):
    sep = "&" if "?" in url else "?"
    rows, cursor = [], None
    while True:
        data, cursor, more = page(
            client, f"{url}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        )
        rows.extend(data)
        if not more:
            assert cursor is None
            return rows


@pytest.fixture
def hierarchy():
    Series.objects.create(ticker="KXHIGH", title="Highs", category="Climate")
    Series.objects.create(ticker="KXFED", title="Fed", category="Economics")
    Event.objects.create(
        event_ticker="KXHIGH-26NOV23",
        series_ticker="KXHIGH",
        status="open",
        category="Climate",
    )
    Event.objects.create(
        event_ticker="KXFED-26DEC",
        series_ticker="KXFED",
        status="settled",
        category="Economics",
    )
    for ticker, event, series, status in [
        ("KXHIGH-26NOV23-T50", "KXHIGH-26NOV23", "KXHIGH", "active"),
        ("KXHIGH-26NOV23-T60", "KXHIGH-26NOV23", "KXHIGH", "active"),
        ("KXHIGH-26NOV23-T70", "KXHIGH-26NOV23", "KXHIGH", "closed"),
        ("KXFED-26DEC-H0", "KXFED-26DEC", "KXFED", "finalized"),
    ]:
        Market.objects.create(
            ticker=ticker, event_ticker=event, series_ticker=series, status=status
        )
    Settlement.objects.create(
        market_ticker="KXFED-26DEC-H0",
        event_ticker="KXFED-26DEC",
        result="yes",
        settlement_value=D("1"),
        settled_at=T0,
    )
    Settlement.objects.create(
        market_ticker="KXHIGH-26NOV23-T70",
        event_ticker="KXHIGH-26NOV23",
        result="no",
        settlement_value=D("0"),
        settled_at=T0 + timedelta(days=1),
    )


# --- Markets -------------------------------------------------------------------


def test_markets_filters(client, hierarchy):
    tickers = lambda url: [m["ticker"] for m in data_of(client.get(url))]
    assert tickers("/api/v1/markets") == [
        "KXFED-26DEC-H0",
        "KXHIGH-26NOV23-T50",
        "KXHIGH-26NOV23-T60",
        "KXHIGH-26NOV23-T70",
    ]
    assert tickers("/api/v1/markets?status=active") == [
        "KXHIGH-26NOV23-T50",
        "KXHIGH-26NOV23-T60",
    ]
    assert tickers("/api/v1/markets?event_ticker=KXFED-26DEC") == ["KXFED-26DEC-H0"]
    assert tickers("/api/v1/markets?series_ticker=KXHIGH&status=closed") == [
        "KXHIGH-26NOV23-T70"
    ]


def test_market_coverage_has_first_last_instants_and_gaps(client, hierarchy):
    ticker = "KXHIGH-26NOV23-T50"
    ingest.deltas_ingest(
        [
            (ticker, T0, 1, 2, 5, "yes", D("0.5"), D("1"), None),
            (ticker, T0 + timedelta(hours=2), 1, 2, 9, "yes", D("0.5"), D("1"), None),
        ]
    )
    ingest.trades_ingest(
        [
            (
                ticker,
                T0 + timedelta(minutes=5),
                "t1",
                D("0.5"),
                D("0.5"),
                D("1"),
                "yes",
                "bid",
                None,
                False,
                T0,
                "ws",
            ),
        ]
    )
    SequenceGap.objects.create(
        market_ticker=ticker,
        detected_at=T0 + timedelta(hours=1),
        recovered_at=T0 + timedelta(hours=1, seconds=3),
    )
    SequenceGap.objects.create(
        market_ticker="", channel="trade", detected_at=T0 + timedelta(minutes=30)
    )
    SequenceGap.objects.create(
        market_ticker="",
        channel="trade",
        detected_at=T0 + timedelta(days=3),
        recovered_at=T0 + timedelta(days=3, seconds=1),
    )
    SequenceGap.objects.create(
        market_ticker="OTHER", detected_at=T0 + timedelta(hours=1)
    )
    coverage = data_of(client.get(f"/api/v1/markets/{ticker}"))["coverage"]
    assert coverage["first_delta_at"] == "2026-11-23T12:00:00Z"
    assert coverage["last_delta_at"] == "2026-11-23T14:00:00Z"
    assert (
        coverage["first_trade_at"]
        == coverage["last_trade_at"]
        == "2026-11-23T12:05:00Z"
    )
    gaps = [
        (g["market_ticker"], g["channel"], g["detected_at"]) for g in coverage["gaps"]
    ]
    assert sorted(gaps) == [
        ("", "trade", "2026-11-23T12:30:00Z"),
        (ticker, "orderbook_delta", "2026-11-23T13:00:00Z"),
    ]
    listed = {
        m["ticker"]: m["coverage"] for m in data_of(client.get("/api/v1/markets"))
    }
    assert listed[ticker] == coverage
    assert listed["KXHIGH-26NOV23-T60"] == {
        "first_delta_at": None,
        "last_delta_at": None,
        "first_trade_at": None,
        "last_trade_at": None,
        "gaps": [],
    }


def test_unknown_market_is_404_naming_it(client, hierarchy):
    body = error_of(client.get("/api/v1/markets/KXNOPE"), 404, "not_found")
    assert "KXNOPE" in body["message"]


def test_market_pages_stay_stable_when_rows_arrive_between_requests(client, hierarchy):
    first, cursor, more = page(client, "/api/v1/markets?limit=2")
    assert more and [m["ticker"] for m in first] == [
        "KXFED-26DEC-H0",
        "KXHIGH-26NOV23-T50",
    ]
    # One market sorts before the cursor, one after it.
    Market.objects.create(ticker="KXAAA")
    Market.objects.create(ticker="KXHIGH-26NOV23-T55")
    rest = []
    while cursor:
        data, cursor, more = page(client, f"/api/v1/markets?limit=2&cursor={cursor}")
        rest.extend(m["ticker"] for m in data)
    assert rest == ["KXHIGH-26NOV23-T55", "KXHIGH-26NOV23-T60", "KXHIGH-26NOV23-T70"]


def test_market_query_count_does_not_grow_with_the_page(
    client, hierarchy, django_assert_max_num_queries
):
    # key lookup + page + coverage bounds + gaps (+ last_used_at update)
    with django_assert_max_num_queries(5):
        assert len(data_of(client.get("/api/v1/markets?limit=4"))) == 4


# --- Events and series -------------------------------------------------------------


def test_events_with_market_counts_and_filters(client, hierarchy):
    events = data_of(client.get("/api/v1/events"))
    assert [(e["event_ticker"], e["market_count"]) for e in events] == [
        ("KXFED-26DEC", 1),
        ("KXHIGH-26NOV23", 3),
    ]
    assert [
        e["event_ticker"]
        for e in data_of(client.get("/api/v1/events?series_ticker=KXHIGH"))
    ] == ["KXHIGH-26NOV23"]
    assert [
        e["event_ticker"] for e in data_of(client.get("/api/v1/events?status=settled"))
    ] == ["KXFED-26DEC"]
    assert [
        e["event_ticker"]
        for e in data_of(client.get("/api/v1/events?category=Climate"))
    ] == ["KXHIGH-26NOV23"]


def test_event_detail_nests_its_markets(client, hierarchy):
    event = data_of(client.get("/api/v1/events/KXHIGH-26NOV23"))
    assert event["market_count"] == 3
    assert [m["ticker"] for m in event["markets"]] == [
        "KXHIGH-26NOV23-T50",
        "KXHIGH-26NOV23-T60",
        "KXHIGH-26NOV23-T70",
    ]
    error_of(client.get("/api/v1/events/KXNOPE"), 404, "not_found")


def test_series_list_detail_and_category(client, hierarchy):
    assert [s["ticker"] for s in all_pages(client, "/api/v1/series", limit=1)] == [
        "KXFED",
        "KXHIGH",
    ]
    assert [
        s["ticker"] for s in data_of(client.get("/api/v1/series?category=Economics"))
    ] == ["KXFED"]
    assert data_of(client.get("/api/v1/series/KXHIGH"))["title"] == "Highs"


# --- Settlements ------------------------------------------------------------------------


def test_settlements_filters_and_detail(client, hierarchy):
    tickers = lambda url: [s["market_ticker"] for s in data_of(client.get(url))]
    assert tickers("/api/v1/settlements") == ["KXFED-26DEC-H0", "KXHIGH-26NOV23-T70"]
    assert tickers("/api/v1/settlements?result=no") == ["KXHIGH-26NOV23-T70"]
    assert tickers("/api/v1/settlements?event_ticker=KXFED-26DEC") == ["KXFED-26DEC-H0"]
    between = "/api/v1/settlements?settled_after=2026-11-24T00:00:00Z&settled_before=2026-11-25T00:00:00Z"
    assert tickers(between) == ["KXHIGH-26NOV23-T70"]
    assert tickers("/api/v1/settlements?settled_before=2026-11-23T12:00:00") == []
    detail = data_of(client.get("/api/v1/settlements/KXFED-26DEC-H0"))
    assert detail == {
        "market_ticker": "KXFED-26DEC-H0",
        "event_ticker": "KXFED-26DEC",
        "result": "yes",
        "settlement_value": "1.0000",
        "determined_at": None,
        "settled_at": "2026-11-23T12:00:00Z",
        "source": "lifecycle",
    }
    error_of(client.get("/api/v1/settlements/KXHIGH-26NOV23-T50"), 404, "not_found")


@pytest.mark.parametrize(
    "query, param",
    [
        ("result=maybe", "result"),
        ("result=", "result"),
        ("event_ticker=", "event_ticker"),
        ("settled_after=", "settled_after"),
        ("settled_after=yesterday", "settled_after"),
        (
            "settled_after=2026-11-24T00:00:00Z&settled_before=2026-11-23T00:00:00Z",
            "settled_before",
        ),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=WzEsMl0", "cursor"),  # valid base64 JSON, wrong shape
    ],
)
def test_settlement_bad_parameters_are_400s_naming_them(
    client, hierarchy, query, param
):
    error_of(
        client.get(f"/api/v1/settlements?{query}"), 400, "invalid_parameter", param
    )


def test_far_offsets_are_read_into_utc(client, hierarchy):
    # PostgreSQL refuses offsets beyond 15:59 that ISO 8601 parsers accept.
    url = "/api/v1/settlements?settled_after=2026-11-23T21:26:31-18:38"
    assert data_of(client.get(url)) == []
    error_of(client.get("/api/v1/markets?status="), 400, "invalid_parameter", "status")
