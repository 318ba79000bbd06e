"""How fast the simulator produces a Kalshi stream (not a test; prints numbers).

    DEBUG=1 .venv/bin/python bench/simulator_stream.py [markets] [steps]

Offline: engine + session + wire formatting, no network (the generator for
pipeline benchmarks). Online: the same through the server to one real
WebSocket client on 127.0.0.1.
"""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_data.settings")

import django  # noqa: E402

django.setup()

from websockets.asyncio.client import connect  # noqa: E402

from simulator import Simulator  # noqa: E402
from simulator.config import WS_PATH  # noqa: E402
from simulator.offline import offline_stream  # noqa: E402


def offline(markets: int, steps: int) -> None:
    started = time.perf_counter()
    stream = offline_stream(markets=markets, steps=steps)
    elapsed = time.perf_counter() - started
    print(
        f"offline: {len(stream.frames):,} frames from {steps:,} steps in {elapsed:.2f} s "
        f"= {len(stream.frames) / elapsed:,.0f} frames/s ({markets} markets)"
    )


async def online(markets: int, steps: int) -> None:
    sim = Simulator(
        seed=0, markets=markets, rate=0, rest_rate_per_s=None, record_events=False, outbound_queue_limit=10**9
    )
    urls = await sim.start()
    tickers = [t for t, m in sim.markets().items() if m.status == "active"]
    async with connect(urls.ws, additional_headers=sim.signed_headers("GET", WS_PATH), max_size=None) as ws:
        await ws.send(
            '{"id":1,"cmd":"subscribe","params":{"channels":["orderbook_delta","trade"],"market_tickers":%s}}'
            % str(tickers).replace("'", '"')
        )
        received = 0
        for _ in range(len(tickers) + 2):
            await ws.recv()
        started = time.perf_counter()
        batch = 1000
        for _ in range(steps // batch):
            sim.step(batch)
            await ws.send('{"id":2,"cmd":"list_subscriptions"}')
            while True:
                text = await ws.recv()
                received += 1
                if text.startswith('{"id":2'):
                    break
        elapsed = time.perf_counter() - started
    await sim.stop()
    print(
        f"online: {received:,} frames over one WebSocket in {elapsed:.2f} s = {received / elapsed:,.0f} frames/s"
    )


if __name__ == "__main__":
    n_markets = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    offline(n_markets, n_steps)
    asyncio.run(online(n_markets, n_steps))
