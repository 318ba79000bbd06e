"""Benchmark of the backtest API on a realistic recorded day, beside naive baselines.

Measures, in one run and on the same data (bench/generate_day.py; generated
first unless the day is already loaded):

* order book at random instants: markets.replay.book_at (from the latest
  snapshot or checkpoint) and the /orderbook endpoint, against replaying
  from the first snapshot of the day;
* a 1000-row page of trades and of deltas deep in the day through the
  keyset cursor (selector and endpoint), against OFFSET;
* 1-minute candles over the whole day (selector and endpoint), against
  fetching every trade and bucketing in Python;
* requests/s of a small endpoint under gunicorn (gthread workers, which
  keep connections alive) with concurrent clients, all on 127.0.0.1 (an
  ephemeral port), bounded in time and in number of requests.

It prints numbers; it asserts nothing about time.

    python bench/api_bench.py [--day 2026-11-23] [--samples 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Our own rate limit must not be what is measured.
os.environ.setdefault("API_RATE_KEY", "1000000/s")

from bench.django_env import database_url, setup_django  # noqa: E402
from bench.generate_day import DEFAULT_PREFIX, generate_day  # noqa: E402

PAGE = 1000


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, result


def row(name: str, samples: list[float], target: str = "") -> None:
    print(
        f"  {name:<44} p50 {pct(samples, 50):9.2f} ms   p99 {pct(samples, 99):9.2f} ms"
        f"   n={len(samples):<4} {target}"
    )


# --- Baselines ------------------------------------------------------------------


def naive_book(ticker: str, day_start: datetime, at: datetime):
    """Replay from the day's first snapshot: every delta since, no checkpoints.

    Subscribe and resync snapshots still re-baseline the book (as they must
    after a gap); checkpoints are what this baseline goes without.
    """
    from django.db import connection

    from markets.book import OrderBook

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT received_at, session_id, seq, 0, yes_levels::text, no_levels::text "
            "FROM orderbook_snapshots WHERE market_ticker = %s AND received_at >= %s "
            "AND received_at <= %s AND source IN ('subscribe', 'resync') "
            "UNION ALL SELECT received_at, session_id, seq, 1, side, NULL "
            "FROM orderbook_deltas WHERE market_ticker = %s AND received_at >= %s "
            "AND received_at <= %s ORDER BY 1, 2, 3, 4",
            [ticker, day_start, at, ticker, day_start, at],
        )
        events = cursor.fetchall()
        cursor.execute(
            "SELECT price, delta FROM orderbook_deltas WHERE market_ticker = %s "
            "AND received_at >= %s AND received_at <= %s ORDER BY received_at, session_id, seq",
            [ticker, day_start, at],
        )
        changes = iter(cursor.fetchall())
    book = None
    for _, _, _, kind, a, b in events:
        if kind == 0:
            book = OrderBook.from_levels(json.loads(a), json.loads(b))
        else:
            price, delta = next(changes)
            book.apply_delta(a, price, delta)
    return book


# The same columns as the selectors read, and each table's full key order.
TABLES = {
    "trades": (
        "ts",
        "market_ticker, ts, trade_id, yes_price, no_price, count, taker_outcome_side, "
        "taker_book_side, taker_side, is_block_trade, received_at, source",
        "ts, trade_id",
    ),
    "orderbook_deltas": (
        "received_at",
        "market_ticker, received_at, session_id, sid, seq, side, price, delta, ts",
        "received_at, session_id, seq, sid",
    ),
}


def offset_page(
    table: str, ticker: str, start, end, offset: int, *, columns=None, limit=PAGE
):
    """The page at `offset` the OFFSET way: every row before it is read and thrown away."""
    from django.db import connection

    time_column, all_columns, order = TABLES[table]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns or all_columns} FROM {table} WHERE market_ticker = %s "
            f"AND {time_column} >= %s AND {time_column} < %s ORDER BY {order} "
            f"OFFSET %s LIMIT %s",
            [ticker, start, end, offset, limit],
        )
        return cursor.fetchall()


def key_at(table: str, ticker: str, start, end, position: int) -> tuple:
    """The full key of the row at `position` (to make a cursor; not timed)."""
    return tuple(
        offset_page(
            table, ticker, start, end, position, columns=TABLES[table][2], limit=1
        )[0]
    )


def python_candles(ticker: str, start, end):
    """Every trade of the day to Python, bucketed by minute there."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ts, trade_id, yes_price, count FROM trades WHERE market_ticker = %s "
            "AND ts >= %s AND ts < %s ORDER BY ts, trade_id",
            [ticker, start, end],
        )
        buckets = defaultdict(list)
        for ts, _, price, count in cursor.fetchall():
            buckets[ts.replace(second=0, microsecond=0)].append((price, count))
    return {
        b: (
            rows[0][0],
            max(p for p, _ in rows),
            min(p for p, _ in rows),
            rows[-1][0],
            sum(c for _, c in rows),
        )
        for b, rows in buckets.items()
    }


# --- Requests/s under gunicorn ---------------------------------------------------------


def requests_per_second(
    path: str,
    key: str,
    *,
    seconds: float,
    clients: int,
    workers: int,
    threads: int,
    max_requests: int,
) -> dict:
    """Run gunicorn on 127.0.0.1:<ephemeral> and hammer `path` with keep-alive clients."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only",
        "DATABASE_URL": database_url(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    server = subprocess.Popen(
        [
            gunicorn,
            "kalshi_data.wsgi:application",
            "--bind",
            f"fd://{listener.fileno()}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            "--keep-alive",
            "5",
        ],
        env=env,
        pass_fds=[listener.fileno()],
    )
    try:
        deadline = time.time() + 30
        while True:  # wait until it answers
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
                raise RuntimeError(f"server answered {status}")
            except (ConnectionError, OSError):
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        counts = [0] * clients
        errors = [0] * clients
        latencies: list[list[float]] = [[] for _ in range(clients)]
        stop_at = time.perf_counter() + seconds
        budget = threading.Semaphore(max_requests)

        def client(i: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {"Authorization": f"Bearer {key}"}
            while time.perf_counter() < stop_at and budget.acquire(blocking=False):
                started = time.perf_counter()
                try:
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                latencies[i].append((time.perf_counter() - started) * 1000)
                counts[i] += ok
                errors[i] += not ok
            conn.close()

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        every = [x for lat in latencies for x in lat]
        return {
            "rps": sum(counts) / elapsed,
            "ok": sum(counts),
            "errors": sum(errors),
            "seconds": elapsed,
            "p50": pct(every, 50),
            "p99": pct(every, 99),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
        listener.close()


# --- The run ----------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--day", type=date.fromisoformat, help="UTC day (default: yesterday)."
    )
    parser.add_argument("--samples", type=int, default=200, help="Order-book instants.")
    parser.add_argument("--baseline-samples", type=int, default=20)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="Load-test duration."
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="Concurrent load clients."
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn worker processes."
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="Threads per gunicorn worker."
    )
    parser.add_argument("--max-requests", type=int, default=50_000)
    parser.add_argument(
        "--regenerate", action="store_true", help="Load the day even if present."
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from backtest_api.models import api_key_create
    from backtest_api.pagination import encode_cursor
    from markets import candles, selectors
    from markets.replay import book_at

    settings.DEBUG = False  # no query log in this process
    day = args.day or (datetime.now(timezone.utc).date() - timedelta(days=1))
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    end = start + timedelta(days=1)
    hot = f"{DEFAULT_PREFIX}-HOT"

    def count(table: str, column: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {table} WHERE market_ticker = %s "
                f"AND {column} >= %s AND {column} < %s",
                [hot, start, end],
            )
            return cursor.fetchone()[0]

    if args.regenerate or count("orderbook_deltas", "received_at") < 1_000_000:
        generate_day(day=day)
    n_deltas = count("orderbook_deltas", "received_at")
    n_trades = count("trades", "ts")
    print(
        f"day {day}: {hot} has {n_deltas:,} deltas and {n_trades:,} trades "
        f"(+ {DEFAULT_PREFIX} quiet markets)"
    )

    key_row, key = api_key_create(name="api_bench")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    rng = random.Random(args.seed)
    iso = lambda dt: dt.isoformat().replace("+00:00", "Z")

    def api(url):
        response = client.get(url)
        assert response.status_code == 200, response.content[:300]
        return response

    # Warm the caches the way a running server would be.
    book_at(hot, start + timedelta(hours=12))
    api(
        f"/api/v1/orderbook?market_ticker={hot}&timestamp={iso(start + timedelta(hours=12))}"
    )

    print("\norder book at random instants (target p50 <= 10 ms, p99 <= 50 ms)")
    instants = [
        start + timedelta(seconds=rng.uniform(2, 86399)) for _ in range(args.samples)
    ]
    fast = [timed(book_at, hot, at)[0] for at in instants]
    via_api = [
        timed(
            api, f"/api/v1/orderbook?market_ticker={hot}&timestamp={iso(at)}&depth=50"
        )[0]
        for at in instants
    ]
    equal, naive = 0, []
    for at in instants[: args.baseline_samples]:
        ms, book = timed(naive_book, hot, start, at)
        naive.append(ms)
        equal += book == book_at(hot, at).book
    row("book_at (latest checkpoint + deltas)", fast)
    row("GET /orderbook (through Django + DRF)", via_api)
    row("baseline: replay from first snapshot of day", naive)
    print(f"  books equal to the baseline's: {equal}/{len(naive)}")

    print("\n1000-row page deep in the day via the cursor (target p50 <= 20 ms)")
    for table, selector, key_types, endpoint, total in (
        (
            "trades",
            selectors.trades_page,
            selectors.TRADE_KEY_TYPES,
            "trades",
            n_trades,
        ),
        (
            "orderbook_deltas",
            selectors.deltas_page,
            selectors.DELTA_KEY_TYPES,
            "deltas",
            n_deltas,
        ),
    ):
        keyset, through_api, offset = [], [], []
        # Warm up: plans cached, the day's index pages in memory.
        for _ in range(6):
            selector(market_ticker=hot, start=start, end=end, limit=PAGE + 1)
        for i in range(30):
            position = rng.randrange(total // 2, total - 2 * PAGE)
            after = key_at(table, hot, start, end, position - 1)
            ms, rows = timed(
                selector,
                market_ticker=hot,
                start=start,
                end=end,
                after=after,
                limit=PAGE + 1,
            )
            keyset.append(ms)
            cursor = encode_cursor(after, key_types)
            through_api.append(
                timed(
                    api,
                    f"/api/v1/{endpoint}?market_ticker={hot}"
                    f"&start_time={iso(start)}&end_time={iso(end)}"
                    f"&limit={PAGE}&cursor={cursor}",
                )[0]
            )
            if i < 10:
                ms, baseline_rows = timed(offset_page, table, hot, start, end, position)
                offset.append(ms)
                first = key_at(table, hot, start, end, position)
                assert (
                    rows[0].key == first and len(baseline_rows) == PAGE
                ), "keyset != OFFSET"
        row(f"{endpoint}: keyset selector (limit {PAGE + 1})", keyset)
        row(f"{endpoint}: GET /{endpoint}?cursor=...", through_api)
        row(f"{endpoint}: baseline OFFSET", offset)

    print("\n1-minute candles over the whole day (target <= 20 ms through GET)")
    sql, via, naive_c = [], [], []
    candles.candles_for(
        market_ticker=hot, interval=timedelta(minutes=1), start=start, end=end
    )
    for i in range(10):
        sql.append(
            timed(
                candles.candles_for,
                market_ticker=hot,
                interval=timedelta(minutes=1),
                start=start,
                end=end,
            )[0]
        )
        via.append(
            timed(
                api,
                f"/api/v1/candles/{hot}?interval=1m&start_time={iso(start)}"
                f"&end_time={iso(end)}",
            )[0]
        )
        if i < 5:
            naive_c.append(timed(python_candles, hot, start, end)[0])
    row("candles_for (one-minute bars)", sql)
    row("GET /candles?interval=1m", via)
    row("baseline: all trades to Python, bucket there", naive_c)

    print(
        f"\nrequests/s: GET /api/v1/series/{DEFAULT_PREFIX}S1 under gunicorn "
        f"({args.workers} gthread workers x {args.threads} threads, {args.clients} keep-alive "
        f"clients, {args.seconds:.0f} s)"
    )
    result = requests_per_second(
        f"/api/v1/series/{DEFAULT_PREFIX}S1",
        key,
        seconds=args.seconds,
        clients=args.clients,
        workers=args.workers,
        threads=args.threads,
        max_requests=args.max_requests,
    )
    print(
        f"  {result['rps']:.0f} requests/s ({result['ok']} ok, {result['errors']} errors in "
        f"{result['seconds']:.1f} s); latency p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms"
    )
    key_row.revoke()


if __name__ == "__main__":
    main()
