"""Candles equal an independent computation from the raw trades."""

import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP
from decimal import Decimal as D

import pytest

from markets import ingest
from markets.models import Market

from .conftest import data_of, error_of

pytestmark = pytest.mark.django_db

UTC = timezone.utc
T0 = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # the data crosses midnight
M = "KXBTC-26NOV23-T100"


def make_trades(n=600, seed=5):
    rng = random.Random(seed)
    trades = []
    for i in range(n):
        # Clustered times with ties; quiet stretches leave buckets empty.
        ts = T0 + timedelta(
            seconds=rng.choice([rng.randrange(0, 3600), rng.randrange(9000, 12000)]),
            microseconds=rng.choice([0, 0, 250_000, rng.randrange(1_000_000)]),
        )
        price = D(rng.randrange(1, 10000)) / 10000
        count = D(rng.randrange(1, 50000)) / 100
        outcome = rng.choice(["yes", "no", None])
        legacy = rng.choice(["yes", "no"]) if outcome is None else None
        trades.append(
            (
                M,
                ts,
                f"id-{i:05d}",
                price,
                1 - price,
                count,
                outcome,
                None,
                legacy,
                False,
                ts,
                "ws",
            )
        )
    return trades


def expected_candles(trades, interval, start, end):
    """Buckets by floor((ts - origin) / interval) from 2000-01-01 UTC, in Python."""
    origin = datetime(2000, 1, 1, tzinfo=UTC)
    buckets = defaultdict(list)
    for t in trades:
        if start <= t[1] < end:
            buckets[t[1] - (t[1] - origin) % interval].append(t)
    out = []
    for bucket in sorted(buckets):
        rows = sorted(buckets[bucket], key=lambda t: (t[1], t[2]))
        volume = sum(t[5] for t in rows)
        side = lambda t: t[6] or t[8]
        fmt = lambda v: str(v.quantize(D("0.0001")))
        cnt = lambda v: str(v.quantize(D("0.01")))
        out.append(
            {
                "start": bucket.isoformat().replace("+00:00", "Z"),
                "end": (bucket + interval).isoformat().replace("+00:00", "Z"),
                "open": fmt(rows[0][3]),
                "close": fmt(rows[-1][3]),
                "high": fmt(max(t[3] for t in rows)),
                "low": fmt(min(t[3] for t in rows)),
                "volume": cnt(volume),
                "trade_count": len(rows),
                "vwap": fmt(
                    (sum(t[3] * t[5] for t in rows) / volume).quantize(
                        D("0.0001"), ROUND_HALF_UP
                    )
                ),
                "yes_taker_volume": cnt(
                    sum((t[5] for t in rows if side(t) == "yes"), D(0))
                ),
                "no_taker_volume": cnt(
                    sum((t[5] for t in rows if side(t) == "no"), D(0))
                ),
                "carried_forward": False,
            }
        )
    return out


def iso(dt):
    return dt.isoformat().replace("+00:00", "Z")


@pytest.fixture
def trades():
    Market.objects.create(ticker=M)
    rows = make_trades()
    ingest.trades_ingest(rows)
    return rows


@pytest.mark.parametrize(
    "interval, delta",
    [
        ("1m", timedelta(minutes=1)),
        ("7m", timedelta(minutes=7)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("4h", timedelta(hours=4)),
        ("1d", timedelta(days=1)),
    ],
)
def test_candles_equal_an_independent_computation(client, trades, interval, delta):
    # The range starts and ends inside buckets: those are partial.
    start, end = T0 + timedelta(minutes=3, seconds=30), T0 + timedelta(
        hours=3, minutes=10
    )
    url = f"/api/v1/candles/{M}?interval={interval}&start_time={iso(start)}&end_time={iso(end)}"
    data = data_of(client.get(url))
    assert data["interval"] == interval and data["market_ticker"] == M
    assert data["candles"] == expected_candles(trades, delta, start, end)
    assert data["candles"]  # the test compares something


def test_one_minute_candles_over_the_whole_range(client, trades):
    start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=5)
    data = data_of(
        client.get(
            f"/api/v1/candles/{M}?interval=1m&start_time={iso(start)}&end_time={iso(end)}"
        )
    )
    expected = expected_candles(trades, timedelta(minutes=1), start, end)
    assert data["candles"] == expected and len(expected) > 60
    assert sum(c["trade_count"] for c in data["candles"]) == len(trades)


def test_carry_forward_fills_empty_buckets_with_the_last_close(client):
    Market.objects.create(ticker=M)
    t = lambda minutes, tid, price: (
        M,
        T0 + timedelta(minutes=minutes),
        tid,
        D(price),
        1 - D(price),
        D("2"),
        "yes",
        "bid",
        None,
        False,
        T0,
        "ws",
    )
    ingest.trades_ingest(
        [t(-30, "before", "0.3000"), t(2.5, "a", "0.4000"), t(2.7, "b", "0.4500")]
    )
    url = f"/api/v1/candles/{M}?interval=1m&start_time={iso(T0)}&end_time={iso(T0 + timedelta(minutes=5))}"
    plain = data_of(client.get(url))["candles"]
    assert [c["start"][11:16] for c in plain] == ["22:02"]
    filled = data_of(client.get(url + "&carry_forward=true"))["candles"]
    assert [
        (
            c["start"][11:16],
            c["open"],
            c["close"],
            c["volume"],
            c["vwap"],
            c["carried_forward"],
        )
        for c in filled
    ] == [
        (
            "22:00",
            "0.3000",
            "0.3000",
            "0.00",
            None,
            True,
        ),  # the close before start_time
        ("22:01", "0.3000", "0.3000", "0.00", None, True),
        ("22:02", "0.4000", "0.4500", "4.00", "0.4250", False),
        ("22:03", "0.4500", "0.4500", "0.00", None, True),
        ("22:04", "0.4500", "0.4500", "0.00", None, True),
    ]


def test_carry_forward_starts_at_the_first_trade_when_none_before(client):
    Market.objects.create(ticker=M)
    ingest.trades_ingest(
        [
            (
                M,
                T0 + timedelta(minutes=2),
                "a",
                D("0.5"),
                D("0.5"),
                D("1"),
                "no",
                "ask",
                None,
                False,
                T0,
                "ws",
            )
        ]
    )
    url = f"/api/v1/candles/{M}?interval=1m&start_time={iso(T0)}&end_time={iso(T0 + timedelta(minutes=4))}&carry_forward=true"
    assert [c["start"][11:16] for c in data_of(client.get(url))["candles"]] == [
        "22:02",
        "22:03",
    ]


@pytest.mark.parametrize(
    "query, param",
    [
        ("interval=1w", "interval"),
        ("interval=0m", "interval"),
        ("interval=1.5h", "interval"),
        ("interval=h", "interval"),
        ("interval=400d", "interval"),
        (
            "interval=1m&start_time=2026-01-01T00:00:00Z&end_time=2026-12-01T00:00:00Z",
            "interval",
        ),
        ("start_time=2026-11-23T00:00:00Z&end_time=", "end_time"),
        ("end_time=2026-11-23T00:00:00Z", "start_time"),
        ("start_time=2026-11-24T00:00:00Z&end_time=2026-11-23T00:00:00Z", "end_time"),
        (
            "start_time=2026-11-23T00:00:00Z&end_time=2026-11-24T00:00:00Z&carry_forward=maybe",
            "carry_forward",
        ),
        (
            "interval=7m&start_time=0001-01-01T00:00:00Z&end_time=0001-01-01T01:00:00Z",
            "start_time",
        ),
        (
            "interval=1d&start_time=9999-12-31T00:00:00Z&end_time=9999-12-31T23:59:59Z",
            "end_time",
        ),
    ],
)
def test_bad_candle_parameters_are_400s_naming_them(client, query, param):
    Market.objects.create(ticker=M)
    if "start_time" not in query and "end_time" not in query:
        query += "&start_time=2026-11-23T00:00:00Z&end_time=2026-11-24T00:00:00Z"
    error_of(
        client.get(f"/api/v1/candles/{M}?{query}"), 400, "invalid_parameter", param
    )


def test_unknown_market_candles_are_404(client):
    url = "/api/v1/candles/NOPE?interval=1m&start_time=2026-11-23T00:00:00Z&end_time=2026-11-24T00:00:00Z"
    error_of(client.get(url), 404, "not_found")


def test_the_browsable_api_shows_the_candles_postgresql_wrote(client, trades):
    start, end = T0, T0 + timedelta(hours=1)
    url = f"/api/v1/candles/{M}?interval=1m&start_time={iso(start)}&end_time={iso(end)}"
    json_candles = data_of(client.get(url))["candles"]
    page = client.get(url, HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and json_candles
    assert f"&quot;open&quot;: &quot;{json_candles[0]['open']}&quot;" in page.content.decode()
