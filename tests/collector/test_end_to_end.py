"""End to end: the real collector against the simulator, stored in PostgreSQL.

After each run, for every recorded market the book rebuilt from the database
at its last recorded instant equals the simulator's true book, and the stored
trades equal the simulator's, exactly.
"""

import asyncio
from datetime import datetime, timezone

import pytest

from collector.db import run_db
from collector.discovery import Selection
from simulator import EngineConfig, FaultConfig, Simulator, SimulatorConfig

from .e2e import (
    collector_config,
    finish_run,
    recorded_books,
    start_run,
    stored_settlements,
    stored_trades,
    truth_trades,
    wait_for,
)

from markets.models import OrderbookSnapshot, SequenceGap, Series

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow]

RUN_SECONDS = 3.0


async def record(sim, tmp_path, seconds=RUN_SECONDS, selection=Selection(), **config):
    await sim.start(host="127.0.0.1", port=0)
    try:
        run = await start_run(sim, collector_config(tmp_path, **config), selection)
        await asyncio.sleep(seconds)  # let the exchange move while we record
        final = await finish_run(run)
    finally:
        await sim.stop()
    return run, final


def assert_books_equal_truth(sim, books):
    assert books
    for ticker, rebuilt in books.items():
        assert rebuilt is not None, f"{ticker}: nothing stored"
        truth = sim.true_book(ticker)
        assert (rebuilt.book.yes, rebuilt.book.no) == (truth.yes, truth.no), ticker
        assert rebuilt.complete, f"{ticker}: inside gap {rebuilt.gap}"


async def assert_trades_equal_truth(run):
    rows, stored = await stored_trades()
    truth = truth_trades(run.sim, run.first_trade)
    assert len(truth) > 10
    assert rows == len(stored), "a trade is stored twice"
    assert stored == truth


async def test_clean_run_stores_the_true_books_and_every_trade(tmp_path):
    sim = Simulator(seed=11, markets=10, rate=200)
    run, final = await record(sim, tmp_path)
    print(final)
    assert final["frames"] > 100
    assert final.get("malformed", 0) == final.get("gaps", 0) == final.get("duplicates", 0) == 0
    assert_books_equal_truth(sim, await recorded_books(run.start_markets))
    await assert_trades_equal_truth(run)


async def test_lifecycle_new_markets_are_recorded_and_settlements_stored(tmp_path):
    engine = EngineConfig(markets=6, lifecycle_probability=0.15, determine_after_steps=10, settle_after_steps=20)
    sim = Simulator(SimulatorConfig(engine=engine), seed=4, rate=200)
    run, final = await record(sim, tmp_path)

    created = run.created_markets()
    assert created, "the simulator created no market: the test proves nothing"
    books = await recorded_books(run.start_markets | created)
    assert_books_equal_truth(sim, books)

    owed = run.owed_settlements()
    assert any(s.settled_ms for s in owed.values()), "nothing settled: the test proves nothing"
    stored = await stored_settlements()
    for ticker, truth in owed.items():
        row = stored[ticker]
        assert (row.result, row.settlement_value) == (truth.result, truth.settlement_value), ticker
        assert row.determined_at is not None
        if truth.settled_ms:
            assert row.settled_at == datetime.fromtimestamp(truth.settled_ms // 1000, tz=timezone.utc)
            assert ticker not in run.collector.connections.markets  # its book was unsubscribed
    await assert_trades_equal_truth(run)


async def test_faults_gaps_duplicates_malformed_and_disconnects_are_survived(tmp_path):
    faults = FaultConfig(drop_rate=0.03, duplicate_rate=0.02, malformed_rate=0.01, numeric_rate=0.05,
                         terminal_error_rate=0.003, disconnect_every_frames=700)
    sim = Simulator(seed=21, markets=10, rate=200, faults=faults)
    run, final = await record(sim, tmp_path, seconds=4.0)
    print(final)

    # The faults happened, and the collector saw each kind.
    assert final["duplicates"] > 0 and final["malformed"] > 0
    assert final["gaps"] > 0 and final["reconnects"] > 0
    assert sum(v for k, v in final.items() if k.startswith("error_")) > 0  # terminal errors

    # Every gap is on record, and each book gap was closed by a fresh snapshot.
    gaps = await run_db(lambda: list(SequenceGap.objects.filter(channel="orderbook_delta").exclude(
        recovered_at__isnull=True).values_list("market_ticker", "reason", "session_id", "sid",
                                                "expected_seq", "received_seq")))
    reasons = {g[1] for g in gaps}
    assert {"seq_gap", "disconnect"} <= reasons
    # A gap stays open only where the record cannot prove the book: a market
    # unsubscribed (settled) at the very moment a frame was lost.
    open_gaps = await run_db(lambda: list(SequenceGap.objects.filter(
        channel="orderbook_delta", recovered_at__isnull=True).exclude(reason="disconnect")))
    still_recorded = run.collector.connections.markets
    assert [g for g in open_gaps if g.market_ticker in still_recorded] == []
    assert all(sim.markets()[g.market_ticker].status == "finalized" for g in open_gaps)
    seq_gap_events = {(g[2], g[3], g[4], g[5]) for g in gaps if g[1] == "seq_gap"}
    assert len(seq_gap_events) <= final["gaps"]

    # Trades lost in gaps came back through the REST backfill.
    assert final["trades_backfilled"] > 0

    # Books are right again, and trades are complete, each stored once.
    assert_books_equal_truth(sim, await recorded_books(run.start_markets))
    await assert_trades_equal_truth(run)


async def test_legacy_integer_format_records_the_same_books_and_trades(tmp_path):
    sim = Simulator(seed=13, markets=6, rate=200, wire_format="legacy")
    run, final = await record(sim, tmp_path, seconds=2.0)
    assert final.get("malformed", 0) == 0
    assert_books_equal_truth(sim, await recorded_books(run.start_markets))
    # Legacy trades carry whole seconds and the deprecated taker_side only.
    rows, stored = await stored_trades()
    truth = truth_trades(run.sim, run.first_trade)
    assert rows == len(stored) == len(truth) > 10
    for trade_id, (ticker, yes, no, count, outcome, block, ts) in truth.items():
        got = stored[trade_id]
        assert got[:4] == (ticker, yes, no, count) and got[4] is None
        assert got[6] == ts.replace(microsecond=0)


async def test_a_series_selection_records_that_series_only_including_its_new_markets(tmp_path):
    engine = EngineConfig(markets=12, lifecycle_probability=0.2)
    sim = Simulator(SimulatorConfig(engine=engine), seed=6, rate=200)
    series = sorted({m.series_ticker for m in sim.markets().values()})
    assert len(series) >= 2
    chosen = series[0]
    run, final = await record(sim, tmp_path, selection=Selection.of(series=[chosen]))

    in_series = {t for t, m in sim.markets().items() if m.series_ticker == chosen}
    recorded = await run_db(lambda: set(
        OrderbookSnapshot.objects.values_list("market_ticker", flat=True).distinct()))
    assert recorded and recorded <= in_series
    created = run.created_markets() & in_series
    assert created, "no new market in the chosen series: the test proves nothing"
    assert created <= recorded
    assert_books_equal_truth(sim, await recorded_books(recorded))
    # Trades cover every market (the trade channel is not filtered), and metadata too.
    await assert_trades_equal_truth(run)
    stored_series = await run_db(lambda: set(Series.objects.values_list("ticker", flat=True)))
    assert chosen in stored_series


async def test_a_restart_fetches_the_trades_made_while_the_collector_was_stopped(tmp_path):
    sim = Simulator(seed=17, markets=6, rate=200)
    await sim.start(host="127.0.0.1", port=0)
    try:
        config = collector_config(tmp_path)
        first = await start_run(sim, config)
        await asyncio.sleep(1.0)
        await finish_run(first)
        sim.resume()
        await asyncio.sleep(1.0)  # the exchange trades while nobody records
        missed = len(sim.trades()) - first.first_trade
        second = await start_run(sim, config)
        await asyncio.sleep(1.0)
        await finish_run(second)
    finally:
        await sim.stop()
    rows, stored = await stored_trades()
    truth = truth_trades(sim, first.first_trade)
    assert len(truth) > missed > 0
    assert rows == len(stored) and stored == truth
    # The trade gap the first run left when it stopped is closed.
    restarted = datetime.fromtimestamp(second.resumed_ms / 1000, tz=timezone.utc)
    open_trade_gaps = await run_db(lambda: SequenceGap.objects.filter(
        channel="trade", recovered_at__isnull=True, detected_at__lt=restarted).count())
    assert open_trade_gaps == 0


async def test_a_market_created_unannounced_before_a_clean_stop_is_a_recorded_hole(tmp_path):
    """Its `created` never arrives and no periodic listing comes before the
    stop: the listing at the clean stop finds it, so it ends the run inside a
    `not_subscribed` hole from its creation, not as a silent hole."""
    sim = Simulator(SimulatorConfig(engine=EngineConfig(markets=4, lifecycle_probability=0.0)), seed=11, rate=200)
    await sim.start(host="127.0.0.1", port=0)
    try:
        run = await start_run(sim, collector_config(tmp_path, reconcile_every_s=3600.0,
                                                    relist_after_connect_s=3600.0))
        # The listing every connect makes may still be under way (on a loaded
        # machine it ends after the first snapshots): it must not see the market.
        catalog = run.collector.connections.catalog
        await wait_for(lambda: catalog.relists >= 1, "the listing on connect")
        ticker = sim.create_market(announce=False)
        created = datetime.fromtimestamp(sim.markets()[ticker].created_ms / 1000, tz=timezone.utc)
        await asyncio.sleep(0.5)
        assert ticker not in run.collector.connections.markets  # nothing told it yet
        await finish_run(run)
    finally:
        await sim.stop()
    gaps = await run_db(lambda: list(SequenceGap.objects.filter(market_ticker=ticker)
                                     .values_list("reason", "detected_at", "recovered_at")))
    assert len(gaps) == 1, gaps
    reason, since, recovered = gaps[0]
    assert (reason, recovered) == ("not_subscribed", None)
    assert since <= created


async def test_the_trades_made_before_the_first_trade_subscription_are_fetched_back(tmp_path):
    """A first run ever owes every trade from its own start: those made while
    it listed markets and connected come from REST, once each."""
    from collector.client import Credentials
    from collector.runner import collect

    from .e2e import wait_for

    sim = Simulator(SimulatorConfig(engine=EngineConfig(markets=6, lifecycle_probability=0.0)), seed=12, rate=1000)
    await sim.start(host="127.0.0.1", port=0)
    try:
        first = len(sim.trades())  # the exchange is trading before the collector starts
        stop, holder = asyncio.Event(), {}
        task = asyncio.create_task(collect(
            stop=stop, config=collector_config(tmp_path), creds=Credentials(sim.key_id, sim.private_key),
            rest_url=sim.urls.rest, ws_url=sim.urls.ws, stats_every=3600,
            on_start=lambda c: holder.setdefault("collector", c),
        ))
        await wait_for(lambda: "collector" in holder or task.done(), "the collector to start")
        collector = holder["collector"]
        await wait_for(lambda: collector.pipeline.trade_live_at is not None, "the trade subscription")
        await asyncio.sleep(0.5)
        sim.pause()
        await sim.drain()
        live_ms = int(collector.pipeline.trade_live_at.timestamp() * 1000)
        owed = [t for t in sim.trades()[first:] if t.ts_ms >= collector.run.started_at.timestamp() * 1000]
        assert any(t.ts_ms < live_ms for t in owed), "no trade before the subscription: the test proves nothing"
        await wait_for(lambda: collector.background["catch-up"].done() and collector.backfills.idle,
                       "the catch-up backfill")
        stop.set()
        await asyncio.wait_for(task, 60)
    finally:
        await sim.stop()
    rows, stored = await stored_trades()
    assert rows == len(stored), "a trade is stored twice"
    missing = [t.trade_id for t in owed if t.trade_id not in stored]
    assert not missing, f"{len(missing)} of {len(owed)} trades missing"
