"""More markets than one connection may hold: the collector opens as many as Kalshi's cap needs.

The realistic simulator caps a connection's order-book subscription at a few
markets (error 26; a second subscribe is merged into the open one, so the cap
is the connection's), while the collector believes, as configured, that a
connection holds 500 (the default). It must learn the cap from the refusals, place the
refused markets on new connections without a refused-market hole, and record
every market: books equal to the truth everywhere outside a recorded hole,
every trade once, also when connections drop on their own.
"""

import asyncio
import dataclasses
from datetime import datetime, timezone

import pytest

import simulator.config
from collector.db import run_db
from markets.models import SequenceGap
from simulator import EngineConfig, FaultConfig, Simulator

from .audit import Truth, audit
from .e2e import collector_config, finish_run, start_run, stored_trades, truth_trades

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow]

MARKETS = 10
CAP = 3
RUN_SECONDS = 6.0


def capped_exchange(seed: int, faults: FaultConfig) -> Simulator:
    base = simulator.config.realistic()
    config = simulator.config.realistic(
        seed=seed, engine=EngineConfig(markets=MARKETS, lifecycle_probability=0.0), rate=200,
        faults=dataclasses.replace(base.faults, **{f.name: getattr(faults, f.name)
                                                   for f in dataclasses.fields(FaultConfig)}),
        market_cap_per_subscription=CAP, add_markets_refuse_rate=0.0, add_markets_delay_s=0.05,
        outage_every_s=None, new_market_rest_delay_s=0.0,
    )
    return Simulator(config)


def _gap_reasons() -> list[tuple[str, str]]:
    return list(SequenceGap.objects.values_list("market_ticker", "reason"))


async def test_markets_beyond_one_connection_are_recorded_on_more_connections(tmp_path):
    faults = FaultConfig(drop_rate=0.01, duplicate_rate=0.01, disconnect_every_frames=400)
    sim = capped_exchange(seed=5, faults=faults)
    await sim.start(host="127.0.0.1", port=0)
    try:
        run = await start_run(sim, collector_config(tmp_path))
        start = datetime.now(timezone.utc)
        connections = run.collector.connections
        # Learnt from Kalshi's 26s, not configured: 10 markets at 3 a connection.
        assert connections.capacity == CAP
        assert len(connections.feeds) == 4
        assert sorted(len(f.markets) for f in connections.feeds) == [1, CAP, CAP, CAP]
        assert set().union(*(f.markets for f in connections.feeds)) == connections.markets
        assert len(connections.markets) == MARKETS
        await asyncio.sleep(RUN_SECONDS / 2)
        sim.disconnect_all()
        await asyncio.sleep(RUN_SECONDS / 2)
        final = await finish_run(run)
        end = datetime.now(timezone.utc)
    finally:
        await sim.stop()

    # Every connection dropped and came back.
    assert all(feed.connects >= 2 for feed in connections.feeds), [f.connects for f in connections.feeds]
    assert final["connections"] == 4
    assert final["duplicates"] > 0 and final["gaps"] > 0  # the faults really happened
    result = await run_db(audit, Truth.from_simulator(sim), start, end, samples_per_market=20, lag_ms=1000)
    print(result.summary())
    assert result.silent_holes == 0, result.summary()
    assert result.markets_unrecorded == 0, result.summary()
    rows, stored = await stored_trades()
    assert rows == len(stored) and stored == truth_trades(sim, run.first_trade)
    # Moving a market to another connection is not a hole of its own.
    assert not [r for r in await run_db(_gap_reasons) if r[1] == "subscribe_refused"]


async def test_a_collector_with_a_known_cap_opens_the_connections_at_once(tmp_path):
    sim = capped_exchange(seed=6, faults=FaultConfig())
    await sim.start(host="127.0.0.1", port=0)
    try:
        run = await start_run(sim, collector_config(tmp_path, max_markets_per_connection=CAP))
        connections = run.collector.connections
        commands = sum(f.session.subs.commands_sent for f in connections.feeds if f.session)
        assert len(connections.feeds) == 4 and connections.capacity == CAP
        await asyncio.sleep(1.0)
        await finish_run(run)
    finally:
        await sim.stop()
    # One trade+lifecycle subscribe, one book subscribe per connection: no refusal at all.
    assert commands == 1 + 4, commands
