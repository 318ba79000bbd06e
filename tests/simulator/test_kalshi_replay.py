"""`kalshi_replay`: our recorded history served back as Kalshi (simulator/recorded.py).

A session is recorded by the real collector from the simulator into
PostgreSQL, then served by the replay. A plain client, written only from
Kalshi's public docs (RSA-PSS signed handshake, subscribe, apply snapshots
and deltas, check seq), rebuilds from the replay the same books our
/api/v1/orderbook serves at the end of the window, and sees every trade.
"""

import asyncio
import base64
import json
import time
from datetime import timedelta
from decimal import Decimal

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.db.models import Max, Min
from rest_framework.test import APIClient

from backtest_api.models import api_key_create
from collector.db import run_db
from markets.models import OrderbookDelta, OrderbookSnapshot, Trade
from simulator import FaultConfig, Simulator
from simulator.recorded import RecordedExchange, ReplayClock, replay_simulator, run_replay

from tests.collector.e2e import collector_config, finish_run, start_run

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow]

WAIT_S = 60.0


async def record(sim, tmp_path, seconds):
    await sim.start(host="127.0.0.1", port=0)
    try:
        run = await start_run(sim, collector_config(tmp_path))
        await asyncio.sleep(seconds)
        await finish_run(run)
    finally:
        await sim.stop()
    return run


def window():
    """[first recorded book, one microsecond after the last recorded delta)."""
    start = OrderbookSnapshot.objects.aggregate(start=Min("received_at"))["start"]
    end = OrderbookDelta.objects.aggregate(end=Max("received_at"))["end"]
    return start, end + timedelta(microseconds=1)


# -- a plain client, from Kalshi's docs only ---------------------------------------------


def signed_headers(key_id, private_key, method, path):
    """KALSHI-ACCESS-* headers: RSA-PSS (SHA-256, salt = digest length) over timestamp + method + path."""
    stamp = str(int(time.time() * 1000))
    signature = private_key.sign(
        (stamp + method + path).encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )
    return {"KALSHI-ACCESS-KEY": key_id, "KALSHI-ACCESS-SIGNATURE": base64.b64encode(signature).decode(),
            "KALSHI-ACCESS-TIMESTAMP": stamp}


class PlainClient:
    """Keeps each market's book as Kalshi's docs describe: a snapshot replaces it, a delta adds to a level."""

    def __init__(self):
        self.books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
        self.trades: list[dict] = []
        self.last_seq: dict[int, int] = {}
        self.seq_gaps = 0
        self.frames = 0

    def on_message(self, message: dict) -> None:
        self.frames += 1
        sid, seq = message.get("sid"), message.get("seq")
        if seq is not None and sid is not None:
            if sid in self.last_seq and seq != self.last_seq[sid] + 1:
                self.seq_gaps += 1
            self.last_seq[sid] = seq
        body = message.get("msg") or {}
        kind = message.get("type")
        if kind == "orderbook_snapshot":
            self.books[body["market_ticker"]] = {
                side: {Decimal(p): Decimal(q) for p, q in body.get(f"{side}_dollars_fp", [])}
                for side in ("yes", "no")
            }
        elif kind == "orderbook_delta":
            side = self.books[body["market_ticker"]][body["side"]]
            price = Decimal(body["price_dollars"])
            size = side.get(price, Decimal(0)) + Decimal(body["delta_fp"])
            if size:
                side[price] = size
            else:
                side.pop(price, None)
        elif kind == "trade":
            self.trades.append(body)


async def plain_client_run(urls, key_id, private_key, tickers, done) -> PlainClient:
    client = PlainClient()
    headers = signed_headers(key_id, private_key, "GET", "/trade-api/ws/v2")
    async with aiohttp.ClientSession() as http, http.ws_connect(urls.ws, headers=headers) as ws:
        await ws.send_str(json.dumps({"id": 1, "cmd": "subscribe", "params": {
            "channels": ["orderbook_delta"], "market_tickers": tickers}}))
        await ws.send_str(json.dumps({"id": 2, "cmd": "subscribe", "params": {"channels": ["trade"]}}))
        while True:
            try:
                frame = await ws.receive(timeout=0.5)
            except asyncio.TimeoutError:
                if done():
                    return client
                continue
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"the replay closed the connection: {frame}")
            client.on_message(json.loads(frame.data))


def api_books(tickers, at):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='replay')[1]}")
    stamp = at.isoformat().replace("+00:00", "Z")
    books = {}
    for ticker in tickers:
        body = api.get(f"/api/v1/orderbook?market_ticker={ticker}&timestamp={stamp}").json()["data"]
        assert body["complete"], (ticker, body)
        books[ticker] = {side: {Decimal(level["price"]): Decimal(level["quantity"]) for level in body[side]}
                         for side in ("yes", "no")}
    return books


async def test_a_plain_client_rebuilds_our_orderbook_from_the_replay(tmp_path):
    sim = Simulator(seed=21, markets=8, rate=200)
    run = await record(sim, tmp_path, seconds=2.0)
    tickers = sorted(run.start_markets)
    start, end = await run_db(window)

    exchange = await run_db(RecordedExchange, tickers, start, end)
    replay = replay_simulator(exchange, ReplayClock(exchange.start_us, speed=0))
    urls = await replay.start(host="127.0.0.1", port=0)
    task = asyncio.create_task(run_replay(replay, exchange, ReplayClock(exchange.start_us, speed=0)))
    try:
        client = await asyncio.wait_for(plain_client_run(
            urls, replay.key_id, replay.private_key, tickers,
            done=lambda: task.done() and not any(c.pending for c in replay.connections),
        ), WAIT_S)
        task.result()
    finally:
        task.cancel()
        await replay.stop()

    assert client.seq_gaps == 0
    assert client.frames > 300
    expected = await run_db(api_books, tickers, end)
    assert client.books == expected
    stored = await run_db(lambda: sorted(Trade.objects.filter(
        market_ticker__in=tickers, received_at__gte=start, received_at__lt=end)
                                         .values_list("trade_id", flat=True)))
    assert stored and sorted(t["trade_id"] for t in client.trades) == stored
