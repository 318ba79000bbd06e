"""A live server of this project holding a recorded day, for the client's tests.

The server is Django's own threaded WSGI server on an ephemeral port of
127.0.0.1 (what `runserver` runs). pytest-django's `live_server` would flush
the database after every test; here the day is written once per module and
committed (the server's threads have their own connections, so they see
only committed rows), and the database is flushed at the end,
as a transactional test leaves it.
"""

import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.test import override_settings

from backtest_api.models import api_key_create
from markets.export import export_dataset
from markets.models import Event, Market, Series, Settlement
from tests.recorded import EVENT, HOT, QUIET, record_day

from kalshi_data_client import Client, Retry

DAY = date(2026, 11, 19)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="package")
def live_url():
    server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=False)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="package")
def served(django_db_setup, django_db_blocker, live_url, tmp_path_factory):
    """(record, base_url, api key), with the day's files exported under EXPORT_DIR."""
    export_dir = tmp_path_factory.mktemp("export")
    with django_db_blocker.unblock():
        record = record_day(DAY)
        Market.objects.filter(ticker=HOT).update(status="active", title="The hot one")
        Series.objects.create(ticker="KXTEST", title="Test series", category="Testing",
                              fee_multiplier=Decimal("0.0700"))
        Event.objects.create(event_ticker=EVENT, series_ticker="KXTEST", title="Test event")
        Settlement.objects.create(market_ticker=QUIET, event_ticker=EVENT, result="no",
                                  settlement_value=Decimal("0.0000"),
                                  settled_at=record.last + timedelta(hours=1))
        key = api_key_create(name="client-tests")[1]
        export_dataset(start_date=DAY, end_date=DAY, out_dir=export_dir,
                       tables=["deltas", "trades", "gaps"])
        with override_settings(EXPORT_DIR=export_dir):
            yield record, live_url, key
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def record(served):
    return served[0]


@pytest.fixture
def api(served):
    """A client of the live server with a short backoff (no real waits in tests)."""
    _, url, key = served
    with Client(url, api_key=key, retry=Retry(backoff=0.01, max_backoff=0.05)) as client:
        yield client


def utc(year, month, day, *rest):
    return datetime(year, month, day, *rest, tzinfo=timezone.utc)
