"""Cross-cutting behaviour: envelope, errors, request ids, keys, throttling, schema."""

import json

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from backtest_api.models import ApiKey, api_key_create, hash_key
from backtest_api.throttling import ApiKeyRateThrottle
from markets.models import Series

from .conftest import data_of, error_of

pytestmark = pytest.mark.django_db


def test_success_envelope_and_request_id_header(client):
    Series.objects.create(ticker="KXA", title="A")
    response = client.get("/api/v1/series/KXA")
    assert data_of(response)["ticker"] == "KXA"
    assert response.json()["response_time"] >= 0


def test_client_request_id_is_echoed_and_bad_ones_replaced(client):
    Series.objects.create(ticker="KXA")
    ok = client.get("/api/v1/series/KXA", HTTP_X_REQUEST_ID="trace-123")
    assert ok["X-Request-ID"] == "trace-123" and ok.json()["request_id"] == "trace-123"
    bad = client.get("/api/v1/series/KXA", HTTP_X_REQUEST_ID="no spaces <allowed>")
    assert (
        bad["X-Request-ID"] != "no spaces <allowed>" and len(bad["X-Request-ID"]) == 32
    )


def test_unknown_ticker_is_404_naming_it(client):
    body = error_of(client.get("/api/v1/series/NOPE"), 404, "not_found")
    assert "NOPE" in body["message"]


def test_unknown_path_is_404_in_the_error_shape(client):
    with override_settings(DEBUG=False):
        error_of(client.get("/api/v1/nothing-here"), 404, "not_found")


def test_root_redirects_to_the_api_root(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/api/v1/"
    assert "series" in data_of(client.get("/api/v1/"))


# --- Authentication -----------------------------------------------------------


def test_without_a_key_reads_are_refused(anon):
    body = error_of(anon.get("/api/v1/series"), 401, "not_authenticated")
    assert "API key" in body["message"]


@override_settings(API_ALLOW_ANONYMOUS=True)
def test_anonymous_reads_when_the_setting_allows(anon):
    data_of(anon.get("/api/v1/series"))


def test_x_api_key_header_works(anon, raw_key):
    data_of(anon.get("/api/v1/series", HTTP_X_API_KEY=raw_key))


def test_wrong_key_is_refused_even_when_anonymous_reads_are_allowed(anon):
    with override_settings(API_ALLOW_ANONYMOUS=True):
        response = anon.get("/api/v1/series", HTTP_AUTHORIZATION="Bearer kd_wrong")
    error_of(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_stops_working(client, raw_key):
    data_of(client.get("/api/v1/series"))
    ApiKey.objects.get(key_hash=hash_key(raw_key)).revoke()
    error_of(client.get("/api/v1/series"), 401, "authentication_failed")


def test_deleted_key_stops_working(client, raw_key):
    data_of(client.get("/api/v1/series"))
    ApiKey.objects.filter(key_hash=hash_key(raw_key)).delete()
    error_of(client.get("/api/v1/series"), 401, "authentication_failed")


def test_key_revoked_behind_the_models_back_stops_working_at_once(client, raw_key):
    """A revocation no signal sees (a bulk update, SQL by hand) works on the next request."""
    data_of(client.get("/api/v1/series"))
    ApiKey.objects.filter(key_hash=hash_key(raw_key)).update(revoked_at=timezone.now())
    error_of(client.get("/api/v1/series"), 401, "authentication_failed")


def test_writes_are_refused(client):
    response = client.post("/api/v1/series", {}, format="json")
    assert response.status_code in (403, 405)
    assert response.json()["code"] in ("permission_denied", "method_not_allowed")


def test_staff_session_can_browse_but_other_users_cannot(django_user_model):
    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    user = django_user_model.objects.create_user("user", password="x")
    browser = APIClient()
    browser.force_login(staff)
    html = browser.get("/api/v1/series", HTTP_ACCEPT="text/html")
    assert html.status_code == 200 and b"&quot;request_id&quot;" in html.content
    browser.force_login(user)
    error_of(browser.get("/api/v1/series"), 401, "not_authenticated")


def test_create_api_key_prints_it_once_and_stores_only_its_hash(capsys):
    call_command("create_api_key", "alice")
    raw = capsys.readouterr().out.strip()
    key = ApiKey.objects.get(name="alice")
    assert raw.startswith("kd_") and key.key_hash == hash_key(raw)
    assert raw not in str(ApiKey.objects.values_list().get(pk=key.pk))
    api = APIClient()
    data_of(api.get("/api/v1/series", HTTP_AUTHORIZATION=f"Bearer {raw}"))


# --- Throttling -----------------------------------------------------------------


def test_429_says_when_to_retry(client, monkeypatch):
    monkeypatch.setattr(
        ApiKeyRateThrottle, "THROTTLE_RATES", {"key": "2/min", "anon": "2/min"}
    )
    data_of(client.get("/api/v1/series"))
    data_of(client.get("/api/v1/series"))
    response = client.get("/api/v1/series")
    body = error_of(response, 429, "rate_limited")
    retry = int(response["Retry-After"])
    assert 0 < retry <= 60
    assert f"retry in {retry} seconds" in body["message"]
    assert body["details"] == {"retry_after": retry}


def test_limits_are_per_key(client, monkeypatch):
    monkeypatch.setattr(
        ApiKeyRateThrottle, "THROTTLE_RATES", {"key": "1/min", "anon": "1/min"}
    )
    data_of(client.get("/api/v1/series"))
    error_of(client.get("/api/v1/series"), 429, "rate_limited")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='bob')[1]}")
    data_of(other.get("/api/v1/series"))


# --- Schema -------------------------------------------------------------------


def test_schema_validates_and_docs_are_served_offline(anon):
    import yaml
    from drf_spectacular.validation import validate_schema

    response = anon.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    validate_schema(schema)
    assert "/api/v1/series/{ticker}" in schema["paths"]
    docs = anon.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html and "cdn" not in html.lower()


def test_unacceptable_format_is_406_in_the_error_shape(client):
    error_of(
        client.get("/api/v1/series", HTTP_ACCEPT="application/xml"),
        406,
        "not_acceptable",
    )


def test_a_bug_answers_500_in_the_error_shape(rf):
    from backtest_api.exceptions import server_error

    request = rf.get("/api/v1/series")
    request.request_id = "req-1"
    response = server_error(request)
    assert response.status_code == 500
    body = json.loads(response.content)
    assert body["code"] == "internal_error" and body["request_id"] == "req-1"


def test_staff_revoke_keys_in_the_admin(admin_client, raw_key):
    key = ApiKey.objects.get(key_hash=hash_key(raw_key))
    changelist = admin_client.get("/admin/backtest_api/apikey/")
    assert changelist.status_code == 200 and key.prefix in changelist.content.decode()
    assert raw_key not in changelist.content.decode()
    response = admin_client.post(
        "/admin/backtest_api/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    api = APIClient()
    error_of(
        api.get("/api/v1/series", HTTP_X_API_KEY=raw_key), 401, "authentication_failed"
    )


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/",
        "/api/v1/markets",
        "/api/v1/markets/M",
        "/api/v1/events",
        "/api/v1/settlements",
        "/api/v1/trades?market_ticker=M",
        "/api/v1/deltas?market_ticker=M",
        "/api/v1/orderbook?market_ticker=M&timestamp=2026-11-23T12:00:00Z",
        "/api/v1/candles/M?start_time=2026-11-23T00:00:00Z&end_time=2026-11-24T00:00:00Z",
        "/api/v1/trades?market_ticker=M&limit=0",
    ],
)
def test_every_endpoint_is_browsable(admin_client, url):
    from markets.models import Market

    Market.objects.create(ticker="M")
    response = admin_client.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code in (200, 400)
    assert response["Content-Type"].startswith("text/html")
    assert b"request_id" in response.content


@pytest.mark.parametrize(
    "url, status, code",
    [
        ("/api/v1/markets/A%00B", 404, "not_found"),
        ("/api/v1/events/A%00", 404, "not_found"),
        ("/api/v1/series/A%00", 404, "not_found"),
        ("/api/v1/settlements/A%00", 404, "not_found"),
        (
            "/api/v1/candles/A%00?start_time=2026-11-23T00:00:00Z&end_time=2026-11-24T00:00:00Z",
            404,
            "not_found",
        ),
        ("/api/v1/trades?market_ticker=A%00", 400, "invalid_parameter"),
        ("/api/v1/markets?status=a%00", 400, "invalid_parameter"),
        # A cursor whose key holds a NUL byte: base64 of ["a\u0000"].
        ("/api/v1/markets?cursor=WyJhXHUwMDAwIl0", 400, "invalid_parameter"),
        ("/api/v1/series?format=xml", 404, "not_found"),
    ],
)
def test_input_postgresql_cannot_store_is_a_client_error(client, url, status, code):
    # PostgreSQL text cannot hold NUL bytes: such input must never reach a query.
    error_of(client.get(url), status, code)


@override_settings(DEBUG=False)
def test_swagger_ui_assets_are_served_by_the_app_itself(anon):
    # No CDN and no separate web server: the docs work offline under gunicorn.
    html = anon.get("/api/docs/").content.decode()
    asset = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert asset in html
    response = anon.get(asset)
    assert response.status_code == 200
    assert b"SwaggerUIBundle" in b"".join(response.streaming_content)
