"""The explorer's pages without a browser: who may see them, what they list."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.contrib import admin
from django.test import override_settings

from explore.selectors import market_stats
from markets import ingest
from markets.models import Event, Market, Series, SequenceGap

pytestmark = pytest.mark.django_db

AT = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)


@pytest.fixture
def catalog():
    Series.objects.create(ticker="KXHIGH", title="Highest temperature", category="Climate")
    Series.objects.create(ticker="KXBTC", title="Bitcoin", category="Crypto")
    Event.objects.create(event_ticker="KXHIGH-1", series_ticker="KXHIGH", title="High in NYC")
    Market.objects.create(ticker="KXHIGH-1-T60", event_ticker="KXHIGH-1", series_ticker="KXHIGH",
                          title="Above 60?", status="active")
    Market.objects.create(ticker="KXHIGH-1-T70", event_ticker="KXHIGH-1", series_ticker="KXHIGH",
                          title="Above 70?", status="finalized", result="no")
    Market.objects.create(ticker="KXBTC-1-B100", event_ticker="KXBTC-1", series_ticker="KXBTC",
                          title="Bitcoin above 100k?", status="active")
    ingest.snapshots_ingest([("KXHIGH-1-T60", AT, 1, 1, 1, "subscribe", [["0.4000", "5.00"]],
                              [["0.5500", "3.00"]], None)])
    ingest.trades_ingest([
        ("KXHIGH-1-T60", AT + timedelta(seconds=s), f"t{s}", Decimal(p), 1 - Decimal(p),
         Decimal(c), "yes", "bid", None, False, AT + timedelta(seconds=s), "ws")
        for s, p, c in ((1, "0.4200", "2.00"), (2, "0.4500", "3.50"))
    ])
    SequenceGap.objects.create(market_ticker="KXHIGH-1-T60", channel="orderbook_delta",
                               reason="seq_gap", session_id=1, sid=1,
                               detected_at=AT + timedelta(seconds=5))  # still open


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(user)
    return client


PAGES = ("/explore/", "/explore/series/KXHIGH", "/explore/events/KXHIGH-1",
         "/explore/markets/KXHIGH-1-T60")


@pytest.mark.parametrize("url", PAGES)
def test_pages_follow_the_apis_rule_closed_api(catalog, client, django_user_model, url):
    """With the API closed, anonymous and non-staff users go to the login; staff see the page."""
    with override_settings(API_ALLOW_ANONYMOUS=False):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")
        client.force_login(django_user_model.objects.create_user("plain", password="x"))
        assert client.get(url).status_code == 302
        client.force_login(django_user_model.objects.create_user("boss", password="x",
                                                                 is_staff=True))
        assert client.get(url).status_code == 200


@pytest.mark.parametrize("url", PAGES)
def test_pages_are_open_when_the_api_is(catalog, client, url):
    with override_settings(API_ALLOW_ANONYMOUS=True):
        assert client.get(url).status_code == 200


def test_search_filters_and_badges(catalog, staff):
    markets = lambda **q: [m.ticker for m in staff.get("/explore/", q).context["markets"]]
    assert markets() == ["KXBTC-1-B100", "KXHIGH-1-T60", "KXHIGH-1-T70"]
    assert markets(q="above 7") == ["KXHIGH-1-T70"]  # title, any case
    assert markets(q="btc") == ["KXBTC-1-B100"]  # ticker, any case
    assert markets(status="finalized") == ["KXHIGH-1-T70"]
    assert markets(category="Crypto") == ["KXBTC-1-B100"]
    assert markets(series="KXHIGH") == ["KXHIGH-1-T60", "KXHIGH-1-T70"]
    response = staff.get("/explore/", {"q": "high"})
    assert [s.ticker for s in response.context["series"]] == ["KXHIGH"]
    assert [e.event_ticker for e in response.context["events"]] == ["KXHIGH-1"]
    badges = {m.ticker: m.badge["label"] for m in response.context["markets"]}
    assert badges == {"KXHIGH-1-T60": "gap open", "KXHIGH-1-T70": "no data"}
    assert response.context["choices"]["categories"] == ["Climate", "Crypto"]


def test_event_page_shows_last_price_volume_and_result(catalog, staff):
    response = staff.get("/explore/events/KXHIGH-1")
    cards = {m.ticker: m for m in response.context["markets"]}
    assert cards["KXHIGH-1-T60"].stats.last_price == Decimal("0.4500")
    assert cards["KXHIGH-1-T60"].stats.volume == Decimal("5.50")
    assert cards["KXHIGH-1-T70"].stats.last_price is None
    assert b"<strong>no</strong>" in response.content  # T70's result


def test_market_stats_of_a_market_without_trades():
    assert market_stats(["NONE"])["NONE"].trade_count == 0


def test_market_page_config_points_at_the_api(catalog, staff):
    response = staff.get("/explore/markets/KXHIGH-1-T60", {"at": "2026-11-24T12:00:00Z"})
    config = response.context["config"]
    assert config["api"]["orderbook"] == "/api/v1/orderbook"
    assert config["api"]["candles"] == "/api/v1/candles/KXHIGH-1-T60"
    # The recorded span is that of deltas and trades (selectors.Coverage.span).
    assert config["start"] == (AT + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    assert config["at"] == "2026-11-24T12:00:00Z"
    assert config["gaps"][0]["end"] is None  # still open
    assert config["calendar"] == {"start_date": AT.date().isoformat(),
                                  "end_date": (AT + timedelta(seconds=2)).date().isoformat()}
    assert b'id="explore-config"' in response.content


def test_unknown_tickers_are_404_pages(staff):
    for url in ("/explore/markets/NOPE", "/explore/events/NOPE", "/explore/series/NOPE"):
        response = staff.get(url)
        assert response.status_code == 404
        assert b"No such" in response.content


def test_api_root_and_admin_link_to_the_explorer(staff):
    with override_settings(API_ALLOW_ANONYMOUS=True):
        links = staff.get("/api/v1/", HTTP_ACCEPT="application/json").json()["data"]
    assert links["explore"].endswith("/explore/")
    assert str(admin.site.site_url) == "/explore/"
    assert b'href="/explore/"' in staff.get("/admin/").content


def test_an_active_market_with_a_recent_record_is_followed_live(catalog, staff):
    assert not staff.get("/explore/markets/KXHIGH-1-T60").context["config"]["live"]  # 2 days old
    now = datetime.now(timezone.utc)
    ingest.trades_ingest([("KXHIGH-1-T60", now, "t-now", Decimal("0.5"), Decimal("0.5"),
                           Decimal("1.00"), "yes", "bid", None, False, now, "ws")])
    assert staff.get("/explore/markets/KXHIGH-1-T60").context["config"]["live"]
    Market.objects.filter(ticker="KXHIGH-1-T60").update(status="closed")
    assert not staff.get("/explore/markets/KXHIGH-1-T60").context["config"]["live"]


def test_market_stats_are_the_same_after_the_trades_move_to_the_lake(settings, tmp_path):
    from datetime import date

    from django.core.management import call_command

    from markets.models import LakeDay, Trade
    from tests.recorded import HOT, QUIET, record_day

    settings.LAKE_URL = str(tmp_path / "lake")
    record_day(date(2026, 11, 19), start=datetime(2026, 11, 19, 23, 59, 30, tzinfo=timezone.utc))
    before = market_stats([HOT, QUIET])
    assert before[HOT].trade_count == Trade.objects.filter(market_ticker=HOT).count() > 0
    days = (datetime.now(timezone.utc).date() - date(2026, 11, 20)).days
    call_command("archive", "--older-than", f"{days}d")
    assert LakeDay.objects.get(table="trades", day=date(2026, 11, 19)).dropped_at is not None
    assert Trade.objects.filter(market_ticker=HOT).count() < before[HOT].trade_count
    assert market_stats([HOT, QUIET]) == before
