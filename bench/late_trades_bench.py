"""Memory of the replay stream over trades received long after their exchange time.

A REST backfill after an outage stores trades whose receive time is hours
after their exchange time. The stream replays in receive order; it used to
read trades in exchange-time order and hold the late ones in a heap until
the stream's end (a one-day replay of 400k late trades grew a worker from
205 MB to 879 MB). Now it reads them in receive order from the index
trades_received_idx. This loads --trades such trades for one market (once),
streams the day's trades and prints the process's RSS before and at its
peak, and the events per second. It asserts nothing.

    python bench/late_trades_bench.py [--trades 400000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.django_env import setup_django  # noqa: E402

TICKER = "BENCH-LATE"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=400_000)
    args = parser.parse_args(argv)
    setup_django()
    from markets.models import Market, Trade
    from markets.partitioning import ensure_partitions  # noqa: F401
    from markets.replay_stream import replay_runs

    day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    day -= timedelta(days=1)
    end = day + timedelta(days=1)
    Market.objects.get_or_create(ticker=TICKER)
    have = Trade.objects.filter(market_ticker=TICKER, received_at__gte=day,
                                received_at__lt=end, ts__gte=day - timedelta(days=1),
                                ts__lt=end).count()
    if have < args.trades:
        Trade.objects.filter(market_ticker=TICKER).delete()
        step = timedelta(days=1) / args.trades
        rows = []
        for i in range(args.trades):
            received = day + i * step
            rows.append(Trade(  # exchange time 20 h before it was received: a backfill
                market_ticker=TICKER, trade_id=f"late-{i:07d}", ts=received - timedelta(hours=20),
                received_at=received, yes_price=Decimal("0.4200"), no_price=Decimal("0.5800"),
                count=Decimal("3.00"), source="rest"))
            if len(rows) == 20_000:
                Trade.objects.bulk_create(rows)
                rows = []
        if rows:
            Trade.objects.bulk_create(rows)
    before = rss_mb()
    peak, events, started = before, 0, time.perf_counter()
    for run in replay_runs(market_tickers=[TICKER], start_time=day, end_time=end,
                           types=["trades"]):
        events += len(run)
        if events % 20_000 < len(run):
            peak = max(peak, rss_mb())
    elapsed = time.perf_counter() - started
    peak = max(peak, rss_mb())
    print(f"{events:,} trade events of {TICKER} (exchange time 20 h before receipt) in "
          f"{elapsed:.1f} s ({events / elapsed:,.0f} events/s); RSS {before:.0f} MB before, "
          f"{peak:.0f} MB peak (+{peak - before:.0f} MB)")


if __name__ == "__main__":
    main()
