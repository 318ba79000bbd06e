"""Bounded cost per request: concurrency slots for the heavy endpoints.

A rate limit counts requests; it cannot stop one key from holding every
worker with a few slow ones (a replay stream whose client never reads, a
page of book snapshots over a day of deltas). So the heavy endpoints
(replay, book_snapshots, coverage, exports, candles over long ranges) also
take a *slot* for as long as they run:

* at most API_HEAVY_PER_KEY at once per API key (or staff user, or client
  address for anonymous reads), and
* at most API_HEAVY_TOTAL at once in the whole deployment, so that heavy
  requests can never occupy every worker and small reads keep flowing.

A request that finds no free slot is refused at once with a 429
(`code: too_many_concurrent`, Retry-After) in the API's error shape: it
never queues. Slots are cache keys (`cache.add` is atomic in Redis and in
the per-process cache alike), so with REDIS_URL they are shared by every
process. Each slot is a lease: a worker killed mid-request frees its slots
after SLOT_LEASE_SECONDS; a stream renews its lease as it sends.
"""

from __future__ import annotations

import time
import uuid

from django.conf import settings
from django.core.cache import cache
from rest_framework import exceptions, status
from rest_framework.throttling import BaseThrottle

from .models import ApiKey

SLOT_LEASE_SECONDS = 60
# A stream renews its lease at most this often (a cache round trip each).
RENEW_EVERY_SECONDS = 10


class ConcurrencyLimited(exceptions.APIException):
    """A 429: the caller (or the deployment) runs as many heavy requests as allowed."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_concurrent"

    def __init__(self, message: str, limit: int, wait: int = 1):
        super().__init__(message)
        self.limit = limit
        self.wait = wait


def caller_ident(request) -> str:
    """Who the request counts against: its key, its staff user, or its address."""
    if isinstance(request.auth, ApiKey):
        return f"key-{request.auth.pk}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.pk is not None:
        return f"user-{user.pk}"
    return f"addr-{client_address(request)}"


def client_address(request) -> str:
    """The client's address, by DRF's rule (throttles, slots and admin lockout).

    With NUM_PROXIES=0 (the default) it is the socket's peer and
    X-Forwarded-For is ignored; with n, it is the n-th address from the
    right of X-Forwarded-For, the one the outermost trusted proxy saw.
    """
    return BaseThrottle().get_ident(request)


class Slots:
    """The slots one request holds; `release()` frees them (idempotent)."""

    def __init__(self, keys: list[str], token: str):
        self.keys, self.token = keys, token
        self.renewed_at = time.monotonic()

    def renew(self) -> None:
        now = time.monotonic()
        if now - self.renewed_at >= RENEW_EVERY_SECONDS:
            self.renewed_at = now
            for key in self.keys:
                cache.touch(key, SLOT_LEASE_SECONDS)

    def release(self) -> None:
        keys, self.keys = self.keys, []
        for key in keys:
            # Only our own: had the lease run out, the slot may be another's now.
            if cache.get(key) == self.token:
                cache.delete(key)


def _take(pool: str, limit: int, token: str) -> str | None:
    for index in range(limit):
        key = f"slot:{pool}:{index}"
        if cache.add(key, token, SLOT_LEASE_SECONDS):
            return key
    return None


def acquire(request, endpoint: str) -> Slots:
    """One per-caller and one deployment-wide slot, or ConcurrencyLimited."""
    token = uuid.uuid4().hex
    per_key, total = settings.API_HEAVY_PER_KEY, settings.API_HEAVY_TOTAL
    mine = _take(f"caller:{caller_ident(request)}", per_key, token)
    if mine is None:
        raise ConcurrencyLimited(
            f"At most {per_key} heavy requests (replay, book_snapshots, coverage, "
            f"exports, long candles) at once per API key; this one ({endpoint}) "
            "was refused: wait for one to finish.", per_key)
    shared = _take("all", total, token)
    if shared is None:
        cache.delete(mine)
        raise ConcurrencyLimited(
            f"The server runs as many heavy requests as it allows ({total}); "
            f"this one ({endpoint}) was refused: retry shortly.", total)
    return Slots([mine, shared], token)


class HeavyEndpointMixin:
    """For APIViews whose requests may be expensive: hold slots while they run.

    The slots are taken after authentication and rate limits (`initial`)
    and freed when the server closes the response: after the last byte of a
    stream, or when the client goes away. `is_heavy(request)` may exempt
    cheap requests (short candle ranges).
    """

    heavy_name = "bulk"

    def is_heavy(self, request) -> bool:
        return True

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.slots = acquire(request, self.heavy_name) if self.is_heavy(request) else None

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        slots = getattr(self, "slots", None)
        if slots is not None:
            response._resource_closers.append(slots.release)
        return response
