"""Replay benchmark: recorded history served as Kalshi, as fast as one client reads (not a test).

    DEBUG=1 .venv/bin/python bench/replay_bench.py [--frames 300000] [--markets 500]

1. The stream of bench/ingest_bench.py (one snapshot per market, then
   deltas and trades at random over the markets) is recorded into a scratch
   database (`kalshi_bench`) through the collector's own Pipeline and
   Writer: that stage's frames/s is the collector's ingest rate, the target.
2. `kalshi_replay`'s server (simulator/recorded.py; the record read by a
   child process, simulator/record_reader.py) replays the whole
   recorded window at speed 0 (as fast as the client reads) to one client in
   another process, which connects with a signed handshake, subscribes to
   every book and to trades, and parses every frame as JSON. Frames/s from
   its first frame to its last, and whether it got every delta and trade.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.django_env import scratch_database  # noqa: E402
from bench.ingest_bench import BENCH_DB, generate, server_cpu_seconds, stage_end_to_end  # noqa: E402 (sets up Django)


from django.db import connection  # noqa: E402

from collector.config import CollectorConfig  # noqa: E402
from collector.db import run_db  # noqa: E402
from kalshi import auth  # noqa: E402
from markets.models import Market, OrderbookDelta, Trade  # noqa: E402
from simulator.recorded import RecordedExchange, ReplayClock, replay_simulator, run_replay  # noqa: E402


def client_process(ws_url: str, key_id: str, pem: bytes, tickers: list[str], result) -> None:
    """A client in its own process: signed handshake, subscribe, read and parse every frame."""
    import aiohttp
    import orjson

    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(pem, password=None)

    async def run():
        headers = auth.signed_headers(key_id, key, "GET", "/trade-api/ws/v2")
        counts = {"orderbook_delta": 0, "trade": 0, "orderbook_snapshot": 0}
        first = last = None
        cpu_at_first = 0.0
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, headers=headers,
                                                                   max_msg_size=0) as ws:
            await ws.send_str(json.dumps({"id": 1, "cmd": "subscribe", "params": {
                "channels": ["orderbook_delta"], "market_tickers": tickers}}))
            await ws.send_str(json.dumps({"id": 2, "cmd": "subscribe", "params": {"channels": ["trade"]}}))
            while True:
                try:
                    frame = await ws.receive(timeout=3.0)
                except asyncio.TimeoutError:
                    break  # the replay is over
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                message = orjson.loads(frame.data)
                kind = message.get("type")
                if kind in counts:
                    counts[kind] += 1
                    if first is None:
                        first, cpu_at_first = time.perf_counter(), time.process_time()
                    last = time.perf_counter()
        result.put({"counts": counts, "seconds": (last or 0) - (first or 0),
                    "client_cpu": time.process_time() - cpu_at_first})  # not its start-up

    asyncio.run(run())


def _cpu(pid: int) -> float:
    """CPU seconds used so far by a process of this machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def replay_to_one_client(tickers, start, end) -> dict:
    t_open = time.perf_counter()
    exchange = await run_db(RecordedExchange, tickers, start, end)
    print(f"  opening the record (each book at the start): {time.perf_counter() - t_open:.2f} s")
    clock = ReplayClock(exchange.start_us, speed=0)
    sim = replay_simulator(exchange, clock)
    urls = await sim.start(host="127.0.0.1", port=0)
    result = multiprocessing.get_context("spawn").Queue()
    client = multiprocessing.get_context("spawn").Process(target=client_process, args=(
        urls.ws, sim.key_id, auth.private_key_pem(sim.private_key), tickers, result))
    client.start()
    t0 = time.perf_counter()
    cpu0 = (time.process_time(), _cpu(exchange._reader.process.pid), server_cpu_seconds())
    try:
        await run_replay(sim, exchange, clock)
        await sim.drain(timeout=120)
        served = time.perf_counter() - t0
        cpu1 = (time.process_time(), _cpu(exchange._reader.process.pid), server_cpu_seconds())
        outcome = await asyncio.to_thread(result.get, True, 120)
        outcome["cpu"] = {name: b - a for name, a, b in zip(("server", "reader", "postgres"), cpu0, cpu1)
                          if a is not None and b is not None and b >= a}
        outcome["cpu"]["client"] = outcome.pop("client_cpu")
    finally:
        await sim.stop()
        exchange.close()
        client.join(10)
    outcome["served_seconds"] = served
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--markets", type=int, default=500)
    parser.add_argument("--trade-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print the server's hottest functions")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}  cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        tmpdir = Path(tmp)
        stream = tmpdir / "stream.jsonl"
        count = generate(stream, args.frames, args.markets, args.trade_share, args.seed)
        cfg = CollectorConfig(journal_dir=tmpdir / "journal", raw_archive_url="off")
        with scratch_database(BENCH_DB):
            before = datetime.now(timezone.utc)
            elapsed, _, _ = asyncio.run(stage_end_to_end(stream, cfg))
            ingest = count / elapsed
            print(f"collector ingest: {ingest:,.0f} frames/s end to end ({count:,} frames, {args.markets} markets)")
            tickers = sorted(OrderbookDelta.objects.values_list("market_ticker", flat=True).distinct())
            Market.objects.bulk_create([Market(ticker=t, status="active", open_time=before - timedelta(days=1),
                                               close_time=before + timedelta(days=1)) for t in tickers])
            deltas, trades = OrderbookDelta.objects.count(), Trade.objects.count()
            start, end = before, datetime.now(timezone.utc) + timedelta(seconds=1)
            connection.close()
            if args.profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                outcome = profiler.runcall(asyncio.run, replay_to_one_client(tickers, start, end))
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            else:
                outcome = asyncio.run(replay_to_one_client(tickers, start, end))
            counts, seconds = outcome["counts"], outcome["seconds"]
            frames = sum(counts.values())
            rate = frames / seconds
            print(f"replay to one client, as fast as it reads: {rate:,.0f} frames/s "
                  f"({frames:,} frames in {seconds:.2f} s; served in {outcome['served_seconds']:.2f} s "
                  f"with the set-up); {rate / ingest:.2f}x the collector's ingest")
            cpu = outcome["cpu"]
            print("  CPU per frame: " + ", ".join(f"{name} {seconds / frames * 1e6:.1f} us"
                                                  for name, seconds in cpu.items()))
            print(f"  got {counts['orderbook_delta']:,} of {deltas:,} deltas, {counts['trade']:,} of {trades:,} "
                  f"trades, {counts['orderbook_snapshot']:,} snapshots")
            print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
