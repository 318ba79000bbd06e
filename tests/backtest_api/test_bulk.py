"""The bulk-data endpoints: replay stream, book snapshots, coverage, export files."""

import gzip
import json
import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from markets.book import OrderBook
from markets.export import export_dataset
from markets.replay_stream import iso_utc
from tests.recorded import HOT, QUIET, record_day

from .conftest import data_of, error_of

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 19)


@pytest.fixture
def record():
    return record_day(DAY)


def _iso(value):
    return value.isoformat().replace("+00:00", "Z")


def _lines(response):
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    body = b"".join(response.streaming_content)
    if response.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return [json.loads(line) for line in body.decode().splitlines()]


def _levels(levels):
    return [[level["price"], level["quantity"]] for level in levels]


def _book_of(orderbook):
    return OrderBook.from_levels(_levels(orderbook["yes"]), _levels(orderbook["no"]))


def test_replay_applied_from_its_first_line_matches_orderbook(client, record):
    start, end = record.instants[300], record.instants[-1]
    events = _lines(client.get("/api/v1/replay", {
        "market_tickers": f"{HOT},{QUIET}", "start_time": _iso(start), "end_time": _iso(end)}))
    assert events[-1] == {"type": "end", "events": len(events) - 1,
                          "request_id": events[-1]["request_id"]}
    rng = random.Random(5)
    checks = sorted(rng.sample([t for t in record.instants if start <= t < end], 12))
    books, compared, position = {}, 0, 0
    for check in checks:
        while position < len(events) - 1 and events[position]["received_at"] <= iso_utc(check):
            event = events[position]
            if event["type"] == "snapshot":
                books[event["market_ticker"]] = OrderBook.from_levels(event["yes"], event["no"])
            elif event["type"] == "delta":
                books[event["market_ticker"]].apply_delta(
                    event["side"], Decimal(event["price"]), Decimal(event["delta"]))
            position += 1
        for ticker in (HOT, QUIET):
            orderbook = data_of(client.get("/api/v1/orderbook", {
                "market_ticker": ticker, "timestamp": _iso(check)}))
            assert books[ticker] == _book_of(orderbook), (ticker, check)
            compared += 1
    assert compared == 24
    assert any(e["type"] == "gap" for e in events)


def test_replay_is_gzipped_when_the_client_accepts_it(client, record):
    query = {"market_tickers": HOT, "start_time": _iso(record.first),
             "end_time": _iso(record.last), "types": "deltas,trades"}
    plain = _lines(client.get("/api/v1/replay", query))
    zipped = client.get("/api/v1/replay", query, HTTP_ACCEPT_ENCODING="br, gzip")
    assert zipped["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped["Vary"]
    compressed = _lines(zipped)
    assert compressed[:-1] == plain[:-1] and len(plain) > 1000
    refused = client.get("/api/v1/replay", query, HTTP_ACCEPT_ENCODING="gzip;q=0")
    assert "Content-Encoding" not in refused


@pytest.mark.parametrize("query, status, code, param", [
    ({"start_time": "2026-11-19T00:00:00Z", "end_time": "2026-11-20T00:00:00Z"}, 400,
     "invalid_parameter", "market_tickers"),
    ({"market_tickers": HOT, "start_time": "2026-11-19T00:00:00Z",
      "end_time": "2026-11-18T00:00:00Z"}, 400, "invalid_parameter", "end_time"),
    ({"market_tickers": HOT, "start_time": "yesterday", "end_time": "2026-11-18T00:00:00Z"},
     400, "invalid_parameter", "start_time"),
    ({"market_tickers": HOT, "start_time": "2026-11-19T00:00:00Z"}, 400, "invalid_parameter",
     "end_time"),
    ({"market_tickers": HOT, "start_time": "2026-11-19T00:00:00Z",
      "end_time": "2026-11-20T00:00:00Z", "types": "deltas,quotes"}, 400, "invalid_parameter",
     "types"),
    ({"market_tickers": ",".join(f"M{i}" for i in range(51)), "start_time": "2026-11-19T00:00Z",
      "end_time": "2026-11-20T00:00:00Z"}, 400, "invalid_parameter", "market_tickers"),
    ({"market_tickers": f"{HOT},NOPE-1", "start_time": "2026-11-19T00:00:00Z",
      "end_time": "2026-11-20T00:00:00Z"}, 404, "not_found", None),
])
def test_replay_errors_come_before_the_stream_in_the_error_shape(client, record, query, status,
                                                                 code, param):
    for accept in ("application/json", "application/x-ndjson"):
        response = client.get("/api/v1/replay", query, HTTP_ACCEPT=accept)
        body = error_of(response, status, code, param)
        if status == 404:
            assert "NOPE-1" in body["message"]


def test_replay_needs_a_key(anon):
    error_of(anon.get("/api/v1/replay", {"market_tickers": HOT}), 401, "not_authenticated")


def test_book_snapshots_equal_orderbook_at_the_same_instants(client, record):
    query = {"market_ticker": HOT, "start_time": _iso(record.first - timedelta(seconds=1)),
             "end_time": _iso(record.last), "interval": "5s", "depth": 3}
    points = data_of(client.get("/api/v1/book_snapshots", query))
    assert len(points) >= 9
    for point in points:
        orderbook = data_of(client.get("/api/v1/orderbook", {
            "market_ticker": HOT, "timestamp": point["timestamp"], "depth": 3}))
        assert point["yes"] == orderbook["yes"] and point["no"] == orderbook["no"]
        assert point["best"] == orderbook["best"]
        assert point["complete"] == orderbook["complete"]
    assert not points[0]["complete"]  # before the first snapshot


def test_book_snapshot_pages_continue_where_they_stopped(client, record):
    query = {"market_ticker": QUIET, "start_time": _iso(record.first),
             "end_time": _iso(record.last), "interval": "2s"}
    whole = data_of(client.get("/api/v1/book_snapshots", query))
    pages, cursor = [], None
    while True:
        body = client.get("/api/v1/book_snapshots",
                          {**query, "limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        pages += body["data"]
        cursor = body["next_cursor"]
        assert body["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert pages == whole and len(whole) > 8


@pytest.mark.parametrize("change, param", [
    ({"interval": "2d"}, "interval"), ({"interval": "soon"}, "interval"),
    ({"depth": 0}, "depth"), ({"depth": 101}, "depth"), ({"limit": 1001}, "limit"),
    ({"cursor": "garbage"}, "cursor"), ({"end_time": "2026-11-18T00:00:00Z"}, "end_time"),
])
def test_book_snapshots_refuse_bad_parameters(client, record, change, param):
    query = {"market_ticker": HOT, "start_time": "2026-11-19T00:00:00Z",
             "end_time": "2026-11-19T02:00:00Z", "interval": "1m", **change}
    error_of(client.get("/api/v1/book_snapshots", query), 400, "invalid_parameter", param)


def test_coverage_per_day(client, record):
    data = data_of(client.get("/api/v1/coverage", {
        "market_ticker": HOT, "start_date": "2026-11-18", "end_date": "2026-11-19"}))
    missing, degraded = data["days"]
    assert (missing["date"], missing["status"]) == ("2026-11-18", "missing")
    assert (degraded["date"], degraded["status"]) == ("2026-11-19", "degraded")
    assert degraded["deltas"] > 0 and degraded["trades"] > 0
    gap = next(g for g in degraded["gaps"] if g["reason"] == "seq_gap")
    assert gap["detected_at"] == gap["start"] == _iso(record.gap.detected_at)
    assert gap["end"] == _iso(record.gap.recovered_at)
    assert gap["duration_seconds"] == (record.gap.recovered_at
                                       - record.gap.detected_at).total_seconds()


@pytest.mark.parametrize("query, param", [
    ({"start_date": "2026-11-19", "end_date": "2026-11-18"}, "end_date"),
    ({"start_date": "2025-11-18", "end_date": "2026-11-19"}, "end_date"),  # 367 days
    ({"start_date": "19.11.2026", "end_date": "2026-11-19"}, "start_date"),
])
def test_coverage_refuses_bad_dates(client, record, query, param):
    error_of(client.get("/api/v1/coverage", {"market_ticker": HOT, **query}), 400,
             "invalid_parameter", param)


def test_export_files_are_listed_paged_and_downloadable(client, record, tmp_path):
    export_dataset(start_date=DAY - timedelta(days=1), end_date=DAY, out_dir=tmp_path,
                   tables=["deltas", "trades", "gaps"])
    with override_settings(EXPORT_DIR=tmp_path):
        listed, cursor = [], None
        while True:
            body = client.get("/api/v1/exports", {"limit": 2, **({"cursor": cursor} if cursor
                                                                 else {})}).json()
            listed += body["data"]
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert len(listed) == 6
        assert [f["path"] for f in listed] == sorted(f["path"] for f in listed)
        deltas = data_of(client.get("/api/v1/exports", {"type": "deltas", "start_date": DAY,
                                                          "file_format": "parquet"}))
        assert [f["path"] for f in deltas] == [f"type=deltas/date={DAY}/part-0.parquet"]
        response = client.get(deltas[0]["url"])
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == (
            tmp_path / deltas[0]["path"]).read_bytes()
        assert response["Content-Type"] == "application/vnd.apache.parquet"
        assert deltas[0]["bytes"] == len((tmp_path / deltas[0]["path"]).read_bytes())
        for bad in ("type=deltas/date=2026-11-19/../../../etc/passwd", "..%2F..%2Fsettings.py",
                    "type=deltas/date=2026-11-01/part-0.parquet", "type=x/date=2026-11-19/a"):
            error_of(client.get(f"/api/v1/exports/{bad}"), 404, "not_found")
        error_of(client.get("/api/v1/exports", {"type": "quotes"}), 400, "invalid_parameter",
                 "type")


def test_export_file_download_resumes_with_a_byte_range(client, record, tmp_path):
    export_dataset(start_date=DAY, end_date=DAY, out_dir=tmp_path, tables=["deltas"])
    path = f"type=deltas/date={DAY}/part-0.parquet"
    whole = (tmp_path / path).read_bytes()
    with override_settings(EXPORT_DIR=tmp_path):
        url = f"/api/v1/exports/{path}"
        full = client.get(url)
        assert full["Accept-Ranges"] == "bytes"
        modified = full["Last-Modified"]

        def body(response):
            return b"".join(response.streaming_content)

        tail = client.get(url, HTTP_RANGE="bytes=100-", HTTP_IF_RANGE=modified)
        assert tail.status_code == 206
        assert tail["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"
        assert body(tail) == whole[100:]
        middle = client.get(url, HTTP_RANGE="bytes=10-19")
        assert (middle.status_code, body(middle), middle["Content-Length"]) == (
            206, whole[10:20], "10")
        assert body(client.get(url, HTTP_RANGE="bytes=-7")) == whole[-7:]
        # Another version of the file than the one the client holds part of: all of it.
        stale = client.get(url, HTTP_RANGE="bytes=100-",
                           HTTP_IF_RANGE="Mon, 02 Jan 2006 15:04:05 GMT")
        assert (stale.status_code, body(stale)) == (200, whole)
        past = client.get(url, HTTP_RANGE=f"bytes={len(whole)}-")
        assert (past.status_code, past["Content-Range"]) == (416, f"bytes */{len(whole)}")
        several = client.get(url, HTTP_RANGE="bytes=0-1,5-6")
        assert (several.status_code, body(several)) == (200, whole)


@pytest.mark.parametrize("header, accepted", [
    ("gzip", True), ("br, gzip", True), ("gzip;q=0.5", True), ("GZIP ; q=1", True),
    ("gzip;q=0", False), ("gzip; q=0.0", False), ("identity", False), ("", False),
    ("gzip;q=nonsense", False), ("x-gzip", True),
])
def test_accept_encoding_is_read_with_its_q_values(header, accepted):
    from backtest_api.bulk_views import accepts_gzip

    assert accepts_gzip(header) is accepted


@pytest.mark.parametrize("path, query", [
    ("/api/v1/book_snapshots", {"market_ticker": HOT, "start_time": "2026-11-19T01:00:00Z",
                                "end_time": "2026-11-19T01:01:00Z", "interval": "10s"}),
    ("/api/v1/coverage", {"market_ticker": HOT, "start_date": "2026-11-19",
                          "end_date": "2026-11-19"}),
    ("/api/v1/exports", {}),
    ("/api/v1/replay", {"market_tickers": "NOPE"}),
])
def test_the_browsable_api_renders_the_bulk_endpoints(client, record, path, query):
    response = client.get(path, query, HTTP_ACCEPT="text/html")
    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 200:
        assert response["Content-Type"].startswith("text/html")


def test_a_nul_byte_is_a_clean_error(client, record):
    response = client.get("/api/v1/replay", {"market_tickers": "A\x00B",
                                             "start_time": "2026-11-19T00:00:00Z",
                                             "end_time": "2026-11-20T00:00:00Z"})
    error_of(response, 400, "invalid_parameter", "market_tickers")
    error_of(client.get("/api/v1/exports/type=deltas/date=2026-11-19/part-0.parquet\x00"), 404,
             "not_found")


def test_a_failure_mid_stream_ends_it_with_an_error_line(client, record, monkeypatch):
    from backtest_api import bulk_views

    def broken(**kwargs):
        yield ['{"type":"snapshot"}']
        raise RuntimeError("the database went away")

    monkeypatch.setattr(bulk_views, "replay_runs", broken)
    events = _lines(client.get("/api/v1/replay", {
        "market_tickers": HOT, "start_time": _iso(record.first), "end_time": _iso(record.last)}))
    assert events[0] == {"type": "snapshot"}
    assert events[-1]["type"] == "error" and events[-1]["events"] == 1
    assert events[-1]["request_id"]


@pytest.mark.parametrize("path, query, param", [
    ("/api/v1/replay", {"market_tickers": HOT, "start_time": "0001-01-01T00:00:00Z",
                        "end_time": "2026-11-19T00:00:00Z"}, "start_time"),
    ("/api/v1/replay", {"market_tickers": HOT, "start_time": "2026-11-19T00:00:00Z",
                        "end_time": "9999-12-31T23:59:59Z"}, "end_time"),
    ("/api/v1/book_snapshots", {"market_ticker": HOT, "interval": "1d",
                                "start_time": "9999-12-30T00:00:00Z",
                                "end_time": "9999-12-31T23:59:59Z"}, "start_time"),
    ("/api/v1/coverage", {"market_ticker": HOT, "start_date": "9999-12-30",
                          "end_date": "9999-12-31"}, "start_date"),
])
def test_instants_near_the_ends_of_time_are_400s_not_overflows(client, record, path, query,
                                                               param):
    error_of(client.get(path, query), 400, "invalid_parameter", param)
