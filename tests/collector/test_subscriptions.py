"""The subscription manager and the feed against a scripted hostile exchange.

`HostileExchange` is a tiny WebSocket server that answers commands the way
Kalshi does at its worst: a per-subscription market cap (26), a command it
refuses for pace (27), a market it refuses (18), replies whose seq uses up a
number, a 401 on the upgrade, and an outage (close + refused handshakes).
"""

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from collector.config import CollectorConfig
from collector.pipeline import Pipeline
from collector.subscriptions import Subscriptions
from collector.ws import KalshiFeed
from collector.discovery import Selection
from collector.writer import Writer
from markets.models import SequenceGap

CAP = 3


class HostileExchange:
    def __init__(self, *, refuse_auth=0, too_fast_every=4):
        self.refuse_handshakes = refuse_auth  # this many upgrades answered 401
        self.refuse_status = 401
        self.too_fast_every = too_fast_every
        self.commands = 0
        self.connections = set()
        self.subscribed: list[dict[int, set[str]]] = []  # per connection: sid -> tickers

    async def start(self):
        self.server = await serve(self.handler, "127.0.0.1", 0, process_request=self.gate)
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/trade-api/ws/v2"

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()

    def gate(self, connection, request):
        if self.refuse_handshakes > 0:
            self.refuse_handshakes -= 1
            return Response(self.refuse_status, "refused", Headers(), b"")
        return None

    async def outage(self, refused_handshakes):
        """Close every connection; refuse the next handshakes with 503."""
        self.refuse_handshakes, self.refuse_status = refused_handshakes, 503
        for ws in list(self.connections):
            await ws.close(1001, "maintenance")

    async def handler(self, ws):
        self.connections.add(ws)
        sids: dict[int, set[str]] = {}
        seqs: dict[int, int] = {}
        self.subscribed.append(sids)
        next_sid = [1]

        async def send(frame, sid=None):
            if sid is not None:
                seqs[sid] += 1
                frame["sid"], frame["seq"] = sid, seqs[sid]
            await ws.send(json.dumps(frame))

        async def snapshot(sid, ticker):
            await send({"type": "orderbook_snapshot",
                        "msg": {"market_ticker": ticker, "yes_dollars_fp": [["0.4000", "1.00"]]}}, sid)

        try:
            async for raw in ws:
                cmd = json.loads(raw)
                cid, params = cmd["id"], cmd.get("params", {})
                self.commands += 1
                if self.too_fast_every and self.commands % self.too_fast_every == 0:
                    await send({"id": cid, "type": "error", "msg": {"code": 27, "msg": "too many commands"}})
                    continue
                tickers = params.get("market_tickers", [])
                if "BAD" in tickers:
                    await send({"id": cid, "type": "error", "msg": {"code": 18, "msg": "refused"}})
                    continue
                if cmd["cmd"] == "subscribe":
                    for channel in params["channels"]:
                        if channel == "orderbook_delta" and len(tickers) > CAP:
                            await send({"id": cid, "type": "error", "msg": {"code": 26, "msg": "cap"}})
                            break
                        sid = next_sid[0]
                        next_sid[0] += 1
                        seqs[sid] = 0
                        await send({"id": cid, "type": "subscribed", "msg": {"channel": channel, "sid": sid}})
                        if channel == "orderbook_delta":
                            sids[sid] = set(tickers)
                            for t in tickers:
                                await snapshot(sid, t)
                elif params.get("action") == "add_markets":
                    sid = params["sid"]
                    if len(sids[sid] | set(tickers)) > CAP:
                        await send({"id": cid, "type": "error", "msg": {"code": 26, "msg": "cap"}})
                        continue
                    sids[sid] |= set(tickers)
                    # The reply uses up a number ("consume").
                    await send({"id": cid, "type": "ok", "msg": {"market_tickers": sorted(sids[sid])}}, sid)
                    for t in tickers:
                        await snapshot(sid, t)
                elif params.get("action") == "get_snapshot":
                    for t in tickers:
                        await snapshot(params["sid"], t)
        finally:
            self.connections.discard(ws)


def config(tmp_path, **overrides):
    values = dict(journal_dir=tmp_path / "journal", max_markets_per_subscription=100,
                  command_rate_per_s=200.0, command_timeout_seconds=5.0, auth_retry_s=0.05,
                  reconnect_probe_s=0.05, backoff_initial=0.01, refused_retry_initial=0.05)
    values.update(overrides)
    return CollectorConfig(**values)


async def wait_until(predicate, what, timeout=20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_a_cap_is_learnt_markets_are_split_and_a_refused_market_is_returned(tmp_path):
    exchange = HostileExchange()
    url = await exchange.start()
    try:
        async with connect(url) as ws:
            subs = Subscriptions(ws.send, config(tmp_path))

            async def read():
                async for raw in ws:
                    subs.observe(raw)

            reader = asyncio.create_task(read())
            tickers = [f"M{i}" for i in range(10)] + ["BAD"]
            refused = await subs.subscribe_books(tickers, use_yes_price=False)
            reader.cancel()
    finally:
        await exchange.stop()
    assert set(refused) == {"BAD"} and "18" in refused["BAD"]
    assert CAP <= subs.cap < 100  # learnt from 26: an upper bound that keeps every sid valid
    assert subs.subscribed_books() == {f"M{i}" for i in range(10)}
    # What we believe is what the exchange holds, and no sid is over the cap.
    held = exchange.subscribed[0]
    assert {sid: t for sid, t in held.items() if t} == {sid: t for sid, t in subs.book_sids.items() if t}
    assert all(len(t) <= CAP for t in held.values())
    assert subs.refusals > 0  # 27 was answered and the command sent again


class Actions:
    feed = None

    def submit(self, command):
        pass


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_feed_survives_401_caps_refusals_and_an_outage(tmp_path):
    exchange = HostileExchange(refuse_auth=2)
    url = await exchange.start()
    cfg = config(tmp_path)
    writer = Writer(cfg)
    pipeline = Pipeline(writer, cfg)
    tickers = {f"M{i}" for i in range(7)} | {"BAD"}
    feed = KalshiFeed(url=url, pipeline=pipeline, config=cfg, actions=Actions(),
                      markets=set(tickers), selection=Selection())
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    good = tickers - {"BAD"}

    def all_recorded():
        return all(t in pipeline.books and pipeline.books[t].reliable for t in good)

    try:
        await wait_until(all_recorded, "every good market recorded")
        assert feed.auth_refusals == 2 and feed.connects == 1
        await exchange.outage(refused_handshakes=3)
        await wait_until(lambda: feed.connects == 2 and all_recorded(), "recording again after the outage")
        # BAD is retried with backoff and stays refused, alone.
        await wait_until(lambda: exchange.commands > 20 and feed.refused.get("BAD"), "retries of BAD")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await exchange.stop()
    await asyncio.to_thread(writer.flush_sync)
    rows = await asyncio.to_thread(lambda: list(SequenceGap.objects.values_list("market_ticker", "reason")))
    assert ("BAD", "subscribe_refused") in rows
    # The outage is a hole of every good market, closed by the new snapshots.
    assert {t for t, r in rows if r == "disconnect"} >= good
    assert all(t != "BAD" for t, r in rows if r != "subscribe_refused" and r != "disconnect")
