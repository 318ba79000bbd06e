"""Every read of the API answers the same once closed days' deltas are packed.

The record of test_lake_reads (two UTC days, both sessions, a gap, fractional
sizes, deltas without an exchange time) is read through every endpoint; then
both days are packed into chunks (markets/record/packs.py) small enough that
books at the sampled instants, pages of /deltas and the midnight fall inside
chunks, and every request is made again; then the older day is archived to
the lake from its chunks, and the requests are made once more.
"""

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.db import connection

from markets import ingest
from markets.models import LakeDay
from markets.partitioning import pack_closed_days
from markets.record import packs
from tests.backtest_api.test_lake_reads import NEW, OLD, _answers, record  # noqa: F401
from tests.recorded import HOT

pytestmark = pytest.mark.django_db
US = timedelta(microseconds=1)


def _count(sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def test_every_endpoint_answers_the_same_after_the_days_are_packed(client, record, monkeypatch):
    monkeypatch.setattr(packs, "MAX_DELTAS", 7)
    monkeypatch.setattr(packs, "SPAN", timedelta(seconds=10))
    monkeypatch.setattr(packs, "PACK_MARKETS", 1)  # each market its own statement
    # Deltas without an exchange time, one a microsecond before midnight.
    midnight = datetime(NEW.year, NEW.month, NEW.day, tzinfo=timezone.utc)
    session = _count("SELECT max(session_id) FROM orderbook_deltas")
    ingest.deltas_append([
        (HOT, at, session, 1, 1, side, D("0.4200"), D("0.37"), None)
        for at, side in ((record.instants[300] + US, "yes"), (midnight - US, "no"),
                         (record.instants[-50] + US, "yes"))])
    before = _answers(client, record)
    assert len(before[f"deltas {HOT}"]) > 10
    loose = _count("SELECT count(*) FROM orderbook_delta_rows")
    assert _count("SELECT count(*) FROM orderbook_deltas WHERE ts IS NULL") > 0

    pack_closed_days(today=NEW + timedelta(days=1))
    assert _count("SELECT count(*) FROM orderbook_delta_rows") == 0
    assert _count(f"SELECT sum(deltas) FROM {packs.TABLE}") == loose
    # Chunks are cut by count and by stretch, never across midnight.
    assert _count(f"SELECT max(deltas) FROM {packs.TABLE}") == 7
    assert _count(f"SELECT count(*) FROM {packs.TABLE} WHERE last_at - first_at >= "
                  "interval '10 seconds' OR first_at::date <> last_at::date") == 0
    assert _count(f"SELECT count(*) FROM {packs.TABLE} WHERE deltas < 7") > 2

    after = _answers(client, record)
    assert after.keys() == before.keys()
    assert [request for request in before if after[request] != before[request]] == []

    # The lake archives a packed day from its chunks, and drops them with it.
    today = datetime.now(timezone.utc).date()
    call_command("archive", "--older-than", f"{(today - NEW).days}d")
    archived = LakeDay.objects.get(table="deltas", day=OLD)
    assert archived.dropped_at and archived.rows > 0
    assert _count(f"SELECT count(*) FROM {packs.TABLE} "
                  f"WHERE first_at < '{midnight.isoformat()}'") == 0
    archived_answers = _answers(client, record)
    assert [request for request in before if archived_answers[request] != before[request]] == []
