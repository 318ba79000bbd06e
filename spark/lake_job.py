"""A PySpark job over the Parquet record: 1-minute candles and deltas per market and day.

For users who outgrow one machine: the same answers as the API's `/candles`
(interval 1m) and `/coverage` (deltas per day), computed by Spark over the
Parquet dataset that `manage.py export` writes, on a laptop or a cluster, from
a local folder or object storage.

    spark-submit spark/lake_job.py --lake /data/kalshi-lake --out /data/kalshi-out \\
        [--start 2026-11-23 --end 2026-11-24] [--markets KXBTC-26NOV23-T100,...]

    # on a cluster, the record on S3 (hadoop-aws on the classpath; docs/engines.md)
    spark-submit --master spark://head:7077 --packages org.apache.hadoop:hadoop-aws:3.4.1 \\
        spark/lake_job.py --lake s3a://bucket/kalshi-lake --out s3a://bucket/kalshi-out

The dataset is hive-partitioned (`type=trades/date=2026-11-23/part-0.parquet`,
docs/bulk.md); trades are in the folder of their exchange time's UTC day,
deltas in that of their receive time. Prices and counts are Parquet DECIMAL,
and stay exact here: every sum is a DECIMAL sum, and the VWAP is computed in
integers (1/10,000 dollar, 1/100 contract) and rounded half away from zero
once, as PostgreSQL's `round(numeric, 4)` does for the API.

The job needs nothing from this project: only PySpark. Its functions take a
SparkSession, so tests and notebooks call them directly.
"""

from __future__ import annotations

import argparse
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

PRICE_SCALE = 10_000  # prices are DECIMAL(10,4) dollars
COUNT_SCALE = 100  # counts are DECIMAL(18,2) contracts

CANDLE_COLUMNS = ("market_ticker", "start", "open", "high", "low", "close", "volume",
                  "trade_count", "vwap", "taker_yes_volume", "taker_no_volume")


def read_table(spark: SparkSession, lake: str, table: str, start: date | None = None,
               end: date | None = None, markets: list[str] | None = None) -> DataFrame:
    """One table of the dataset, its `date` folders from start to end (inclusive) only."""
    frame = spark.read.option("basePath", f"{lake}/type={table}").parquet(f"{lake}/type={table}")
    if start is not None:
        frame = frame.where(F.col("date") >= F.lit(start))
    if end is not None:
        frame = frame.where(F.col("date") <= F.lit(end))
    if markets:
        frame = frame.where(F.col("market_ticker").isin(markets))
    return frame


def candles_1m(trades: DataFrame) -> DataFrame:
    """OHLC of yes prices, volume, trade count, VWAP and taker volumes per market and minute.

    The same definition as the API's (markets/candles.py, `candles_for`):
    open and close are the first and last trade by (ts, trade_id); the taker
    side is taker_outcome_side, or the older taker_side; a minute with no
    trade has no candle.
    """
    order = F.struct("ts", "trade_id")
    side = F.coalesce("taker_outcome_side", "taker_side")
    price_units = (F.col("yes_price") * PRICE_SCALE).cast("decimal(10,0)")
    count_units = (F.col("count") * COUNT_SCALE).cast("decimal(20,0)")
    zero = F.lit(0).cast("decimal(18,2)")
    bars = (
        trades
        .withColumn("start", F.date_trunc("minute", "ts"))
        .groupBy("market_ticker", "start")
        .agg(
            F.min_by("yes_price", order).alias("open"),
            F.max("yes_price").alias("high"),
            F.min("yes_price").alias("low"),
            F.max_by("yes_price", order).alias("close"),
            F.sum("count").alias("volume"),
            F.count(F.lit(1)).alias("trade_count"),
            F.sum(price_units * count_units).alias("_notional"),
            F.sum(count_units).alias("_units"),
            F.coalesce(F.sum(F.when(side == "yes", F.col("count"))), zero).alias("taker_yes_volume"),
            F.coalesce(F.sum(F.when(side == "no", F.col("count"))), zero).alias("taker_no_volume"),
        )
    )
    # VWAP in 1/10,000 dollar = notional / units, rounded half up (all positive):
    # floor((2 * notional + units) / (2 * units)), in exact integer division.
    vwap_units = F.expr("(2 * _notional + _units) div (2 * _units)")
    vwap = (vwap_units.cast("decimal(20,0)") / PRICE_SCALE).cast("decimal(10,4)")
    return (
        bars.withColumn("vwap", F.when(F.col("_units") > 0, vwap))
        .drop("_notional", "_units")
        .select(*CANDLE_COLUMNS)
        .orderBy("market_ticker", "start")
    )


def delta_counts(deltas: DataFrame) -> DataFrame:
    """Deltas per market and UTC day of receipt (the API's /coverage `deltas`)."""
    return (
        deltas.groupBy("market_ticker", "date")
        .agg(F.count(F.lit(1)).alias("deltas"))
        .orderBy("market_ticker", "date")
    )


def session(app_name: str = "kalshi-lake") -> SparkSession:
    """A session that reads and writes times in UTC, as the dataset stores them."""
    return (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True, help="the dataset's root: a path or s3a://bucket/prefix")
    parser.add_argument("--out", required=True, help="where to write candles_1m/ and delta_counts/")
    parser.add_argument("--start", type=date.fromisoformat, help="first UTC day (default: all)")
    parser.add_argument("--end", type=date.fromisoformat, help="last UTC day, inclusive")
    parser.add_argument("--markets", help="comma-separated market tickers (default: all)")
    args = parser.parse_args(argv)
    markets = [m for m in (args.markets or "").split(",") if m]
    # Under spark-submit there is no session yet; in a notebook or a test the
    # caller's is used and left running.
    owned = SparkSession.getActiveSession() is None
    spark = session()
    try:
        trades = read_table(spark, args.lake, "trades", args.start, args.end, markets)
        (candles_1m(trades).withColumn("date", F.to_date("start"))
         .write.mode("overwrite").partitionBy("date").parquet(f"{args.out}/candles_1m"))
        deltas = read_table(spark, args.lake, "deltas", args.start, args.end, markets)
        delta_counts(deltas).write.mode("overwrite").parquet(f"{args.out}/delta_counts")
    finally:
        if owned:
            spark.stop()


if __name__ == "__main__":
    main()
