"""End to end against a hostile exchange: every fault at once, then the audit.

The real collector records a simulator that drops, duplicates, reorders and
corrupts frames, sends numbers for strings, ends subscriptions with terminal
errors, closes connections, creates markets and settles them, all at once.
Afterwards the audit (tests/collector/audit.py) judges the database against
the simulator's truth: no silent hole in any book, every trade stored once,
every market recorded or with a recorded hole saying why.

When the simulator offers its realistic mode (`simulator.config.realistic`:
subscription caps, command pacing, both reply-seq conventions, outages) it
is used, with a cap smaller than the market count and one outage mid-run.
"""

import asyncio
import dataclasses
from datetime import datetime, timezone

import pytest

import simulator.config
from collector.config import CollectorConfig
from collector.db import run_db
from markets.models import LifecycleEvent, OrderbookSnapshot
from simulator import EngineConfig, FaultConfig, Simulator, SimulatorConfig

from .audit import Truth, audit, time_to_record_all
from .e2e import POLL_S, collector_config, start_run

# Timing-dependent by nature (a fault mix against live sockets): one rerun,
# and the first report stays in the log.
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow,
              pytest.mark.flaky(reruns=1)]

MARKETS = 16
RUN_SECONDS = 20.0
OUTAGE_SECONDS = 3.0
SETTLE_S = 30.0  # at most this long for the collector to catch up at the end (not an assertion)
FAULTS = FaultConfig(
    drop_rate=0.02, duplicate_rate=0.02, reorder_rate=0.01, malformed_rate=0.01, numeric_rate=0.05,
    terminal_error_rate=0.002, disconnect_every_frames=1500,
)
ENGINE = EngineConfig(markets=MARKETS, lifecycle_probability=0.05, determine_after_steps=40, settle_after_steps=80)
# Realistic-mode knobs (simulator branch `sim`); only those the simulator knows are passed.
REALISTIC = dict(add_markets_refuse_rate=0.05, add_markets_delay_s=0.2,
                 new_market_rest_delay_s=1.0)
# 16 markets at 5 a connection: four connections, each with its own faults.
COLLECTOR_REALISTIC = dict(max_markets_per_subscription=5, max_markets_per_connection=5, reconcile_every_s=5.0)


def hostile_config(seed: int) -> SimulatorConfig:
    """The hostile exchange: realistic mode when the simulator has it, every fault on."""
    realistic = getattr(simulator.config, "realistic", None)
    if realistic is None:
        return SimulatorConfig(seed=seed, engine=ENGINE, faults=FAULTS, rate=200)
    base = realistic()
    known = {f.name for f in dataclasses.fields(base)}
    faults = dataclasses.replace(base.faults, **{f.name: getattr(FAULTS, f.name) for f in dataclasses.fields(FAULTS)})
    return realistic(seed=seed, engine=ENGINE, faults=faults, rate=200,
                     **{k: v for k, v in REALISTIC.items() if k in known})


def hostile_collector(tmp_path) -> CollectorConfig:
    known = {f.name for f in dataclasses.fields(CollectorConfig)}
    return collector_config(tmp_path, **{k: v for k, v in COLLECTOR_REALISTIC.items() if k in known})


async def outage(sim, seconds: float) -> bool:
    """A maintenance outage of `seconds`, when the simulator can make one; returns once it is over."""
    trigger = getattr(sim, "outage", None)
    if trigger is None:
        return False
    started = trigger(seconds)
    if asyncio.iscoroutine(started):
        started = asyncio.ensure_future(started)  # whether it returns at once or when over
    await asyncio.sleep(seconds)
    if isinstance(started, asyncio.Future):
        await started
    return True


async def settle(run) -> bool:
    """End the run: hold the exchange still, stop the faults, let the collector catch up, stop it.

    Unlike e2e.finish_run this does not fail when the collector never
    catches up (a silent hole keeps its live book wrong forever): the audit
    says what is wrong, which is the point of this test.
    """
    sim = run.sim
    sim.pause()
    sim.set_faults(FaultConfig())
    sim.step(40)
    await sim.drain()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    # A market created (its `created` lost) after the last listing is found
    # by the next one, at most reconcile_every_s later: have it now.
    catalog = run.collector.connections.catalog
    relists = catalog.relists
    catalog.wake.set()
    while catalog.relists == relists and loop.time() < deadline:
        await asyncio.sleep(POLL_S)
    caught_up = False
    while loop.time() < deadline:
        run.alive()
        if (run.books_match_truth() and run.collector.actions.idle and run.collector.backfills.idle
                and not run.pipeline._channel_break):
            caught_up = True
            break
        await asyncio.sleep(POLL_S)
    catch_up = run.collector.background["catch-up"]
    while not catch_up.done() and loop.time() < deadline:
        await asyncio.sleep(POLL_S)
    await asyncio.sleep(3 * run.config.flush_seconds)
    run.stop.set()
    run.final = await asyncio.wait_for(run.task, 60)
    return caught_up


async def test_every_fault_at_once_leaves_no_silent_hole(tmp_path):
    sim = Simulator(hostile_config(seed=8))
    await sim.start(host="127.0.0.1", port=0)
    try:
        run = await start_run(sim, hostile_collector(tmp_path))
        start = datetime.now(timezone.utc)
        await asyncio.sleep(RUN_SECONDS / 2)
        outage_start, outage_end = datetime.now(timezone.utc), None
        if await outage(sim, OUTAGE_SECONDS):
            outage_end = datetime.now(timezone.utc)
        await asyncio.sleep(RUN_SECONDS / 2)
        caught_up = await settle(run)
        end = datetime.now(timezone.utc)
    finally:
        await sim.stop()
    final = run.final
    result = await run_db(audit, Truth.from_simulator(sim), start, end, samples_per_market=20, lag_ms=1000)
    print(final)
    print(result.summary())
    print("caught up at the end:", caught_up)

    # The faults really happened, so the audit judges something.
    assert final["duplicates"] > 0 and final["malformed"] > 0 and final["gaps"] > 0
    assert final["reconnects"] > 0
    assert final["connections"] >= 4  # the markets were spread over several connections
    assert sum(v for k, v in final.items() if k.startswith("error_")) > 0  # terminal errors
    assert run.created_markets(), "no market was created while recording"
    assert any(s.settled_ms for s in run.owed_settlements().values()), "nothing settled"
    assert result.samples > MARKETS * 20 and result.trades_expected > 100

    if outage_end is not None:
        recorded = await run_db(lambda: set(OrderbookSnapshot.objects.filter(received_at__lt=outage_start)
                                            .values_list("market_ticker", flat=True)))
        active = {t for t, m in sim.markets().items() if m.status == "active"} & recorded
        back = await run_db(time_to_record_all, active, outage_end)
        print(f"every market recorded again {back} s after the outage")
        assert back is not None, "a market was never recorded again after the outage"

    # What is stored is right: no book served wrong as complete, every trade once.
    assert result.silent_holes_by_kind["wrong_book"] == 0, result.summary()
    assert (result.trades_missing, result.trades_duplicated, result.trades_wrong, result.trades_unexpected) == (
        0, 0, 0, 0), result.summary()

    # Every market is recorded, or a hole says why.
    details = await run_db(not_subscribed, result) if result.silent_holes else {}
    assert result.silent_holes == 0, f"{result.summary()}\n{details}"
    assert result.markets_unrecorded == 0, result.summary()


def not_subscribed(result) -> dict:
    """Each market with silent holes: its first snapshot, if any, and whether its `created` was stored."""
    found = {}
    for ticker in sorted(result.silent_hole_markets):
        first = (OrderbookSnapshot.objects.filter(market_ticker=ticker).order_by("received_at")
                 .values_list("received_at", flat=True).first())
        created = LifecycleEvent.objects.filter(market_ticker=ticker, event_type="created").exists()
        found[ticker] = (f"first snapshot {first.isoformat() if first else 'never'}, "
                         f"created message {'stored' if created else 'lost'}")
    return found
