"""`manage.py prune_raw_archive`: delete raw-archive days older than the retention."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from collector.config import CollectorConfig
from collector.raw_archive import OFF, archive_prune
from markets.objectstore import location_from_url


class Command(BaseCommand):
    help = (
        "Delete the raw archive's files of days older than RAW_ARCHIVE_RETENTION_DAYS "
        "(0 or unset: keep everything). Run it daily from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None,
                            help="Keep this many days instead of RAW_ARCHIVE_RETENTION_DAYS.")

    def handle(self, *args, **options):
        config = CollectorConfig.from_settings()
        if config.raw_archive_url.lower() == OFF:
            self.stdout.write("the raw archive is off; nothing to prune")
            return
        days = options["days"] if options["days"] is not None else config.raw_archive_retention_days
        if days <= 0:
            self.stdout.write("retention 0: the raw archive is kept forever")
            return
        deleted = archive_prune(location_from_url(config.raw_archive_url), keep_days=days)
        self.stdout.write(f"deleted {len(deleted)} file(s) older than {days} days")
