"""Sharding and catalog reconciliation."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from collector import commands as cmd
from collector.catalog import Catalog, Shard, market_filters
from collector.config import CollectorConfig
from collector.discovery import Selection, markets_discover
from markets.models import Market, OrderbookSnapshot


def test_three_shards_cover_every_market_exactly_once():
    markets = [(f"EV{e}", f"EV{e}-M{m}") for e in range(300) for m in range(4)]
    shards = [Shard.parse(f"{i}/3") for i in range(3)]
    owners = {ticker: [s.index for s in shards if s.owns(event, ticker)] for event, ticker in markets}
    assert all(len(o) == 1 for o in owners.values())
    # All markets of an event go together, and every shard gets a real share.
    by_event = {}
    for event, ticker in markets:
        by_event.setdefault(event, set()).add(owners[ticker][0])
    assert all(len(s) == 1 for s in by_event.values())
    counts = [sum(1 for o in owners.values() if o == [i]) for i in range(3)]
    assert min(counts) > 300
    # Stable: the same answer in any process (crc32, not the salted hash()).
    assert Shard(1, 3).owns("EV7") == Shard(1, 3).owns("EV7")


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1", "a/b", "1/0"])
def test_a_bad_shard_is_refused_with_its_name(text):
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(text)


def test_combos_are_excluded_unless_asked_for():
    assert market_filters("exclude") == {"mve_filter": "exclude"}
    assert market_filters("include") == {}


class FakeRest:
    def __init__(self, markets):
        self.listed = markets
        self.calls = []

    def markets(self, **params):
        self.calls.append(params)

        async def pages():
            for m in self.listed:
                if params.get("status") in (None, "open"):
                    yield m
        return pages()


class FakeFeed:
    """What the catalog calls on the collector's connections."""

    def __init__(self, markets):
        self.markets = set(markets)
        self.recorded = set(markets)
        self.added = []
        self.retired = []
        self.opened = []
        self.missed = []

    async def add_markets(self, tickers):
        self.added += tickers
        self.markets.update(tickers)
        self.recorded.update(tickers)

    def retire(self, ticker):
        self.retired.append(ticker)

    def market_opened(self, ticker, at=None):
        self.opened.append((ticker, at))

    def market_missed(self, ticker, existed_from):
        self.missed.append((ticker, existed_from))


class FakeActions:
    def __init__(self):
        self.submitted = []

    def submit(self, command):
        self.submitted.append(command)


def market(ticker, status, event="EV", **extra):
    opened = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    return {"ticker": ticker, "event_ticker": event, "status": status, "open_time": opened, **extra}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_connect_lists_now_and_once_more_a_little_later():
    """REST may not list yet a market created just before the lifecycle
    subscription, which nobody announces: a second listing finds it."""
    rest, feed, actions = FakeRest([]), FakeFeed(set()), FakeActions()
    catalog = Catalog(rest=rest, feed=feed, actions=actions, selection=Selection(),
                      config=CollectorConfig(relist_after_connect_s=0.05))
    await catalog.reconcile_on_connect()
    assert catalog.relists == 1 and not catalog.wake.is_set()
    await asyncio.wait_for(catalog.wake.wait(), 5)  # what Catalog.run waits for to list again


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_relisting_subscribes_what_is_new_and_settles_what_was_decided():
    listed = [
        market("OLD", "active"),
        market("NEW", "active"),  # created while we were away
        market("GONE", "settled", result="yes", settlement_value_dollars="1.0000"),
        market("DONE", "finalized", result="no"),  # lived and ended unseen
    ]
    rest, feed, actions = FakeRest(listed), FakeFeed({"OLD", "GONE"}), FakeActions()
    catalog = Catalog(rest=rest, feed=feed, actions=actions, selection=Selection(),
                      config=CollectorConfig())
    catalog.listed_at = 1_000_000.0
    assert await catalog.reconcile("test") == 1
    await asyncio.sleep(0)
    assert feed.added == ["NEW"]
    assert [t for t, _ in feed.opened] == ["NEW"]  # a not_subscribed hole from its open time
    assert feed.opened[0][1] is not None
    kinds = [(type(c), c.market_ticker) for c in actions.submitted]
    assert kinds == [(cmd.MarketDetermined, "GONE"), (cmd.MarketSettled, "GONE"), (cmd.MarketDetermined, "DONE")]
    assert feed.retired == ["GONE"]
    # A market that ended before we ever recorded it: a hole says so, from its open time.
    assert [t for t, _ in feed.missed] == ["DONE"] and feed.missed[0][1] is not None
    assert rest.calls == [{"mve_filter": "exclude", "min_updated_ts": 1_000_000 - 60}]
    # Listed again (the listings overlap): no second hole, no second settlement.
    await catalog.reconcile("test")
    assert [t for t, _ in feed.missed] == ["DONE"]
    assert [c.market_ticker for c in actions.submitted].count("DONE") == 1
    assert await asyncio.to_thread(lambda: set(Market.objects.values_list("ticker", flat=True))) >= {"NEW", "OLD"}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_market_recorded_and_retired_is_not_missed_while_its_rows_wait_in_the_journal():
    """PostgreSQL away: the market's snapshots are in the journal, not in the
    table. Recorded by this process (or by the last run), it did not end
    unseen: no `not_subscribed` hole may declare its recorded life missing."""
    rest = FakeRest([market("SEEN", "active"), market("BEFORE", "finalized", result="no")])
    feed, actions = FakeFeed(set()), FakeActions()
    catalog = Catalog(rest=rest, feed=feed, actions=actions, selection=Selection(),
                      config=CollectorConfig())
    catalog.recorded_before = frozenset({"BEFORE"})
    await catalog.reconcile("test")
    assert feed.added == ["SEEN"]
    feed.markets.discard("SEEN")  # settled and retired; no snapshot of it is stored
    rest.listed = [market("SEEN", "finalized", result="yes"), market("NEVER", "finalized", result="no")]
    await catalog.reconcile("test")
    assert [t for t, _ in feed.missed] == ["NEVER"]
    assert await asyncio.to_thread(lambda: OrderbookSnapshot.objects.count()) == 0


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_discovery_keeps_only_the_shards_markets():
    listed = [market(f"E{e}-M{m}", "active", event=f"E{e}") for e in range(30) for m in range(2)]
    found = []
    for i in range(3):
        found += [m["ticker"] for m in await markets_discover(FakeRest(listed), Selection(), shard=Shard(i, 3))]
    assert sorted(found) == sorted(m["ticker"] for m in listed)


def test_collect_refuses_a_bad_shard_naming_the_option():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--shard"):
        call_command("collect", "--shard", "3/3")
