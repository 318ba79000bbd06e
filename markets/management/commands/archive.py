"""Move closed days of the record to the Parquet lake (markets/record/lake.py).

    python manage.py archive --older-than 7d [--dry-run] [--keep-partitions]

For every day of deltas, snapshots and trades older than that, not yet in the
lake (or dropped, then given late rows: the file's rows are folded back into
the partition first, markets/record/lake.py): write its Parquet file, verify
it against the database market by market, and record it; then detach and
drop the partition of every verified day (the API reads it from the lake),
unless --keep-partitions. Last, pack the indexes of each closed day still in
PostgreSQL, once (markets/partitioning.py, pack_closed_days). A cron line
(README) runs it daily. Exits 1 if a day did not verify: its file is not put
in the lake, its partition is kept, and the next run tries again.
"""

from django.core.management.base import BaseCommand, CommandError

from markets.models import LakeDay
from markets.record.lake import (
    archive_day,
    days_to_archive,
    days_to_drop,
    days_with_late_rows,
    drop_day,
    fold_late_rows,
    lake_location,
)
from markets.candles import parse_interval
from markets.partitioning import pack_closed_days


class Command(BaseCommand):
    help = "Write and verify closed days of deltas, snapshots and trades in the Parquet lake (LAKE_URL)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", default="7d",
                            help="Archive days that ended at least this long ago: 7d, 36h (default 7d).")
        parser.add_argument("--dry-run", action="store_true", help="List the days; write nothing.")
        parser.add_argument("--keep-partitions", action="store_true",
                            help="Write and verify, but keep the days' partitions in PostgreSQL.")

    def handle(self, *args, **options):
        try:
            older_than = parse_interval(options["older_than"])
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        for table, day in days_with_late_rows(older_than):
            if options["dry_run"]:
                self.stdout.write(f"  {table.name} {day}: rows landed after the drop; "
                                  "the day would be archived again")
                continue
            moved = fold_late_rows(table, day)
            self.stdout.write(f"  {table.name} {day}: rows landed after the drop; "
                              + (f"{moved:,} rows of its file folded back, archiving it again"
                                 if moved else "its partition was empty and is dropped again"))
        todo = days_to_archive(older_than)
        location = lake_location()
        self.stdout.write(f"{len(todo)} day(s) to archive to {location.url}")
        failed = 0
        for table, day in todo:
            if options["dry_run"]:
                self.stdout.write(f"  {table.name} {day}")
                continue
            done = archive_day(table, day, location)
            if done.verified:
                self.stdout.write(f"  {table.name} {day}: {done.rows:,} rows, {done.bytes:,} bytes, "
                                  f"{done.markets:,} markets, verified")
                continue
            failed += 1
            self.stderr.write(f"  {table.name} {day}: DID NOT VERIFY for {len(done.mismatches)} "
                              f"market(s), e.g. {done.mismatches[0]}")
        if not options["dry_run"] and not options["keep_partitions"]:
            for table, day in days_to_drop(older_than):
                if drop_day(table, day):
                    self.stdout.write(f"  {table.name} {day}: partition dropped")
                    continue
                failed += 1
                LakeDay.objects.filter(table=table.name, day=day).update(verified_at=None)
                self.stderr.write(f"  {table.name} {day}: rows changed since verification; "
                                  "partition kept, the next run archives the day again")
        if not options["dry_run"]:
            for name in pack_closed_days():
                self.stdout.write(f"  {name}: indexes packed")
        if failed:
            raise CommandError(f"{failed} day(s) did not verify; they stay out of the lake")
