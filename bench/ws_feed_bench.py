"""Throughput of the collector's WebSocket side (not a test: it prints numbers).

    DEBUG=1 .venv/bin/python bench/ws_feed_bench.py [--markets 2000] [--steps 200000]

A generated Kalshi stream (the simulator's offline generator) is served by a
bare WebSocket server on 127.0.0.1 as fast as the socket takes it, and read
by the real `KalshiFeed`: websockets client, control-reply tracking, the
Pipeline (parse, sequence, books, checkpoints) and command dispatch. The
writer only counts rows, so this measures the I/O layer plus the core; the
database side is measured by bench/ingest_bench.py. Also prints the
collector's resident memory with that many markets subscribed.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_data.settings")

import django  # noqa: E402

django.setup()

from websockets.asyncio.server import serve  # noqa: E402

from collector.config import CollectorConfig  # noqa: E402
from collector.discovery import Selection  # noqa: E402
from collector.ws import KalshiFeed  # noqa: E402
from collector.pipeline import Pipeline  # noqa: E402
from simulator.offline import offline_stream  # noqa: E402


def _serve(frames, sid_of, ports) -> None:
    """Answer the feed's subscribes with the stream's sids, then send every frame."""

    async def handler(ws):
        book_subscribed = False
        async for text in ws:
            command = json.loads(text)
            if command.get("cmd") != "subscribe":
                continue
            for channel in command["params"]["channels"]:
                await ws.send(json.dumps({"id": command["id"], "type": "subscribed",
                                          "msg": {"channel": channel, "sid": sid_of[channel]}}))
                book_subscribed |= channel == "orderbook_delta"
            if book_subscribed:
                break
        for frame in frames:
            await ws.send(frame)
        await asyncio.Future()  # keep the connection open until terminated

    async def main():
        async with serve(handler, "127.0.0.1", 0, max_size=None, compression=COMPRESSION) as server:
            ports.put(server.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


COMPRESSION = os.environ.get("BENCH_WS_COMPRESSION") or None  # "deflate" to measure permessage-deflate


class CountingWriter:
    """The writer's interface, counting rows instead of writing them."""

    def __init__(self):
        self.rows = 0

    def _add(self, *args):
        self.rows += 1

    add_delta = add_snapshot = add_trade = add_lifecycle = open_gap = close_gap = _add

    def stats(self):
        return {"rows_queued": self.rows}


class DroppedActions:
    """No REST in this benchmark: lifecycle work is counted and dropped."""

    def __init__(self):
        self.feed = None
        self.submitted = 0

    def submit(self, command):
        self.submitted += 1


async def main(markets: int, steps: int) -> None:
    started = time.perf_counter()
    stream = offline_stream(markets=markets, steps=steps)
    replies = [json.loads(f) for f in stream.frames if '"subscribed"' in f[:40]]
    sid_of = {r["msg"]["channel"]: r["msg"]["sid"] for r in replies}
    frames = [f for f in stream.frames if '"subscribed"' not in f[:40]]
    print(f"generated {len(frames):,} frames for {len(stream.subscribed_tickers):,} markets "
          f"in {time.perf_counter() - started:.1f} s")

    # The server runs in its own process (the second core), as Kalshi would.
    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(frames, sid_of, ports), daemon=True)
    server.start()
    port = ports.get(timeout=60)

    writer = CountingWriter()
    config = CollectorConfig(subscribe_batch=len(stream.subscribed_tickers))
    pipeline = Pipeline(writer, config)
    feed = KalshiFeed(url=f"ws://127.0.0.1:{port}/trade-api/ws/v2", pipeline=pipeline, config=config,
                      actions=DroppedActions(), markets=set(stream.subscribed_tickers), selection=Selection())
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    while feed.frames == 0:
        await asyncio.sleep(0.001)
    t0 = time.perf_counter()
    while feed.frames < len(frames) + len(sid_of):
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    server.terminate()
    stats = pipeline.stats()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ws feed: {feed.frames:,} frames in {elapsed:.2f} s = {feed.frames / elapsed:,.0f} frames/s "
          f"(rows {writer.rows:,}, gaps {stats.get('gaps', 0)}, malformed {stats.get('malformed', 0)})")
    print(f"peak RSS of the collector process (generator included): {rss_mb:,.0f} MB with {len(stream.subscribed_tickers):,} markets")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=2000, help="markets in the generated exchange")
    parser.add_argument("--steps", type=int, default=200_000, help="exchange steps to generate")
    args = parser.parse_args()
    asyncio.run(main(args.markets, args.steps))
