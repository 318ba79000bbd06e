"""One-minute bars (markets/candles.py) stay exact as trades land: late, duplicated, backfilled."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from django.db import connection, transaction

from markets import candles, ingest
from markets.models import Market, Trade, TradeBar

pytestmark = pytest.mark.django_db

UTC = timezone.utc
M = "KXBARS-26NOV24-T1"
T0 = datetime(2026, 11, 24, 23, 58, tzinfo=UTC)


def trade(trade_id, at, price, count, side="yes", received=None, source="ws"):
    price, count = D(price), D(count)
    return (M, at, trade_id, price, 1 - price, count, side, None, None, False,
            received or at, source)


def bars():
    return {b.minute: (b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.notional,
                       b.yes_taker_volume, b.no_taker_volume)
            for b in TradeBar.objects.filter(market_ticker=M)}


def from_scratch():
    """The bars as a full recomputation from the trades table gives them."""
    kept = bars()
    with transaction.atomic():
        candles.rebuild_bars(T0 - timedelta(days=1), T0 + timedelta(days=1))
        rebuilt = bars()
        transaction.set_rollback(True)
    assert bars() == kept
    return rebuilt


@pytest.fixture(autouse=True)
def market():
    Market.objects.create(ticker=M)


def test_bars_follow_trades_in_order_late_and_duplicated():
    first = [trade("a", T0 + timedelta(seconds=10), "0.4000", "2.00"),
             trade("b", T0 + timedelta(seconds=20), "0.4500", "1.00", side="no"),
             trade("c", T0 + timedelta(seconds=70), "0.5000", "3.00")]
    ingest.trades_ingest(first)
    assert bars()[T0] == (D("0.4000"), D("0.4500"), D("0.4000"), D("0.4500"), D("3.00"), 2,
                          D("1.250000"), D("2.00"), D("1.00"))
    # A trade learned late (a REST backfill), earlier in the minute than the
    # first one seen: it becomes the open.
    ingest.trades_ingest_new_ids([trade("z", T0 + timedelta(seconds=1), "0.3000", "1.00",
                                        received=T0 + timedelta(hours=2), source="rest")])
    assert bars()[T0][0] == D("0.3000") and bars()[T0][5] == 3
    # The same trades again (a journal replay): nothing counted twice.
    ingest.trades_ingest(first)
    assert bars()[T0][5] == 3 and bars()[T0 + timedelta(minutes=1)][5] == 1
    assert bars() == from_scratch()


def test_the_last_microsecond_of_a_day_and_midnight_are_two_bars_on_two_days():
    midnight = datetime(2026, 11, 25, tzinfo=UTC)
    ingest.trades_ingest([trade("x", midnight - timedelta(microseconds=1), "0.2000", "1.00"),
                          trade("y", midnight, "0.8000", "1.00")])
    got = bars()
    assert got[midnight - timedelta(minutes=1)][0] == D("0.2000")
    assert got[midnight][0] == D("0.8000")
    assert got == from_scratch()


def test_a_minute_whose_trades_are_gone_loses_its_bar():
    at = T0 + timedelta(seconds=5)
    ingest.trades_ingest([trade("a", at, "0.4000", "2.00")])
    assert T0 in bars()
    Trade.objects.filter(market_ticker=M).delete()
    candles.refresh_bars([(M, candles.minute_of(at))])
    assert bars() == {}


def test_candles_from_bars_equal_candles_from_raw_trades_at_every_interval():
    import random

    rng = random.Random(4)
    rows = []
    for i in range(400):
        at = T0 + timedelta(seconds=rng.randrange(0, 3 * 3600), microseconds=rng.randrange(10**6))
        rows.append(trade(f"t{i:04d}", at, f"0.{rng.randrange(1, 9999):04d}",
                          f"{rng.randrange(1, 5000) / 100:.2f}", side=rng.choice(["yes", "no"])))
    # Stored in three batches, out of time order.
    for batch in (rows[200:], rows[:100], rows[100:200]):
        ingest.trades_ingest(batch)
    start, end = T0 + timedelta(minutes=2, seconds=17), T0 + timedelta(hours=2, seconds=45)
    for interval in (timedelta(minutes=1), timedelta(minutes=7), timedelta(hours=1)):
        got = candles.candles_for(market_ticker=M, interval=interval, start=start, end=end)
        assert got == _candles_from_trades(interval, start, end) and got


def _candles_from_trades(interval, start, end):
    """The same candles straight from the trades, in SQL, as they were computed before bars."""
    sql = """
        SELECT date_bin(%s, ts, %s) AS bucket,
               (array_agg(yes_price ORDER BY ts, trade_id))[1], max(yes_price), min(yes_price),
               (array_agg(yes_price ORDER BY ts, trade_id))[count(*)], sum(count), count(*),
               round(sum(yes_price * count) / NULLIF(sum(count), 0), 4),
               coalesce(sum(count) FILTER (WHERE coalesce(taker_outcome_side, taker_side) = 'yes'), 0),
               coalesce(sum(count) FILTER (WHERE coalesce(taker_outcome_side, taker_side) = 'no'), 0)
        FROM trades WHERE market_ticker = %s AND ts >= %s AND ts < %s
        GROUP BY bucket ORDER BY bucket
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [interval, candles.CANDLE_ORIGIN, M, start, end])
        return [candles.Candle(row[0], row[0] + interval, *row[1:]) for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_the_same_minutes_neither_fail_nor_leave_a_bar_stale():
    """The collector's writer and a REST backfill store trades of the same minutes at once."""
    import threading

    from django.db import connections

    errors = []

    def writer(name, ids):
        try:
            for i in ids:
                at = T0 + timedelta(seconds=i % 90, microseconds=i)
                # Some trades both store (the same id): ON CONFLICT, stored once.
                ingest.trades_ingest([trade(f"t{i}", at, "0.5000", "1.00"),
                                      trade(f"{name}{i}", at, "0.4000", "2.00")])
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(name, range(60))) for name in ("ws", "rest")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(b[5] for b in bars().values()) == Trade.objects.filter(market_ticker=M).count() == 180
    assert bars() == from_scratch()
