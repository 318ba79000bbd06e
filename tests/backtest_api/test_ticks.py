"""Trades and deltas: ranges, replay order, keyset pages under inserts, bad input."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from markets import ingest
from markets.models import Market

from .conftest import data_of, error_of

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 23, 23, 59, 58, tzinfo=timezone.utc)  # pages cross midnight
M = "KXHIGH-26NOV23-T60"


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def trade(seconds, trade_id, price="0.5600", count="3.00", ticker=M):
    p = D(price)
    return (
        ticker,
        at(seconds),
        trade_id,
        p,
        1 - p,
        D(count),
        "yes",
        "bid",
        None,
        False,
        at(seconds),
        "ws",
    )


def delta(seconds, seq, session=1, sid=2, ticker=M):
    return (
        ticker,
        at(seconds),
        session,
        sid,
        seq,
        "yes",
        D("0.5600"),
        D("-1.50"),
        at(seconds - 0.01),
    )


@pytest.fixture
def market():
    Market.objects.create(ticker=M)


def walk(client, url, limit):
    """Every row of every page, checking the page invariants on the way."""
    rows, cursor = [], None
    while True:
        response = client.get(
            f"{url}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        )
        data = data_of(response)
        body = response.json()
        assert len(data) <= limit
        assert body["has_more"] == (body["next_cursor"] is not None)
        rows.extend(data)
        cursor = body["next_cursor"]
        if cursor is None:
            return rows


def test_trades_in_order_with_exact_strings(client, market):
    # Same timestamp twice: trade_id breaks the tie.
    ingest.trades_ingest(
        [
            trade(2, "b", "0.0001", "0.50"),
            trade(1, "z"),
            trade(2, "a"),
            trade(1, "x", ticker="OTHER"),
        ]
    )
    rows = data_of(client.get(f"/api/v1/trades?market_ticker={M}"))
    assert [(r["ts"], r["trade_id"]) for r in rows] == [
        ("2026-11-23T23:59:59Z", "z"),
        ("2026-11-24T00:00:00Z", "a"),
        ("2026-11-24T00:00:00Z", "b"),
    ]
    assert rows[2] | {} == {
        "market_ticker": M,
        "trade_id": "b",
        "ts": "2026-11-24T00:00:00Z",
        "yes_price": "0.0001",
        "no_price": "0.9999",
        "count": "0.50",
        "taker_outcome_side": "yes",
        "taker_book_side": "bid",
        "taker_side": None,
        "is_block_trade": False,
        "received_at": "2026-11-24T00:00:00Z",
        "source": "ws",
    }


def test_trade_range_is_half_open(client, market):
    ingest.trades_ingest([trade(s, f"t{s}") for s in range(5)])
    url = f"/api/v1/trades?market_ticker={M}&start_time=2026-11-23T23:59:59Z&end_time=2026-11-24T00:00:01Z"
    assert [r["trade_id"] for r in data_of(client.get(url))] == ["t1", "t2"]
    # A time without a zone is UTC; other zones are converted.
    url = f"/api/v1/trades?market_ticker={M}&start_time=2026-11-24T01:00:01%2B01:00"
    assert [r["trade_id"] for r in data_of(client.get(url))] == ["t3", "t4"]
    url = f"/api/v1/trades?market_ticker={M}&end_time=2026-11-23T23:59:59"
    assert [r["trade_id"] for r in data_of(client.get(url))] == ["t0"]


def test_deltas_in_replay_order(client, market):
    # Replay order is received_at, then session, then seq: not seq alone.
    ingest.deltas_ingest(
        [
            delta(2, 1, session=2),
            delta(1, 7, session=1),
            delta(2, 9, session=1),
            delta(3, 2, session=2),
        ]
    )
    rows = data_of(client.get(f"/api/v1/deltas?market_ticker={M}"))
    assert [(r["session_id"], r["seq"]) for r in rows] == [
        (1, 7),
        (1, 9),
        (2, 1),
        (2, 2),
    ]
    assert rows[0] == {
        "market_ticker": M,
        "received_at": "2026-11-23T23:59:59Z",
        "session_id": 1,
        "sid": 2,
        "seq": 7,
        "side": "yes",
        "price": "0.5600",
        "delta": "-1.50",
        "ts": "2026-11-23T23:59:58.990000Z",
    }


@pytest.mark.parametrize("kind", ["trades", "deltas"])
def test_pages_are_stable_when_rows_arrive_between_requests(client, market, kind):
    if kind == "trades":
        ingest.trades_ingest([trade(s // 3, f"t{s:03d}") for s in range(30)])
        late = [trade(0, "t000a"), trade(5, "t999"), trade(20, "late")]
        key = lambda r: (datetime.fromisoformat(r["ts"]), r["trade_id"])
    else:
        ingest.deltas_ingest([delta(s / 4, s + 1) for s in range(30)])
        # (A session never has two deltas at one instant: markets/models/timeseries.py.)
        late = [delta(0.1, 1000), delta(6.1, 2000), delta(20, 3000)]
        key = lambda r: (
            datetime.fromisoformat(r["received_at"]),
            r["session_id"],
            r["seq"],
        )
    url = f"/api/v1/{kind}?market_ticker={M}&limit=7"
    first = client.get(url).json()
    second = client.get(f"{url}&cursor={first['next_cursor']}").json()
    # Rows arrive: one before the cursor, two after it.
    (ingest.trades_ingest if kind == "trades" else ingest.deltas_ingest)(late)
    rest = walk(
        client, f"/api/v1/{kind}?market_ticker={M}&cursor={second['next_cursor']}", 7
    )
    seen = first["data"] + second["data"] + rest
    keys = [key(r) for r in seen]
    assert (
        keys == sorted(keys) and len(set(keys)) == len(keys) == 32
    )  # 30 + the 2 after
    assert key(rest[0]) > key(second["data"][-1])


@pytest.mark.parametrize("limit", [1, 3, 10, 1000])
def test_walking_every_page_returns_every_row_once(client, market, limit):
    ingest.trades_ingest([trade(s // 4, f"t{s:03d}") for s in range(25)])
    rows = walk(client, f"/api/v1/trades?market_ticker={M}", limit)
    assert [r["trade_id"] for r in rows] == [f"t{s:03d}" for s in range(25)]


def test_default_limit_is_100(client, market):
    ingest.trades_ingest([trade(s / 100, f"t{s:03d}") for s in range(150)])
    response = client.get(f"/api/v1/trades?market_ticker={M}")
    assert len(data_of(response)) == 100 and response.json()["has_more"]


def test_a_market_with_data_but_no_metadata_is_known(client):
    ingest.trades_ingest([trade(1, "a", ticker="KXNEW-1")])
    assert len(data_of(client.get("/api/v1/trades?market_ticker=KXNEW-1"))) == 1


@pytest.mark.parametrize("kind", ["trades", "deltas"])
@pytest.mark.parametrize(
    "query, status, code, param",
    [
        ("", 400, "invalid_parameter", "market_ticker"),
        ("market_ticker=KXNOPE", 404, "not_found", None),
        (
            f"market_ticker={M}&start_time=yesterday",
            400,
            "invalid_parameter",
            "start_time",
        ),
        (
            f"market_ticker={M}&end_time=2026-13-01T00:00:00Z",
            400,
            "invalid_parameter",
            "end_time",
        ),
        (
            f"market_ticker={M}&start_time=2026-11-24T00:00:00Z&end_time=2026-11-23T00:00:00Z",
            400,
            "invalid_parameter",
            "end_time",
        ),
        (
            f"market_ticker={M}&start_time=2026-11-24T00:00:00Z&end_time=2026-11-24T00:00:00Z",
            400,
            "invalid_parameter",
            "end_time",
        ),
        (f"market_ticker={M}&limit=0", 400, "invalid_parameter", "limit"),
        (f"market_ticker={M}&limit=1001", 400, "invalid_parameter", "limit"),
        (f"market_ticker={M}&limit=x", 400, "invalid_parameter", "limit"),
        (f"market_ticker={M}&cursor=%%%", 400, "invalid_parameter", "cursor"),
        (f"market_ticker={M}&cursor=WyJ4Il0", 400, "invalid_parameter", "cursor"),
    ],
)
def test_bad_input_gives_the_error_shape(
    client, market, kind, query, status, code, param
):
    body = error_of(client.get(f"/api/v1/{kind}?{query}"), status, code, param)
    if status == 404:
        assert "KXNOPE" in body["message"]


def test_a_trades_cursor_is_not_a_deltas_cursor(client, market):
    ingest.trades_ingest([trade(s, f"t{s}") for s in range(3)])
    cursor = client.get(f"/api/v1/trades?market_ticker={M}&limit=1").json()[
        "next_cursor"
    ]
    error_of(
        client.get(f"/api/v1/deltas?market_ticker={M}&cursor={cursor}"),
        400,
        "invalid_parameter",
        "cursor",
    )
