"""The success envelope, added at render time so views return plain data.

Every 2xx body becomes ``{"data": ..., "request_id": ..., "response_time": s}``;
a paginated list adds ``next_cursor`` and ``has_more`` (the paginator puts
them on the response as `envelope_extra`). Error bodies are already in their
own shape (see exceptions.py) and pass through untouched. The browsable API
renders through the same JSON renderer, so what a browser shows is what a
client gets.
"""

from __future__ import annotations

import time

import orjson
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer

from .middleware import request_id_for


class RawJSON:
    """JSON text written elsewhere (by PostgreSQL: markets/candles.py), embedded as it is."""

    __slots__ = ("text",)

    def __init__(self, text: bytes):
        self.text = text


def _expanded(data):
    """`data` with every RawJSON parsed, for renderers that cannot embed text."""
    if isinstance(data, RawJSON):
        return orjson.loads(data.text)
    if isinstance(data, dict):
        return {key: _expanded(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_expanded(value) for value in data]
    return data


def envelope(data, request, extra: dict | None = None) -> dict:
    body = {"data": data}
    body.update(extra or {})
    body["request_id"] = request_id_for(request)
    started = getattr(request, "started_at", None)
    body["response_time"] = (
        round(time.perf_counter() - started, 6) if started is not None else None
    )
    return body


class EnvelopeJSONRenderer(JSONRenderer):
    # Exact decimals are already strings; keep the output compact.
    compact = True

    def render(self, data, accepted_media_type=None, renderer_context=None):
        context = renderer_context or {}
        response = context.get("response")
        request = context.get("request")
        if (
            response is not None
            and request is not None
            and 200 <= response.status_code < 300
        ):
            data = envelope(data, request, getattr(response, "envelope_extra", None))
        if data is not None and not self.get_indent(accepted_media_type, context):
            compact = _compact(data, self.encoder_class().default)
            if compact is not None:
                return compact
        return super().render(_expanded(data), accepted_media_type, renderer_context)


def _compact(data, default) -> bytes | None:
    """`data` as compact JSON by orjson: what DRF's renderer writes, faster.

    A day of 1-minute candles is 1,440 objects; json.dumps took longer than
    reading them (bench/api_bench.py). Times and anything orjson does not
    know go through DRF's own encoder (`default`), so they read the same;
    None when orjson refuses (an integer beyond 64 bits, a float that is not
    finite): the caller then uses DRF's renderer, which decides.
    """
    def embed(value):
        return orjson.Fragment(value.text) if isinstance(value, RawJSON) else default(value)

    try:
        return orjson.dumps(data, default=embed, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except (orjson.JSONEncodeError, TypeError):
        return None


class EnvelopeBrowsableAPIRenderer(BrowsableAPIRenderer):
    """The browsable API; read-only, so no forms are rendered."""

    def get_rendered_html_form(self, data, view, method, request):
        return None
