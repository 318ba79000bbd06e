"""Rebuilding a book at an instant from snapshots, checkpoints and deltas."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from markets import ingest
from markets.book import OrderBook
from markets.models import SequenceGap
from markets.replay import book_at

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 23, 23, 59, 59, tzinfo=timezone.utc)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def delta(seconds, seq, side, price, size, session=1):
    return ("M", at(seconds), session, 2, seq, side, D(price), D(size), None)


def test_no_data_before_the_first_snapshot():
    result = book_at("M", at(0))
    assert result.snapshot is None and not result.complete


def test_snapshot_plus_deltas_across_midnight():
    ingest.snapshots_ingest([("M", at(0), 1, 2, 1, "subscribe", [["0.4000", "10.00"]], [], None)])
    ingest.deltas_ingest([
        delta(0.5, 2, "yes", "0.4000", "-4.00"),
        delta(1.5, 3, "no", "0.5500", "2.50"),  # after midnight UTC
        delta(3, 4, "yes", "0.4100", "1.00"),
    ])
    result = book_at("M", at(2))
    assert result.complete and result.deltas_applied == 2
    assert result.book == OrderBook.from_levels([["0.4000", "6.00"]], [["0.5500", "2.50"]])


def test_a_checkpoint_is_the_starting_point_and_not_applied_twice():
    ingest.snapshots_ingest([("M", at(0), 1, 2, 1, "subscribe", [["0.4000", "10.00"]], [], None)])
    ingest.deltas_ingest([delta(1, 2, "yes", "0.4000", "5.00"), delta(2, 3, "yes", "0.4000", "1.00")])
    # Checkpoint written after seq 2, sharing its key.
    ingest.snapshots_ingest([("M", at(1), 1, 2, 2, "checkpoint", [["0.4000", "15.00"]], [], None)])
    result = book_at("M", at(2))
    assert result.snapshot.source == "checkpoint"
    assert result.deltas_applied == 1
    assert result.book.yes == {D("0.4000"): D("16.00")}


def test_inside_a_gap_the_book_is_incomplete_until_the_resync():
    ingest.snapshots_ingest([("M", at(0), 1, 2, 1, "subscribe", [["0.4000", "10.00"]], [], None)])
    gap = SequenceGap.objects.create(
        market_ticker="M", session_id=1, sid=2, expected_seq=2, received_seq=5,
        detected_at=at(1), recovered_at=at(3),
    )
    ingest.snapshots_ingest([("M", at(3), 1, 2, 6, "resync", [["0.3000", "1.00"]], [], None)])
    inside = book_at("M", at(2))
    assert not inside.complete and inside.gap == gap
    after = book_at("M", at(3))
    assert after.complete and after.book.yes == {D("0.3000"): D("1.00")}
