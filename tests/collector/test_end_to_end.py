"""End to end: the real collector against the simulator, stored in PostgreSQL.

After each run, for every recorded market the book rebuilt from the database
at its last recorded instant equals the simulator's true book, and the stored
trades equal the simulator's, exactly.
"""

import asyncio

import pytest

from collector.simulator import FaultConfig, Simulator

from .e2e import finish_run, recorded_books, start_run, stored_trades, collector_config, truth_trades

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow]

RUN_SECONDS = 3.0


async def record(sim, tmp_path, seconds=RUN_SECONDS, **config):
    await sim.start(host="127.0.0.1", port=0)
    try:
        run = await start_run(sim, collector_config(tmp_path, **config))
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
