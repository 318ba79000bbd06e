"""What a database holds, as timelines: each market's book at every instant it changed, and the trades.

`timeline()` is called in-process for the test database; run as a script
(with DATABASE_URL pointing at another database, and the window and tickers
as arguments) it prints the same as JSON, for the round-trip test's second
collector, whose database the test process is not connected to.

A market's timeline is a list of (instant in µs, book) at every recorded
change: each delta and snapshot, and each start and end of a recorded hole.
The book is markets.replay.book_at's (the one place that rebuilds books),
as (yes levels, no levels), or None inside a recorded hole.
"""

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_US = timedelta(microseconds=1)


def _us(at: datetime) -> int:
    return (at - EPOCH) // ONE_US


def timeline(tickers, start: datetime, end: datetime, trades_from: datetime, trades_to: datetime) -> dict:
    """Books over [start, end) and trades received over [trades_from, trades_to)."""
    from django.db.models import Q

    from markets.models import OrderbookDelta, OrderbookSnapshot, SequenceGap, Trade
    from markets.replay import book_at

    books = {}
    for ticker in tickers:
        instants = set(OrderbookDelta.objects.filter(
            market_ticker=ticker, received_at__gte=start, received_at__lt=end).values_list("received_at", flat=True))
        instants |= set(OrderbookSnapshot.objects.filter(
            market_ticker=ticker, received_at__gte=start, received_at__lt=end).exclude(source="rest")
            .values_list("received_at", flat=True))
        for gap in SequenceGap.objects.filter(market_ticker=ticker, channel="orderbook_delta").filter(
                Q(recovered_at__isnull=True) | Q(recovered_at__gt=start), detected_at__lt=end):
            instants |= {t for t in (gap.detected_at, gap.recovered_at) if t is not None and start <= t < end}
        points = []
        for at in sorted(instants | {start}):
            state = book_at(ticker, at)
            book = state.book.snapshot_levels() if state.complete else None
            points.append((_us(at), book))
        books[ticker] = points
    trades = sorted(
        [t.trade_id, t.market_ticker, str(t.yes_price), str(t.no_price), str(t.count), t.taker_outcome_side,
         _us(t.ts)]
        for t in Trade.objects.filter(market_ticker__in=tickers, received_at__gte=trades_from, received_at__lt=trades_to)
    )
    return {"books": books, "trades": trades}


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_data.settings")
    import django

    django.setup()
    start, end, trades_from, trades_to = (datetime.fromisoformat(sys.argv[i]) for i in (1, 2, 3, 4))
    tickers = sys.argv[5].split(",")
    json.dump(timeline(tickers, start, end, trades_from, trades_to), sys.stdout)


if __name__ == "__main__":
    main()
