"""check_storage on the raw archive: its size per day and the hours a collector ran without a file."""

import io
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from markets.models import CollectorRun
from markets.objectstore import location_from_url
from markets.storage import raw_archive_report

pytestmark = pytest.mark.django_db

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
DAY_AGO = NOW - timedelta(days=1)


def archive_file(root: Path, hour: datetime, name="c-1-1", size=100) -> None:
    path = root / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}" / f"{name}.jsonl.zst"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def a_run(start: datetime, stop: datetime | None, durable: datetime | None = None) -> None:
    CollectorRun.objects.create(id=int(start.timestamp() * 1e6), instance="/j", started_at=start,
                                stopped_at=stop, durable_at=durable, clean=stop is not None)


def test_an_hour_a_collector_ran_without_a_file_is_reported():
    root = Path(os.environ["RAW_ARCHIVE_URL"])
    # 10:20 .. 13:30 a day ago: hours 10, 11, 12, 13 expected; 12 has no file.
    start = DAY_AGO.replace(hour=10) + timedelta(minutes=20)
    a_run(start, start + timedelta(hours=3, minutes=10))
    for hour in (10, 11, 13):
        archive_file(root, DAY_AGO.replace(hour=hour))
    # A crashed run is checked up to its durable watermark: 15 (and not 16).
    crashed = DAY_AGO.replace(hour=15)
    a_run(crashed, None, durable=crashed + timedelta(minutes=30))
    archive_file(root, crashed, size=50)

    report = raw_archive_report(location_from_url(str(root)))
    assert report.missing_hours == [DAY_AGO.replace(hour=12)]
    assert report.bytes_by_day == {DAY_AGO.date(): 350} and report.files == 4

    out = io.StringIO()
    with pytest.raises(CommandError, match="1 hour"):
        call_command("check_storage", stdout=out)
    assert f"missing hour {DAY_AGO:%Y-%m-%d} 12:00 UTC" in out.getvalue()
    assert "raw archive: ATTENTION" in out.getvalue()


def test_every_hour_present_is_healthy_and_the_size_is_reported():
    root = Path(os.environ["RAW_ARCHIVE_URL"])
    start = DAY_AGO.replace(hour=3)
    a_run(start, start + timedelta(hours=1, seconds=50))  # 50 s into hour 4: not an hour it ran
    archive_file(root, start, size=1234)
    out = io.StringIO()
    call_command("check_storage", stdout=out)
    assert "raw archive: ok" in out.getvalue() and "bytes=1234" in out.getvalue()
