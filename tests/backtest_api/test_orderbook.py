"""The order book at an instant equals a plain replay of every delta from the start."""

import json
import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from django.db import connection

from bench.generate_day import generate_day
from markets import ingest
from markets.book import OrderBook
from markets.models import Market

from .conftest import data_of, error_of

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 23)


@pytest.fixture
def day():
    """A small generated day: checkpoints every 50 deltas, a seq gap and a disconnect."""
    return generate_day(
        day=DAY,
        hot_deltas=6000,
        hot_trades=50,
        quiet_markets=3,
        checkpoint_every=50,
        seed=7,
        log=lambda *a: None,
    )


def plain_replay(ticker, instants):
    """The book at each instant from every row since the start, checkpoints ignored.

    Subscribe and resync snapshots re-baseline the book (as after a gap);
    every delta is applied in arrival order.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT received_at, session_id, seq, 0, yes_levels::text, no_levels::text FROM orderbook_snapshots "
            "WHERE market_ticker = %s AND source IN ('subscribe', 'resync') "
            "UNION ALL SELECT received_at, session_id, seq, 1, side, price || ':' || delta "
            "FROM orderbook_deltas WHERE market_ticker = %s ORDER BY 1, 2, 3, 4",
            [ticker, ticker],
        )
        rows = cursor.fetchall()
    books, book, i = {}, None, 0
    for instant in sorted(instants):
        while i < len(rows) and rows[i][0] <= instant:
            _, _, _, kind, a, b = rows[i]
            if kind == 0:
                book = OrderBook.from_levels(json.loads(a), json.loads(b))
            else:
                price, size = b.split(":")
                book.apply_delta(a, D(price), D(size))
            i += 1
        books[instant] = book.copy() if book else None
    return books


def levels(book, side):
    return [
        {"price": p, "quantity": q}
        for p, q in reversed(book.snapshot_levels()[0 if side == "yes" else 1])
    ]


def get_book(client, ticker, instant, extra=""):
    stamp = instant.isoformat().replace("+00:00", "Z")
    return data_of(
        client.get(f"/api/v1/orderbook?market_ticker={ticker}&timestamp={stamp}{extra}")
    )


def test_book_at_random_instants_equals_a_plain_replay(client, day):
    rng = random.Random(11)
    start = day.start + timedelta(seconds=1)
    instants = [start + timedelta(seconds=rng.uniform(0, 86398)) for _ in range(60)]
    (_, seq_gap_at, seq_gap_end), (_, cut, back) = sorted(day.gaps, key=lambda g: g[1])
    # Inside both gaps, at their edges, and at the first snapshot itself.
    instants += [
        seq_gap_at,
        seq_gap_at + timedelta(seconds=1),
        seq_gap_end,
        cut + timedelta(seconds=1),
        back,
        start,
    ]
    expected = plain_replay(day.hot_ticker, instants)
    checkpoints_used = 0
    for instant in instants:
        book = get_book(client, day.hot_ticker, instant)
        assert book["yes"] == levels(expected[instant], "yes"), instant
        assert book["no"] == levels(expected[instant], "no"), instant
        in_gap = seq_gap_at <= instant < seq_gap_end or cut <= instant < back
        assert book["complete"] is not in_gap, instant
        assert (book["gap"] is not None) is in_gap
        checkpoints_used += book["snapshot"]["source"] == "checkpoint"
        assert book["deltas_applied"] < 60  # a checkpoint every 50 deltas (+ cancels)
    assert checkpoints_used > 40


def test_quiet_market_books_also_match(client, day):
    ticker = day.quiet_tickers[1]
    instants = [day.start + timedelta(hours=h, minutes=17) for h in range(24)]
    expected = plain_replay(ticker, instants)
    for instant in instants:
        book = get_book(client, ticker, instant)
        assert book["yes"] == levels(expected[instant], "yes")
        assert book["no"] == levels(expected[instant], "no")


def test_best_prices_depth_and_provenance(client):
    Market.objects.create(ticker="M")
    t0 = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    ingest.snapshots_ingest(
        [
            (
                "M",
                t0,
                9,
                2,
                1,
                "subscribe",
                [["0.4000", "10.00"], ["0.4200", "5.00"], ["0.4100", "1.00"]],
                [["0.5500", "2.50"]],
                None,
            )
        ]
    )
    ingest.deltas_ingest(
        [("M", t0 + timedelta(seconds=1), 9, 2, 2, "no", D("0.5600"), D("1.25"), None)]
    )
    book = get_book(client, "M", t0 + timedelta(seconds=1), "&depth=2")
    assert book["yes"] == [
        {"price": "0.4200", "quantity": "5.00"},
        {"price": "0.4100", "quantity": "1.00"},
    ]
    assert book["no"] == [
        {"price": "0.5600", "quantity": "1.25"},
        {"price": "0.5500", "quantity": "2.50"},
    ]
    assert book["best"] == {
        "yes_bid": {"price": "0.4200", "quantity": "5.00"},
        "yes_ask": {"price": "0.4400", "quantity": "1.25"},
        "no_bid": {"price": "0.5600", "quantity": "1.25"},
        "no_ask": {"price": "0.5800", "quantity": "5.00"},
    }
    assert book["snapshot"] == {
        "received_at": "2026-11-23T12:00:00Z",
        "session_id": 9,
        "seq": 1,
        "source": "subscribe",
    }
    assert book["deltas_applied"] == 1
    assert book["last_update"] == {
        "received_at": "2026-11-23T12:00:01Z",
        "session_id": 9,
        "seq": 2,
    }
    assert book["complete"] and book["gap"] is None and book["data_starts_at"] is None


def test_before_the_first_data_says_when_data_starts(client):
    t0 = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    ingest.snapshots_ingest(
        [("M", t0, 9, 2, 1, "rest", [["0.1000", "1.00"]], [], None)]
    )
    ingest.snapshots_ingest(
        [
            (
                "M",
                t0 + timedelta(minutes=1),
                9,
                2,
                1,
                "subscribe",
                [["0.4000", "1.00"]],
                [],
                None,
            )
        ]
    )
    book = get_book(client, "M", t0 + timedelta(seconds=30))
    # The REST snapshot is never a starting point.
    assert book["snapshot"] is None and not book["complete"]
    assert book["yes"] == [] and book["best"]["yes_bid"] is None
    assert book["data_starts_at"] == "2026-11-23T12:01:00Z"


@pytest.mark.parametrize(
    "query, status, param",
    [
        ("timestamp=2026-11-23T12:00:00Z", 400, "market_ticker"),
        ("market_ticker=M", 400, "timestamp"),
        ("market_ticker=M&timestamp=noon", 400, "timestamp"),
        ("market_ticker=M&timestamp=2026-11-23T12:00:00Z&depth=0", 400, "depth"),
        ("market_ticker=M&timestamp=2026-11-23T12:00:00Z&depth=abc", 400, "depth"),
        ("market_ticker=NOPE&timestamp=2026-11-23T12:00:00Z", 404, None),
    ],
)
def test_bad_orderbook_input(client, query, status, param):
    Market.objects.create(ticker="M")
    error_of(
        client.get(f"/api/v1/orderbook?{query}"),
        status,
        "not_found" if status == 404 else "invalid_parameter",
        param,
    )
