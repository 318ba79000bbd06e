"""Report the partitioned storage's health; exit 1 when it needs attention."""

from django.core.management.base import BaseCommand, CommandError

from collector.config import CollectorConfig
from collector.raw_archive import OFF
from markets.objectstore import location_from_url
from markets.record.lake import lake_report
from markets.storage import packs_report, raw_archive_report, storage_report


class Command(BaseCommand):
    help = (
        "Report, per partitioned table, the partitions present, the days covered "
        "ahead of today, holes, and rows in any DEFAULT partition. Exits 1 when "
        "a table needs attention (for monitoring). Also the raw archive's size per "
        "day and the hours a collector ran with no raw archive file (exit 1 too), "
        "and the days in the Parquet lake, with any written but not verified, or given rows "
        "after it left PostgreSQL (exit 1), and the closed days whose deltas are not "
        "packed yet (exit 1 past yesterday's)."
    )

    def handle(self, *args, **options):
        reports = storage_report()
        for r in reports:
            status = "ok" if r.healthy else "ATTENTION"
            self.stdout.write(
                f"{r.table}: {status} partitioned={r.is_partitioned} "
                f"partitions={len(r.partitions)} "
                f"from={r.first_day} to={r.last_day} days_ahead={r.days_ahead} "
                f"missing_days={len(r.missing_days)} "
                f"default_partition={r.default_partition or 'none'} "
                f"rows_in_default={r.rows_in_default}"
            )
            for day in r.missing_days[:10]:
                self.stdout.write(f"  missing partition for {day}")
        packed = self._packs()
        raw = self._raw_archive()
        lake = self._lake()
        if not all(r.healthy for r in reports):
            raise CommandError(
                "storage needs attention: run `python manage.py pgpartition --yes`"
            )
        if not packed.healthy:
            raise CommandError(
                f"packing needs attention: {len(packed.overdue)} closed day(s) hold loose deltas; "
                "run `python manage.py archive` (daily)"
            )
        if raw is not None and not raw.healthy:
            raise CommandError(
                f"raw archive needs attention: {len(raw.missing_hours)} hour(s) a collector "
                "ran have no archive file"
            )
        if not lake.healthy:
            raise CommandError(
                f"lake needs attention: {len(lake.unverified)} day(s) written but not verified, "
                f"{len(lake.late)} with rows not in their file; run `python manage.py archive` again"
            )

    def _packs(self):
        """Closed days' deltas go into chunks, several to a row (docs/storage.md)."""
        report = packs_report()
        status = "ok" if report.healthy else "ATTENTION"
        days = report.packed_days
        span = f"from={days[0]} to={days[-1]}" if days else "from=None to=None"
        self.stdout.write(
            f"orderbook_delta_packs: {status} packed_days={len(days)} {span} "
            f"closed_days_with_loose_deltas={len(report.loose_days)}"
        )
        for day in report.overdue[:20]:
            self.stdout.write(f"  {day}: deltas NOT PACKED (about 4 times the bytes)")
        return report

    def _lake(self):
        """Hot days are the partitions above; archived ones are in the lake."""
        report = lake_report()
        status = "ok" if report.healthy else "ATTENTION"
        days = sorted({d.day for d in report.verified})
        span = f"from={days[0]} to={days[-1]}" if days else "from=None to=None"
        self.stdout.write(
            f"lake: {status} url={report.url} archived_days={len(days)} {span} "
            f"files={len(report.verified)} bytes={sum(d.bytes for d in report.verified)} "
            f"still_in_postgresql={sum(1 for d in report.verified if d.dropped_at is None)} "
            f"unverified={len(report.unverified)} late_rows_days={len(report.late)}"
        )
        for day in report.unverified[:20]:
            self.stdout.write(f"  {day.table} {day.day}: written {day.written_at:%Y-%m-%d %H:%M} "
                              "UTC, NOT VERIFIED")
        for table, day in report.late[:20]:
            self.stdout.write(f"  {table} {day}: rows landed after it left PostgreSQL, NOT IN "
                              "ITS FILE (the API serves them; the next archive folds them in)")
        return report

    def _raw_archive(self):
        url = CollectorConfig.from_settings().raw_archive_url
        if url.lower() == OFF:
            self.stdout.write("raw archive: off")
            return None
        report = raw_archive_report(location_from_url(url))
        status = "ok" if report.healthy else "ATTENTION"
        self.stdout.write(
            f"raw archive: {status} url={report.url} files={report.files} "
            f"bytes={report.total_bytes} days={len(report.bytes_by_day)} "
            f"missing_hours={len(report.missing_hours)}"
        )
        for day, size in report.bytes_by_day.items():
            self.stdout.write(f"  {day}: {size} bytes")
        for hour in report.missing_hours[:24]:
            self.stdout.write(f"  missing hour {hour:%Y-%m-%d %H}:00 UTC (a collector ran)")
        return report
