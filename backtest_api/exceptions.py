"""One error shape for every failure a client can cause.

Every error body is::

    {"code": "invalid_parameter", "message": "start_time: ...",
     "param": "start_time", "details": {...}, "request_id": "..."}

`code` is stable and machine-readable; `message` names the bad parameter or
the missing thing; `param` is that parameter (or null); `details` carries
every field error when there are several. Errors raised by our own code:

    APIException (DRF)
    ├── InvalidParameter   400 invalid_parameter   a query parameter is wrong
    ├── NotFound (DRF)     404 not_found            unknown ticker or object
    ├── TooMuchWork        422 too_much_work        the answer costs more than a request may
    └── ConcurrencyLimited 429 too_many_concurrent  too many heavy requests at once (limits.py)

DRF's own (authentication, permission, throttling, method, content
negotiation) are mapped to codes below. Anything else is a bug and stays a
500, with the same shape (see `server_error`).
"""

from __future__ import annotations

import math

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

from .limits import ConcurrencyLimited
from .middleware import request_id_for

NOT_AUTHENTICATED_MESSAGE = (
    "An API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
)

class TooMuchWork(exceptions.APIException):
    """The answer would read more rows than one request may (API_MAX_BOOK_DELTAS)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "too_much_work"


# DRF exception class -> our code; checked in order, first match wins.
CODES = (
    (ConcurrencyLimited, "too_many_concurrent"),
    (TooMuchWork, "too_much_work"),
    (exceptions.Throttled, "rate_limited"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "authentication_failed"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.ParseError, "malformed_request"),
    (exceptions.ValidationError, "invalid_parameter"),
)


class InvalidParameter(exceptions.ValidationError):
    """A query parameter the API cannot use; the message names it."""

    def __init__(self, param: str, message: str):
        super().__init__({param: [message]})


def error_body(request, *, code: str, message: str, param=None, details=None) -> dict:
    return {
        "code": code,
        "message": message,
        "param": param,
        "details": details,
        "request_id": request_id_for(request) if request is not None else None,
    }


def api_exception_handler(exc, context):
    """DRF's handler (headers such as Retry-After), then our error shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: let Django's 500 handling log it
    request = context.get("request")
    code = next((c for cls, c in CODES if isinstance(exc, cls)), "error")
    param, message, details = None, _message(exc.detail), None
    if isinstance(exc, exceptions.ValidationError):
        details = _flatten(exc.detail)
        param = next(iter(details), None)
        if param is not None:
            message = f"{param}: {details[param][0]}"
            if param == "non_field_errors":
                param, message = None, details["non_field_errors"][0]
    elif isinstance(exc, exceptions.NotAuthenticated):
        message = NOT_AUTHENTICATED_MESSAGE
    elif isinstance(exc, exceptions.Throttled):
        wait = math.ceil(exc.wait) if exc.wait is not None else None
        message = (
            f"Rate limit exceeded; retry in {wait} seconds."
            if wait is not None
            else "Rate limit exceeded; retry later."
        )
        details = {"retry_after": wait}
    elif isinstance(exc, ConcurrencyLimited):
        details = {"retry_after": exc.wait, "limit": exc.limit}
    response.data = error_body(
        request, code=code, message=message, param=param, details=details
    )
    return response


def _message(detail) -> str:
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        return f"{key}: {_message(value)}"
    if isinstance(detail, list):
        return _message(detail[0]) if detail else ""
    return str(detail)


def _flatten(detail) -> dict[str, list[str]]:
    """{"param": ["message", ...]} from DRF's nested ValidationError detail."""
    if not isinstance(detail, dict):
        return {"non_field_errors": [_message(detail)]}
    return {
        str(key): (
            [_message(v) for v in value]
            if isinstance(value, list)
            else [_message(value)]
        )
        for key, value in detail.items()
    }


# Django-level handlers (kalshi_data/urls.py), so that a URL outside every
# route, or a bug, still answers in the API's shape.


def not_found(request, exception=None):
    body = error_body(
        request, code="not_found", message=f"No endpoint at {request.path}."
    )
    return JsonResponse(body, status=status.HTTP_404_NOT_FOUND)


def bad_request(request, exception=None):
    """A request Django refuses before routing it: a Host not in ALLOWED_HOSTS, mostly."""
    body = error_body(
        request, code="bad_request",
        message="Bad request (e.g. a Host header this server does not serve).",
    )
    return JsonResponse(body, status=status.HTTP_400_BAD_REQUEST)


def server_error(request):
    body = error_body(
        request,
        code="internal_error",
        message="Internal server error; quote the request_id when reporting it.",
    )
    return JsonResponse(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
