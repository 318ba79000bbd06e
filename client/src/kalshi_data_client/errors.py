"""The client's exceptions.

    KalshiDataError
    ├── APIError               the API answered with its error shape
    │   ├── InvalidParameter   400, `param` names the bad parameter
    │   ├── AuthenticationError 401
    │   ├── PermissionDenied   403
    │   ├── NotFound           404
    │   ├── RateLimited        429 (after the retries), `retry_after` seconds
    │   └── ServerError        5xx (after the retries)
    ├── TransportError         no answer at all (after the retries)
    ├── StreamError            a replay stream ended with an `error` line, or cut short
    └── DownloadError          a downloaded file's size differs from the listing
"""

from __future__ import annotations

from typing import Any


class KalshiDataError(Exception):
    """Every error this client raises."""


class APIError(KalshiDataError):
    """An error answer of the API: `{code, message, param, details, request_id}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        param: str | None = None,
        details: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message} (request_id {request_id})")
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.details = details
        self.request_id = request_id


class InvalidParameter(APIError):
    pass


class AuthenticationError(APIError):
    pass


class PermissionDenied(APIError):
    pass


class NotFound(APIError):
    pass


class RateLimited(APIError):
    @property
    def retry_after(self) -> float | None:
        if isinstance(self.details, dict) and self.details.get("retry_after") is not None:
            return float(self.details["retry_after"])
        return None


class ServerError(APIError):
    pass


class TransportError(KalshiDataError):
    """The server could not be reached, or the connection broke."""


class StreamError(KalshiDataError):
    """A replay stream broke after it started; quote `request_id` when reporting it."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{message} (request_id {request_id})")
        self.request_id = request_id


class DownloadError(KalshiDataError):
    """A downloaded file does not have the size the server listed."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidParameter,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    429: RateLimited,
}


def api_error(status: int, body: Any, request_id: str | None = None) -> APIError:
    """The typed exception for an error answer (its JSON body, or anything else)."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    if isinstance(body, dict) and "code" in body:
        return cls(
            status,
            str(body.get("code")),
            str(body.get("message", "")),
            body.get("param"),
            body.get("details"),
            body.get("request_id") or request_id,
        )
    return cls(status, "error", str(body)[:500], request_id=request_id)
