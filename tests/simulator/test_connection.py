"""Connection-level behaviour: heartbeat pings, timed disconnects, legacy REST, determinism of streams."""

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from simulator import FaultConfig
from simulator.config import WS_PATH

from .conftest import Client, rest_get, ws_connect
from .test_ws import active_tickers

pytestmark = pytest.mark.asyncio


async def test_server_pings_with_kalshis_heartbeat_payload(make_sim):
    sim = await make_sim(markets=1, heartbeat_seconds=0.05)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(
            sim.urls.ws, headers=sim.signed_headers("GET", WS_PATH), autoping=False
        ) as ws:
            message = await ws.receive(timeout=10)
            assert message.type == aiohttp.WSMsgType.PING and message.data == b"heartbeat"


async def test_silent_pings_fault_sends_none(make_sim):
    sim = await make_sim(markets=1, heartbeat_seconds=0.01, faults=FaultConfig(silent_pings=True))
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(
            sim.urls.ws, headers=sim.signed_headers("GET", WS_PATH), autoping=False
        ) as ws:
            await ws.send_str('{"id": 1, "cmd": "list_subscriptions"}')
            for _ in range(20):  # many heartbeat periods pass while we make round trips
                message = await ws.receive(timeout=10)
                assert message.type == aiohttp.WSMsgType.TEXT
                await ws.send_str('{"id": 1, "cmd": "list_subscriptions"}')


async def test_disconnect_every_seconds_closes_and_a_reconnect_gets_new_sids(make_sim):
    sim = await make_sim(seed=3, markets=4, faults=FaultConfig(disconnect_every_seconds=0.2))
    ticker = active_tickers(sim, 1)[0]
    for _ in range(2):
        async with ws_connect(sim) as ws:
            client = Client(ws)
            await client.send("subscribe", {"channels": ["orderbook_delta"], "market_ticker": ticker})
            received = []
            with pytest.raises(ConnectionClosed):  # the server hangs up by itself
                while True:
                    received.append(await client.recv())
            # However much arrived before the close, a new connection starts afresh.
            assert all(f["msg"]["sid"] == 1 for f in received if f["type"] == "subscribed")
            assert [f["seq"] for f in received if "seq" in f] == list(range(1, len(received)))
    assert sim.connections_opened == 2


async def test_legacy_rest_bodies_use_cents_and_integer_counts(make_sim):
    sim = await make_sim(seed=3, markets=4, wire_format="legacy")
    sim.step(300)
    ticker = active_tickers(sim, 1)[0]
    _, body = await rest_get(sim, f"/markets/{ticker}/orderbook")
    levels = body["orderbook"]["yes"] + body["orderbook"]["no"]
    assert levels and all(isinstance(p, int) and isinstance(n, int) for p, n in levels)
    _, body = await rest_get(sim, "/markets/trades", {"limit": 5})
    trade = body["trades"][0]
    assert isinstance(trade["yes_price"], int) and isinstance(trade["count"], int) and "count_fp" not in trade
    _, body = await rest_get(sim, f"/markets/{ticker}")
    assert isinstance(body["market"]["yes_bid"], int) and "yes_bid_dollars" not in body["market"]


async def test_same_seed_same_clock_same_stream(make_sim):
    streams = []
    for _ in range(2):
        sim = await make_sim(seed=12, markets=6, clock=lambda: 1_795_000_000_000)
        async with ws_connect(sim) as ws:
            client = Client(ws)
            await client.send(
                "subscribe",
                {
                    "channels": ["orderbook_delta", "trade", "market_lifecycle_v2"],
                    "market_tickers": active_tickers(sim),
                },
            )
            stream = await client.until_barrier(raw=True)  # subscribed before the world moves
            sim.step(500)
            streams.append(stream + await client.until_barrier(raw=True))
    assert streams[0] == streams[1] and len(streams[0]) > 500
