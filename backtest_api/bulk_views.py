"""Bulk data for backtests: the replay stream, book snapshots, coverage, day files.

Each view validates its parameters (a bad one is a 400 in the API's error
shape, before anything is streamed), calls one function of `markets`, and
serializes. The replay stream is the exception to the envelope: it is
NDJSON, one event per line, streamed in constant memory.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from contextlib import contextmanager
from itertools import islice

import psycopg

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.utils.http import http_date
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from markets.book_snapshots import book_snapshots
from markets.coverage import coverage
from markets.export import dataset_file, dataset_files
from markets.replay import ONE_MICROSECOND, WorkBudgetExceeded, WorkMeter
from markets.replay_stream import replay_runs

from . import bulk_serializers as bs
from .exceptions import TooMuchWork
from .limits import HeavyEndpointMixin
from .middleware import request_id_for
from .pagination import TickPagination, decode_cursor, encode_cursor, paginated_response
from .renderers import EnvelopeJSONRenderer
from .schema import EnvelopeAutoSchema
from .views import parse_params, require_market

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
# Lines joined into one write: fewer, larger chunks through the WSGI server.
STREAM_CHUNK_LINES = 2000
# zlib level 1 compressed NDJSON about twice as fast as the default 6 here
# (330 vs 170 MB/s) and still shrinks the stream about eightfold.
STREAM_GZIP_LEVEL = 1


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header accepts gzip (with a q-value above 0)."""
    for part in header.split(","):
        name, _, parameters = part.partition(";")
        if name.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        return quality > 0
    return False


class JsonErrorsNegotiation(BaseContentNegotiation):
    """Whatever the Accept header (e.g. application/x-ndjson), errors are JSON.

    The stream itself is NDJSON and never goes through a renderer; what is
    rendered is an error, in the API's one shape, which a client reads the
    same way from every endpoint.
    """

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class RawBodySchema(EnvelopeAutoSchema):
    """For the stream and the file downloads: their 2xx bodies are sent as they are."""

    def _get_response_for_code(self, serializer, status_code, media_types=None,
                               direction="response"):
        if str(status_code).startswith("2"):
            return AutoSchema._get_response_for_code(
                self, serializer, status_code, media_types, direction)
        return super()._get_response_for_code(serializer, status_code, media_types, direction)


# --- Replay ----------------------------------------------------------------------------


def _ndjson_chunks(runs, request_id: str, on_chunk=lambda: None):
    """Runs of lines joined into chunks, then an `end` line that says the stream is whole.

    A failure after the first byte cannot change the status any more, so the
    lines read until then are sent and an `error` line ends the stream
    instead of the `end` line.
    """
    events, pending, count = 0, [], 0
    try:
        for run in runs:
            pending.append("\n".join(run))
            count += len(run)
            if count >= STREAM_CHUNK_LINES:
                events += count
                yield ("\n".join(pending) + "\n").encode()
                on_chunk()
                pending, count = [], 0
        tail = {"type": "end", "events": events + count, "request_id": request_id}
    except Exception:
        logger.exception("replay stream failed after %d events (request %s)",
                         events + count, request_id)
        tail = {"type": "error", "code": "internal_error", "events": events + count,
                "message": "The stream failed; quote the request_id when reporting it.",
                "request_id": request_id}
    if pending:
        yield ("\n".join(pending) + "\n").encode()
    yield (json.dumps(tail, separators=(",", ":")) + "\n").encode()


def _gzipped(chunks):
    # Compressing on a second thread (zlib releases the GIL) measured no
    # faster on the shared two-CPU machine, so it stays this simple.
    compressor = zlib.compressobj(STREAM_GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip wrapper
    for chunk in chunks:
        data = compressor.compress(chunk)
        if data:
            yield data
    yield compressor.flush()


def set_send_timeout(request, seconds: float) -> None:
    """Drop the stream if its client reads nothing for `seconds` (gunicorn only).

    A client that stops reading fills the socket's buffer, and a blocking
    send would then hold the worker (and its concurrency slot) for as long
    as the client likes. gunicorn passes the client socket in the WSGI
    environ; with a timeout on it, the stalled send raises, gunicorn closes
    the connection and the response's close frees the slot. The timeout is
    reset when gunicorn takes the socket back (keep-alive).
    """
    sock = request.META.get("gunicorn.socket")
    if sock is not None and seconds > 0:
        sock.settimeout(seconds)


class ReplayView(HeavyEndpointMixin, APIView):
    """Every event of the markets in [start_time, end_time), in the order received, as NDJSON.

    First, with deltas, a `snapshot` line per market (source "start": the
    book just before start_time); then `delta`, `trade`, `lifecycle` lines,
    `snapshot` lines for every stored re-baseline or checkpoint and `gap`
    lines for recorded gaps; last an `end` line with the event count. A
    snapshot replaces the book, a delta adds to a level: applying the lines
    in order gives /orderbook at every instant. Gzip when the client accepts it.
    """

    renderer_classes = [EnvelopeJSONRenderer]
    content_negotiation_class = JsonErrorsNegotiation
    schema = RawBodySchema()
    heavy_name = "replay"

    @extend_schema(
        parameters=[bs.ReplayParams],
        responses={(200, NDJSON): OpenApiResponse(
            response=OpenApiTypes.STR, description="NDJSON: one event per line (docs/bulk.md)."
        )},
    )
    def get(self, request):
        params = parse_params(bs.ReplayParams, request)
        tickers = [require_market(t) for t in params["market_tickers"]]
        gzip = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        if request.method == "HEAD":
            # The headers a GET would send, without reading a row.
            response = HttpResponse(content_type=NDJSON)
        else:
            runs = replay_runs(market_tickers=tickers, start_time=params["start_time"],
                               end_time=params["end_time"], types=params["types"])
            slots = getattr(self, "slots", None)
            chunks = _ndjson_chunks(runs, request_id_for(request),
                                    slots.renew if slots else (lambda: None))
            response = StreamingHttpResponse(_gzipped(chunks) if gzip else chunks,
                                             content_type=NDJSON)
            set_send_timeout(request, settings.API_STREAM_SEND_TIMEOUT)
        if gzip:
            response["Content-Encoding"] = "gzip"
        response["Vary"] = "Accept-Encoding"
        response["Cache-Control"] = "no-store"
        response["X-Accel-Buffering"] = "no"  # let proxies pass lines on as they come
        return response


# --- Book snapshots ------------------------------------------------------------------


class BookSnapshotsView(HeavyEndpointMixin, APIView):
    """The top `depth` levels of each side at every interval boundary in [start_time, end_time).

    Boundaries are multiples of the interval since the Unix epoch (UTC). Each
    point equals /orderbook at that instant; a page is computed in one
    forward pass, which restarts from a stored snapshot when one lies
    between two points (markets/book_snapshots.py).
    """

    serializer_class = bs.BookPointSerializer
    pagination_class = TickPagination  # for the schema: pages are cut below
    heavy_name = "book_snapshots"

    @extend_schema(parameters=[bs.BookSnapshotParams],
                   responses=bs.BookPointSerializer(many=True))
    def get(self, request):
        params = parse_params(bs.BookSnapshotParams, request)
        ticker = require_market(params["market_ticker"])
        start = params["start_time"]
        if params.get("cursor"):
            (resume,) = decode_cursor(params["cursor"], (type(start),))
            start = max(start, resume)
        limit = params["limit"]
        # A page ends at `limit` points or when its work (deltas read,
        # restarts from snapshots) passes API_PAGE_WORK, whichever comes
        # first: a short page with a next_cursor, never a 13 s one. A single
        # point that alone costs more is a 422 (as /orderbook).
        points, next_cursor = [], None
        meter = WorkMeter(limit=settings.API_PAGE_WORK)
        try:
            for point in islice(book_snapshots(
                market_ticker=ticker, start_time=start, end_time=params["end_time"],
                interval=params["interval"], depth=params["depth"], meter=meter,
            ), limit + 1):
                points.append(point)
        except WorkBudgetExceeded as exc:
            if not points:
                raise TooMuchWork(
                    f"One point of this book needs more than {exc.limit} deltas replayed "
                    "(few checkpoints recorded); use /replay for this range.") from None
            next_cursor = encode_cursor((points[-1].at + ONE_MICROSECOND,), (type(start),))
        if len(points) > limit:
            next_cursor = encode_cursor((points[limit].at,), (type(start),))
            points = points[:limit]
        return paginated_response(self.serializer_class(points, many=True).data, next_cursor)


# --- Coverage ---------------------------------------------------------------------------


@contextmanager
def query_time_limit(milliseconds: int, message: str):
    """PostgreSQL cancels any statement inside after `milliseconds`: a 422 then.

    For reads whose cost grows with the data, not with the request (a year
    of a busy market's rows counted by coverage): the request stays valid,
    its answer just costs more than one request may spend.
    """
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)",
                               [f"{milliseconds}ms"])
            yield
    except OperationalError as exc:
        if isinstance(exc.__cause__, psycopg.errors.QueryCanceled):
            raise TooMuchWork(message) from None
        raise


class CoverageView(HeavyEndpointMixin, APIView):
    """Per UTC day: complete, degraded (gaps recorded), missing (no data) or pending (today).

    With the first and last event, the number of deltas, trades, snapshots
    and lifecycle messages, and every gap that overlaps the day.
    """

    serializer_class = bs.CoverageReportSerializer
    heavy_name = "coverage"

    @extend_schema(parameters=[bs.CoverageParams])
    def get(self, request):
        params = parse_params(bs.CoverageParams, request)
        ticker = require_market(params["market_ticker"])
        with query_time_limit(settings.API_COVERAGE_TIME_LIMIT_MS,
                              "Counting this market's rows over this many days takes too long; "
                              "ask for fewer days at a time."):
            days = coverage(market_ticker=ticker, start_date=params["start_date"],
                            end_date=params["end_date"])
        return Response(self.serializer_class({
            "market_ticker": ticker, "start_date": params["start_date"],
            "end_date": params["end_date"], "days": days,
        }).data)


# --- Export files ---------------------------------------------------------------------


class ExportListView(HeavyEndpointMixin, APIView):
    """The day files under EXPORT_DIR (written by `manage.py export`), by path."""

    serializer_class = bs.ExportFileSerializer
    pagination_class = TickPagination  # for the schema: pages are cut below
    heavy_name = "exports"

    @extend_schema(parameters=[bs.ExportListParams],
                   responses=bs.ExportFileSerializer(many=True))
    def get(self, request):
        params = parse_params(bs.ExportListParams, request)
        files = dataset_files(settings.EXPORT_DIR)
        wanted = [
            f for f in files
            if params.get("type") in (None, f.table)
            and params.get("file_format") in (None, f.format)
            and (params.get("start_date") is None or f.day >= params["start_date"])
            and (params.get("end_date") is None or f.day <= params["end_date"])
        ]
        if params.get("cursor"):
            (after,) = decode_cursor(params["cursor"], (str,))
            wanted = [f for f in wanted if f.path > after]
        limit = params["limit"]
        page, more = wanted[:limit], len(wanted) > limit
        next_cursor = encode_cursor((page[-1].path,), (str,)) if more else None
        data = self.serializer_class(page, many=True, context={"request": request}).data
        return paginated_response(data, next_cursor)


class ExportFileView(HeavyEndpointMixin, APIView):
    """Download one day file; `path` as listed (type=T/date=D/part-0.parquet).

    A single `Range` (with `If-Range` equal to `Last-Modified`) answers 206
    with those bytes, so an interrupted download resumes where it stopped.
    """

    schema = RawBodySchema()
    heavy_name = "exports"

    @extend_schema(responses={
        (200, "application/vnd.apache.parquet"): OpenApiResponse(
            response=OpenApiTypes.BINARY, description="A Parquet day file."),
        (200, "application/gzip"): OpenApiResponse(
            response=OpenApiTypes.BINARY, description="A gzip CSV day file."),
    },
        parameters=[OpenApiParameter("path", str, OpenApiParameter.PATH)])
    def get(self, request, path):
        found = dataset_file(settings.EXPORT_DIR, path)
        if found is None:
            raise NotFound(f"No export file at {path}.")
        kind = ("application/vnd.apache.parquet" if found.suffix == ".parquet"
                else "application/gzip")
        handle = found.open("rb")
        size = os.fstat(handle.fileno()).st_size
        last_modified = http_date(os.fstat(handle.fileno()).st_mtime)
        wanted = byte_range(request.headers.get("Range"), size)
        if_range = request.headers.get("If-Range")
        if wanted is not None and if_range is not None and if_range != last_modified:
            wanted = None  # the client holds part of another version: send it whole
        if wanted == UNSATISFIABLE:
            handle.close()
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
        elif wanted is None:
            response = FileResponse(handle, as_attachment=True,
                                    filename=path.replace('/', '_'), content_type=kind)
        else:
            first, last = wanted
            handle.seek(first)
            response = FileResponse(_file_slice(handle, last - first + 1), status=206,
                                    as_attachment=True, filename=path.replace('/', '_'),
                                    content_type=kind)
            response["Content-Length"] = str(last - first + 1)
            response["Content-Range"] = f"bytes {first}-{last}/{size}"
        response["Accept-Ranges"] = "bytes"
        response["Last-Modified"] = last_modified
        set_send_timeout(request, settings.API_STREAM_SEND_TIMEOUT)
        return response


UNSATISFIABLE = (-1, -1)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range a Range header asks for, as (first, last) inclusive.

    None means "send the whole file" (no header, a malformed one, or several
    ranges, which RFC 9110 lets a server ignore); UNSATISFIABLE a range that
    starts past the end. Suffix ranges (`bytes=-500`) are the last bytes.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_text, dash, last_text = header[len("bytes="):].strip().partition("-")
    if not dash:
        return None
    try:
        if not first_text:
            suffix = int(last_text)
            if suffix <= 0:
                return UNSATISFIABLE
            return max(0, size - suffix), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size:
        return UNSATISFIABLE
    if last < first:
        return None
    return first, min(last, size - 1)


def _file_slice(handle, length: int, block: int = 1 << 16):
    """`length` bytes from the file's current position, then close it."""
    try:
        while length > 0:
            chunk = handle.read(min(block, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        handle.close()
