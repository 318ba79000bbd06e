"""Is the realistic simulator usable with thousands of markets? (not a test; prints numbers)

    DEBUG=1 .venv/bin/python bench/simulator_scale.py [markets] [steps]

Builds realistic(markets=N) (combo markets included), then measures exchange
steps/s with no client, steps/s with every market subscribed over as many
connections as the per-subscription cap needs (1,000 each), and the time to
list every market over REST (pages of 1,000), all on 127.0.0.1.
"""

import asyncio
import dataclasses
import json
import os
import sys
import time

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_data.settings")

import django  # noqa: E402

django.setup()

from websockets.asyncio.client import connect  # noqa: E402

from simulator import Simulator, realistic  # noqa: E402
from simulator.config import WS_PATH  # noqa: E402


async def main(markets: int, steps: int) -> None:
    base = realistic()
    config = realistic(
        engine=dataclasses.replace(base.engine, markets=markets),
        rate=0,
        outage_every_s=None,
        command_rate_per_s=None,
        rest_rate_per_s=None,
        outbound_queue_limit=10**9,
    )
    started = time.perf_counter()
    sim = Simulator(config, record_events=True)
    print(f"built {len(sim.markets()):,} markets in {time.perf_counter() - started:.2f} s")
    urls = await sim.start()

    started = time.perf_counter()
    sim.step(steps)
    elapsed = time.perf_counter() - started
    print(f"no client: {steps:,} steps in {elapsed:.2f} s = {steps / elapsed:,.0f} steps/s")

    started = time.perf_counter()
    listed, cursor = 0, ""
    async with aiohttp.ClientSession() as http:
        while True:
            path = "/trade-api/v2/markets"
            params = {"limit": "1000", "mve_filter": "exclude", **({"cursor": cursor} if cursor else {})}
            async with http.get(urls.rest + "/markets", params=params, headers=sim.signed_headers("GET", path)) as r:
                body = await r.json()
            listed += len(body["markets"])
            cursor = body["cursor"]
            if not cursor:
                break
    print(f"REST: listed {listed:,} markets in {time.perf_counter() - started:.2f} s")

    tickers = [t for t, m in sim.markets().items() if m.status == "active" and not m.is_combo]
    cap = config.market_cap_per_subscription
    sockets, received = [], 0
    for i in range(0, len(tickers), cap):
        ws = await connect(urls.ws, additional_headers=sim.signed_headers("GET", WS_PATH), max_size=None)
        chunk = tickers[i : i + cap]
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta", "trade"], "market_tickers": chunk}}))
        for _ in range(len(chunk) + 2):
            await ws.recv()
        sockets.append(ws)
    started = time.perf_counter()
    batch = 1000
    for _ in range(steps // batch):
        sim.step(batch)
        for ws in sockets:
            await ws.send('{"id":2,"cmd":"list_subscriptions"}')
            while True:
                text = await ws.recv()
                received += 1
                if text.startswith('{"id":2'):
                    break
    elapsed = time.perf_counter() - started
    print(
        f"{len(sockets)} connections, {len(tickers):,} markets subscribed: {steps:,} steps in {elapsed:.2f} s "
        f"= {steps / elapsed:,.0f} steps/s, {received / elapsed:,.0f} frames/s received"
    )
    for ws in sockets:
        await ws.close()
    await sim.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000, int(sys.argv[2]) if len(sys.argv) > 2 else 20_000))
