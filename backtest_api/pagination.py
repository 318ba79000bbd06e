"""Keyset pagination over a full ordering key, with an opaque cursor.

Why not DRF's CursorPagination: its cursor holds only the first ordering
field plus an offset. On tick tables many rows share a timestamp, so the
offset grows and the page is found by skipping rows. Here the cursor holds
the whole key of the last row returned (e.g. ``(ts, trade_id)``) and the next
page is ``WHERE key > cursor ORDER BY key LIMIT n + 1``: an index range scan,
equally fast on page 1 and page 10,000, and stable when new rows arrive
(a row inserted before the cursor is never seen twice, nor skips another).

The cursor is URL-safe base64 of a small JSON list; datetimes travel as ISO
strings and are restored by the key's declared types. Clients treat it as
opaque. A cursor that does not decode, or does not fit the endpoint, is a 400
naming `cursor`. Never OFFSET, never COUNT.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import reduce
from typing import Any, Callable, Sequence

from django.db.models import Q
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from .exceptions import InvalidParameter

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CURSOR_PARAM = "cursor"
LIMIT_PARAM = "limit"

# How each key type is written into and read back from the cursor.
_ENCODERS: dict[type, Callable[[Any], Any]] = {
    datetime: lambda v: v.isoformat(),
    Decimal: str,
    int: int,
    str: str,
}
_DECODERS: dict[type, Callable[[Any], Any]] = {
    datetime: lambda v: datetime.fromisoformat(v),
    Decimal: lambda v: Decimal(v),
    int: lambda v: int(v) if not isinstance(v, bool) else _bad(),
    str: lambda v: v if isinstance(v, str) and _storable(v) else _bad(),
}


def _storable(text: str) -> bool:
    """Whether PostgreSQL text can hold it: no NUL, and valid UTF-8.

    No cursor we issue holds a NUL or a lone surrogate (JSON can spell one,
    "\\ud800", which no UTF-8 encoder accepts); either would fail in the
    driver, a 500, rather than here, a 400.
    """
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad():
    raise ValueError("wrong type")


def encode_cursor(key: Sequence, types: Sequence[type]) -> str:
    payload = [_ENCODERS[t](v) for v, t in zip(key, types)]
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, types: Sequence[type]) -> tuple:
    """The key in `cursor`; InvalidParameter("cursor") if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, list) or len(payload) != len(types):
            raise ValueError("wrong length")
        key = tuple(_DECODERS[t](v) for v, t in zip(payload, types))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, ArithmeticError):
        raise InvalidParameter(
            CURSOR_PARAM, "Not a cursor this endpoint issued."
        ) from None
    # The instants a request may name (bulk_serializers); a cursor is no
    # way around that check (stepping from year 9999 overflows).
    from .bulk_serializers import EARLIEST, LATEST

    for value in key:
        if isinstance(value, datetime) and (
            value.tzinfo is None or not EARLIEST <= value <= LATEST
        ):
            raise InvalidParameter(CURSOR_PARAM, "Not a cursor this endpoint issued.")
    return key


def parse_limit(
    raw: str | None, *, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT
) -> int:
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidParameter(
            LIMIT_PARAM, f"Must be an integer from 1 to {maximum}."
        ) from None
    if not 1 <= limit <= maximum:
        raise InvalidParameter(
            LIMIT_PARAM, f"Must be from 1 to {maximum}; got {limit}."
        )
    return limit


@dataclass
class Page:
    """One page of rows and the key to continue after (None on the last page)."""

    rows: list
    next_key: tuple | None


def keyset_page(rows: list, limit: int, key_of: Callable[[Any], tuple]) -> Page:
    """Trim a `limit + 1` fetch to `limit` rows and note whether more exist."""
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, key_of(rows[-1]))
    return Page(rows, None)


class KeysetPagination(BasePagination):
    """Keyset pages of an ordered queryset (the hierarchy endpoints).

    The view names its full ordering key in `keyset_fields` (unique, non-null,
    ascending) with the Python types in `keyset_types`; the queryset is
    ordered by it here, so a view cannot forget.
    """

    default_limit = DEFAULT_LIMIT
    max_limit = MAX_LIMIT

    def paginate_queryset(self, queryset, request, view=None):
        fields = view.keyset_fields
        types = view.keyset_types
        limit = parse_limit(
            request.query_params.get(LIMIT_PARAM),
            default=self.default_limit,
            maximum=self.max_limit,
        )
        queryset = queryset.order_by(*fields)
        cursor = request.query_params.get(CURSOR_PARAM)
        if cursor:
            queryset = queryset.filter(
                after_key_q(fields, decode_cursor(cursor, types))
            )
        page = keyset_page(
            list(queryset[: limit + 1]),
            limit,
            lambda obj: tuple(getattr(obj, f) for f in fields),
        )
        self.next_cursor = (
            encode_cursor(page.next_key, types) if page.next_key else None
        )
        return page.rows

    def get_paginated_response(self, data):
        return paginated_response(data, self.next_cursor)

    def get_paginated_response_schema(self, schema):
        return paginated_schema(schema)

    def get_schema_operation_parameters(self, view):
        return cursor_parameters(self.max_limit, self.default_limit)


def after_key_q(fields: Sequence[str], key: Sequence) -> Q:
    """Rows whose (fields) sort strictly after `key`: the lexicographic expansion."""
    clauses = []
    for i, field in enumerate(fields):
        equal = {f: v for f, v in zip(fields[:i], key[:i])}
        clauses.append(Q(**equal, **{f"{field}__gt": key[i]}))
    return reduce(lambda a, b: a | b, clauses)


def paginated_response(data, next_cursor: str | None) -> Response:
    response = Response(data)
    response.envelope_extra = {
        "next_cursor": next_cursor,
        "has_more": next_cursor is not None,
    }
    return response


def paginated_schema(item_list_schema: dict) -> dict:
    """The OpenAPI schema of a paginated envelope around `item_list_schema`."""
    return {
        "type": "object",
        "required": ["data", "next_cursor", "has_more", "request_id", "response_time"],
        "properties": {
            "data": item_list_schema,
            "next_cursor": {
                "type": "string",
                "nullable": True,
                "description": "Pass as `cursor` to get the next page; null on the last page.",
            },
            "has_more": {"type": "boolean"},
            "request_id": {"type": "string"},
            "response_time": {
                "type": "number",
                "description": "Seconds spent serving.",
            },
        },
    }


def cursor_parameters(max_limit: int, default_limit: int) -> list[dict]:
    return [
        {
            "name": CURSOR_PARAM,
            "required": False,
            "in": "query",
            "description": "Opaque cursor from the previous page's next_cursor.",
            "schema": {"type": "string"},
        },
        {
            "name": LIMIT_PARAM,
            "required": False,
            "in": "query",
            "description": f"Rows per page, 1..{max_limit} (default {default_limit}).",
            "schema": {"type": "integer", "minimum": 1, "maximum": max_limit},
        },
    ]


class TickPagination(KeysetPagination):
    """Schema-only: tick views page through their selector (views.TickListView).

    Their cursor and limit are declared with the other query parameters, so
    no extra ones are added here.
    """

    def get_schema_operation_parameters(self, view):
        return []
