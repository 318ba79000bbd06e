"""The synchronous client (httpx)."""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import quote as urlquote

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
from .errors import TransportError
from .frames import Batch
from .replay import Books, cut_short, parse_line

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow

DEFAULT_BATCH_ROWS = 100_000


class Pages:
    """A lazy list: iterating it fetches page after page, following `next_cursor`.

    Nothing is fetched until it is iterated; each iteration starts again from
    the first page. `iter_batches(rows=...)` yields `Batch`es (lists that
    convert to frames) so a month of deltas never sits in memory at once;
    `to_pandas()`, `to_polars()`, `to_arrow()` and `to_list()` read it all.
    """

    def __init__(self, get: Callable[[str, dict[str, Any]], Any], path: str,
                 params: dict[str, Any]) -> None:
        self._get, self._path, self._params = get, path, params

    def pages(self, page_size: int | None = None) -> Iterator[Batch]:
        """One Batch per API page."""
        params = dict(self._params)
        params["limit"] = page_size or params.get("limit") or MAX_PAGE
        while True:
            body = self._get(self._path, params)
            yield Batch(convert_record(row) for row in body["data"])
            if not body.get("has_more"):
                return
            params["cursor"] = body["next_cursor"]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for page in self.pages():
            yield from page

    def iter_batches(self, rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Batch]:
        """Batches of `rows` records (the last one shorter)."""
        batch = Batch()
        for page in self.pages(min(rows, MAX_PAGE)):
            for row in page:
                batch.append(row)
                if len(batch) >= rows:
                    yield batch
                    batch = Batch()
        if batch:
            yield batch

    def first(self) -> dict[str, Any] | None:
        """The first record, from a one-row page."""
        for row in next(self.pages(1)):
            return row
        return None

    def to_list(self) -> Batch:
        return Batch(self)

    def to_arrow(self) -> "pyarrow.Table":
        return self.to_list().to_arrow()

    def to_pandas(self) -> "pandas.DataFrame":
        return self.to_list().to_pandas()

    def to_polars(self) -> "polars.DataFrame":
        return self.to_list().to_polars()


class Replay:
    """The replay stream of some markets, read lazily, line by line, in constant memory.

    Iterating yields events (dicts with Decimal and datetime values) in the
    order the recorder received them; `books()` yields each event with the
    book of its market after it. Each iteration opens the stream again. A
    stream that ends with an `error` line, or without its `end` line, raises
    `StreamError`.
    """

    def __init__(self, client: "Client", params: dict[str, Any]) -> None:
        self._client, self._params = client, params

    def __iter__(self) -> Iterator[dict[str, Any]]:
        response = self._client._send("replay", self._params, stream=True)
        try:
            for line in response.iter_lines():
                if not line:
                    continue
                event = parse_line(line)
                if event is None:
                    return
                yield event
        except httpx.TransportError as exc:
            raise TransportError(f"replay stream broke: {exc}") from exc
        finally:
            response.close()
        raise cut_short()

    def books(self) -> Iterator[tuple[dict[str, Any], OrderBook | None]]:
        """(event, the book of its market after it). The book is live: `.copy()` to keep it."""
        books = Books()
        for event in self:
            yield event, books.apply(event)

    def iter_batches(self, rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Batch]:
        batch = Batch()
        for event in self:
            batch.append(event)
            if len(batch) >= rows:
                yield batch
                batch = Batch()
        if batch:
            yield batch

    def to_list(self) -> Batch:
        return Batch(self)

    def to_arrow(self) -> "pyarrow.Table":
        return self.to_list().to_arrow()

    def to_pandas(self) -> "pandas.DataFrame":
        return self.to_list().to_pandas()

    def to_polars(self) -> "polars.DataFrame":
        return self.to_list().to_polars()


class Client(Endpoints[Pages, dict[str, Any], Batch]):
    """The Kalshi data API, synchronously.

    `api_key` defaults to the `KALSHI_DATA_API_KEY` environment variable; a
    server that allows anonymous reads (`make run` on simulated data) needs
    none. Use it as a context manager, or call `close()`.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = 60.0, retry: Retry | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.retry = retry or Retry()
        self._sleep = sleep
        self._http = httpx.Client(base_url=api_url(base_url), headers=base_headers(api_key),
                                  timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    # -- I/O ----------------------------------------------------------------------------

    def _send(self, path: str, params: dict[str, Any] | None = None, *, stream: bool = False,
              headers: dict[str, str] | None = None) -> httpx.Response:
        """GET with retries; a final error answer raises its typed exception."""
        attempt = 0
        while True:
            request = self._http.build_request("GET", path, params=params, headers=headers)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt, None)
                if delay is None:
                    raise TransportError(f"GET {request.url}: {exc!r}") from exc
            else:
                if not retryable(response):
                    if response.status_code >= 400:
                        response.read()
                        response.close()
                        raise_for_error(response)
                    return response
                delay = self.retry.delay(attempt, response)
                response.read()
                response.close()
                if delay is None:
                    raise_for_error(response)
            self._sleep(delay)  # type: ignore[arg-type]
            attempt += 1

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._send(path, params).json()

    def _list(self, path: str, params: dict[str, Any]) -> Pages:
        return Pages(self._get_json, path, params)

    def _object(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return convert_record(self._get_json(_quoted(path), params)["data"])

    def _inner_list(self, path: str, params: dict[str, Any], key: str) -> Batch:
        data = self._get_json(_quoted(path), params)["data"]
        return Batch(convert_record(row) for row in data[key])

    # -- streams and files ---------------------------------------------------------------

    def replay(self, market_tickers: Tickers, start_time: Time, end_time: Time,
               types: Tickers | None = None) -> Replay:
        """Every event of the markets in `[start_time, end_time)` (`GET /replay`), streamed.

        `types`: any of deltas, trades, lifecycle (default all). Gzip is asked for.
        """
        return Replay(self, replay_params(market_tickers, start_time, end_time, types))

    def _listed(self, start_date: Time, end_date: Time, types: Tickers | None,
                file_format: str) -> list[dict[str, Any]]:
        kinds = wire_list(types)
        wanted: list[str | None] = list(kinds.split(",")) if kinds else [None]
        return [entry for kind in wanted for entry in self.exports(
            type=kind, file_format=file_format, start_date=start_date, end_date=end_date)]

    def quote(self, start_date: Time, end_date: Time, *, types: Tickers | None = None,
              markets: Tickers | None = None, file_format: str = "parquet",
              dest: str | Path | None = None) -> Quote:
        """How many files and bytes `download()` would fetch (and rows, given markets)."""
        quote = Quote()
        for entry in self._listed(start_date, end_date, types, file_format):
            quote.files += 1
            quote.bytes += int(entry["bytes"])
            if dest is not None and plan_file(entry, Path(dest)).cached:
                quote.cached_files += 1
                quote.cached_bytes += int(entry["bytes"])
        kinds = wire_list(types)
        for ticker in (wire_list(markets) or "").split(","):
            if ticker:
                add_rows(quote, self.coverage(ticker, start_date, end_date),
                         kinds.split(",") if kinds else None)
        return quote

    def download(self, start_date: Time, end_date: Time, *, types: Tickers | None = None,
                 dest: str | Path = "kalshi-data", file_format: str = "parquet",
                 progress: bool = True) -> list[Path]:
        """Fetch the day files of `[start_date, end_date]` (both included) into `dest`.

        Files already there (same size and modification time) are not fetched
        again; a partial download resumes where it stopped (HTTP Range); every
        file's size is checked against the listing. Returns the local paths,
        hive-style as on the server (`dest/type=deltas/date=.../part-0.parquet`).
        """
        plans = [plan_file(e, Path(dest))
                 for e in self._listed(start_date, end_date, types, file_format)]
        total = sum(p.size - p.offset for p in plans if not p.cached)
        with tqdm(total=total, unit="B", unit_scale=True, disable=not progress,
                  desc="download") as bar:
            for plan in plans:
                if not plan.cached:
                    self._fetch(plan, bar.update)
        return [p.target for p in plans]

    def _fetch(self, plan: FilePlan, advance: Callable[[int], object]) -> None:
        plan.target.parent.mkdir(parents=True, exist_ok=True)
        headers = {"Accept": "*/*"}
        if plan.offset:
            headers.update({"Range": f"bytes={plan.offset}-", "If-Range": plan.if_range})
        response = self._send("exports/" + plan.entry["path"], stream=True, headers=headers)
        try:
            mode = "ab" if response.status_code == 206 else "wb"
            with open(plan.part, mode) as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    advance(len(chunk))
        except httpx.TransportError as exc:
            raise TransportError(f"download of {plan.entry['path']} broke: {exc!r}; "
                                 "run it again to resume") from exc
        finally:
            response.close()
        finish_file(plan)


def _quoted(path: str) -> str:
    """Tickers in a path are quoted (they are plain letters in practice)."""
    head, _, tail = path.partition("/")
    return f"{head}/{urlquote(tail, safe='')}" if tail else head
