"""Retry pacing shared by the REST client and the WebSocket reconnect loop.

Kalshi's 429 carries no Retry-After, and a reconnect storm from many
collectors must not hit the exchange in lock-step, so both sides wait with
exponential backoff and jitter. A client-side token bucket keeps REST calls
under the account's read budget in the first place.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Iterator


def backoff_delays(
    *, initial: float, factor: float, maximum: float, rng: random.Random | None = None
) -> Iterator[float]:
    """Endless delays: exponential up to `maximum`, each with "equal jitter".

    The n-th delay lies in [d/2, d] with d = min(initial * factor**n, maximum),
    so waits grow reliably while callers that failed together spread out.
    """
    rng = rng or random
    delay = initial
    while True:
        yield delay / 2 + rng.uniform(0, delay / 2)
        delay = min(delay * factor, maximum)


class TokenBucket:
    """At most `rate` acquisitions per second on average, bursts up to `capacity`."""

    clock = staticmethod(time.monotonic)  # swappable in tests

    def __init__(self, rate: float, capacity: float | None = None):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._updated = self.clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a token is free, then take it."""
        async with self._lock:
            while True:
                now = self.clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
