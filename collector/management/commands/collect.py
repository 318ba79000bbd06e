"""`manage.py collect`: record Kalshi order books, trades, lifecycle and settlements."""

from __future__ import annotations

import asyncio
import signal

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from collector.catalog import Shard
from collector.config import CollectorConfig
from collector.discovery import Selection
from collector.rest import KalshiRestError
from collector.runner import STATS_EVERY_S, collect
from collector.writer import WriterFailure


def _tickers(values: list[str]) -> list[str]:
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


class Command(BaseCommand):
    help = (
        "Record Kalshi live: order-book snapshots and deltas, trades, market lifecycle "
        "and settlements, into PostgreSQL. Stops cleanly on SIGINT/SIGTERM or after --duration."
    )

    def add_arguments(self, parser):
        parser.add_argument("--series", action="append", default=[], metavar="TICKER[,TICKER]",
                            help="Record the open markets of these series, including markets created later "
                                 "(repeat or comma-separate). Default: every open market.")
        parser.add_argument("--markets", action="append", default=[], metavar="TICKER[,TICKER]",
                            help="Record these markets (repeat or comma-separate); with --series, both.")
        parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                            help="Stop cleanly after this many seconds (default: run until stopped).")
        parser.add_argument("--shard", default=None, metavar="i/N",
                            help="Record only share i of N (0 <= i < N) of the markets, chosen by event "
                                 "ticker with a stable hash: N processes (or hosts) writing to one database "
                                 "record every market exactly once.")
        parser.add_argument("--combos", choices=("exclude", "include"), default=None,
                            help="Multivariate (combo) markets: exclude (default; sends mve_filter=exclude) "
                                 "or include (and follow multivariate_market_lifecycle).")
        parser.add_argument("--stats-every", type=float, default=STATS_EVERY_S, metavar="SECONDS",
                            help="Log a stats line (rates, rows, lag, gaps, reconnects) this often.")

    def handle(self, *args, **options):
        selection = Selection.of(series=_tickers(options["series"]), markets=_tickers(options["markets"]))
        if options["duration"] is not None and options["duration"] <= 0:
            raise CommandError("--duration must be positive")
        try:
            shard = Shard.parse(options["shard"]) if options["shard"] else None
        except ValueError as exc:
            raise CommandError(str(exc))
        overrides = {"combos": options["combos"]} if options["combos"] else {}
        try:
            config = CollectorConfig.from_settings(**overrides)
            asyncio.run(self._run(selection, options["duration"], options["stats_every"], shard, config))
        except (ImproperlyConfigured, KalshiRestError) as exc:
            raise CommandError(str(exc))
        except (WriterFailure, OSError) as exc:
            # Nothing can be stored (journal unusable, PostgreSQL away): exit
            # non-zero so that a supervisor restarts the collector.
            raise CommandError(f"collector cannot store what it records: {exc}")

    async def _run(self, selection, duration, stats_every, shard, config):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await collect(selection=selection, stop=stop, duration=duration, stats_every=stats_every,
                      shard=shard, config=config)
