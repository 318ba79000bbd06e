"""Clients for the API tests: one with a fresh API key, one anonymous."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from backtest_api.models import api_key_create


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    # Rate-limit counts live in the cache; each test starts from zero.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def raw_key(db):
    return api_key_create(name="tests")[1]


@pytest.fixture
def client(raw_key):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return api


@pytest.fixture
def anon():
    return APIClient()


def data_of(response):
    """The envelope's data, after checking the envelope itself."""
    body = response.json()
    assert response.status_code == 200, body
    assert set(body) >= {"data", "request_id", "response_time"}
    assert body["request_id"] == response["X-Request-ID"]
    return body["data"]


def error_of(response, status, code, param=None):
    """The error body, after checking its shape, status, code and parameter."""
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == {"code", "message", "param", "details", "request_id"}
    assert body["code"] == code
    assert body["request_id"] == response["X-Request-ID"]
    if param is not None:
        assert body["param"] == param
        assert param in body["message"]
    return body
