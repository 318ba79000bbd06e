"""The admin for settlements and the hierarchy renders, filters and searches."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from django.urls import reverse

from markets.models import Event, Market, Series, Settlement

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def settlements():
    Settlement.objects.create(
        market_ticker="KXHIGHNY-26NOV24-T60", event_ticker="KXHIGHNY-26NOV24", result="yes",
        settlement_value=Decimal("1.0000"), settled_at=datetime(2026, 11, 24, 15, tzinfo=timezone.utc),
    )
    Settlement.objects.create(
        market_ticker="INXD-26NOV24-B4487", event_ticker="INXD-26NOV24", result="no",
        settlement_value=Decimal("0.0000"), settled_at=datetime(2026, 11, 23, 21, tzinfo=timezone.utc),
    )


def test_settlement_changelist_renders_with_both_rows(staff_client, settlements):
    response = staff_client.get(reverse("admin:markets_settlement_changelist"))
    assert response.status_code == 200
    assert b"KXHIGHNY-26NOV24-T60" in response.content
    assert b"INXD-26NOV24-B4487" in response.content


def test_settlement_filter_by_result(staff_client, settlements):
    response = staff_client.get(reverse("admin:markets_settlement_changelist"), {"result": "no"})
    assert response.status_code == 200
    assert b"INXD-26NOV24-B4487" in response.content
    assert b"KXHIGHNY-26NOV24-T60" not in response.content


def test_settlement_search_by_event_ticker(staff_client, settlements):
    response = staff_client.get(reverse("admin:markets_settlement_changelist"), {"q": "KXHIGHNY"})
    assert b"KXHIGHNY-26NOV24-T60" in response.content
    assert b"INXD-26NOV24-B4487" not in response.content


def test_settlement_date_hierarchy_drills_down(staff_client, settlements):
    url = reverse("admin:markets_settlement_changelist")
    response = staff_client.get(url, {"settled_at__year": 2026, "settled_at__month": 11, "settled_at__day": 23})
    assert b"INXD-26NOV24-B4487" in response.content
    assert b"KXHIGHNY-26NOV24-T60" not in response.content


def test_settlement_change_page_is_read_only(staff_client, settlements):
    url = reverse("admin:markets_settlement_change", args=["KXHIGHNY-26NOV24-T60"])
    response = staff_client.get(url)
    assert response.status_code == 200
    assert b"KXHIGHNY-26NOV24" in response.content
    assert b'name="_save"' not in response.content


@pytest.mark.parametrize("model", ["market", "event", "series"])
def test_hierarchy_changelists_render(staff_client, model):
    Series.objects.create(ticker="KXHIGHNY", title="NYC high")
    Event.objects.create(event_ticker="KXHIGHNY-26NOV24", series_ticker="KXHIGHNY")
    Market.objects.create(ticker="KXHIGHNY-26NOV24-T60", event_ticker="KXHIGHNY-26NOV24")
    response = staff_client.get(reverse(f"admin:markets_{model}_changelist"))
    assert response.status_code == 200
    assert b"KXHIGHNY" in response.content


def test_anonymous_users_are_sent_to_login(client):
    response = client.get(reverse("admin:markets_settlement_changelist"))
    assert response.status_code == 302
