"""The sync client against a live server holding a recorded day."""

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from backtest_api.throttling import ApiKeyRateThrottle
from kalshi_data_client import (
    AuthenticationError,
    Batch,
    Client,
    InvalidParameter,
    NotFound,
    OrderBook,
    RateLimited,
    Retry,
)
from tests.recorded import EVENT, HOT, QUIET

from .conftest import DAY

# The tests read what the module's fixture committed; the mark makes
# pytest-django create the test database (and wraps each test in a rollback).
pytestmark = pytest.mark.django_db


def _is_utc(value):
    return isinstance(value, datetime) and value.utcoffset() == timedelta(0)


def test_lists_follow_the_cursor_to_the_last_row(api, record):
    start, end = record.first - timedelta(days=1), record.last + timedelta(seconds=1)
    trades = api.trades(HOT, start, end, limit=7)  # small pages: many cursors
    rows = list(trades)
    assert rows == list(trades)  # each iteration starts again from the first page
    everything = sum(len(list(api.trades(t, start, end))) for t in record.tickers)
    assert everything == record.trades
    keys = [(t["ts"], t["trade_id"]) for t in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    trade = rows[0]
    assert isinstance(trade["yes_price"], Decimal) and isinstance(trade["count"], Decimal)
    assert trade["yes_price"] + trade["no_price"] == 1
    assert _is_utc(trade["ts"]) and _is_utc(trade["received_at"])


def test_times_accept_datetimes_dates_and_strings(api, record):
    end = record.last + timedelta(seconds=1)
    as_datetime = list(api.deltas(QUIET, record.first, end))
    naive = record.first.replace(tzinfo=None)
    assert list(api.deltas(QUIET, naive, end)) == as_datetime
    assert list(api.deltas(QUIET, DAY, DAY + timedelta(days=1))) == as_datetime
    iso = record.first.isoformat()
    assert list(api.deltas(QUIET, iso, end.isoformat())) == as_datetime
    assert len(as_datetime) > 10


def test_iter_batches_cuts_the_rows_into_batches_of_that_size(api, record):
    end = record.last + timedelta(seconds=1)
    everything = list(api.deltas(HOT, record.first, end))
    batches = list(api.deltas(HOT, record.first, end).iter_batches(rows=250))
    assert all(isinstance(b, Batch) for b in batches)
    assert [len(b) for b in batches[:-1]] == [250] * (len(batches) - 1)
    assert 0 < len(batches[-1]) <= 250
    assert [row for batch in batches for row in batch] == everything


def test_frames_keep_exact_decimals_and_utc_times(api, record):
    pa = pytest.importorskip("pyarrow")
    pl = pytest.importorskip("polars")
    end = record.last + timedelta(seconds=1)
    deltas = api.deltas(HOT, record.first, end)
    rows = deltas.to_list()
    table = deltas.to_arrow()
    assert table.schema.field("price").type == pa.decimal128(10, 4)
    assert table.schema.field("delta").type == pa.decimal128(18, 2)
    assert table.schema.field("received_at").type == pa.timestamp("us", tz="UTC")
    assert table.num_rows == len(rows)
    frame = deltas.to_pandas()
    assert list(frame["delta"]) == [r["delta"] for r in rows]  # Decimal objects, exact
    assert str(frame["received_at"].dtype) == "datetime64[us, UTC]"
    assert frame["received_at"].iloc[0].to_pydatetime() == rows[0]["received_at"]
    polars_frame = deltas.to_polars()
    assert polars_frame.schema["price"] == pl.Decimal(10, 4)
    assert polars_frame.schema["received_at"] == pl.Datetime("us", "UTC")
    assert polars_frame["delta"].to_list() == [r["delta"] for r in rows]


def test_every_endpoint_has_its_method(api, record):
    end = record.last + timedelta(seconds=1)
    market = api.market(HOT)
    assert market["ticker"] == HOT and _is_utc(market["coverage"]["first_delta_at"])
    assert [m["ticker"] for m in api.markets(status="active")] == [HOT]
    assert {m["ticker"] for m in api.markets(event_ticker=EVENT)} == {HOT, QUIET}
    event = api.event(EVENT)
    assert {m["ticker"] for m in event["markets"]} == {HOT, QUIET}
    assert [e["market_count"] for e in api.events(series_ticker="KXTEST")] == [2]
    assert [s["fee_multiplier"] for s in api.series(category="Testing")] == [Decimal("0.07")]
    assert api.series_detail("KXTEST")["title"] == "Test series"
    settled = api.settlements(result="no").to_list()
    assert [s["market_ticker"] for s in settled] == [QUIET]
    assert settled[0]["settlement_value"] == 0 and _is_utc(settled[0]["settled_at"])
    assert api.settlement(QUIET)["result"] == "no"
    assert list(api.settlements(settled_before=record.last)) == []
    book = api.orderbook(HOT, record.instants[500], depth=2)
    assert len(book["yes"]) <= 2 and isinstance(book["best"]["no_bid"]["price"], Decimal)
    candles = api.candles(HOT, "5m", record.first, end)
    assert sum(c["trade_count"] for c in candles) == len(list(api.trades(HOT, record.first
                                                                          - timedelta(hours=1), end)))
    assert isinstance(candles[0]["open"], Decimal) and _is_utc(candles[0]["start"])
    points = api.book_snapshots(HOT, record.first, end, "5s", depth=3).to_list()
    assert len(points) > 5 and all(_is_utc(p["timestamp"]) for p in points)
    for point in points[:3]:
        at_point = api.orderbook(HOT, point["timestamp"], depth=3)
        assert point["yes"] == at_point["yes"] and point["no"] == at_point["no"]
    days = api.coverage(HOT, DAY, DAY)
    assert days[0]["date"] == DAY and days[0]["status"] == "degraded"
    files = api.exports(type="deltas").to_list()
    assert [f["path"] for f in files] == [f"type=deltas/date={DAY}/part-0.parquet"]
    assert isinstance(files[0]["bytes"], int) and _is_utc(files[0]["modified"])


def test_event_and_series_details(api):
    with pytest.raises(NotFound):
        api.event("NO-SUCH-EVENT")
    with pytest.raises(NotFound):
        api.series_detail("NO-SUCH-SERIES")
    with pytest.raises(NotFound):
        api.settlement(HOT)  # not settled
    with pytest.raises(NotFound):
        api.market("NO-SUCH/MARKET")  # quoted into one path segment


def test_replay_books_equal_the_orderbook_at_sampled_instants(api, record):
    start, end = record.instants[300], record.instants[-1]
    checks = sorted(random.Random(3).sample(
        [t for t in record.instants if start <= t < end], 10))
    seen, compared, last = {}, 0, None
    pending = list(checks)
    for event, book in api.replay([HOT, QUIET], start, end).books():
        while pending and event["received_at"] > pending[0]:
            compared += _compare(api, seen, pending.pop(0))
        if book is not None:
            seen[event["market_ticker"]] = book.copy()
        last = event
    for check in pending:
        compared += _compare(api, seen, check)
    assert compared == 20
    assert last["type"] in ("delta", "trade", "lifecycle", "snapshot", "gap")


def _compare(api, seen, instant):
    for ticker in (HOT, QUIET):
        server = api.orderbook(ticker, instant)
        expected = OrderBook.from_levels(
            [(lv["price"], lv["quantity"]) for lv in server["yes"]],
            [(lv["price"], lv["quantity"]) for lv in server["no"]])
        assert seen[ticker] == expected, (ticker, instant)
        assert seen[ticker].complete == server["complete"], (ticker, instant)
    return 2


def test_replay_is_asked_for_gzip_and_converts_to_frames(api, record):
    requests = []
    api._http.event_hooks["response"].append(lambda r: requests.append(r))
    events = api.replay(HOT, record.first, record.last, types=["trades"]).to_list()
    assert requests[-1].headers["Content-Encoding"] == "gzip"
    assert {e["type"] for e in events} == {"trade"}
    assert all(isinstance(e["yes_price"], Decimal) for e in events)
    frame = api.replay(HOT, record.first, record.last, types="deltas").to_pandas()
    assert set(frame["type"]) >= {"snapshot", "delta"}


def test_api_errors_are_typed_and_carry_the_error_shape(api, served, record):
    with pytest.raises(InvalidParameter) as error:
        api.trades(HOT, record.last, record.first).first()
    assert (error.value.status, error.value.code, error.value.param) == (
        400, "invalid_parameter", "end_time")
    assert "end_time" in error.value.message and error.value.request_id
    with pytest.raises(NotFound) as missing:
        api.market("NO-SUCH-MARKET")
    assert missing.value.code == "not_found" and "NO-SUCH-MARKET" in missing.value.message
    with pytest.raises(NotFound):
        list(api.replay("NO-SUCH-MARKET", record.first, record.last))
    with Client(served[1], api_key="kd_wrong") as wrong:
        with pytest.raises(AuthenticationError) as denied:
            wrong.series().first()
    assert denied.value.code == "authentication_failed"


def test_429_is_retried_after_retry_after_then_raised(served, monkeypatch):
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"key": "2/min", "anon": "2/min"})
    waits = []
    with Client(served[1], api_key=served[2], retry=Retry(max_retries=2),
                sleep=waits.append) as client:
        client.series().first()
        client.series().first()
        with pytest.raises(RateLimited) as limited:
            client.series().first()
    assert len(waits) == 2 and all(0 < w <= 60 for w in waits)
    assert limited.value.code == "rate_limited" and limited.value.retry_after == waits[-1]


def _scripted(statuses):
    """A transport answering with these statuses in turn (then 200), and what it saw."""
    seen = []

    def handle(request):
        seen.append(request)
        status = statuses.pop(0) if statuses else 200
        if status == "drop":
            raise httpx.ConnectError("connection refused", request=request)
        if status == 200:
            return httpx.Response(200, json={"data": {"ticker": "X"}, "request_id": "r"})
        return httpx.Response(status, headers={"Retry-After": "7"} if status == 429 else {},
                              json={"code": "x", "message": "m", "param": None,
                                    "details": None, "request_id": "r1"})
    return httpx.MockTransport(handle), seen


def test_5xx_and_connection_errors_back_off_with_jitter():
    transport, seen = _scripted([503, "drop", 500, 429])
    waits = []
    client = Client("http://127.0.0.1:1", transport=transport, sleep=waits.append,
                    retry=Retry(backoff=1.0, max_backoff=3.0))
    assert client.series_detail("X") == {"ticker": "X"}
    assert len(seen) == 5
    assert 0 <= waits[0] <= 1 and 0 <= waits[1] <= 2 and 0 <= waits[2] <= 3
    assert waits[3] == 7  # the 429's Retry-After


def test_retries_end_with_the_typed_error():
    from kalshi_data_client import ServerError, TransportError

    transport, _ = _scripted([502, 502, 502])
    with pytest.raises(ServerError) as error:
        Client("http://x", transport=transport, sleep=lambda s: None,
               retry=Retry(max_retries=2)).series_detail("X")
    assert (error.value.status, error.value.request_id) == (502, "r1")
    transport, _ = _scripted(["drop", "drop"])
    with pytest.raises(TransportError):
        Client("http://x", transport=transport, sleep=lambda s: None,
               retry=Retry(max_retries=1)).series_detail("X")
    transport, seen = _scripted([404])
    with pytest.raises(NotFound):
        Client("http://x", transport=transport, sleep=lambda s: None).series_detail("X")
    assert len(seen) == 1  # a 4xx is not retried


def test_the_key_comes_from_the_environment(served, monkeypatch):
    monkeypatch.setenv("KALSHI_DATA_API_KEY", served[2])
    with Client(served[1]) as client:
        assert client.market(HOT)["ticker"] == HOT
    monkeypatch.delenv("KALSHI_DATA_API_KEY")
    with Client(served[1] + "/api/v1") as client, pytest.raises(AuthenticationError):
        client.market(HOT)


def test_times_in_records_are_utc_whatever_the_input_zone(api, record):
    east = timezone(timedelta(hours=5))
    book = api.orderbook(HOT, record.instants[700].astimezone(east))
    assert book["timestamp"] == record.instants[700] and _is_utc(book["timestamp"])
