"""The asynchronous client (httpx), with the same methods as `Client`.

Lists are async iterators (`async for`), their conversions are awaited
(`await client.trades(...).to_pandas()`), objects are awaited.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Coroutine

import httpx
from tqdm import tqdm

from ._convert import convert_record, wire_list
from ._core import (
    MAX_PAGE,
    Endpoints,
    Retry,
    Tickers,
    Time,
    api_url,
    base_headers,
    raise_for_error,
    replay_params,
    retryable,
)
from ._download import CHUNK, FilePlan, Quote, add_rows, finish_file, plan_file
from .book import OrderBook
from .client import DEFAULT_BATCH_ROWS, _quoted
from .errors import TransportError
from .frames import Batch
from .replay import Books, cut_short, parse_line

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow


class _Collect:
    """Batches and frames from an async iterator of records."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError

    async def iter_batches(self, rows: int = DEFAULT_BATCH_ROWS) -> AsyncIterator[Batch]:
        batch = Batch()
        async for row in self:
            batch.append(row)
            if len(batch) >= rows:
                yield batch
                batch = Batch()
        if batch:
            yield batch

    async def to_list(self) -> Batch:
        return Batch([row async for row in self])

    async def to_arrow(self) -> "pyarrow.Table":
        return (await self.to_list()).to_arrow()

    async def to_pandas(self) -> "pandas.DataFrame":
        return (await self.to_list()).to_pandas()

    async def to_polars(self) -> "polars.DataFrame":
        return (await self.to_list()).to_polars()


class AsyncPages(_Collect):
    """See `Pages`: a lazy list, fetched page after page as it is iterated."""

    def __init__(self, get: Callable[[str, dict[str, Any]], Awaitable[Any]], path: str,
                 params: dict[str, Any]) -> None:
        self._get, self._path, self._params = get, path, params

    async def pages(self, page_size: int | None = None) -> AsyncIterator[Batch]:
        params = dict(self._params)
        params["limit"] = page_size or params.get("limit") or MAX_PAGE
        while True:
            body = await self._get(self._path, params)
            yield Batch(convert_record(row) for row in body["data"])
            if not body.get("has_more"):
                return
            params["cursor"] = body["next_cursor"]

    async def _rows(self) -> AsyncIterator[dict[str, Any]]:
        async for page in self.pages():
            for row in page:
                yield row

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._rows()

    async def iter_batches(self, rows: int = DEFAULT_BATCH_ROWS) -> AsyncIterator[Batch]:
        batch = Batch()
        async for page in self.pages(min(rows, MAX_PAGE)):
            for row in page:
                batch.append(row)
                if len(batch) >= rows:
                    yield batch
                    batch = Batch()
        if batch:
            yield batch

    async def first(self) -> dict[str, Any] | None:
        async for page in self.pages(1):
            return page[0] if page else None
        return None


class AsyncReplay(_Collect):
    """See `Replay`: the stream, read lazily line by line."""

    def __init__(self, client: "AsyncClient", params: dict[str, Any]) -> None:
        self._client, self._params = client, params

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        response = await self._client._send("replay", self._params, stream=True)
        try:
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = parse_line(line)
                if event is None:
                    return
                yield event
        except httpx.TransportError as exc:
            raise TransportError(f"replay stream broke: {exc}") from exc
        finally:
            await response.aclose()
        raise cut_short()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._events()

    async def books(self) -> AsyncIterator[tuple[dict[str, Any], OrderBook | None]]:
        """See `Replay.books()`."""
        books = Books()
        async for event in self:
            yield event, books.apply(event)


class AsyncClient(Endpoints[AsyncPages, Coroutine[Any, Any, dict[str, Any]],
                            Coroutine[Any, Any, Batch]]):
    """See `Client`; every method is the same, awaited or iterated with `async for`."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = 60.0, retry: Retry | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.retry = retry or Retry()
        self._sleep = sleep
        self._http = httpx.AsyncClient(base_url=api_url(base_url),
                                       headers=base_headers(api_key), timeout=timeout,
                                       transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()

    async def _send(self, path: str, params: dict[str, Any] | None = None, *,
                    stream: bool = False,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        """See `Client._send`."""
        attempt = 0
        while True:
            request = self._http.build_request("GET", path, params=params, headers=headers)
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt, None)
                if delay is None:
                    raise TransportError(f"GET {request.url}: {exc!r}") from exc
            else:
                if not retryable(response):
                    if response.status_code >= 400:
                        await response.aread()
                        await response.aclose()
                        raise_for_error(response)
                    return response
                delay = self.retry.delay(attempt, response)
                await response.aread()
                await response.aclose()
                if delay is None:
                    raise_for_error(response)
            await self._sleep(delay)  # type: ignore[arg-type]
            attempt += 1

    async def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return (await self._send(path, params)).json()

    def _list(self, path: str, params: dict[str, Any]) -> AsyncPages:
        return AsyncPages(self._get_json, path, params)

    async def _object(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return convert_record((await self._get_json(_quoted(path), params))["data"])

    async def _inner_list(self, path: str, params: dict[str, Any], key: str) -> Batch:
        data = (await self._get_json(_quoted(path), params))["data"]
        return Batch(convert_record(row) for row in data[key])

    def replay(self, market_tickers: Tickers, start_time: Time, end_time: Time,
               types: Tickers | None = None) -> AsyncReplay:
        """See `Client.replay`."""
        return AsyncReplay(self, replay_params(market_tickers, start_time, end_time, types))

    async def _listed(self, start_date: Time, end_date: Time, types: Tickers | None,
                      file_format: str) -> list[dict[str, Any]]:
        kinds = wire_list(types)
        wanted: list[str | None] = list(kinds.split(",")) if kinds else [None]
        out: list[dict[str, Any]] = []
        for kind in wanted:
            out.extend(await self.exports(type=kind, file_format=file_format,
                                          start_date=start_date, end_date=end_date).to_list())
        return out

    async def quote(self, start_date: Time, end_date: Time, *, types: Tickers | None = None,
                    markets: Tickers | None = None, file_format: str = "parquet",
                    dest: str | Path | None = None) -> Quote:
        """See `Client.quote`."""
        quote = Quote()
        for entry in await self._listed(start_date, end_date, types, file_format):
            quote.files += 1
            quote.bytes += int(entry["bytes"])
            if dest is not None and plan_file(entry, Path(dest)).cached:
                quote.cached_files += 1
                quote.cached_bytes += int(entry["bytes"])
        kinds = wire_list(types)
        for ticker in (wire_list(markets) or "").split(","):
            if ticker:
                add_rows(quote, await self.coverage(ticker, start_date, end_date),
                         kinds.split(",") if kinds else None)
        return quote

    async def download(self, start_date: Time, end_date: Time, *,
                       types: Tickers | None = None, dest: str | Path = "kalshi-data",
                       file_format: str = "parquet", progress: bool = True) -> list[Path]:
        """See `Client.download`."""
        plans = [plan_file(e, Path(dest))
                 for e in await self._listed(start_date, end_date, types, file_format)]
        total = sum(p.size - p.offset for p in plans if not p.cached)
        with tqdm(total=total, unit="B", unit_scale=True, disable=not progress,
                  desc="download") as bar:
            for plan in plans:
                if not plan.cached:
                    await self._fetch(plan, bar.update)
        return [p.target for p in plans]

    async def _fetch(self, plan: FilePlan, advance: Callable[[int], object]) -> None:
        plan.target.parent.mkdir(parents=True, exist_ok=True)
        headers = {"Accept": "*/*"}
        if plan.offset:
            headers.update({"Range": f"bytes={plan.offset}-", "If-Range": plan.if_range})
        response = await self._send("exports/" + plan.entry["path"], stream=True,
                                    headers=headers)
        try:
            mode = "ab" if response.status_code == 206 else "wb"
            with open(plan.part, mode) as out:
                async for chunk in response.aiter_bytes(CHUNK):
                    out.write(chunk)
                    advance(len(chunk))
        except httpx.TransportError as exc:
            raise TransportError(f"download of {plan.entry['path']} broke: {exc!r}; "
                                 "run it again to resume") from exc
        finally:
            await response.aclose()
        finish_file(plan)
