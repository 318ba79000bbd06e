"""AsyncClient: the same methods as Client, awaited or iterated with `async for`."""

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from kalshi_data_client import AsyncClient, Client, InvalidParameter, RateLimited, Retry
from tests.recorded import HOT, QUIET

from .conftest import DAY

pytestmark = [pytest.mark.django_db, pytest.mark.asyncio]


@pytest.fixture
def urls(served):
    return served[1], served[2]


async def test_async_results_equal_the_sync_ones(urls, record):
    url, key = urls
    end = record.last + timedelta(seconds=1)
    with Client(url, api_key=key) as sync:
        expected_deltas = list(sync.deltas(HOT, record.first, end))
        expected_book = sync.orderbook(HOT, record.instants[900])
        expected_replay = sync.replay([HOT, QUIET], record.first, end).to_list()
        expected_days = sync.coverage(HOT, DAY, DAY)
    async with AsyncClient(url, api_key=key) as client:
        assert [d async for d in client.deltas(HOT, record.first, end, limit=300)] == (
            expected_deltas)
        assert await client.orderbook(HOT, record.instants[900]) == expected_book
        assert await client.coverage(HOT, DAY, DAY) == expected_days
        assert (await client.market(HOT))["ticker"] == HOT
        assert await client.replay([HOT, QUIET], record.first, end).to_list() == expected_replay
        sizes = [len(b) async for b in client.deltas(HOT, record.first, end).iter_batches(400)]
        assert sum(sizes) == len(expected_deltas) and sizes[0] == 400
        frame = await client.trades(HOT, record.first - timedelta(hours=1), end).to_polars()
        assert frame.height > 0 and str(frame.schema["count"]) == "Decimal(precision=18, scale=2)"
        assert (await client.markets(status="active").first())["ticker"] == HOT


async def test_async_replay_books_end_as_the_orderbook(urls, record):
    url, key = urls
    async with AsyncClient(url, api_key=key) as client:
        last_book, last_event = None, None
        async for event, book in client.replay(HOT, record.first, record.instants[1500],
                                               types="deltas").books():
            last_book, last_event = book, event
        server = await client.orderbook(HOT, last_event["received_at"])
    assert last_book.levels("yes") == [(lv["price"], lv["quantity"]) for lv in server["yes"]]
    assert last_book.levels("no") == [(lv["price"], lv["quantity"]) for lv in server["no"]]
    assert isinstance(last_book.best_ask("yes")[0], Decimal)


async def test_async_download_and_errors(urls, record, tmp_path, settings):
    url, key = urls
    async with AsyncClient(url, api_key=key) as client:
        quote = await client.quote(DAY, DAY, types="trades", dest=tmp_path)
        (path,) = await client.download(DAY, DAY, types="trades", dest=tmp_path,
                                        progress=False)
        assert path.stat().st_size == quote.bytes
        assert path.read_bytes() == (settings.EXPORT_DIR / path.relative_to(tmp_path)
                                     ).read_bytes()
        assert (await client.quote(DAY, DAY, types="trades", dest=tmp_path)).bytes_to_fetch == 0
        with pytest.raises(InvalidParameter) as error:
            await client.candles(HOT, "7x", record.first, record.last)
        assert error.value.param == "interval"


async def test_async_429_honours_retry_after():
    waits = []

    async def sleep(seconds):
        waits.append(seconds)

    def handle(request):
        return httpx.Response(429, headers={"Retry-After": "4"}, json={
            "code": "rate_limited", "message": "m", "param": None,
            "details": {"retry_after": 4}, "request_id": "r"})

    async with AsyncClient("http://x", transport=httpx.MockTransport(handle), sleep=sleep,
                           retry=Retry(max_retries=3)) as client:
        with pytest.raises(RateLimited) as limited:
            await client.series_detail("X")
    assert waits == [4, 4, 4] and limited.value.retry_after == 4
