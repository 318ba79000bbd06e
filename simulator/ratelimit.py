"""Kalshi-style token-bucket rate limiting for the simulator's REST side.

Kalshi answers an over-budget request with HTTP 429, the body
{"error": "too many requests"}, and no Retry-After or X-RateLimit-* header
(PROTOCOL.md section 6.6). One bucket per client (key id, or address when
unsigned).
"""

from __future__ import annotations

import time


class TokenBucket:
    """`rate` tokens per second, holding at most `capacity`; a request costs `cost`."""

    # A class attribute so tests can swap the clock instead of sleeping.
    timer = staticmethod(time.monotonic)

    def __init__(self, rate: float, capacity: float):
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = self.timer()

    def take(self, cost: float = 1) -> bool:
        now = self.timer()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class RateLimiter:
    def __init__(self, rate: float | None, burst_seconds: float, cost: float = 1):
        self.rate = rate
        self.cost = cost  # tokens a read costs (Kalshi: 10)
        self.capacity = max(float(cost), (rate or 0) * burst_seconds)
        self.buckets: dict[str, TokenBucket] = {}

    def allow(self, client: str) -> bool:
        if self.rate is None:
            return True
        bucket = self.buckets.get(client)
        if bucket is None:
            bucket = self.buckets[client] = TokenBucket(self.rate, self.capacity)
        return bucket.take(self.cost)
