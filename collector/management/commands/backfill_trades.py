"""`manage.py backfill_trades`: fetch past trades from Kalshi's REST API."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from collector.backfill import trades_backfill
from collector.client import rest_client
from collector.rest import KalshiRestError
from markets.services import parse_time


def _time(value: str) -> datetime:
    try:
        return parse_time(value)
    except ValueError:
        raise CommandError(f"not a time: {value!r} (ISO 8601, e.g. 2026-11-24T00:00:00Z, or Unix seconds)")


def _tickers(values: list[str]) -> list[str]:
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


class Command(BaseCommand):
    help = (
        "Fetch the trades of chosen markets in a time range from Kalshi's REST API "
        "(live and historical tiers, routed by GET /historical/cutoff) and store "
        "those not stored yet."
    )

    def add_arguments(self, parser):
        parser.add_argument("--markets", action="append", default=[], metavar="TICKER[,TICKER]",
                            help="Market tickers to backfill (repeat or comma-separate).")
        parser.add_argument("--series", action="append", default=[], metavar="TICKER[,TICKER]",
                            help="Series tickers: backfill every market of these series, any status.")
        parser.add_argument("--start", required=True,
                            help="Start of the range, ISO 8601 (UTC if no zone) or Unix seconds.")
        parser.add_argument("--end", default=None,
                            help="End of the range (inclusive), same formats; default now.")

    def handle(self, *args, **options):
        markets = _tickers(options["markets"])
        series = _tickers(options["series"])
        if not markets and not series:
            raise CommandError("name what to backfill with --markets and/or --series")
        start = _time(options["start"])
        end = _time(options["end"]) if options["end"] else datetime.now(timezone.utc)
        if end <= start:
            raise CommandError(f"--end ({end.isoformat()}) must be after --start ({start.isoformat()})")
        try:
            result = asyncio.run(self._run(markets, series, start, end))
        except KalshiRestError as exc:
            raise CommandError(str(exc))
        self.stdout.write(
            f"fetched {result.fetched} trades, stored {result.stored} new "
            f"({result.fetched - result.stored} already stored or outside the range)"
        )

    async def _run(self, markets, series, start, end):
        async with rest_client() as rest:
            tickers = list(markets)
            for series_ticker in series:
                # Markets settled before the historical cutoff are listed only there.
                tickers += [m["ticker"] async for m in rest.markets(series_ticker=series_ticker)]
                tickers += [m["ticker"] async for m in rest.historical_markets(series_ticker=series_ticker)]
            tickers = sorted(set(tickers))
            with tqdm(desc="trades", unit="trade", file=self.stderr._out) as bar:
                bar.set_postfix(markets=len(tickers))
                return await trades_backfill(rest, start=start, end=end, tickers=tickers, on_page=bar.update)
