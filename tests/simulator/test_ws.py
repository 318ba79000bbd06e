"""The WebSocket speaks Kalshi's protocol, and its un-faulted stream reproduces the true books."""

import pytest

from markets.book import OrderBook
from markets.fixedpoint import ONE_DOLLAR, parse_count, parse_price

from .conftest import Client, ws_connect

pytestmark = pytest.mark.asyncio


def active_tickers(sim, n=None):
    tickers = [t for t, m in sim.markets().items() if m.status == "active"]
    return tickers[:n] if n else tickers


def apply(books: dict, frame: dict, *, use_yes_price: bool) -> None:
    """Apply a snapshot or delta to our books, undoing yes-leg pricing when used."""
    msg = frame["msg"]

    def price(side, value):
        p = parse_price(value)
        return ONE_DOLLAR - p if use_yes_price and side == "no" else p

    if frame["type"] == "orderbook_snapshot":
        books[msg["market_ticker"]] = OrderBook.from_levels(
            [(price("yes", p), s) for p, s in msg.get("yes_dollars_fp", [])],
            [(price("no", p), s) for p, s in msg.get("no_dollars_fp", [])],
        )
    elif frame["type"] == "orderbook_delta":
        side = msg["side"]
        books[msg["market_ticker"]].apply_delta(
            side, price(side, msg["price_dollars"]), parse_count(msg["delta_fp"])
        )


@pytest.mark.parametrize("use_yes_price", [False, True])
async def test_stream_reproduces_every_true_book_with_contiguous_seq(make_sim, use_yes_price):
    sim = await make_sim(seed=11, markets=12)
    tickers = active_tickers(sim)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send(
            "subscribe",
            {"channels": ["orderbook_delta"], "market_tickers": tickers, "use_yes_price": use_yes_price},
        )
        subscribed = await client.recv()
        assert subscribed["type"] == "subscribed" and subscribed["msg"]["channel"] == "orderbook_delta"
        sid = subscribed["msg"]["sid"]
        books: dict = {}
        seqs = []
        for _ in range(3):
            sim.step(150)
            for frame in await client.until_barrier():
                assert frame["sid"] == sid
                seqs.append(frame["seq"])
                apply(books, frame, use_yes_price=use_yes_price)
        assert seqs == list(range(1, len(seqs) + 1))
        for ticker in tickers:
            assert books[ticker] == sim.true_book(ticker), ticker
        # Deltas of different tickers interleave on the one sid.
        assert len(set(books)) == len(tickers) > 1


async def test_snapshots_leave_empty_sides_out_and_deltas_carry_ts_ms(make_sim):
    sim = await make_sim(seed=2, markets=4)
    ticker = active_tickers(sim, 1)[0]
    book = sim.exchange.book(ticker)
    for side in ("yes", "no"):  # empty the book in the truth
        for price, size in book.levels(side):
            book.apply_delta(side, price, -size)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": ticker})
        _, snapshot = await client.recv_n(2)
        assert snapshot["type"] == "orderbook_snapshot" and snapshot["seq"] == 1
        assert set(snapshot["msg"]) == {"market_ticker", "market_id"}
        sim.step(100)
        deltas = [f for f in await client.until_barrier() if f["type"] == "orderbook_delta"]
        assert deltas and all(isinstance(d["msg"]["ts_ms"], int) for d in deltas)


async def test_trade_and_lifecycle_channels_are_global_with_their_own_seq(make_sim):
    sim = await make_sim(seed=4, markets=8)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["trade", "market_lifecycle_v2"]})
        replies = await client.recv_n(2)
        sids = {r["msg"]["channel"]: r["msg"]["sid"] for r in replies}
        assert len(set(sids.values())) == 2
        happened = sim.step(3000)
        frames = await client.until_barrier()
        trades = [f for f in frames if f["type"] == "trade"]
        assert [t["msg"]["trade_id"] for t in trades] == [
            e.trade.trade_id for e in happened if type(e).__name__ == "TradeExecuted"
        ]
        for channel, sid in sids.items():
            seqs = [f["seq"] for f in frames if f["sid"] == sid]
            assert seqs == list(range(1, len(seqs) + 1)), channel
        types = {f["type"] for f in frames}
        assert {"trade", "market_lifecycle_v2", "event_lifecycle"} <= types
        created = [
            f["msg"]
            for f in frames
            if f["type"] == "market_lifecycle_v2" and f["msg"]["event_type"] == "created"
        ]
        assert created and "additional_metadata" in created[0]
        determined = [f["msg"] for f in frames if f.get("msg", {}).get("event_type") == "determined"]
        assert determined and determined[0]["result"] in ("yes", "no")
        trade = trades[0]["msg"]
        assert {
            "yes_price_dollars",
            "no_price_dollars",
            "count_fp",
            "taker_outcome_side",
            "taker_book_side",
            "taker_side",
            "is_block_trade",
            "ts",
            "ts_ms",
        } <= set(trade)


async def test_get_snapshot_echoes_the_id_and_takes_the_next_seq(make_sim):
    sim = await make_sim(seed=5, markets=6)
    tickers = active_tickers(sim, 3)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": tickers})
        sid = (await client.recv())["msg"]["sid"]
        await client.recv_n(3)
        command_id = await client.send(
            "update_subscription", {"sids": [sid], "market_tickers": [tickers[1]], "action": "get_snapshot"}
        )
        snapshot = await client.recv()
        assert snapshot["type"] == "orderbook_snapshot" and snapshot["id"] == command_id
        assert snapshot["seq"] == 4 and snapshot["msg"]["market_ticker"] == tickers[1]


async def test_add_and_delete_markets(make_sim):
    sim = await make_sim(seed=6, markets=6)
    a, b, c = active_tickers(sim, 3)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": [a]})
        sid = (await client.recv())["msg"]["sid"]
        await client.recv()
        await client.send(
            "update_subscription", {"sid": sid, "market_tickers": [b, c], "action": "add_markets"}
        )
        ok, snap_b, snap_c = await client.recv_n(3)
        assert ok["type"] == "ok" and ok["seq"] == 2 and ok["msg"]["market_tickers"] == sorted([a, b, c])
        assert [snap_b["seq"], snap_c["seq"]] == [3, 4]
        assert {snap_b["msg"]["market_ticker"], snap_c["msg"]["market_ticker"]} == {b, c}
        await client.send(
            "update_subscription", {"sids": [sid], "market_tickers": [a], "action": "delete_markets"}
        )
        ok = await client.recv()
        assert ok["msg"]["market_tickers"] == sorted([b, c]) and ok["seq"] == 5
        sim.step(300)
        frames = await client.until_barrier()
        assert frames and all(f["msg"]["market_ticker"] in (b, c) for f in frames)
        await client.send("unsubscribe", {"sids": [sid]})
        unsubscribed = await client.recv()
        assert unsubscribed == {
            "id": unsubscribed["id"],
            "sid": sid,
            "seq": frames[-1]["seq"] + 1,
            "type": "unsubscribed",
        }
        await client.send("list_subscriptions")
        assert (await client.recv())["msg"] == []


@pytest.mark.parametrize(
    "command, code",
    [
        ({"cmd": "subscribe"}, 2),
        ({"cmd": "subscribe", "params": {}}, 3),
        ({"cmd": "subscribe", "params": {"channels": ["nope"]}}, 8),
        ({"cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
        ({"cmd": "unsubscribe", "params": {}}, 4),
        ({"cmd": "unsubscribe", "params": {"sids": [99]}}, 7),
        ({"cmd": "dance", "params": {}}, 5),
        ({"cmd": "update_subscription", "params": {"action": "add_markets"}}, 12),
        ({"cmd": "update_subscription", "params": {"sids": [1, 2], "action": "add_markets"}}, 12),
        ({"cmd": "update_subscription", "params": {"sid": 1}}, 15),
        ({"cmd": "update_subscription", "params": {"sid": 1, "action": "explode"}}, 13),
        ({"cmd": "update_subscription", "params": {"sid": 42, "action": "add_markets"}}, 7),
    ],
)
async def test_validation_errors_use_kalshis_codes(make_sim, command, code):
    sim = await make_sim(markets=2)
    async with ws_connect(sim) as ws:
        await ws.send('{"id": 9, "cmd": "subscribe", "params": {"channels": ["trade"]}}')
        await Client(ws).recv()
        import json

        await ws.send(json.dumps({"id": 10, **command}))
        reply = await Client(ws).recv()
        assert reply["type"] == "error" and reply["msg"]["code"] == code and reply["id"] == 10


async def test_unparseable_command_is_error_1_and_the_connection_lives(make_sim):
    sim = await make_sim(markets=2)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await ws.send("{not json")
        assert (await client.recv())["msg"]["code"] == 1
        await client.send("list_subscriptions")
        assert (await client.recv())["type"] == "ok"


async def test_resubscribing_a_channel_merges_tickers_on_the_same_sid(make_sim):
    sim = await make_sim(seed=8, markets=6)
    a, b = active_tickers(sim, 2)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": [a]})
        first, _ = await client.recv_n(2)
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": [a, b]})
        again, snapshot = await client.recv_n(2)
        assert again["msg"]["sid"] == first["msg"]["sid"]
        assert snapshot["msg"]["market_ticker"] == b and snapshot["seq"] == 2


async def test_legacy_format_sends_integer_cents_and_counts(make_sim):
    sim = await make_sim(seed=3, markets=4, wire_format="legacy")
    ticker = active_tickers(sim, 1)[0]
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["orderbook_delta", "trade"], "market_tickers": [ticker]})
        frames = await client.recv_n(3)
        snapshot = next(f for f in frames if f["type"] == "orderbook_snapshot")
        level = (snapshot["msg"].get("yes") or snapshot["msg"]["no"])[0]
        assert all(isinstance(x, int) for x in level)
        sim.step(400)
        frames = await client.until_barrier()
        delta = next(f for f in frames if f["type"] == "orderbook_delta")["msg"]
        assert (
            isinstance(delta["price"], int)
            and isinstance(delta["delta"], int)
            and "price_dollars" not in delta
        )
        trade = next(f for f in frames if f["type"] == "trade")["msg"]
        assert isinstance(trade["yes_price"], int) and isinstance(trade["count"], int)


async def test_running_simulator_pauses_drains_and_matches_the_truth(make_sim):
    """The way an end-to-end test stops the world: pause, drain, compare."""
    sim = await make_sim(seed=13, markets=6, rate=2000)
    tickers = active_tickers(sim)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": tickers})
        books: dict = {}
        frames = []
        while sim.stats["steps"] < 200:  # let the generator run on its own for a while
            frames.append(await client.recv())
        sim.pause()
        await sim.drain()
        frames += await client.until_barrier()
        for frame in frames[1:]:
            if frame["type"] != "error":
                apply(books, frame, use_yes_price=False)
        for ticker in tickers:
            assert books[ticker] == sim.true_book(ticker)


async def test_unknown_tickers_are_refused_with_error_11_and_never_widen_to_all(make_sim):
    sim = await make_sim(seed=1, markets=4)
    known = active_tickers(sim, 1)[0]
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send(
            "subscribe", {"channels": ["orderbook_delta", "trade"], "market_tickers": ["NOPE-1"]}
        )
        error = await client.recv()
        assert error["msg"]["code"] == 11 and error["msg"]["market_tickers"] == ["NOPE-1"]
        await client.send("list_subscriptions")
        assert (await client.recv())["msg"] == []
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": ["NOPE-1", known]})
        error, subscribed, snapshot = await client.recv_n(3)
        assert error["msg"]["code"] == 11 and subscribed["type"] == "subscribed"
        assert snapshot["msg"]["market_ticker"] == known


async def test_get_snapshot_serves_the_tickers_it_can_and_names_the_others(make_sim):
    sim = await make_sim(seed=5, markets=6)
    a, b, c = active_tickers(sim, 3)
    async with ws_connect(sim) as ws:
        client = Client(ws)
        await client.send("subscribe", {"channels": ["orderbook_delta"], "market_tickers": [a, b]})
        sid = (await client.recv())["msg"]["sid"]
        await client.recv_n(2)
        await client.send("update_subscription", {"sid": sid, "market_tickers": [a, c], "action": "get_snapshot"})
        error, snapshot = await client.recv_n(2)
        assert error["msg"]["code"] == 11 and error["msg"]["market_tickers"] == [c]
        assert snapshot["msg"]["market_ticker"] == a and snapshot["seq"] == 3
