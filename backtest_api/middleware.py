"""A request id for every request, echoed in the `X-Request-ID` header.

The id ties a client's report ("this call failed") to our log lines. A client
may send its own X-Request-ID (e.g. from a proxy); it is kept when it is a
short token, otherwise a fresh one is made. The start time kept beside it is
what the envelope's `response_time` measures from.
"""

from __future__ import annotations

import re
import time
import uuid

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_for(request) -> str:
    """The id of this request (made on first use if the middleware did not run)."""
    request_id = getattr(request, "request_id", None)
    if request_id is None:
        request_id = request.request_id = uuid.uuid4().hex
    return request_id


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.started_at = time.perf_counter()
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request.request_id = offered if _CLIENT_ID.match(offered) else uuid.uuid4().hex
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request.request_id
        return response
