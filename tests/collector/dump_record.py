"""Print, as JSON, what a database holds: each market's book at its last recorded instant, and the trades.

Run as a script with DATABASE_URL pointing at the database to read (the
outage test's own PostgreSQL, which the test process is not connected to).
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalshi_data.settings")

import django  # noqa: E402

django.setup()

from django.db.models import Max  # noqa: E402

from markets.models import OrderbookDelta, OrderbookSnapshot, Trade  # noqa: E402
from markets.replay import book_at  # noqa: E402


def main() -> None:
    last: dict = {}
    for model in (OrderbookSnapshot, OrderbookDelta):
        for row in model.objects.values("market_ticker").annotate(last=Max("received_at")):
            last[row["market_ticker"]] = max(last.get(row["market_ticker"], row["last"]), row["last"])
    books = {}
    for ticker, at in last.items():
        rebuilt = book_at(ticker, at)
        books[ticker] = {
            "yes": sorted([str(p), str(s)] for p, s in rebuilt.book.yes.items()),
            "no": sorted([str(p), str(s)] for p, s in rebuilt.book.no.items()),
            "complete": rebuilt.complete,
        }
    trades = [
        [t.trade_id, t.market_ticker, str(t.yes_price), str(t.no_price), str(t.count), t.ts.isoformat()]
        for t in Trade.objects.order_by("ts", "trade_id")
    ]
    json.dump({"books": books, "trades": trades}, sys.stdout)


if __name__ == "__main__":
    main()
