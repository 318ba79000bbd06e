"""The REST client against the simulator: signing, pagination, pacing, 429 backoff."""

import pytest
import pytest_asyncio

from kalshi import auth
from collector.rest import KalshiNotFound, KalshiRest, KalshiRestError
from simulator import Simulator

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def sim():
    simulator = Simulator(seed=3, markets=25, rate=0)
    await simulator.start(host="127.0.0.1", port=0)
    yield simulator
    await simulator.stop()


def client(sim, **kwargs) -> KalshiRest:
    kwargs.setdefault("rate_per_s", 1000)
    kwargs.setdefault("backoff_initial", 0.02)
    kwargs.setdefault("backoff_max", 0.2)
    return KalshiRest(base_url=sim.urls.rest, key_id=sim.key_id, private_key=sim.private_key, **kwargs)


async def test_signed_requests_pass_and_unsigned_or_wrongly_signed_are_refused(sim):
    async with client(sim) as rest:
        assert (await rest.historical_cutoff())["trades_created_ts"] is not None
    async with KalshiRest(base_url=sim.urls.rest) as unsigned:
        with pytest.raises(KalshiRestError) as refused:
            await unsigned.historical_cutoff()
        assert refused.value.status == 401
    wrong_key = auth.generate_private_key()
    async with KalshiRest(base_url=sim.urls.rest, key_id=sim.key_id, private_key=wrong_key) as forged:
        with pytest.raises(KalshiRestError) as refused:
            await forged.historical_cutoff()
        assert refused.value.status == 401


async def test_pagination_follows_cursors_to_the_end_without_repeats(sim):
    async with client(sim) as rest:
        everything = [m["ticker"] async for m in rest.paginate("/markets", "markets", limit=1000)]
        paged = [m["ticker"] async for m in rest.paginate("/markets", "markets", limit=4)]
        assert len(everything) >= 25
        assert paged == everything
        assert rest.requests >= 1 + -(-len(everything) // 4)
        trades = [t["trade_id"] async for t in rest.trades()]
        trades_paged = [t["trade_id"] async for t in rest.paginate("/markets/trades", "trades", limit=7)]
        assert trades_paged == trades and len(set(trades)) == len(trades)


async def test_market_lookups_and_not_found(sim):
    ticker = next(iter(sim.markets()))
    async with client(sim) as rest:
        assert (await rest.market(ticker))["ticker"] == ticker
        with pytest.raises(KalshiNotFound):
            await rest.market("NO-SUCH-MARKET")
        event = await rest.event((await rest.market(ticker))["event_ticker"])
        series = await rest.series(event["series_ticker"])
        assert series["ticker"] == event["series_ticker"]
        assert any(s["ticker"] == series["ticker"] for s in await rest.series_list())


async def test_429_without_retry_after_is_retried_with_backoff_until_it_passes():
    # The server allows 4 requests at once, then 20/s; an unpaced client trips it.
    sim = Simulator(seed=1, markets=3, rate=0, rest_rate_per_s=20.0, rest_burst_seconds=0.2)
    await sim.start(host="127.0.0.1", port=0)
    try:
        async with client(sim) as rest:
            for _ in range(20):
                await rest.historical_cutoff()
            assert rest.retries > 0  # it did hit 429s, and got through all of them
        async with client(sim, max_attempts=1) as impatient:
            with pytest.raises(KalshiRestError) as exhausted:
                for _ in range(20):
                    await impatient.historical_cutoff()
            assert exhausted.value.status == 429
    finally:
        await sim.stop()


async def test_client_side_pacing_keeps_under_the_server_budget():
    sim = Simulator(seed=1, markets=3, rate=0, rest_rate_per_s=50.0, rest_burst_seconds=0.2)
    await sim.start(host="127.0.0.1", port=0)
    try:
        async with client(sim, rate_per_s=8) as paced:
            for _ in range(16):
                await paced.historical_cutoff()
            assert paced.retries == 0
    finally:
        await sim.stop()
