"""spark/lake_job.py: Spark, over the exported Parquet record, answers as the API does."""

import logging
from datetime import date, datetime, time, timedelta
from decimal import Decimal as D

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from markets import ingest
from markets.models import Market
from spark import lake_job
from tests.backtest_api.conftest import data_of
from tests.backtest_api.test_candles import M, T0, iso, make_trades

from .uncrossed import MARKET, OTHER, record_engine_day

pytestmark = pytest.mark.django_db

DELTA_DAY = date(2026, 11, 20)


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    # py4j logs "Closing down clientserver connection" from __del__ at exit,
    # after pytest has closed the streams its handlers write to.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # One local core, few shuffle partitions: the data is small.
    session = (
        SparkSession.builder.master("local[1]").appName("kalshi-lake-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    yield session
    session.stop()


def _text(value, places):
    return None if value is None else str(D(value).quantize(D(1).scaleb(-places)))


def _api_shape(row) -> dict:
    """A Spark candle row in the API's JSON shape."""
    return {
        "start": iso(row["start"].replace(tzinfo=T0.tzinfo)),
        "end": iso(row["start"].replace(tzinfo=T0.tzinfo) + timedelta(minutes=1)),
        "open": _text(row["open"], 4), "high": _text(row["high"], 4),
        "low": _text(row["low"], 4), "close": _text(row["close"], 4),
        "volume": _text(row["volume"], 2), "trade_count": row["trade_count"],
        "vwap": _text(row["vwap"], 4),
        "yes_taker_volume": _text(row["taker_yes_volume"], 2),
        "no_taker_volume": _text(row["taker_no_volume"], 2),
        "carried_forward": False,
    }


def test_spark_candles_equal_the_api_across_midnight(spark, api, tmp_path):
    Market.objects.create(ticker=M)
    trades = make_trades(n=900, seed=9)
    ingest.trades_ingest(trades)
    # A trade backfilled late (received hours after it was made) counts in its minute.
    late = T0 + timedelta(minutes=7, seconds=1)
    ingest.trades_ingest([(M, late, "late-1", D("0.9999"), D("0.0001"), D("12.34"), "no",
                           None, None, False, late + timedelta(hours=3), "rest")])
    first, last = T0.date(), (T0 + timedelta(hours=5)).date()
    call_command("export", "--start-date", str(first), "--end-date", str(last),
                 "--types", "trades", "--out", str(tmp_path))

    frame = lake_job.candles_1m(lake_job.read_table(spark, str(tmp_path), "trades"))
    rows = frame.collect()
    start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=5)
    api_candles = data_of(api.get(
        f"/api/v1/candles/{M}?interval=1m&start_time={iso(start)}&end_time={iso(end)}"))["candles"]
    assert [_api_shape(row) for row in rows] == api_candles
    assert len(api_candles) > 60 and sum(c["trade_count"] for c in api_candles) == 901
    assert {row["start"].date() for row in rows} == {first, last}  # both sides of midnight

    # Restricting the days reads only their folders.
    one_day = lake_job.candles_1m(lake_job.read_table(spark, str(tmp_path), "trades",
                                                      start=last, end=last)).collect()
    assert one_day and all(row["start"].date() == last for row in one_day)


def test_spark_vwap_rounds_half_away_from_zero_exactly(spark, api, tmp_path):
    # 0.00005 exactly between two ticks: PostgreSQL rounds it up, and so must Spark.
    Market.objects.create(ticker=M)
    at = T0 + timedelta(seconds=5)
    ingest.trades_ingest([
        (M, at, "a", D("0.5000"), D("0.5000"), D("1.00"), "yes", None, None, False, at, "ws"),
        (M, at, "b", D("0.5001"), D("0.4999"), D("1.00"), "yes", None, None, False, at, "ws"),
    ])
    call_command("export", "--start-date", str(T0.date()), "--end-date", str(T0.date()),
                 "--types", "trades", "--out", str(tmp_path))
    (row,) = lake_job.candles_1m(lake_job.read_table(spark, str(tmp_path), "trades")).collect()
    (candle,) = data_of(api.get(
        f"/api/v1/candles/{M}?interval=1m&start_time={iso(T0)}&end_time={iso(T0 + timedelta(minutes=1))}"
    ))["candles"]
    assert candle["vwap"] == "0.5001" == _text(row["vwap"], 4)


def test_spark_delta_counts_equal_coverage(spark, api, tmp_path):
    record_engine_day(DELTA_DAY)
    call_command("export", "--start-date", str(DELTA_DAY - timedelta(days=1)),
                 "--end-date", str(DELTA_DAY + timedelta(days=1)),
                 "--types", "deltas", "--out", str(tmp_path))
    counts = {(row["market_ticker"], row["date"]): row["deltas"] for row in
              lake_job.delta_counts(lake_job.read_table(spark, str(tmp_path), "deltas")).collect()}
    compared = 0
    for market in (MARKET, OTHER):
        report = data_of(api.get("/api/v1/coverage", {
            "market_ticker": market, "start_date": str(DELTA_DAY - timedelta(days=1)),
            "end_date": str(DELTA_DAY + timedelta(days=1))}))
        for day in report["days"]:
            assert counts.get((market, date.fromisoformat(day["date"])), 0) == day["deltas"]
            compared += day["deltas"]
    assert compared > 100


def test_the_job_runs_as_spark_submit_would(spark, tmp_path):
    """main() writes candles_1m/ (by date) and delta_counts/ where --out says."""
    Market.objects.create(ticker=M)
    ingest.trades_ingest(make_trades(n=50, seed=3))
    lake, out = tmp_path / "lake", tmp_path / "out"
    call_command("export", "--start-date", str(T0.date()), "--end-date",
                 str((T0 + timedelta(days=1)).date()), "--types", "trades,deltas",
                 "--out", str(lake))
    lake_job.main(["--lake", str(lake), "--out", str(out), "--markets", M])
    candles = spark.read.parquet(str(out / "candles_1m"))
    assert candles.count() > 0 and sum(r["trade_count"] for r in candles.collect()) == 50
    assert spark.read.parquet(str(out / "delta_counts")).count() == 0


def test_spark_reads_days_stored_in_milliseconds_and_microseconds(spark, api, tmp_path):
    """Trades before midnight have whole-millisecond times (Kalshi's ts_ms),
    those after it microseconds: the two days' files store them in different
    units, and Spark reads the folder as one table, every time exact."""
    Market.objects.create(ticker=M)
    midnight = datetime.combine(T0.date() + timedelta(days=1), time(0), tzinfo=T0.tzinfo)
    trades = [(t[0], t[1].replace(microsecond=t[1].microsecond // 1000 * 1000), *t[2:])
              if t[1] < midnight else t for t in make_trades(n=400, seed=4)]
    assert any(t[1] >= midnight and t[1].microsecond % 1000 for t in trades)
    ingest.trades_ingest(trades)
    call_command("export", "--start-date", str(T0.date()), "--end-date", str(midnight.date()),
                 "--types", "trades", "--out", str(tmp_path))
    units = [pq.read_schema(tmp_path / "type=trades" / f"date={day}" / "part-0.parquet")
             .field("ts").type.unit for day in (T0.date(), midnight.date())]
    assert units == ["ms", "us"]

    frame = lake_job.read_table(spark, str(tmp_path), "trades")
    read = sorted((row["trade_id"], row["micros"])
                  for row in frame.selectExpr("trade_id", "unix_micros(ts) AS micros").collect())
    epoch = datetime(1970, 1, 1, tzinfo=T0.tzinfo)
    assert read == sorted((t[2], (t[1] - epoch) // timedelta(microseconds=1)) for t in trades)
    rows = lake_job.candles_1m(frame).collect()
    api_candles = data_of(api.get(
        f"/api/v1/candles/{M}?interval=1m&start_time={iso(T0 - timedelta(hours=1))}"
        f"&end_time={iso(T0 + timedelta(hours=5))}"))["candles"]
    assert [_api_shape(row) for row in rows] == api_candles
