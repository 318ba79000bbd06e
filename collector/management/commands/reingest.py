"""`manage.py reingest`: rebuild a window of the record from the raw archive."""

from __future__ import annotations

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from collector.config import CollectorConfig
from collector.raw_archive import OFF
from collector.reingest import reingest
from markets.objectstore import location_from_url
from markets.services import parse_time


def _time(value: str) -> datetime:
    try:
        return parse_time(value)
    except ValueError:
        raise CommandError(f"not a time: {value!r} (ISO 8601, e.g. 2026-11-24T00:00:00Z, or Unix seconds)")


class Command(BaseCommand):
    help = (
        "Rebuild the deltas, snapshots, trades, lifecycle rows and gaps of [start, end) "
        "from the raw archive through the collector's own pipeline, and repair the "
        "stored rows to match (the rule: collector/reingest.py). Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--start", required=True,
                            help="Start of the window, ISO 8601 (UTC if no zone) or Unix seconds.")
        parser.add_argument("--end", required=True, help="End of the window (exclusive), same formats.")
        parser.add_argument("--markets", action="append", default=[], metavar="TICKER[,TICKER]",
                            help="Only these markets' rows (repeat or comma-separate); default all.")
        parser.add_argument("--archive", default=None,
                            help="The archive's root (path or URL); default RAW_ARCHIVE_URL.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options):
        start, end = _time(options["start"]), _time(options["end"])
        if end <= start:
            raise CommandError(f"--end ({end.isoformat()}) must be after --start ({start.isoformat()})")
        url = options["archive"] or CollectorConfig.from_settings().raw_archive_url
        if not url or url.lower() == OFF:
            raise CommandError("the raw archive is off (RAW_ARCHIVE_URL=off): nothing to re-ingest from")
        markets = [t.strip() for v in options["markets"] for t in v.split(",") if t.strip()]
        report = reingest(location=location_from_url(url), start=start, end=end,
                          markets=markets or None, progress=not options["no_progress"])
        self.stdout.write(
            f"replayed {report.frames:,} frames ({report.records:,} records, {report.hours} hour files "
            f"of {report.streams} collector(s); {report.skipped:,} frames of sessions begun earlier "
            f"skipped); {report.read.truncated_files} file(s) cut short"
        )
        for table in sorted(set(report.rows_rebuilt) | set(report.deleted) | set(report.inserted)):
            self.stdout.write(
                f"  {table}: rebuilt {report.rows_rebuilt[table]:,}, deleted {report.deleted[table]:,}, "
                f"inserted {report.inserted[table]:,}"
            )
        self.stdout.write("changed nothing" if report.changed == 0 else f"changed {report.changed:,} rows")
