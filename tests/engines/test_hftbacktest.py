"""`manage.py export --format hftbacktest`: hftbacktest replays a day as /orderbook has it."""

import math
import random
from datetime import date

import pytest
from django.core.management import call_command

from tests.backtest_api.conftest import data_of

from .uncrossed import MARKET, record_engine_day

np = pytest.importorskip("numpy")
hftbacktest = pytest.importorskip("hftbacktest")
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest  # noqa: E402
from hftbacktest.data.validation import validate_event_order  # noqa: E402
from hftbacktest.types import (  # noqa: E402
    DEPTH_CLEAR_EVENT,
    EXCH_EVENT,
    LOCAL_EVENT,
    TRADE_EVENT,
)

pytestmark = pytest.mark.django_db
DAY = date(2026, 11, 20)


def _ns(moment):
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _price(level):
    return math.nan if level is None else float(level["price"])


def test_hftbacktest_replays_a_day_as_the_orderbook_says(api, tmp_path):
    day = record_engine_day(DAY)
    call_command("export", "--start-date", str(DAY), "--end-date", str(DAY),
                 "--markets", MARKET, "--format", "hftbacktest", "--out", str(tmp_path))
    folder = tmp_path / "hftbacktest" / MARKET
    # A day before the record starts writes nothing.
    call_command("export", "--start-date", "2026-11-19", "--end-date", "2026-11-19",
                 "--format", "hftbacktest", "--out", str(tmp_path))
    assert sorted(p.name for p in folder.iterdir()) == [f"{DAY}.npz", f"{DAY}.snapshot.npz"]
    data = np.load(folder / f"{DAY}.npz")["data"]
    validate_event_order(data)
    kinds = data["ev"] & 0xFF
    local = (data["ev"] & LOCAL_EVENT) != 0
    exchange = (data["ev"] & EXCH_EVENT) != 0
    assert int(np.sum((kinds == TRADE_EVENT) & local)) == day.trades
    assert int(np.sum((kinds == TRADE_EVENT) & exchange)) == day.trades
    assert np.sum(kinds == DEPTH_CLEAR_EVENT) >= 2  # the resync, on both clocks
    assert np.all(data["exch_ts"] <= data["local_ts"])

    asset = (BacktestAsset()
             .data([str(folder / f"{DAY}.npz")])
             .initial_snapshot(str(folder / f"{DAY}.snapshot.npz"))
             .linear_asset(1.0)
             .constant_order_latency(0, 0)
             .risk_adverse_queue_model()
             .no_partial_fill_exchange()
             .trading_value_fee_model(0.0, 0.0)
             .tick_size(0.0001)
             .lot_size(0.01)
             .last_trades_capacity(0))
    hbt = HashMapMarketDepthBacktest([asset])
    assert hbt.elapse(0) == 0  # starts the clock at the first event
    # Instants halfway between two receive times: nothing happens exactly then.
    rng = random.Random(2)
    pairs = sorted(rng.sample(range(len(day.instants) - 1), 40))
    checks = [day.instants[i] + (day.instants[i + 1] - day.instants[i]) / 2 for i in pairs]
    compared = 0
    for check in checks:
        assert hbt.elapse(_ns(check) - hbt.current_timestamp) == 0
        book = data_of(api.get("/api/v1/orderbook", {
            "market_ticker": MARKET, "timestamp": check.isoformat()}))
        depth = hbt.depth(0)
        expected = (_price(book["best"]["yes_bid"]), _price(book["best"]["yes_ask"]))
        seen = (depth.best_bid, depth.best_ask)
        for ours, theirs in zip(expected, seen):
            assert (math.isnan(ours) and math.isnan(theirs)) or round(theirs, 4) == ours, (
                check, expected, seen)
        compared += 1
    hbt.close()
    assert compared == 40
