"""An API client with a key, to compare the engines with /orderbook."""

import pytest
from rest_framework.test import APIClient

from backtest_api.models import api_key_create


@pytest.fixture
def api(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='engines')[1]}")
    return client
