"""Write the record as day files: a hive-partitioned Parquet or gzip CSV dataset.

    python manage.py export --start-date 2026-11-23 --end-date 2026-11-23 \\
        [--markets A,B | --series KXHIGHNY] [--types deltas,trades] \\
        --format parquet --out /data/kalshi

See markets/export.py for the layout and docs/bulk.md for reading it.
"""

from datetime import date, timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from markets.export import FORMATS, TABLE_NAMES, export_dataset, series_tickers
from markets.models import Market

# Backtesting engines' own formats, per market and day (docs/engines.md).
ENGINE_FORMATS = ("hftbacktest", "nautilus")


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise CommandError("an empty list was given")
    return names


class Command(BaseCommand):
    help = "Export deltas, trades, snapshots, lifecycle, gaps and settlements as day files."

    def add_arguments(self, parser):
        parser.add_argument("--start-date", required=True, help="First UTC day (YYYY-MM-DD).")
        parser.add_argument("--end-date", required=True,
                            help="Last UTC day, included (YYYY-MM-DD).")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--markets", help="Comma-separated market tickers (default: all).")
        which.add_argument("--series", help="A series ticker: all of its markets.")
        parser.add_argument("--types", default=",".join(TABLE_NAMES),
                            help=f"Comma-separated tables (default: {','.join(TABLE_NAMES)}).")
        parser.add_argument("--format", choices=FORMATS + ENGINE_FORMATS, default="parquet",
                            help="parquet (zstd, exact decimals), csv (gzip), or an "
                                 "engine's own: hftbacktest (.npz per market and day) or "
                                 "nautilus (a NautilusTrader ParquetDataCatalog).")
        parser.add_argument("--out", default=None,
                            help="Dataset folder (default: the EXPORT_DIR setting).")

    def handle(self, *args, **options):
        start, end = _day(options["start_date"]), _day(options["end_date"])
        if end < start:
            raise CommandError("--end-date is before --start-date")
        tables = _names(options["types"])
        unknown = set(tables) - set(TABLE_NAMES)
        if unknown:
            raise CommandError(f"unknown --types: {', '.join(sorted(unknown))}; "
                               f"choose from {', '.join(TABLE_NAMES)}")
        tickers = _names(options["markets"])
        if options["series"]:
            tickers = series_tickers(options["series"])
            if not tickers:
                raise CommandError(f"no markets known for series {options['series']!r}")
        out = Path(options["out"] or settings.EXPORT_DIR)
        if options["format"] in ENGINE_FORMATS:
            return self._engine(options["format"], start, end, tickers, out)

        files = ((end - start).days + 1) * len(tables)
        with tqdm(total=files, unit="file", desc="export", file=self.stderr._out) as bar:
            totals = {"rows": 0, "bytes": 0}

            def progress(exported):
                totals["rows"] += exported.rows
                totals["bytes"] += exported.bytes
                bar.set_postfix_str(f"{exported.table} {exported.day} {exported.rows} rows")
                bar.update()

            try:
                written = export_dataset(start_date=start, end_date=end, out_dir=out,
                                         fmt=options["format"], tickers=tickers,
                                         tables=tables, progress=progress)
            except ValueError as exc:  # a day moved to the lake
                raise CommandError(str(exc)) from None
        self.stdout.write(
            f"wrote {len(written)} files, {totals['rows']} rows, "
            f"{totals['bytes'] / 1e6:.1f} MB under {out}"
        )

    def _engine(self, fmt, start, end, tickers, out):
        if fmt == "hftbacktest":
            from markets.export_hftbacktest import export_hftbacktest_day as export_day
        else:
            from markets.export_nautilus import export_nautilus_day as export_day
        if tickers is None:
            tickers = list(Market.objects.order_by("ticker").values_list("ticker", flat=True))
        days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
        written = 0
        with tqdm(total=len(days) * len(tickers), unit="file", desc=fmt,
                  file=self.stderr._out) as bar:
            for day in days:
                for ticker in tickers:
                    try:
                        done = export_day(market_ticker=ticker, day=day, out_dir=out)
                    except ImportError as exc:  # the engine is an optional install
                        raise CommandError(f"{fmt} is not installed: {exc}") from exc
                    written += done is not None
                    bar.set_postfix_str(f"{ticker} {day}")
                    bar.update()
        self.stdout.write(f"wrote {written} {fmt} market-days under {out / fmt} "
                          "(days without data are skipped)")
