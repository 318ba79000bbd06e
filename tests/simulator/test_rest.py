"""REST endpoints, filters, cursor paging, the historical split, errors and the 429 bucket."""

import pytest

from simulator.ratelimit import TokenBucket

from .conftest import rest_get

pytestmark = pytest.mark.asyncio

NOW = 1_795_000_000_000


async def page_all(sim, path, key, params):
    items, cursor, pages = [], None, 0
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        status, body = await rest_get(sim, path, query)
        assert status == 200, body
        items += body[key]
        pages += 1
        cursor = body.get("cursor")
        if not cursor:
            return items, pages


async def test_markets_page_with_cursors_and_filters(make_sim):
    sim = await make_sim(seed=1, markets=14, clock=lambda: NOW)
    sim.step(500)
    markets, pages = await page_all(sim, "/markets", "markets", {"limit": 4})
    tickers = [m["ticker"] for m in markets]
    assert len(tickers) == len(set(tickers)) and pages > 2
    live = {
        t
        for t, m in sim.markets().items()
        if not (m.status == "finalized" and m.settled_ms < sim.cutoff_ms())
    }
    assert set(tickers) == live
    some = sorted(live)[:3]
    _, body = await rest_get(sim, "/markets", {"tickers": ",".join(some)})
    assert sorted(m["ticker"] for m in body["markets"]) == some
    event = next(iter(sim.markets().values())).event_ticker
    _, body = await rest_get(sim, "/markets", {"event_ticker": event})
    assert body["markets"] and all(m["event_ticker"] == event for m in body["markets"])
    _, body = await rest_get(sim, "/markets", {"status": "open"})
    assert body["markets"] and all(m["status"] == "active" for m in body["markets"])
    series = next(iter(sim.exchange.series))
    _, body = await rest_get(sim, "/markets", {"series_ticker": series})
    assert all(m["ticker"].startswith(series + "-") for m in body["markets"])


async def test_market_orderbook_and_errors(make_sim):
    sim = await make_sim(seed=2, markets=4)
    ticker = next(t for t, m in sim.markets().items() if m.status == "active")
    status, body = await rest_get(sim, f"/markets/{ticker}")
    assert status == 200 and body["market"]["ticker"] == ticker
    _, body = await rest_get(sim, f"/markets/{ticker}/orderbook")
    book = sim.true_book(ticker)
    yes, no = book.snapshot_levels()
    assert body == {"orderbook_fp": {"yes_dollars": yes, "no_dollars": no}}  # ascending, best last
    _, body = await rest_get(sim, f"/markets/{ticker}/orderbook", {"depth": 2})
    assert body["orderbook_fp"]["yes_dollars"] == yes[-2:]
    status, body = await rest_get(sim, "/markets/NOPE-1")
    assert status == 404 and set(body) == {"code", "message", "details"}
    for params in (
        {"limit": 5000},
        {"limit": "x"},
        {"cursor": "!!"},
        {"status": "sleeping"},
        {"min_updated_ts": 1, "status": "open"},
    ):
        status, body = await rest_get(sim, "/markets", params)
        assert status == 400 and body["code"] == "bad_request", params


async def test_trades_page_newest_first_and_split_at_the_historical_cutoff(make_sim):
    clock = {"now": NOW}
    sim = await make_sim(seed=3, markets=6, clock=lambda: clock["now"], historical_age_s=1800)
    for _ in range(5):
        sim.step(100)
        clock["now"] += 60_000
    cutoff = sim.cutoff_ms()
    live, _ = await page_all(sim, "/markets/trades", "trades", {"limit": 50})
    old, _ = await page_all(sim, "/historical/trades", "trades", {"limit": 50})
    every = sim.trades()
    assert [t["trade_id"] for t in live] == [t.trade_id for t in reversed(every) if t.ts_ms >= cutoff]
    assert [t["trade_id"] for t in old] == [t.trade_id for t in reversed(every) if t.ts_ms < cutoff]
    assert live and old
    _, body = await rest_get(sim, "/historical/cutoff")
    assert set(body) >= {"market_settled_ts", "trades_created_ts", "orders_updated_ts"}
    ticker = every[-1].market_ticker
    lo, hi = (NOW + 60_000) // 1000, (NOW + 180_000) // 1000
    chosen, _ = await page_all(
        sim, "/markets/trades", "trades", {"ticker": ticker, "min_ts": lo, "max_ts": hi}
    )
    expected = [
        t.trade_id
        for t in reversed(every)
        if t.market_ticker == ticker and lo * 1000 <= t.ts_ms <= hi * 1000 and t.ts_ms >= cutoff
    ]
    assert [t["trade_id"] for t in chosen] == expected


async def test_settled_markets_move_to_historical(make_sim):
    sim = await make_sim(seed=4, markets=6)  # two markets settled before the start
    old = [t for t, m in sim.markets().items() if m.status == "finalized" and m.settled_ms < sim.cutoff_ms()]
    assert old
    status, _ = await rest_get(sim, f"/markets/{old[0]}")
    assert status == 404
    status, body = await rest_get(sim, f"/historical/markets/{old[0]}")
    assert status == 200 and body["market"]["status"] == "finalized" and body["market"]["settlement_ts"]
    listed, _ = await page_all(sim, "/historical/markets", "markets", {"limit": 1})
    assert sorted(m["ticker"] for m in listed) == sorted(old)
    status, _ = await rest_get(sim, "/historical/markets", {"event_ticker": "A", "series_ticker": "B"})
    assert status == 400


async def test_determined_and_settled_markets_show_result_in_rest(make_sim):
    sim = await make_sim(seed=9, markets=8, historical_age_s=10**6)
    started = sim.clock()
    sim.step(4000)
    settled = [m for m in sim.markets().values() if m.status == "finalized" and m.settled_ms >= started]
    assert settled
    _, body = await rest_get(sim, f"/markets/{settled[0].ticker}")
    market = body["market"]
    assert market["status"] == "finalized" and market["result"] == settled[0].result
    assert market["settlement_value_dollars"] in ("1.0000", "0.0000") and market["settlement_ts"]


async def test_events_and_series(make_sim):
    sim = await make_sim(seed=5, markets=10)
    events, pages = await page_all(sim, "/events", "events", {"limit": 2})
    assert [e["event_ticker"] for e in events] == list(sim.exchange.events) and pages > 1
    ticker = events[0]["event_ticker"]
    _, body = await rest_get(sim, f"/events/{ticker}", {"with_nested_markets": "true"})
    assert body["event"]["markets"] and body["markets"] == body["event"]["markets"]
    _, body = await rest_get(sim, f"/events/{ticker}")
    assert "markets" not in body["event"] and body["markets"]
    status, body = await rest_get(sim, "/series")
    assert status == 200 and "cursor" not in body and len(body["series"]) == len(sim.exchange.series)
    one = body["series"][0]["ticker"]
    _, body = await rest_get(sim, f"/series/{one}", {"include_volume": "true"})
    assert body["series"]["ticker"] == one and "volume_fp" in body["series"]
    assert (await rest_get(sim, "/series/NOPE"))[0] == 404
    assert (await rest_get(sim, "/events", {"limit": 500}))[0] == 400


async def test_token_bucket_answers_429_without_retry_after(make_sim, monkeypatch):
    now = {"t": 0.0}
    monkeypatch.setattr(TokenBucket, "timer", staticmethod(lambda: now["t"]))
    sim = await make_sim(markets=1, rest_rate_per_s=2)  # bucket of 4
    statuses = [(await rest_get(sim, "/series"))[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    status, body = await rest_get(sim, "/series")
    assert status == 429 and body == {"error": "too many requests"}
    now["t"] += 1.0  # two tokens back
    assert [(await rest_get(sim, "/series"))[0] for _ in range(3)] == [200, 200, 429]


async def test_unknown_paths_and_new_markets_answer_kalshis_404(make_sim):
    clock = {"now": NOW}
    sim = await make_sim(seed=9, markets=6, clock=lambda: clock["now"], new_market_rest_delay_s=5)
    status, body = await rest_get(sim, "/no/such/endpoint")
    assert status == 404 and body["code"] == "not_found"
    created = [e.market for e in sim.step(4000) if type(e).__name__ == "MarketCreated"]
    assert created
    status, _ = await rest_get(sim, f"/markets/{created[-1].ticker}")
    assert status == 404
    clock["now"] += 5_000
    status, body = await rest_get(sim, f"/markets/{created[-1].ticker}")
    assert status == 200 and body["market"]["ticker"] == created[-1].ticker
    _, body = await rest_get(sim, "/markets", {"mve_filter": "only"})
    assert body["markets"] == []
