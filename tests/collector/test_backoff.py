"""Backoff delays grow with jitter up to the cap; the token bucket paces calls."""

import asyncio
import random

from collector.backoff import TokenBucket, backoff_delays


def test_delays_grow_exponentially_with_jitter_and_stop_at_the_cap():
    delays = backoff_delays(initial=1.0, factor=2.0, maximum=8.0, rng=random.Random(1))
    got = [next(delays) for _ in range(8)]
    bounds = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, bound in zip(got, bounds):
        assert bound / 2 <= delay <= bound
    assert len(set(got)) == len(got)  # jittered, not lock-step


def test_token_bucket_allows_a_burst_then_paces_by_rate():
    now = [0.0]
    slept = []

    class Bucket(TokenBucket):
        clock = staticmethod(lambda: now[0])

    async def fake_sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    async def main():
        bucket = Bucket(rate=10, capacity=3)
        original = asyncio.sleep
        asyncio.sleep = fake_sleep
        try:
            for _ in range(5):
                await bucket.acquire()
        finally:
            asyncio.sleep = original

    asyncio.run(main())
    # Three from the burst, then one token per 1/10 s.
    assert len(slept) == 2
    assert abs(now[0] - 0.2) < 1e-9
