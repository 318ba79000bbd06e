"""Bounded cost per request and the inputs that used to be 500s (issue 12)."""

import base64
import json
import os
import socket
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.test import override_settings
from rest_framework.test import APIClient, APIRequestFactory

from backtest_api import bulk_views
from backtest_api.docs_views import CachedSchemaView
from backtest_api.models import api_key_create
from backtest_api.throttling import AddressRateThrottle
from markets import selectors
from markets.models import Event, Market, Series, Settlement, Trade
from markets.replay_stream import _trades_in_receive_order, _received_at_slice, replay_events
from tests.recorded import HOT, QUIET, record_day

from .conftest import data_of, error_of

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 19)


def _iso(value):
    return value.isoformat().replace("+00:00", "Z")


def _cursor(payload_json: str) -> str:
    return base64.urlsafe_b64encode(payload_json.encode()).rstrip(b"=").decode()


@pytest.fixture
def record():
    return record_day(DAY)


# --- Former 500s --------------------------------------------------------------------


LONE_SURROGATE = _cursor('["\\ud800"]')  # valid JSON, a string no encoder accepts


@pytest.mark.parametrize("path", [
    "/api/v1/markets", "/api/v1/events", "/api/v1/series", "/api/v1/settlements",
])
def test_a_cursor_holding_a_lone_surrogate_is_a_400(client, path):
    Series.objects.create(ticker="KXA")
    error_of(client.get(path, {"cursor": LONE_SURROGATE}), 400, "invalid_parameter", "cursor")


def test_a_trades_cursor_holding_a_lone_surrogate_is_a_400(client):
    Market.objects.create(ticker="M-1")
    cursor = _cursor('["2026-11-19T00:00:00+00:00","\\ud800"]')
    error_of(client.get("/api/v1/trades", {"market_ticker": "M-1", "cursor": cursor}),
             400, "invalid_parameter", "cursor")


def test_a_book_snapshots_cursor_at_year_9999_is_a_400(client, record):
    cursor = _cursor('["9999-12-31T23:59:59.999999+00:00"]')
    query = {"market_ticker": HOT, "start_time": "2026-11-19T00:00:00Z",
             "end_time": "2026-11-19T02:00:00Z", "interval": "1m", "cursor": cursor}
    error_of(client.get("/api/v1/book_snapshots", query), 400, "invalid_parameter", "cursor")


def test_the_schema_is_generated_once_and_served_to_concurrent_clients(monkeypatch):
    CachedSchemaView._schema = None
    calls = []
    original = CachedSchemaView.generator_class.get_schema

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CachedSchemaView.generator_class, "get_schema", counting)
    monkeypatch.setattr(AddressRateThrottle, "rate", "1000/min", raising=False)
    view = CachedSchemaView.as_view()
    factory = APIRequestFactory()
    results, start = [], threading.Barrier(8)

    def fetch():
        start.wait()
        response = view(factory.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"))
        response.render()
        results.append((response.status_code, response.content))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in results] == [200] * 8
    assert len({body for _, body in results}) == 1
    assert "/api/v1/replay" in json.loads(results[0][1])["paths"]
    assert len(calls) == 1


def test_the_schema_is_throttled_per_address(anon, monkeypatch):
    monkeypatch.setattr(AddressRateThrottle, "rate", "2/min", raising=False)
    assert anon.get("/api/schema/").status_code == 200
    assert anon.get("/api/schema/").status_code == 200
    assert anon.get("/api/schema/").status_code == 429


# --- Concurrency slots ------------------------------------------------------------------


def _replay_query(record):
    return {"market_tickers": HOT, "start_time": _iso(record.first),
            "end_time": _iso(record.last)}


@override_settings(API_HEAVY_PER_KEY=1, API_HEAVY_TOTAL=5)
def test_heavy_requests_are_limited_per_key_with_a_clear_429(client, record, raw_key):
    stream = client.get("/api/v1/replay", _replay_query(record))  # not read yet: holds a slot
    assert stream.status_code == 200
    response = client.get("/api/v1/coverage", {"market_ticker": HOT, "start_date": DAY,
                                               "end_date": DAY})
    body = error_of(response, 429, "too_many_concurrent")
    assert "per API key" in body["message"] and body["details"]["limit"] == 1
    assert int(response["Retry-After"]) >= 1
    # Small reads are not heavy; short candle ranges neither, long ones are.
    data_of(client.get("/api/v1/series"))
    candles = {"start_time": "2026-11-19T00:00:00Z", "end_time": "2026-11-19T06:00:00Z",
               "interval": "1h"}
    data_of(client.get(f"/api/v1/candles/{HOT}", candles))
    long = {**candles, "start_time": "2026-10-01T00:00:00Z", "interval": "1d"}
    error_of(client.get(f"/api/v1/candles/{HOT}", long), 429, "too_many_concurrent")
    # Another key has its own slot.
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='other')[1]}")
    data_of(other.get(f"/api/v1/candles/{HOT}", long))
    # Reading the stream to its end frees the slot.
    b"".join(stream.streaming_content)
    data_of(client.get(f"/api/v1/candles/{HOT}", long))


@override_settings(API_HEAVY_PER_KEY=5, API_HEAVY_TOTAL=1)
def test_heavy_requests_are_limited_for_the_whole_deployment(client, record):
    stream = client.get("/api/v1/replay", _replay_query(record))
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='other')[1]}")
    body = error_of(other.get("/api/v1/replay", _replay_query(record)), 429,
                    "too_many_concurrent")
    assert "server" in body["message"]
    b"".join(stream.streaming_content)  # the stream ends: the server closes it
    assert other.get("/api/v1/replay", _replay_query(record)).status_code == 200


@override_settings(API_HEAVY_PER_KEY=1)
def test_a_refused_or_failed_heavy_request_holds_no_slot(client, record):
    for _ in range(3):
        error_of(client.get("/api/v1/coverage", {"market_ticker": HOT, "start_date": "x"}),
                 400, "invalid_parameter", "start_date")
    data_of(client.get("/api/v1/coverage", {"market_ticker": HOT, "start_date": DAY,
                                            "end_date": DAY}))


def test_head_on_replay_reads_nothing(client, record, monkeypatch):
    def refuse(**kwargs):
        raise AssertionError("HEAD must not build the stream")

    monkeypatch.setattr(bulk_views, "replay_runs", refuse)
    response = client.head("/api/v1/replay", _replay_query(record))
    assert response.status_code == 200 and response.content == b""
    assert response["Content-Type"] == "application/x-ndjson"
    error_of(client.get("/api/v1/replay", {"market_tickers": "NOPE-1",
                                           "start_time": "2026-11-19T00:00:00Z",
                                           "end_time": "2026-11-20T00:00:00Z"}),
             404, "not_found")


def test_streams_get_a_send_timeout_on_the_client_socket(rf):
    left, right = socket.socketpair()
    try:
        request = rf.get("/", **{"gunicorn.socket": left})
        bulk_views.set_send_timeout(request, 7)
        assert left.gettimeout() == 7
        left.setblocking(True)
        bulk_views.set_send_timeout(rf.get("/"), 7)  # runserver: no socket, no change
        assert left.gettimeout() is None
    finally:
        left.close()
        right.close()


# --- Work budgets -------------------------------------------------------------------------


def test_orderbook_past_its_delta_budget_is_a_clear_422(client, record):
    query = {"market_ticker": HOT, "timestamp": _iso(record.last)}
    assert data_of(client.get("/api/v1/orderbook", query))["deltas_applied"] > 3
    with override_settings(API_MAX_BOOK_DELTAS=3):
        body = error_of(client.get("/api/v1/orderbook", query), 422, "too_much_work")
    assert "/replay" in body["message"]


def test_book_snapshot_pages_stop_at_their_work_budget_and_continue(client, record):
    query = {"market_ticker": QUIET, "start_time": _iso(record.first),
             "end_time": _iso(record.last), "interval": "2s"}
    whole = data_of(client.get("/api/v1/book_snapshots", query))
    pages, cursor, count = [], None, 0
    with override_settings(API_PAGE_WORK=4500):  # two restarts and a few deltas a page
        while True:
            body = client.get("/api/v1/book_snapshots",
                              {**query, **({"cursor": cursor} if cursor else {})}).json()
            pages += body["data"]
            count += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert pages == whole and count > 1


def test_a_single_book_point_past_the_budget_is_a_422(client, record):
    query = {"market_ticker": HOT, "start_time": _iso(record.last - timedelta(seconds=1)),
             "end_time": _iso(record.last), "interval": "1s"}
    with override_settings(API_PAGE_WORK=10):
        error_of(client.get("/api/v1/book_snapshots", query), 422, "too_much_work")


def test_coverage_past_its_time_limit_is_a_clear_422(client, record, monkeypatch):
    from django.db import connection

    def slow_coverage(**kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(1)")

    monkeypatch.setattr(bulk_views, "coverage", slow_coverage)
    with override_settings(API_COVERAGE_TIME_LIMIT_MS=50):
        body = error_of(client.get("/api/v1/coverage", {
            "market_ticker": HOT, "start_date": DAY, "end_date": DAY}), 422, "too_much_work")
    assert "fewer days" in body["message"]
    data_of(client.get("/api/v1/series"))  # the connection is fine afterwards


# --- Replay of late trades --------------------------------------------------------------


def test_late_trades_stream_in_receive_order_one_batch_at_a_time():
    Market.objects.create(ticker="LATE-1")
    # Inside the partition window pgpartition made for the tests (around today).
    start = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    # 40 trades whose exchange times run backwards while they are received in
    # order: a backfill received hours after the trades happened.
    Trade.objects.bulk_create([
        Trade(market_ticker="LATE-1", trade_id=f"t{i:03d}",
              ts=start - timedelta(hours=2) - timedelta(seconds=i),
              received_at=start + timedelta(seconds=i), yes_price=Decimal("0.5"),
              no_price=Decimal("0.5"), count=Decimal("1"), source="rest")
        for i in range(40)
    ])
    end = start + timedelta(hours=1)
    batches = _trades_in_receive_order("LATE-1", start, end, 7,
                                       _received_at_slice("trade", "LATE-1"))
    first = next(batches)
    assert len(first) == 7  # nothing held back: the first batch comes at once
    events = [e for e in replay_events(market_tickers=["LATE-1"], start_time=start,
                                       end_time=end, types=["trades"], batch_size=7)
              if e["type"] == "trade"]
    assert [e["trade_id"] for e in events] == [f"t{i:03d}" for i in range(40)]


# --- Smaller ------------------------------------------------------------------------------


def test_unknown_tickers_are_remembered_so_a_repeat_skips_the_partitions(
        django_assert_num_queries):
    assert selectors.market_known("NOPE-404") is False
    with django_assert_num_queries(0):
        assert selectors.market_known("NOPE-404") is False


@override_settings(DEBUG=False, ALLOWED_HOSTS=["api.example.org"])
def test_a_bad_host_is_a_json_400_in_the_error_shape(client):
    response = client.get("/api/v1/series", HTTP_HOST="evil.example")
    body = error_of(response, 400, "bad_request")
    assert "Host" in body["message"]


def test_redoc_loads_nothing_from_the_internet(anon):
    html = anon.get("/api/redoc/").content.decode()
    assert "redoc.standalone.js" in html
    assert "fonts.googleapis" not in html and "https://" not in html


def test_the_exports_listing_ignores_symlinks_out_of_export_dir(client, tmp_path):
    root, outside = tmp_path / "export", tmp_path / "private.parquet"
    outside.write_bytes(b"secret")
    day = root / "type=trades" / "date=2026-11-19"
    day.mkdir(parents=True)
    (day / "part-0.parquet").write_bytes(b"PAR1")
    (day / "part-1.parquet").symlink_to(outside)
    with override_settings(EXPORT_DIR=root):
        listed = [f["path"] for f in data_of(client.get("/api/v1/exports"))]
        assert listed == ["type=trades/date=2026-11-19/part-0.parquet"]
        error_of(client.get("/api/v1/exports/type=trades/date=2026-11-19/part-1.parquet"),
                 404, "not_found")


# --- Health and metrics -------------------------------------------------------------------


def test_health_endpoints_for_a_load_balancer(anon):
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}


def test_metrics_count_requests_by_route_and_status(client, anon):
    client.get("/api/v1/series")
    text = anon.get("/metrics").content.decode()
    assert 'api_requests_total{method="GET",route="series-list",status="200"}' in text
    assert "api_request_seconds_bucket" in text


def test_metrics_need_the_token_when_one_is_set(anon):
    with override_settings(METRICS_TOKEN="s3cret"):
        error_of(anon.get("/metrics"), 403, "permission_denied")
        assert anon.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
    assert anon.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403


# --- Client address (X-Forwarded-For) -----------------------------------------------------


@override_settings(API_ALLOW_ANONYMOUS=True)
def test_a_forged_x_forwarded_for_does_not_escape_the_address_limit(anon, monkeypatch):
    from backtest_api.throttling import AnonymousRateThrottle

    monkeypatch.setattr(AnonymousRateThrottle, "rate", "2/min", raising=False)
    for i in range(2):
        data_of(anon.get("/api/v1/series", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}"))
    error_of(anon.get("/api/v1/series", HTTP_X_FORWARDED_FOR="10.0.0.99"), 429, "rate_limited")


def test_behind_num_proxies_the_address_is_the_one_the_proxy_saw(rf):
    from rest_framework.settings import api_settings

    from backtest_api.limits import client_address

    request = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7", REMOTE_ADDR="10.0.0.1")
    assert api_settings.NUM_PROXIES == 0
    assert client_address(request) == "10.0.0.1"
    rest = {**__import__("django.conf").conf.settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    with override_settings(REST_FRAMEWORK=rest):
        assert client_address(request) == "198.51.100.7"


def test_a_slot_whose_lease_ran_out_is_not_freed_by_its_old_holder(rf):
    from django.core.cache import cache

    from backtest_api.limits import acquire

    request = rf.get("/")
    request.auth = None
    slots = acquire(request, "replay")
    taken_over = slots.keys[1]
    cache.set(taken_over, "someone-else")  # the lease ran out and another request took it
    slots.release()
    assert cache.get(taken_over) == "someone-else"
