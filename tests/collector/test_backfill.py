"""Trade backfill: both tiers, routed by the cutoff, deduplicated against what is stored."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from collector.backfill import split_at_cutoff, trade_row, trades_backfill
from collector.db import run_db
from collector.rest import KalshiRest
from simulator import Simulator
from markets.ingest import trades_ingest
from markets.models import Trade

T0 = datetime(2026, 11, 24, tzinfo=timezone.utc)


def test_split_at_cutoff():
    h = timedelta(hours=1)
    assert split_at_cutoff(T0, T0 + h, None) == [("live", T0, T0 + h)]
    assert split_at_cutoff(T0, T0 + h, T0 - h) == [("live", T0, T0 + h)]
    assert split_at_cutoff(T0, T0 + h, T0 + 2 * h) == [("historical", T0, T0 + h)]
    assert split_at_cutoff(T0, T0 + 2 * h, T0 + h) == [
        ("historical", T0, T0 + h), ("live", T0 + h, T0 + 2 * h)]


def test_trade_row_reads_current_and_legacy_fields():
    current = {"trade_id": "t1", "ticker": "X-1", "created_time": "2026-11-24T00:00:01.250Z",
               "yes_price_dollars": "0.3600", "no_price_dollars": "0.6400", "count_fp": "136.50",
               "taker_outcome_side": "no", "taker_book_side": "ask", "taker_side": "no", "is_block_trade": False}
    legacy = {"trade_id": "t1", "ticker": "X-1", "created_time": "2026-11-24T00:00:01.250Z",
              "yes_price": 36, "no_price": 64, "count": 136, "taker_side": "no"}
    row = trade_row(current, source="rest", received_at=T0)
    old = trade_row(legacy, source="rest", received_at=T0)
    assert row[:6] == ("X-1", T0 + timedelta(seconds=1.25), "t1", Decimal("0.3600"), Decimal("0.6400"),
                       Decimal("136.50"))
    assert old[3:6] == (Decimal("0.3600"), Decimal("0.6400"), Decimal("136.00"))


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_backfill_stores_every_trade_of_both_tiers_once():
    sim = Simulator(seed=5, markets=6, rate=0)
    urls = await sim.start(host="127.0.0.1", port=0)
    try:
        truth = sim.trades()
        cutoff_ms = sim.cutoff_ms()
        assert any(t.ts_ms < cutoff_ms for t in truth) and any(t.ts_ms >= cutoff_ms for t in truth)
        # One trade is already stored by the "live collector", with a coarser timestamp.
        first = truth[-1]
        live_ts = datetime.fromtimestamp(first.ts_ms // 1000, tz=timezone.utc)
        await run_db(trades_ingest, [(first.market_ticker, live_ts, first.trade_id, first.yes_price,
                                      first.no_price, first.count, first.taker_outcome_side, None, None,
                                      first.is_block_trade, T0, "ws")])
        start = datetime.fromtimestamp(min(t.ts_ms for t in truth) / 1000, tz=timezone.utc)
        end = datetime.now(timezone.utc) + timedelta(seconds=1)
        async with KalshiRest(base_url=urls.rest, key_id=sim.key_id, private_key=sim.private_key,
                              rate_per_s=1000) as rest:
            pages = []
            result = await trades_backfill(rest, start=start, end=end, on_page=pages.append)
            again = await trades_backfill(rest, start=start, end=end)
        assert result.pages["historical"] > 0 and result.pages["live"] > 0
        assert result.fetched == len(truth) and sum(pages) == len(truth)
        assert result.stored == len(truth) - 1
        assert again.stored == 0
        stored = await run_db(lambda: {
            t.trade_id: (t.market_ticker, t.yes_price, t.no_price, t.count, t.taker_outcome_side, t.is_block_trade)
            for t in Trade.objects.all()})
        assert len(stored) == len(truth) == await run_db(Trade.objects.count)
        assert stored == {t.trade_id: (t.market_ticker, t.yes_price, t.no_price, t.count, t.taker_outcome_side,
                                       t.is_block_trade) for t in truth}
    finally:
        await sim.stop()
