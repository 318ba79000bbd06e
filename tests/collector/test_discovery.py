"""Discovery: what a selection means, and what it stores."""

import pytest

from collector.db import run_db
from collector.discovery import Selection, hierarchy_discover, markets_discover
from collector.rest import KalshiRest
from simulator import Simulator
from markets.models import Event, Market, Series


def test_selection_wants():
    everything = Selection.of()
    assert everything.everything and everything.wants("ANY-1")
    some = Selection.of(markets=["A-1"], series=["S"])
    assert some.wants("A-1") and some.wants("B-2", "S") and not some.wants("B-2", "T")
    assert str(some) == "markets=A-1 series=S"
    assert str(everything) == "all open markets"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_markets_and_series_together_then_their_events_and_series():
    sim = Simulator(seed=9, markets=12, rate=0)
    urls = await sim.start(host="127.0.0.1", port=0)
    try:
        live = {t: m for t, m in sim.markets().items() if m.status == "active"}
        series = sorted({m.series_ticker for m in live.values()})
        lone = next(t for t, m in live.items() if m.series_ticker != series[0])
        expected = {t for t, m in live.items() if m.series_ticker == series[0]} | {lone}
        async with KalshiRest(base_url=urls.rest, key_id=sim.key_id, private_key=sim.private_key,
                              rate_per_s=1000) as rest:
            found = await markets_discover(rest, Selection.of(markets=[lone, "NO-SUCH-MARKET"],
                                                              series=[series[0]]))
            assert {m["ticker"] for m in found} == expected
            await hierarchy_discover(rest, {m["event_ticker"] for m in found})
        stored = await run_db(lambda: {m.ticker: m.series_ticker for m in Market.objects.all()})
        assert set(stored) == expected
        assert all(stored[t] == live[t].series_ticker for t in expected)  # learnt from the events
        events = await run_db(lambda: set(Event.objects.values_list("event_ticker", flat=True)))
        assert events == {live[t].event_ticker for t in expected}
        assert await run_db(lambda: set(Series.objects.values_list("ticker", flat=True))) == {
            live[t].series_ticker for t in expected}
    finally:
        await sim.stop()
