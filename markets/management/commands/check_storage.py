"""Report the partitioned storage's health; exit 1 when it needs attention."""

from django.core.management.base import BaseCommand, CommandError

from markets.storage import storage_report


class Command(BaseCommand):
    help = (
        "Report, per partitioned table, the partitions present, the days covered "
        "ahead of today, holes, and rows in any DEFAULT partition. Exits 1 when "
        "a table needs attention (for monitoring)."
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
        if not all(r.healthy for r in reports):
            raise CommandError(
                "storage needs attention: run `python manage.py pgpartition --yes`"
            )
