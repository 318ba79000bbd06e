"""The raw archive: what the pipeline saw, verbatim, in hourly zstd files, read back tolerantly."""

from datetime import datetime, timedelta, timezone

import pytest

from collector.config import CollectorConfig
from collector.pipeline import Pipeline
from collector.raw_archive import (
    RawArchive,
    ReadStats,
    archive_files,
    archive_prune,
    frame_text,
    read_records,
    to_us,
)
from markets.objectstore import location_from_url

from . import frames as f

T0 = datetime(2026, 12, 4, 12, 59, 59, 900_000, tzinfo=timezone.utc)


class DiscardWriter:
    """Rows go nowhere: these tests look at the archive only."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class StepClock:
    def __init__(self, start=T0, step=timedelta(milliseconds=30)):
        self.now, self.step = start, step

    def __call__(self):
        self.now += self.step
        return self.now


def stream_frames(n_deltas=20):
    yield f.subscribed(1, "orderbook_delta", 7)
    yield f.snapshot(7, 1, "MKT-A", yes=[["0.4000", "10.00"]], no=[["0.5000", "5.00"]])
    for i in range(n_deltas):
        yield f.delta(7, 2 + i, "MKT-A", "yes", "0.3900", "1.00")


def archive_session(tmp_path, frames, clock=None):
    """Frames through a pipeline with an archive tap; returns (archive, stamps used)."""
    archive = RawArchive(location_from_url(str(tmp_path / "raw")), config=CollectorConfig(),
                         stream="test-1-1")
    pipeline = Pipeline(DiscardWriter(), CollectorConfig(), clock=clock or StepClock())
    archive.state = pipeline.state
    pipeline.archive = archive.tap("0")
    pipeline.start_session(42)
    pipeline.expect_subscription(1, "orderbook_delta", ["MKT-A"])
    stamps = []
    for raw in frames:
        pipeline.handle(raw)
        stamps.append(pipeline.last_frame_at)
    pipeline.end_session()
    return archive, stamps


def all_records(location):
    files = archive_files(location, T0 - timedelta(days=1), T0 + timedelta(days=1))
    for hour in sorted(files):
        for relative, _ in files[hour]:
            yield from read_records(location, relative)


def test_every_frame_is_kept_verbatim_with_its_stamp_across_hours(tmp_path):
    sent = list(stream_frames())
    archive, stamps = archive_session(tmp_path, sent)
    archive.close()
    location = location_from_url(str(tmp_path / "raw"))
    files = archive_files(location, T0 - timedelta(hours=1), T0 + timedelta(hours=2))
    # The stamps cross 13:00 UTC: one file per hour, hive-style.
    assert sorted(h.hour for h in files) == [12, 13]
    assert [r for r, _ in files[T0.replace(minute=0, second=0, microsecond=0)]] == [
        "date=2026-12-04/hour=12/test-1-1.jsonl.zst"
    ]
    records = list(all_records(location))
    kept = [(frame_text(r), r["at"], r["s"], r["c"]) for r in records if r["k"] == "f"]
    assert kept == [(raw, to_us(at), 42, "0") for raw, at in zip(sent, stamps)]
    kinds = [r["k"] for r in records]
    assert kinds[0] == "hour" and kinds[1] == "start" and kinds[2] == "expect"
    assert kinds[-1] == "end"
    second_header = next(r for r in records[1:] if r["k"] == "hour")
    assert second_header["open"] == {"0": [42, to_us(T0 + timedelta(milliseconds=30))]}
    assert second_header["config"]["checkpoint_every_deltas"] == CollectorConfig().checkpoint_every_deltas


def test_synced_frames_survive_a_cut_file_and_the_reader_does_not_raise(tmp_path):
    sent = list(stream_frames(200))
    clock = StepClock(start=datetime(2026, 12, 4, 10, tzinfo=timezone.utc))
    archive, _ = archive_session(tmp_path, sent[:100], clock)
    archive.sync()  # what the writer does before it journals a batch
    path = next((tmp_path / "raw").rglob("*.zst"))
    synced = path.stat().st_size
    location = location_from_url(str(tmp_path / "raw"))
    whole = [r for r in read_records(location, path.relative_to(tmp_path / "raw").as_posix())]
    # More frames, compressed and written but the file cut mid-block, as a kill -9 leaves it.
    pipeline = Pipeline(DiscardWriter(), CollectorConfig(), clock=clock)
    pipeline.archive = archive.tap("1")
    pipeline.start_session(43)
    for raw in sent[100:]:
        pipeline.handle(raw)
    archive.sync()
    grown = path.read_bytes()
    assert len(grown) > synced
    for cut in (synced, synced + 1, synced + (len(grown) - synced) // 2, len(grown) - 1):
        path.write_bytes(grown[:cut])
        stats = ReadStats()
        got = list(read_records(location, path.relative_to(tmp_path / "raw").as_posix(), stats))
        assert got[: len(whole)] == whole  # nothing synced is lost
        assert len(got) < len(whole) + 1 + len(sent) - 100 + 1
    # Garbage after the last good block (a torn write) is tolerated too.
    path.write_bytes(grown[:synced] + b"\x00garbage" * 10)
    stats = ReadStats()
    assert list(read_records(location, path.relative_to(tmp_path / "raw").as_posix(), stats)) == whole
    assert stats.truncated_files == 1


def test_a_malformed_frame_is_archived_as_received(tmp_path):
    sent = [f.subscribed(1, "orderbook_delta", 7), '{"type": "orderbook_delta", "sid": 7, "seq": 1, "msg": ',
            "not json at all \u00e9"]
    archive, _ = archive_session(tmp_path, sent)
    archive.close()
    records = list(all_records(location_from_url(str(tmp_path / "raw"))))
    assert [frame_text(r) for r in records if r["k"] == "f"] == sent


def test_prune_deletes_only_days_past_the_retention(tmp_path):
    location = location_from_url(str(tmp_path / "raw"))
    for day in ("2026-11-01", "2026-11-30", "2026-12-04"):
        path = tmp_path / "raw" / f"date={day}" / "hour=00" / "x.jsonl.zst"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    now = datetime(2026, 12, 4, 12, tzinfo=timezone.utc)
    assert archive_prune(location, keep_days=0, now=now) == []
    deleted = archive_prune(location, keep_days=7, now=now)
    assert deleted == ["date=2026-11-01/hour=00/x.jsonl.zst"]
    assert [r for r, _ in location.files()] == [
        "date=2026-11-30/hour=00/x.jsonl.zst", "date=2026-12-04/hour=00/x.jsonl.zst"
    ]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["date=2026-11-30", "date=2026-12-04"]


@pytest.mark.parametrize("value", ["off", "OFF", ""])
def test_the_archive_can_be_switched_off(value):
    assert RawArchive.from_config(CollectorConfig(raw_archive_url=value)) is None


def test_stamps_are_kept_to_the_microsecond(tmp_path):
    clock = StepClock(start=datetime(2026, 12, 4, 9, 0, 0, 999_998, tzinfo=timezone.utc),
                      step=timedelta(microseconds=999_999))
    archive, stamps = archive_session(tmp_path, list(stream_frames(40)), clock)
    archive.close()
    records = list(all_records(location_from_url(str(tmp_path / "raw"))))
    assert [r["at"] for r in records if r["k"] == "f"] == [to_us(at) for at in stamps]
    assert max(at.microsecond for at in stamps) >= 999_950  # the edge a float could round over


def test_an_object_store_root_gets_each_finished_hour_uploaded_from_the_spool(tmp_path):
    """An object store cannot be fsynced: files are spooled locally, uploaded when finished."""
    from pyarrow import fs as pafs

    from markets.objectstore import Location

    store = Location("mock:///bucket/raw", pafs.FileSystem.from_uri("mock:///bucket/raw")[0], "bucket/raw")
    spool = tmp_path / "spool"
    # What a crashed process left in the spool goes up at the next start.
    leftover = spool / "date=2026-12-03/hour=23/old-1-1.jsonl.zst"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"")
    archive = RawArchive(store, config=CollectorConfig(), stream="test-1-1", spool_dir=spool)
    assert not leftover.exists()
    pipeline = Pipeline(DiscardWriter(), CollectorConfig(), clock=StepClock())
    pipeline.archive = archive.tap("0")
    pipeline.start_session(42)
    sent = list(stream_frames())
    for raw in sent:  # across 13:00: the 12:00 file is finished and uploaded
        pipeline.handle(raw)
        archive.sync()
    assert [r for r, _ in store.files("date=2026-12-04")] == ["date=2026-12-04/hour=12/test-1-1.jsonl.zst"]
    archive.close()
    assert [r for r, _ in store.files()] == [
        "date=2026-12-03/hour=23/old-1-1.jsonl.zst",
        "date=2026-12-04/hour=12/test-1-1.jsonl.zst",
        "date=2026-12-04/hour=13/test-1-1.jsonl.zst",
    ]
    assert not list(spool.rglob("*.zst"))
    records = [r for relative, _ in store.files("date=2026-12-04") for r in read_records(store, relative)]
    assert [frame_text(r) for r in records if r["k"] == "f"] == sent


def test_a_failing_archive_disk_never_fails_the_frame(tmp_path, monkeypatch):
    """The rows matter more than their raw frames: a write error is logged and counted."""
    import collector.raw_archive as raw_archive

    monkeypatch.setattr(raw_archive, "MAX_WAITING_LINES", 5)
    (tmp_path / "raw").write_text("a file where the archive's directory should be")
    archive = RawArchive(location_from_url(str(tmp_path / "raw")), config=CollectorConfig(), stream="t-1-1")
    pipeline = Pipeline(DiscardWriter(), CollectorConfig(), clock=StepClock())
    pipeline.archive = archive.tap("0")
    pipeline.start_session(42)
    for raw in stream_frames():
        pipeline.handle(raw)
    assert archive.counters["write_failures"] > 0
    assert pipeline.stats()["frames"] == 22
