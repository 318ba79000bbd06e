"""The book at an instant, hot and archived: `book_at` and GET /orderbook, before and after archiving.

    DEBUG=1 .venv/bin/python bench/lake_read_bench.py [--hot-deltas 1000000]
        [--hot-trades 200000] [--quiet-markets 1000] [--samples 300]

Loads the API benchmark's day (bench/generate_day.py: one hot market, quiet
ones, a checkpoint every 500 deltas per market) into a scratch database
(`kalshi_lake_bench`, dropped at the end), times `book_at`
(markets/replay.py, the selector behind /orderbook) at random instants of
the hot market and of quiet markets, then runs `manage.py archive` (written,
verified, partitions dropped) into a temporary lake and times the same
instants again, now read from the Parquet files through DuckDB
(markets/record/reads.py). The same instants are also asked through
`GET /api/v1/orderbook` (Django's test client: URL routing, API key,
throttle, serializer, JSON; no socket), hot and archived. Every archived
book is checked equal to the hot one, and every archived response body
byte for byte equal to the hot one. Also times one 1000-row page of
/deltas' selector, hot and archived. Each line gives wall-clock p50, p99
and max, and this process's CPU p50 (the machine may be shared). Not a
test: it prints numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.django_env import scratch_database  # noqa: E402
from bench.django_env import setup_django  # noqa: E402

os.environ.setdefault("DEBUG", "1")
setup_django()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from backtest_api.models import api_key_create  # noqa: E402

from bench.generate_day import generate_day  # noqa: E402
from markets import selectors  # noqa: E402
from markets.models import LakeDay  # noqa: E402
from markets.replay import book_at  # noqa: E402

BENCH_DB = "kalshi_lake_bench"
# Every response's own: blanked before comparing bodies (as tests/backtest_api/test_lake_reads.py).
VOLATILE = re.compile(rb'"(request_id|response_time)":("[^"]*"|[0-9.e-]+)')


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_books(instants):
    times, books = [], []
    for ticker, at in instants:
        began, cpu = time.perf_counter(), time.process_time()
        books.append(book_at(ticker, at))
        times.append(Took.since(began, cpu))
    return times, books


class Took(float):
    """Wall milliseconds, with the CPU milliseconds of this process (DuckDB's threads too).

    The machine is shared: the wall clock's tail moves with other work, the
    CPU spent by this process much less.
    """

    def __new__(cls, wall: float, cpu: float):
        took = super().__new__(cls, wall)
        took.cpu = cpu
        return took

    @classmethod
    def since(cls, began: float, cpu: float) -> "Took":
        """From time.perf_counter() and time.process_time() read at the start."""
        return cls((time.perf_counter() - began) * 1000, (time.process_time() - cpu) * 1000)


def timed_gets(client: Client, instants):
    """GET /orderbook at each (ticker, instant): times and response bodies."""
    cache.clear()  # the throttle's counts: each pass starts from zero
    times, bodies = [], []
    for ticker, at in instants:
        url = (f"/api/v1/orderbook?market_ticker={ticker}"
               f"&timestamp={at.isoformat().replace('+00:00', 'Z')}")
        began, cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        times.append(Took.since(began, cpu))
        assert response.status_code == 200, response.content[:300]
        bodies.append(VOLATILE.sub(rb'"\1":null', response.content))
    return times, bodies


def report(name: str, times: list[float], books=None) -> None:
    applied = f", deltas applied p50 {statistics.median(b.deltas_applied for b in books):.0f}" \
        if books else ""
    cpu = [t.cpu for t in times if isinstance(t, Took)]
    cpu = f"  cpu p50 {statistics.median(cpu):6.2f} ms" if cpu else ""
    print(f"  {name:<34} p50 {statistics.median(times):7.2f} ms  p99 {pct(times, 0.99):7.2f} ms"
          f"  max {max(times):7.2f} ms{cpu}{applied}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hot-deltas", type=int, default=1_000_000)
    parser.add_argument("--hot-trades", type=int, default=200_000)
    parser.add_argument("--quiet-markets", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    settings.DEBUG = False  # no query log in this process
    print(f"load average at start: {os.getloadavg()}")
    day = date(2026, 11, 23)
    with scratch_database(BENCH_DB):
        with tempfile.TemporaryDirectory(prefix="lake-bench-") as tmp:
            # LAKE_BENCH_KEEP=<dir> keeps the lake there, to look into its files.
            settings.LAKE_URL = os.environ.get("LAKE_BENCH_KEEP") or str(Path(tmp) / "lake")
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                loaded = generate_day(day=day, hot_deltas=args.hot_deltas,
                                      hot_trades=args.hot_trades,
                                      quiet_markets=args.quiet_markets, log=lambda *a: None)
            print(f"day {day}: {loaded.counts}")
            rng = random.Random(args.seed)
            span = (loaded.end - loaded.start).total_seconds()

            def instant():
                return loaded.start + timedelta(seconds=rng.uniform(0, span))

            hot = [(loaded.hot_ticker, instant()) for _ in range(args.samples)]
            quiet = [(rng.choice(loaded.quiet_tickers), instant()) for _ in range(args.samples)]
            page_at = [instant() for _ in range(20)]

            def pages():
                times = []
                for at in page_at:
                    began = time.perf_counter()
                    selectors.deltas_page(market_ticker=loaded.hot_ticker, start=at,
                                          end=loaded.end, limit=1000)
                    times.append((time.perf_counter() - began) * 1000)
                return times

            def measure_round():
                """Every measurement once; (books, GET bodies), hot instants then quiet."""
                hot_times, hot_books = timed_books(hot)
                report("book_at, hot market", hot_times, hot_books)
                quiet_times, quiet_books = timed_books(quiet)
                report("book_at, quiet markets", quiet_times, quiet_books)
                get_times, bodies = timed_gets(client, hot + quiet)
                report("GET /orderbook, hot market", get_times[:len(hot)])
                report("GET /orderbook, quiet markets", get_times[len(hot):])
                report("deltas_page (1000 rows)", pages())
                return hot_books + quiet_books, bodies

            client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='bench')[1]}")
            timed_books(hot[:20])  # warm caches
            timed_gets(client, hot[:20])
            print("hot (PostgreSQL):")
            hot_books, hot_bodies = measure_round()

            older = (datetime.now(timezone.utc).date() - day).days - 1
            began = time.perf_counter()
            with open(os.devnull, "w") as devnull:
                call_command("archive", "--older-than", f"{older}d", stdout=devnull)
            print(f"archive (write, verify, drop): {time.perf_counter() - began:.1f} s; "
                  f"lake bytes: {sum(d.bytes for d in LakeDay.objects.all()):,}; dropped: "
                  f"{LakeDay.objects.filter(dropped_at__isnull=False).count()} table-days")

            timed_books(hot[:20])  # the first DuckDB query opens the files
            timed_gets(client, hot[:20])
            print("archived (Parquet lake through DuckDB):")
            if os.environ.get("LAKE_BENCH_PROFILE"):
                import cProfile
                import pstats

                profile = cProfile.Profile()
                profile.runcall(timed_books, hot)
                pstats.Stats(profile).sort_stats("tottime").print_stats(18)
            lake_books, lake_bodies = measure_round()
            same = sum(a.book == b.book and a.snapshot.received_at == b.snapshot.received_at
                       for a, b in zip(hot_books, lake_books)
                       if a.snapshot is not None and b.snapshot is not None)
            print(f"books equal hot vs archived: {same} of "
                  f"{sum(b.snapshot is not None for b in hot_books)}")
            print(f"GET bodies equal hot vs archived: "
                  f"{sum(a == b for a, b in zip(hot_bodies, lake_bodies))} of {len(hot_bodies)}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
