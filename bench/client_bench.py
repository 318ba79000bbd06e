"""Benchmark the Python client and the engine exports on bench/generate_day.py's day.

* `kalshi_data_client` over HTTP (gunicorn, one sync worker, 127.0.0.1):
  the hot market's replay stream (1,000,000 deltas) iterated as events, then
  through `.books()`; and a month-style walk of its deltas with
  `.iter_batches(rows=100_000)` and `.to_arrow()` per batch;
* `manage.py export --format hftbacktest` and `--format nautilus` of the hot
  market's day, in a child process: seconds and peak memory.

Prints numbers, asserts nothing.

    DEBUG=1 .venv/bin/python bench/client_bench.py [--day 2026-11-23] [--only client|engines]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bulk_bench import PYTHON, ROOT, Server, load  # noqa: E402
from bench.django_env import setup_django  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_client(day_start: datetime, hot: str) -> None:
    from backtest_api.models import api_key_create
    from kalshi_data_client import Client

    key = api_key_create(name="client-bench")[1]
    server = Server()
    try:
        url = f"http://127.0.0.1:{server.port}"
        end = day_start + timedelta(days=1)
        print(f"kalshi_data_client over HTTP (gunicorn, 1 sync worker, {url}); {load()}")
        with Client(url, api_key=key) as client:
            started = time.perf_counter()
            events = sum(1 for _ in client.replay(hot, day_start, end, types="deltas"))
            seconds = time.perf_counter() - started
            print(f"  replay, events (Decimal, datetime)  {events:>9,} in {seconds:6.2f} s"
                  f"  {events / seconds:>9,.0f} events/s  client peak {peak_mb():.0f} MB")
            started = time.perf_counter()
            books = 0
            for _, book in client.replay(hot, day_start, end, types="deltas").books():
                books += book is not None
            seconds = time.perf_counter() - started
            print(f"  replay .books()                     {books:>9,} in {seconds:6.2f} s"
                  f"  {books / seconds:>9,.0f} books/s   client peak {peak_mb():.0f} MB")
            started = time.perf_counter()
            rows = batches = 0
            for batch in client.deltas(hot, day_start, day_start + timedelta(hours=6)).iter_batches(
                    rows=100_000):
                rows += batch.to_arrow().num_rows
                batches += 1
            seconds = time.perf_counter() - started
            print(f"  deltas pages -> iter_batches(100k) -> Arrow: {rows:,} rows in {batches}"
                  f" batches, {seconds:.2f} s, {rows / seconds:,.0f} rows/s,"
                  f" client peak {peak_mb():.0f} MB")
        print(f"  gunicorn worker peak {server.worker_peak_mb():.0f} MB")
    finally:
        server.stop()


def bench_engines(day: date, hot: str) -> None:
    print(f"engine exports of {hot} on {day} (child process); {load()}")
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True,"
               " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
               " usage = resource.getrusage(resource.RUSAGE_CHILDREN);"
               " print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime)")
    with tempfile.TemporaryDirectory() as out:
        for fmt in ("hftbacktest", "nautilus"):
            started = time.perf_counter()
            done = subprocess.run(
                [PYTHON, "-c", wrapper, PYTHON, "manage.py", "export", "--start-date",
                 day.isoformat(), "--end-date", day.isoformat(), "--markets", hot,
                 "--format", fmt, "--out", out],
                cwd=ROOT, check=True, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            peak_kb, cpu = done.stdout.split()
            size = sum(p.stat().st_size for p in Path(out, fmt).rglob("*") if p.is_file())
            print(f"  --format {fmt:<12} {seconds:6.1f} s ({float(cpu):.1f} s CPU),"
                  f" peak {int(peak_kb) / 1024:.0f} MB, {size / 1e6:.1f} MB written")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", type=date.fromisoformat, help="UTC day (default: yesterday).")
    parser.add_argument("--only", choices=("client", "engines"), help="Run one part.")
    args = parser.parse_args(argv)
    setup_django()
    from bench.generate_day import DEFAULT_PREFIX, generate_day

    from markets.models import OrderbookDelta

    hot = f"{DEFAULT_PREFIX}-HOT"
    day = args.day or (datetime.now(timezone.utc).date() - timedelta(days=1))
    day_start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    if not OrderbookDelta.objects.filter(
            market_ticker=hot, received_at__gte=day_start,
            received_at__lt=day_start + timedelta(days=1)).exists():
        generate_day(day=day)
    os.environ.setdefault("DEBUG", "1")
    if args.only in (None, "client"):
        bench_client(day_start, hot)
    if args.only in (None, "engines"):
        bench_engines(day, hot)


if __name__ == "__main__":
    main()
